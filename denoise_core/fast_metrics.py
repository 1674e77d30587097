"""PSNR, MSE and SSIM at codec speed, with :mod:`denoise_core.metrics`'s convention.

Why: scikit-image's SSIM on float64 runs at about 2.35 MP/s on one quiet core, so
a bulk run with references spent as long scoring as denoising. Here the five local
means of SSIM are OpenCV box filters (separable running sums), images are scored
in bands of rows (memory bounded by the band, not the image), and the arithmetic
is float32 (``dtype=np.float32``, the default) or float64.

The convention is exactly :mod:`denoise_core.metrics`' (scikit-image's
``structural_similarity`` with its defaults and ``data_range=1``,
``channel_axis=-1``): images on the [0, 1] scale (integers divided by their
dtype's maximum), a uniform 7×7 window (no Gaussian weighting), K1 = 0.01,
K2 = 0.03, sample covariance (N / (N - 1)), the mean taken over pixels whose
window lies inside the image (scikit-image crops (win - 1) / 2 from each side),
averaged over channels; a smaller odd window under 7 px a side and NaN under 3.
Because only inside windows count, no border rule is involved.

Measured against :mod:`denoise_core.metrics` (tests/core/test_fast_metrics.py): float64
agrees to about 1e-15, float32 to about 1e-6 in SSIM; MSE is summed in float64
from exact differences either way, so PSNR agrees to about 1e-12 dB.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .metrics import to_float01

__all__ = ["image_metrics", "mse", "psnr", "ssim"]

K1, K2 = 0.01, 0.03
BAND_ROWS = 256  # rows of output per band: a few MB of float32 per array at 4000 px wide


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC images, got shape {a.shape}")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error on the [0, 1] scale, from exactly summed squared differences."""
    _check(a, b)
    if a.dtype == b.dtype and a.dtype in (np.uint8, np.uint16) and a.size:
        # OpenCV sums integer differences squared in double: exact for 8-bit codes, and
        # 0.1 ms per MP against 5 ms for NumPy's float64 difference and dot.
        flat_a = np.ascontiguousarray(a).reshape(a.shape[0], -1)
        flat_b = np.ascontiguousarray(b).reshape(b.shape[0], -1)
        top = float(np.iinfo(a.dtype).max)
        return cv2.norm(flat_a, flat_b, cv2.NORM_L2SQR) / a.size / (top * top)
    total = 0.0
    rows = max(1, (1 << 20) // max(1, a[0].size))  # about 1 M values per chunk
    for y in range(0, a.shape[0], rows):
        d = to_float01(a[y : y + rows], np.float64).ravel()
        d -= to_float01(b[y : y + rows], np.float64).ravel()
        total += float(np.dot(d, d))
    return total / a.size


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB with peak ``data_range`` (1 for [0, 1] images); inf for identical images."""
    err = mse(a, b)
    return math.inf if err == 0.0 else float(10.0 * math.log10(data_range**2 / err))


def _band_ssim_sum(x: np.ndarray, y: np.ndarray, win: int, dtype) -> float:
    """Sum of the SSIM map over a band's inside pixels (the band carries its halo)."""
    p = (win - 1) // 2
    n = win * win
    cov_norm = dtype(n / (n - 1))
    c1, c2 = dtype(K1 * K1), dtype(K2 * K2)

    def box(z: np.ndarray) -> np.ndarray:
        out = cv2.boxFilter(z, -1, (win, win), normalize=True, borderType=cv2.BORDER_REFLECT)
        return out[p : z.shape[0] - p, p : z.shape[1] - p]

    ux, uy = box(x), box(y)
    vx = box(x * x)
    vy = box(y * y)
    vxy = box(x * y)
    uxuy = ux * uy
    ux *= ux  # ux**2 from here on
    uy *= uy
    vx -= ux
    vx *= cov_norm
    vy -= uy
    vy *= cov_norm
    vxy -= uxuy
    vxy *= cov_norm
    # S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)), in place
    num = uxuy
    num *= 2
    num += c1
    vxy *= 2
    vxy += c2
    num *= vxy
    den = ux
    den += uy
    den += c1
    vx += vy
    vx += c2
    den *= vx
    num /= den
    return float(num.sum(dtype=np.float64))


def ssim(a: np.ndarray, b: np.ndarray, dtype: type = np.float32) -> float:
    """Mean SSIM over all channels (data range 1), as :func:`denoise_core.metrics.ssim`."""
    _check(a, b)
    side = min(a.shape[:2])
    if side < 3:
        return math.nan
    win = min(7, side if side % 2 else side - 1)
    p = (win - 1) // 2
    h = a.shape[0]
    inside_rows = h - 2 * p
    total = 0.0
    for y0 in range(p, h - p, BAND_ROWS):
        y1 = min(y0 + BAND_ROWS, h - p)
        xa = to_float01(a[y0 - p : y1 + p], dtype)
        xb = to_float01(b[y0 - p : y1 + p], dtype)
        if xa.ndim == 3 and xa.shape[2] == 1:  # OpenCV drops a single channel axis
            xa, xb = xa[..., 0], xb[..., 0]
        elif xa.ndim == 3 and xa.shape[2] > 4:
            raise ValueError(f"at most 4 channels, got {xa.shape[2]}")
        total += _band_ssim_sum(np.ascontiguousarray(xa), np.ascontiguousarray(xb), win, dtype)
    channels = a.shape[2] if a.ndim == 3 else 1
    return total / (inside_rows * (a.shape[1] - 2 * p) * channels)


def image_metrics(
    output: np.ndarray, reference: np.ndarray, dtype: type = np.float32
) -> dict[str, float]:
    """``{"mse", "psnr", "ssim"}`` of one output against its clean reference."""
    err = mse(output, reference)
    return {
        "mse": err,
        "psnr": math.inf if err == 0.0 else float(10.0 * math.log10(1.0 / err)),
        "ssim": ssim(output, reference, dtype),
    }
