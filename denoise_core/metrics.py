"""Image quality metrics with a stated convention.

Convention: images are RGB (HxWx3) or grayscale (HxW) in [0, 1]; integer
arrays (uint8, uint16, ...) are first scaled to [0, 1] by their dtype's
maximum (:func:`to_float01`). Everything is computed in float64, so uint8
differences cannot wrap around. MSE is on the [0, 1] scale (as in the
original notebook), PSNR uses peak ``data_range`` = 1 (the same number as
peak 255 on 8-bit data), SSIM is scikit-image's ``structural_similarity``
on all channels (``channel_axis=-1``) with its defaults: 7×7 uniform window,
K1=0.01, K2=0.03, no Gaussian weighting (a smaller odd window on images under
7 px a side, NaN under 3 px).
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["image_metrics", "mse", "psnr", "ssim", "to_float01"]


def to_float01(arr: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Scales integer images to [0, 1] by the dtype's max (255, 65535, ...); floats pass through.

    Bool arrays map to {0, 1}. Float input is only cast, not rescaled.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(dtype)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if info.min < 0:
            raise ValueError(f"signed integer images are not supported (got {arr.dtype})")
        # One pass, no float64 temporary: IEEE division of two exact values is
        # correctly rounded in the target dtype.
        return np.divide(arr, info.max, dtype=dtype)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(dtype, copy=False)
    raise TypeError(f"cannot convert array of dtype {arr.dtype} to a [0, 1] image")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = to_float01(a, np.float64)
    b = to_float01(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error on the [0, 1] scale."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB with peak ``data_range`` (1 for [0, 1] images); inf for identical images."""
    err = mse(a, b)
    if err == 0.0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / err))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (scikit-image, 7×7 window) over all channels of HxWxC, or of an HxW image.

    Images under 7 px on a side get the largest odd window that fits (scikit-image
    refuses a window larger than the image); under 3 px SSIM is undefined: NaN.
    """
    a, b = _pair(a, b)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC images, got shape {a.shape}")
    side = min(a.shape[:2])
    if side < 3:
        return math.nan
    win = min(7, side if side % 2 else side - 1)
    channel_axis = -1 if a.ndim == 3 else None
    return float(
        structural_similarity(a, b, data_range=data_range, channel_axis=channel_axis, win_size=win)
    )


def image_metrics(output: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``{"mse", "psnr", "ssim"}`` of one output against its clean reference."""
    output, reference = _pair(output, reference)  # convert once
    return {
        "mse": mse(output, reference),
        "psnr": psnr(output, reference),
        "ssim": ssim(output, reference),
    }
