"""Per-image pixel work: the denoise call around the model, output depth, scoring.

Plain functions of arrays, shared by the fused processor and the split stages,
so both produce the same pixels and the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from .. import codecs, fast_metrics, greyscale
from ..metrics import to_float01
from .rows import InputError

# OpenCV's WebP default (quality 100) is lossless; HEIC is x265 at --heic-quality.
LOSSY_FORMATS = (".jpg", ".jpeg", ".heic", ".heif", ".avif")
# Formats that keep a 16-bit result deeper than 8 bits (HEIC as 10-bit).
DEPTH16_FORMATS = (".png", ".tif", ".tiff", ".heic", ".heif", ".avif")
# --metrics: the arithmetic of PSNR / MSE / SSIM (denoise_core.fast_metrics)
METRIC_DTYPES = {"exact": np.float64, "fast": np.float32}


def color_channels(image: np.ndarray) -> np.ndarray:
    """The channels metrics look at: RGB of RGBA (alpha is passed through, not scored)."""
    return image[..., :3] if image.shape[2] == 4 else image


def check_skip_below(skip_below: float | None) -> None:
    """Raise ValueError unless ``skip_below`` is None or a finite number >= 0."""
    if skip_below is not None and not 0.0 <= skip_below < math.inf:
        raise ValueError(f"skip_below must be a noise sigma >= 0 (0-255 scale), got {skip_below}")


def image_format(data: bytes) -> str | None:
    """Pillow's format name of encoded bytes (``PNG``, ``JPEG``, ...), None if unknown."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:
        return None


EXT_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".heic": "HEIF",  # pillow-heif's plugin, registered by codecs
    ".heif": "HEIF",
    ".avif": "AVIF",
}


def check_strength(strength: float) -> None:
    """Raise ValueError unless ``strength`` is in [0, 1] (NaN is not)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")


def returns_input(denoise_fn: Callable[[np.ndarray], np.ndarray]) -> bool:
    """Whether ``denoise_fn`` is a null model (``returns_input = True``, as
    :mod:`~denoise_core.bulk.denoisers`' identity and stand-in): its output is its input
    whatever the pixels, so it gets the decoded array as it is and is spared the float
    round trip (uint8 → float32 → uint8, ~6 ms per MP) that a real model needs."""
    return bool(getattr(denoise_fn, "returns_input", False))


def denoise_array(
    denoise_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Denoise a decoded HxWxC uint8/uint16 image, returning the same dtype and channels.

    ``strength`` chooses how much noise is removed: 1 is the model's output, 0 the
    input unchanged (the model is not run), values between blend
    ``output * strength + input * (1 - strength)`` on the [0, 1] scale before rounding,
    as photo editors' strength sliders do: a lighter touch keeps grain and texture.

    The model sees float RGB on the [0, 1] scale. Grey images (one channel, or three equal ones
    as in grey+alpha decoded to RGBA) go in through :func:`greyscale.model_input`,
    which gives each channel independent noise as in training, and come back as the
    channel mean (replicated grey kept its noise: +0.15 dB against +9 dB). Alpha is
    put back untouched; the result is rounded to the input's bit depth. A null model
    (:func:`returns_input`) is called on ``image`` itself, which is returned.
    """
    if image.dtype not in codecs.SUPPORTED_DTYPES:
        raise InputError(f"unsupported bit depth: {image.dtype}")
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise InputError(f"unsupported channel count: {channels}")
    check_strength(strength)
    if strength == 0.0:
        return image.copy()
    if returns_input(denoise_fn):
        denoise_fn(image)  # a stand-in's latency; its output is its input at any strength
        return image
    colour = color_channels(image)
    grey = channels == 1 or greyscale.is_grey(colour)
    if grey:
        model_in = greyscale.model_input(to_float01(colour[..., 0], np.float32))
    else:
        model_in = to_float01(colour, np.float32)
    out = np.asarray(denoise_fn(model_in), dtype=np.float32)
    if out.shape != model_in.shape:
        raise InputError(f"model returned shape {out.shape} for input {model_in.shape}")
    if grey:
        out = greyscale.model_output(out)
    if strength != 1.0:
        # The input's own float copy (the model's input, for colour) is scaled in place.
        base = to_float01(colour[..., :1], np.float32) if grey else model_in
        np.multiply(base, np.float32(1.0 - strength), out=base)
        out = np.multiply(out, np.float32(strength), dtype=np.float32)
        out += base
        del base
    del model_in
    top = np.iinfo(image.dtype).max
    scaled = np.multiply(out, top, dtype=np.float32)  # in place from here: no temporaries
    np.clip(scaled, 0.0, top, out=scaled)
    result = np.rint(scaled, out=scaled).astype(image.dtype)
    if grey and colour.shape[2] == 3:
        result = np.repeat(result, 3, axis=2)
    if channels == 4:
        result = np.concatenate([result, image[..., 3:]], axis=2)
    return result


def encodable(image: np.ndarray, ext: str) -> np.ndarray:
    """16-bit results for 8-bit-only formats (BMP, WebP, JPEG) are reduced to 8 bits (HEIC
    keeps them: written 10-bit)."""
    if image.dtype == np.uint16 and ext not in DEPTH16_FORMATS:
        return (image >> 8).astype(np.uint8)
    return image


def check_reference(image: np.ndarray, reference: np.ndarray) -> None:
    """A reference must have the input's size and colour channels (alpha aside)."""
    if image.shape[:2] != reference.shape[:2]:
        raise InputError(
            f"reference size mismatch: input {image.shape[1]}x{image.shape[0]}, "
            f"reference {reference.shape[1]}x{reference.shape[0]}"
        )
    ci, cr = color_channels(image).shape[2], color_channels(reference).shape[2]
    if ci != cr:
        raise InputError(f"reference has {cr} colour channel(s), input has {ci}")


def score(
    output: np.ndarray, noisy: np.ndarray, reference: np.ndarray | None, metrics: str = "exact"
) -> dict:
    """Metrics of the output and of the noisy input against ``reference`` (NaN without one),
    plus ``change_rms``: how much the denoiser changed the image ([0, 1] scale).

    ``metrics``: ``exact`` scores in float64 (scikit-image's numbers to ~1e-15), ``fast``
    in float32 (within 1e-6 SSIM, half the time), both through :mod:`fast_metrics`."""
    out_c, in_c = color_channels(output), color_channels(noisy)
    if out_c.dtype == in_c.dtype and np.issubdtype(out_c.dtype, np.integer):
        # The squared differences of the integer codes summed by OpenCV, exactly and
        # without temporaries (0.1 against 7 ms per MP for a float32 difference array).
        top = float(np.iinfo(out_c.dtype).max)
        change = math.sqrt(cv2.norm(out_c, in_c, cv2.NORM_L2SQR) / out_c.size) / top
    else:
        diff = to_float01(out_c, np.float32) - to_float01(in_c, np.float32)
        change = math.sqrt(float(np.mean(np.square(diff), dtype=np.float64)))
    result = {"change_rms": change}
    nan = float("nan")
    if reference is None:
        result.update(psnr=nan, mse=nan, ssim=nan, input_psnr=nan, input_mse=nan, input_ssim=nan)
        return result
    ref_c = color_channels(reference)
    dtype = METRIC_DTYPES[metrics]
    result.update(fast_metrics.image_metrics(out_c, ref_c, dtype))
    result.update(
        {f"input_{k}": v for k, v in fast_metrics.image_metrics(in_c, ref_c, dtype).items()}
    )
    return result
