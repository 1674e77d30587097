"""Exporting a denoiser for other runtimes: ONNX, TFLite (LiteRT) and SavedModel.

Every export is made from the float32 version of the model
(:func:`float32_model`): a model saved by a bf16 training run carries a
``mixed_bfloat16`` policy, which converters either reject (tf2onnx failed on
such a SavedModel) or bake into the graph as bf16 casts that phones and ONNX
Runtime's CPU kernels do not run. The conversion itself is Keras 3's own
``model.export`` (tf2onnx underneath for ONNX, the TFLite converter for LiteRT),
with one input ``noisy`` of shape (batch, height, width, channels): batch,
height and width are dynamic, and height and width must be multiples of
:func:`denoise_core.models.model_size_multiple` (8 for the packaged U-Net):
pad (``tiling.pad_to_multiple``) and crop as :class:`~denoise_core.inference.Denoiser`
does. Inputs and outputs are float32 RGB in [0, 1]; the output is not clipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator

from . import models, storage

FORMATS = ("onnx", "tflite", "saved_model")
INPUT_NAME = "noisy"
# What each format accepts, for --help and the README.
FORMAT_NOTES = {
    "onnx": "one .onnx file (ONNX Runtime, OpenVINO, TensorRT...); float32; batch, "
    "height and width dynamic",
    "tflite": "one .tflite file (LiteRT / tf.lite.Interpreter); float32; batch, height "
    "and width dynamic (resize the input tensor, then allocate)",
    "saved_model": "a SavedModel folder (TF Serving, tf.saved_model.load, OpenVINO); "
    "float32; signature 'serve' with dynamic batch, height and width",
}


class ExportError(ValueError):
    """A request that cannot be exported as asked (bad path, existing output, format)."""


def float32_model(model):
    """The same weights computing in float32: exports never carry a bf16/fp16 policy."""
    return models.with_precision(model, "fp32")


def input_signature(model) -> list:
    """(batch, height, width, channels) with everything but the channels dynamic."""
    import tensorflow as tf

    channels = int(model.input_shape[-1])
    return [tf.TensorSpec((None, None, None, channels), tf.float32, name=INPUT_NAME)]


def check_output(out: str, overwrite: bool, fmt: str, protected: list[str]) -> str:
    """Absolute OUT, refused when it would replace the model or something not ours."""
    if storage.is_remote(out):
        raise ExportError(f"OUT must be a local path, got {out}")
    out = os.path.abspath(out)
    real_out = os.path.realpath(out)
    for path in protected:
        real = os.path.realpath(path)
        if real == real_out or real.startswith(real_out.rstrip(os.sep) + os.sep):
            raise ExportError(f"OUT {out} would replace the model {path}")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise ExportError(f"the folder {parent} does not exist")
    if os.path.lexists(out):
        if not overwrite:
            raise ExportError(f"{out} exists; pass --overwrite to replace it")
        if fmt == "saved_model":
            if not (os.path.isdir(out) and os.path.isfile(os.path.join(out, "saved_model.pb"))):
                raise ExportError(
                    f"{out} exists and is not a SavedModel folder: refusing to replace it"
                )
        elif os.path.isdir(out) and not os.path.islink(out):
            raise ExportError(f"{out} is a folder: refusing to replace it with a {fmt} file")
    return out


@contextlib.contextmanager
def _quiet_converters() -> Iterator[None]:
    """tf2onnx and the TFLite converter warn about numpy aliases and print INFO lines."""
    import logging

    saved = {name: logging.getLogger(name).level for name in ("tf2onnx", "absl")}
    for name in saved:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _write(model, path: str, fmt: str) -> None:
    """One export of a float32 model to ``path`` (which must not exist)."""
    keras_format = {"onnx": "onnx", "tflite": "litert", "saved_model": "tf_saved_model"}[fmt]
    with _quiet_converters():
        model.export(
            path, format=keras_format, verbose=False, input_signature=input_signature(model)
        )


def export_model(model, out: str, fmt: str, overwrite: bool = False, source: str | None = None):
    """Export ``model`` (a Keras model) as ``fmt`` to ``out``; returns the absolute OUT.

    The export is written beside OUT under a temporary name and renamed into place,
    so a failed export leaves an existing OUT as it was. ``overwrite`` replaces only
    OUT itself, and only a file (onnx, tflite) or a SavedModel folder (saved_model);
    ``source`` (the model's own path) is never replaced.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = check_output(out, overwrite, fmt, [source] if source else [])
    model = float32_model(model)
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "saved_model": ""}[fmt]
    staging = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(out))
    try:
        tmp = os.path.join(staging, "model" + suffix)
        _write(model, tmp, fmt)
        if os.path.lexists(out):
            if os.path.isdir(out) and not os.path.islink(out):
                old = os.path.join(staging, "old")
                os.rename(out, old)  # checked above: a SavedModel folder
            else:
                os.remove(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def load_for_export(path: str):
    """The Keras model at ``path`` (local or storage URI), or an :class:`ExportError`."""
    from .inference import load_model_any

    if not storage.is_remote(path):
        if not os.path.exists(path):
            raise ExportError(f"model {path} does not exist")
        if os.path.isdir(path):
            raise ExportError(f"model {path} is a folder; give a .keras file")
    try:
        return load_model_any(path)
    except FileNotFoundError as exc:
        raise ExportError(f"model {path} does not exist") from exc
    except Exception as exc:
        raise ExportError(f"cannot load model {path}: {type(exc).__name__}: {exc}") from exc
