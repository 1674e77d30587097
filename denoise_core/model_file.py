"""What a ``.keras`` file's ``config.json`` says before anything loads it.

``denoise run`` checks the model once in the driver, without TensorFlow: a model Keras
would refuse (a ``Lambda`` layer: Python code, refused under ``safe_mode``) or one that
does not map RGB to RGB would otherwise fail in every Ray actor or on every image, after
minutes of start-up and pages of tracebacks. Unknown architectures (subclassed models,
unusual output layers) leave a channel count unknown and are not refused here.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from typing import IO, Any

MODEL_CHANNELS = 3  # denoise run feeds RGB in [0, 1] (grey replicated, alpha put aside)
# Layers whose output has the channels of their (first) input.
_SAME_CHANNELS = frozenset(
    {
        "Activation", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Dropout",
        "SpatialDropout2D", "GaussianNoise", "Identity", "BatchNormalization",
        "LayerNormalization", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
        "MaxPooling2D", "AveragePooling2D",
    }
)  # fmt: skip


@dataclass
class ModelFileInfo:
    """Facts read from ``config.json``; None where the config does not say."""

    lambda_layers: list[str]
    input_channels: int | None
    output_channels: int | None


def missing_model_file(uris: dict[str, str | None]) -> str | None:
    """``{flag: uri}`` -> the one-line refusal for the first named model file that does
    not exist (``"--teacher: no model file at URI"``), or None; said before training
    starts rather than by a worker minutes later."""
    from . import storage

    for flag, uri in uris.items():
        if uri and not storage.exists(uri):
            return f"{flag}: no model file at {uri}"
    return None


def read_config(fh: IO[bytes]) -> dict[str, Any]:
    """``config.json`` of an open ``.keras`` file (a zip archive)."""
    with zipfile.ZipFile(fh) as zf:
        if "config.json" not in zf.namelist():
            raise ValueError("a zip without config.json, not a .keras model")
        return json.loads(zf.read("config.json"))


def _walk(obj: Any):
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def _last_dim(shape: Any) -> int | None:
    if isinstance(shape, list) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None


def _names(spec: Any) -> list[str]:
    """Layer names of ``input_layers`` / ``output_layers`` (``[n, 0, 0]`` or a list)."""
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        return [spec[0]]
    return [s[0] for s in spec or [] if isinstance(s, list) and s and isinstance(s[0], str)]


def _input_channels(layer: dict) -> int | None:
    cfg = layer.get("config", {})
    return _last_dim(cfg.get("batch_shape") or cfg.get("batch_input_shape"))


def _inbound_channels(layer: dict) -> int | None:
    for node in _walk(layer.get("inbound_nodes", [])):
        if node.get("class_name") == "__keras_tensor__":
            return _last_dim(node.get("config", {}).get("shape"))
    shape = layer.get("build_config", {}).get("input_shape")
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        shape = shape[0]
    return _last_dim(shape)


def _output_channels(layer: dict) -> int | None:
    cfg = layer.get("config", {})
    for key in ("filters", "units"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    if layer.get("class_name") in _SAME_CHANNELS:
        return _inbound_channels(layer)
    return None


def inspect_config(config: dict[str, Any]) -> ModelFileInfo:
    """Lambda layers and channel counts of a Functional or Sequential model's config."""
    nodes = list(_walk(config))
    lambdas = [
        str(node.get("config", {}).get("name") or node.get("name") or "unnamed")
        for node in nodes
        if node.get("class_name") == "Lambda"
    ]
    if not lambdas and any(node.get("class_name") == "__lambda__" for node in nodes):
        lambdas = ["a Python lambda"]
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = [layer for layer in inner.get("layers", []) if isinstance(layer, dict)]
    by_name = {layer.get("name") or layer.get("config", {}).get("name"): layer for layer in layers}
    in_c = out_c = None
    if config.get("class_name") == "Functional":
        ins = [by_name.get(n) for n in _names(inner.get("input_layers"))]
        outs = [by_name.get(n) for n in _names(inner.get("output_layers"))]
        if len(ins) == 1 and ins[0]:
            in_c = _input_channels(ins[0])
        if len(outs) == 1 and outs[0]:
            out_c = _output_channels(outs[0])
    elif config.get("class_name") == "Sequential" and layers:
        if layers[0].get("class_name") == "InputLayer":
            in_c = _input_channels(layers[0])
        for layer in reversed(layers):
            if layer.get("class_name") not in _SAME_CHANNELS:
                out_c = _output_channels(layer)
                break
        else:
            out_c = in_c
    if in_c is None:
        in_c = _last_dim(config.get("build_config", {}).get("input_shape"))
    return ModelFileInfo(lambdas, in_c, out_c)


def problem(info: ModelFileInfo, uri: str) -> str | None:
    """Why ``denoise run`` cannot use this model, in one line, or None."""
    if info.lambda_layers:
        return (
            f"{uri} has a Lambda layer ({info.lambda_layers[0]}): Keras refuses to load "
            "Python code from a model file (safe_mode); rebuild it without Lambda layers"
        )
    for side, channels in (("input", info.input_channels), ("output", info.output_channels)):
        if channels is not None and channels != MODEL_CHANNELS:
            return (
                f"{uri} has {channels}-channel {side}; denoise run needs a model from RGB to "
                f"RGB ({MODEL_CHANNELS} channels; grey images are replicated to RGB)"
            )
    return None
