"""No-reference noise estimates: how noisy an image is, without its clean twin.

One owner for the project's noise estimators, all on a sample of at most
``SAMPLE_TILES`` crops of ``SAMPLE_TILE`` pixels (:func:`sample_crops`), so a 100 MP
photo costs what a 4 MP one does:

- :func:`estimate_sigma`: the per-image estimate of ``denoise run`` (``noise_sigma_in``,
  ``noise_sigma_out``, ``--skip-below``). Donoho and Johnstone's wavelet estimator
  (Biometrika 1994: noise from the finest diagonal (HH) Daubechies-2 detail), measured
  only where the image has the weakest texture, the idea of Liu, Tanaka and Okutomi's
  weak-texture patches (IEEE TIP 2013) and of the block methods before them (Lee and
  Hoppel 1989, Olsen 1993: noise from the least active blocks). Per crop, one level of
  the db2 transform (OpenCV filters, decimated, only coefficients whose taps lie inside
  the crop); blocks of 2x2 coefficients (4x4 pixels); a block's texture is the energy
  of the horizontal and vertical details (LH, HL) of the channels' sum over its 3x3
  neighbouring blocks; blocks within reach of a clipped pixel (one at its channel's
  lowest or highest value in the image: 0, full scale, a black or white level) are
  left out; of the rest, the ``WEAK_TEXTURE_FRACTION`` (3%) with the least texture are
  kept, and sigma per colour channel is the root mean square of its HH coefficients
  there, the channels' sigmas averaged. For white Gaussian noise the LH and HL
  coefficients are independent of the HH ones (orthonormal wavelet), so choosing blocks
  by LH+HL leaves the HH energy unbiased: the bias constant ``SELECTION_BIAS`` is 1, and
  tests/core/test_noise_estimate.py re-derives it on pure noise (within 1%).
  Measured on six ``skimage.data`` photos with Gaussian noise (not clipped) of known
  sigma 5 to 50: estimate / true 0.95-1.08 on 192x192 centre crops and 0.98-1.03 on the
  whole photos (the plain median over all HH coefficients read textured photos up to
  +32% high at sigma 5); the noisy photos saved as JPEG quality 95 with 4:2:0 chroma
  0.56-0.80 (JPEG removes part of the noise; against the std of decoded - clean
  0.62-1.02); 8-bit with the noise clipped 0.83-1.07; clean photos 0.2-1.4 (0-255).
  Real camera noise (demosaiced, denoised in the camera, compressed) reads low, as it
  did: median estimate / residual std 0.47 on the 12 SIDD samples (0.30-0.62; the plain
  median 0.51), 0.08 on 100 PolyU JPEG pairs (0.00-0.18; 0.13): its fine-scale noise is
  mostly gone where the image is flat. CPU time (time.process_time, this 2-core AMD
  EPYC under load), OpenCV on one thread: 12-17 ms per MP on a 1 MP image when it was
  measured whole (the plain median with PyWavelets: 67-73); images over 0.26 MP are
  sampled as 4 crops of 256x256 (``ESTIMATE_TILES``), about 3 ms per image whatever
  its size; OpenCV's default 2 threads cost more CPU.
  A PCA estimator (Chen, Zhu and Heng, ICCV 2015) was closer than the plain median on
  synthetic noise (5.0-5.5 at sigma 5) but fell to a tenth of the true level on JPEG
  photos with 4:2:0 chroma subsampling (the channels' noise is then correlated), so it
  is not used.
- :func:`wavelet_mad_sigma`: the plain Donoho-Johnstone estimate, scikit-image's
  ``estimate_sigma`` (median absolute HH coefficient over 0.6745 per channel,
  averaged; sampled above 2.4 MP). The benchmark's NLM and CBM3D take their strength on
  real-noise sets from it, as their published numbers did.
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
# estimate_sigma: at most 4 crops, 0.26 MP. Measured on the 24 Kodak24 photos enlarged
# to 1 and 5 MP with Gaussian noise of sigma 3, 5 and 15 (rounded to 8 bits), estimate /
# true from 4 / 9 / 36 crops: 0.962-1.038 / 0.959-1.024 / 0.968-1.022, at 2.5-4.8 /
# 6-10 / 27-35 CPU ms per 5 MP image beside a training run
# (benchmarks/bench_noise_estimate.py, results/bench_noise_estimate.md). It runs twice
# per image in ``denoise run``: after the codecs, the largest CPU cost of a null-model run.
ESTIMATE_TILES = 4
MAD_TILES = 36  # wavelet_mad_sigma (the benchmark's baselines); estimate_sigma when mostly clipped
# estimate_sigma: under this share of blocks away from clipped pixels, a wider sample,
# then all blocks (heavy noise clipped at 0 and 255, a dark frame)
MOSTLY_CLIPPED = 0.1
WEAK_TEXTURE_FRACTION = 0.03  # estimate_sigma: the share of blocks it measures noise in
_MAD_TO_SIGMA = 1.0 / 0.6744897501960817  # median absolute deviation of N(0, 1)
_LAPLACE_MAD_TO_SIGMA = 1.0 / 0.6745  # the same, as greyscale always used it
# 3x3 second-difference kernel of Immerkaer (1996): zero on planes, so what it
# returns on a smooth image is noise; its weights' norm is 6.
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# Daubechies-2 analysis filters (PyWavelets' dec_hi, dec_lo), applied as correlations
# with the taps at x .. x + 3: orthonormal, so white noise of sigma gives detail
# coefficients of sigma, independent between subbands.
_DB2_HI = np.array(
    [-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037],
    dtype=np.float32,
)
_DB2_LO = np.array(
    [-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416],
    dtype=np.float32,
)
_ONE_TAP = np.ones(1, dtype=np.float32)
_BLOCK = 2  # estimate_sigma's blocks: 2x2 detail coefficients, 4x4 pixels
_TEXTURE_BLOCKS = 3  # a block's texture: LH+HL energy over its 3x3 neighbouring blocks
# Mean HH energy in the chosen blocks over sigma^2 on pure white Gaussian noise: 1, as
# the choice looks at LH and HL only (test_selection_bias_constant re-derives it).
SELECTION_BIAS = 1.0
# A block touches a clipped pixel if one lies within the 6x6 pixels its coefficients'
# taps cover (from its top-left pixel).
_CLIP_REACH = np.ones((2 * _BLOCK + 2, 2 * _BLOCK + 2), dtype=np.uint8)

__all__ = [
    "estimate_sigma",
    "laplacian_sigma",
    "noise_sigma_255",
    "sample_crops",
    "wavelet_mad_sigma",
]


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


def _colour_planes(image: np.ndarray) -> np.ndarray:
    """HxWxC with C in 1..3: alpha (a 4th channel) dropped, greyscale given a channel."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    return image


def _float01(crop: np.ndarray) -> np.ndarray:
    if np.issubdtype(crop.dtype, np.integer):
        return np.divide(crop, np.iinfo(crop.dtype).max, dtype=np.float32)
    return np.clip(crop, 0.0, 1.0)


def _diagonal_detail(crop: np.ndarray) -> np.ndarray:
    """The diagonal (HH) Daubechies-2 detail coefficients of one level, as scikit-image's
    ``estimate_sigma`` takes them (PyWavelets, symmetric extension)."""
    return pywt.dwt2(crop, "db2", mode="symmetric")[1][2]


def wavelet_mad_sigma(image: np.ndarray) -> float:
    """Donoho and Johnstone's estimate on the [0, 1] scale (integer images scaled by
    their dtype's maximum, floats clipped to [0, 1]; alpha ignored): the median absolute
    HH coefficient over 0.6745 per channel, averaged. On images up to 2.4 MP it equals
    scikit-image's ``estimate_sigma(..., average_sigmas=True)`` (to float round-off);
    larger ones are sampled. Texture counts as noise (see the module docstring). 0 for
    images under 2x2 pixels."""
    image = _colour_planes(image)
    if min(image.shape[:2]) < 2:
        return 0.0
    crops = sample_crops(image, tiles=MAD_TILES)
    sigmas = []
    for c in range(image.shape[2]):
        details = [np.abs(_diagonal_detail(_float01(crop[..., c]))).ravel() for crop in crops]
        sigmas.append(float(np.median(np.concatenate(details))) * _MAD_TO_SIGMA)
    return float(np.mean(sigmas))


def _decimated(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray) -> np.ndarray:
    """``image`` filtered by the 4-tap kernels along x and y at every second pixel:
    output (i, j) from pixels 2i .. 2i + 3, 2j .. 2j + 3, all inside (float32)."""
    h, w = image.shape[:2]
    rows = cv2.sepFilter2D(image, cv2.CV_32F, kernel_x, _ONE_TAP, anchor=(0, 0))
    # columns 0, 2, 4, ...: INTER_NEAREST at fx=0.5 exactly (4x faster than slicing)
    rows = cv2.resize(rows, None, fx=0.5, fy=1.0, interpolation=cv2.INTER_NEAREST)
    both = cv2.sepFilter2D(rows[:, : (w - 2) // 2], cv2.CV_32F, _ONE_TAP, kernel_y, anchor=(0, 0))
    return both[: h - 3 : 2]


def _block_energy(detail: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean squared coefficient of each ``_BLOCK`` x ``_BLOCK`` block, on a gh x gw grid."""
    gh, gw = grid
    d = detail[: gh * _BLOCK, : gw * _BLOCK]
    return cv2.resize(cv2.multiply(d, d), (gw, gh), interpolation=cv2.INTER_AREA)


def _weak_texture_blocks(
    crop: np.ndarray, inside: tuple[tuple[float, ...], tuple[float, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """(HH energy per block and channel, N x C; texture per block, N, inf where a
    clipped pixel is near) of one HxWxC crop (uint8, uint16 or float32)."""
    channels = crop.shape[2]
    hh = _decimated(crop, _DB2_HI, _DB2_HI)
    grid = (hh.shape[0] // _BLOCK, hh.shape[1] // _BLOCK)  # at least 1x1 from 8x8 pixels
    energy = _block_energy(hh, grid).reshape(grid[0] * grid[1], channels)
    grey = crop.astype(np.float32)
    if channels > 1:  # texture is seen in the channels' sum, where the noise is averaged
        grey = cv2.transform(grey, np.ones((1, channels), np.float32))
    texture = _block_energy(_decimated(grey, _DB2_HI, _DB2_LO), grid)
    texture += _block_energy(_decimated(grey, _DB2_LO, _DB2_HI), grid)
    k = _TEXTURE_BLOCKS
    texture = cv2.blur(texture, (k, k), borderType=cv2.BORDER_REFLECT).ravel()
    inside_mask = cv2.inRange(crop, *inside)  # 255 where every channel is unclipped
    if inside_mask.min() == 0:
        clipped = cv2.dilate(255 - inside_mask, _CLIP_REACH, anchor=(0, 0))
        step = 2 * _BLOCK
        near = clipped[: grid[0] * step : step, : grid[1] * step : step].ravel() > 0
        texture = np.where(near, np.inf, texture)
    return energy, texture


def _unclipped_range(crops: list[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """cv2.inRange bounds of the values strictly between the image's lowest and highest
    value per channel: pixels at either are taken as clipped (0 and full scale, a white
    or black level, and stay so under an affine map of the pixels; a noisy unclipped
    image has one pixel there)."""
    extremes = np.array([[cv2.minMaxLoc(plane)[:2] for plane in cv2.split(c)] for c in crops])
    low, high = extremes[..., 0].min(axis=0), extremes[..., 1].max(axis=0)  # per channel
    if np.issubdtype(crops[0].dtype, np.integer):
        return tuple(float(v) + 1 for v in low), tuple(float(v) - 1 for v in high)
    up, down = np.float32(np.inf), np.float32(-np.inf)
    return (
        tuple(float(np.nextafter(np.float32(v), up)) for v in low),
        tuple(float(np.nextafter(np.float32(v), down)) for v in high),
    )


def estimate_sigma(image: np.ndarray, tiles: int = ESTIMATE_TILES) -> float:
    """Noise standard deviation on the [0, 1] scale of an HxW or HxWxC image (integer
    images scaled by their dtype's maximum, floats clipped to [0, 1]; alpha, the 4th
    channel, ignored), measured in the image's weakest-texture blocks (the module
    docstring says how, and how well). Images over ``tiles`` crops' pixels (4: 0.26 MP) are
    sampled in ``tiles`` crops; under 8x8 pixels it is :func:`wavelet_mad_sigma` (0 under
    2x2)."""
    image = _colour_planes(image)
    if min(image.shape[:2]) < 8:
        return wavelet_mad_sigma(image)
    if image.dtype in (np.uint8, np.uint16):
        scale = 1.0 / np.iinfo(image.dtype).max
    else:
        image, scale = _float01(image).astype(np.float32, copy=False), 1.0
    crops = sample_crops(image, tiles=tiles)
    sigma, usable_share = _weak_texture_sigma(crops)
    if usable_share < MOSTLY_CLIPPED and len(crops) > 1:
        # Few unclipped blocks in the crops (retina's black surround at sigma 50 read
        # 0.59 of the truth from 9 crops): the wider sample.
        sigma, _ = _weak_texture_sigma(sample_crops(image, tiles=MAD_TILES))
    return sigma * scale


def _weak_texture_sigma(crops: list[np.ndarray]) -> tuple[float, float]:
    """(sigma in the crops' units, share of blocks away from clipped pixels)."""
    crops = [np.ascontiguousarray(c) for c in crops]
    inside = _unclipped_range(crops)
    energies, textures = [], []
    for crop in crops:
        energy, texture = _weak_texture_blocks(crop, inside)
        energies.append(energy)
        textures.append(texture)
    energy, texture = np.concatenate(energies), np.concatenate(textures)
    usable = int(np.isfinite(texture).sum())
    share = usable / len(texture)
    if share < MOSTLY_CLIPPED:  # measure in all blocks
        texture, usable = np.where(np.isfinite(texture), texture, 0.0), len(texture)
    count = max(1, round(WEAK_TEXTURE_FRACTION * usable))
    weakest = np.argpartition(texture, count - 1)[:count]
    return float(np.mean(np.sqrt(energy[weakest].mean(axis=0) / SELECTION_BIAS))), share


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
