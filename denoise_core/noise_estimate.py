"""No-reference noise estimates: how noisy an image is, without its clean twin.

One owner for the project's noise estimators, all on a sample of at most
``SAMPLE_TILES`` crops of ``SAMPLE_TILE`` pixels (:func:`sample_crops`), so a 100 MP
photo costs what a 4 MP one does:

- :func:`estimate_sigma`: the per-image estimate of ``denoise run`` (``noise_sigma_in``,
  ``noise_sigma_out``, ``--skip-below``) and of the benchmark's sigma-driven baselines.
  Donoho and Johnstone's wavelet estimator (Biometrika 1994), as scikit-image's
  ``estimate_sigma``: the median absolute diagonal (HH) Daubechies-2 wavelet
  coefficient over 0.6745, per colour channel, averaged. Measured on six
  ``skimage.data`` photos with Gaussian noise (not clipped) of known sigma: within 10%
  for sigma 15 to 50 (0.99-1.09); below, textured photos read high (up to +15% at
  sigma 10 and +32% at 5 on ``coffee``, where fine texture counts as noise) -- see
  tests/core/test_noise_estimate.py. A
  PCA estimator (Chen, Zhu and Heng, ICCV 2015) was closer on synthetic noise
  (5.0-5.5 at sigma 5) but fell to a tenth of the true level on JPEG photos with 4:2:0
  chroma subsampling (the channels' noise is then correlated), so it is not used.
- :func:`laplacian_sigma`: Immerkaer's (1996) median absolute 3x3 second difference
  of one grey channel, used by :mod:`denoise_core.greyscale` to size its zero-sum
  chroma noise.

Real camera noise depends on brightness and is spatially correlated after demosaicing
and compression; these estimators report one white-noise-equivalent level per image.
"""

from __future__ import annotations

import cv2
import numpy as np
import pywt

SAMPLE_TILE = 256
SAMPLE_TILES = 64  # at most 64 crops of 256x256: 4.2 MP
ESTIMATE_TILES = 36  # estimate_sigma: at most 36 crops, 2.4 MP (about 0.1 s)
_MAD_TO_SIGMA = 1.0 / 0.6744897501960817  # median absolute deviation of N(0, 1)
_LAPLACE_MAD_TO_SIGMA = 1.0 / 0.6745  # the same, as greyscale always used it
# 3x3 second-difference kernel of Immerkaer (1996): zero on planes, so what it
# returns on a smooth image is noise; its weights' norm is 6.
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

__all__ = ["estimate_sigma", "laplacian_sigma", "noise_sigma_255", "sample_crops"]


def sample_crops(
    image: np.ndarray, tile: int = SAMPLE_TILE, tiles: int = SAMPLE_TILES
) -> list[np.ndarray]:
    """The whole HxW[xC] image when it has at most ``tiles`` tiles' pixels, else
    ``tiles`` evenly spread ``tile`` x ``tile`` crops (views, no copy)."""
    h, w = image.shape[:2]
    if h * w <= tile * tile * tiles:
        return [image]
    per_side = int(np.sqrt(tiles))
    ys = np.linspace(0, max(0, h - tile), per_side).astype(int)
    xs = np.linspace(0, max(0, w - tile), per_side).astype(int)
    return [image[y : y + tile, x : x + tile] for y in ys for x in xs]


def _float01(crop: np.ndarray) -> np.ndarray:
    if np.issubdtype(crop.dtype, np.integer):
        return np.divide(crop, np.iinfo(crop.dtype).max, dtype=np.float32)
    return np.clip(crop, 0.0, 1.0)


def _diagonal_detail(crop: np.ndarray) -> np.ndarray:
    """The diagonal (HH) Daubechies-2 detail coefficients of one level, as scikit-image's
    ``estimate_sigma`` takes them (PyWavelets, symmetric extension)."""
    return pywt.dwt2(crop, "db2", mode="symmetric")[1][2]


def estimate_sigma(image: np.ndarray) -> float:
    """Noise standard deviation on the [0, 1] scale of an HxW or HxWxC image (integer
    images scaled by their dtype's maximum, floats clipped to [0, 1]; alpha, the 4th
    channel, ignored): the wavelet MAD estimate per channel, averaged. On images up to
    2.4 MP it equals scikit-image's ``estimate_sigma(..., average_sigmas=True)`` (to
    float round-off); larger ones are sampled. 0 for images under 2x2 pixels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    if min(image.shape[:2]) < 2:
        return 0.0
    crops = sample_crops(image, tiles=ESTIMATE_TILES)
    sigmas = []
    for c in range(image.shape[2]):
        details = [np.abs(_diagonal_detail(_float01(crop[..., c]))).ravel() for crop in crops]
        sigmas.append(float(np.median(np.concatenate(details))) * _MAD_TO_SIGMA)
    return float(np.mean(sigmas))


def noise_sigma_255(image: np.ndarray) -> float:
    """:func:`estimate_sigma` on the 0-255 scale (what ``metrics.parquet`` reports,
    also for 16-bit images: the same fraction of full scale)."""
    return 255.0 * estimate_sigma(image)


def laplacian_sigma(grey: np.ndarray) -> float:
    """Standard deviation of the noise of an HxW float image, robustly: the median
    absolute second difference (edges and texture are a minority of pixels, so the
    median sees noise). 0 for images under 3x3 pixels."""
    residuals = []
    for crop in sample_crops(np.asarray(grey, dtype=np.float32)):
        if min(crop.shape) < 3:
            continue
        r = cv2.filter2D(crop, cv2.CV_32F, _LAPLACE, borderType=cv2.BORDER_REFLECT)
        residuals.append(np.abs(r[1:-1, 1:-1]).ravel())
    if not residuals:
        return 0.0
    return float(np.median(np.concatenate(residuals))) * _LAPLACE_MAD_TO_SIGMA / 6.0
