"""``denoise_core.fast_metrics`` against ``denoise_core.metrics`` (scikit-image, float64).

The bulk run scores with the fast module, so its numbers must be the reference
module's: within 0.01 dB PSNR and 0.001 SSIM in float32 (in practice ~1e-7), and
to rounding (1e-12) in float64, on random images of every layout the run scores
(8/16-bit, RGB and grey, tiny images with smaller windows, images taller than one
band) and on real photographs with real degradations (noise, blur, JPEG).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from denoise_core import fast_metrics, metrics

SHAPES = [
    (64, 80, 3),
    (600, 37, 3),  # taller than fast_metrics.BAND_ROWS: several bands
    (fast_metrics.BAND_ROWS + 7, 9, 1),  # a last band only 1 row deep
    (41, 29, 1),
    (50, 60),
    (6, 11, 3),  # 5x5 window
    (3, 3, 3),  # 3x3 window, one inside pixel
    (4, 9, 1),
]


def noisy_pair(shape, dtype, seed: int, sigma: float = 0.08):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    clean = rng.integers(0, top + 1, shape).astype(dtype)
    noisy = np.clip(clean + rng.normal(0, sigma * top, shape), 0, top).astype(dtype)
    return noisy, clean


def assert_close(got: dict, want: dict, psnr_tol: float, ssim_tol: float) -> None:
    assert got["mse"] == pytest.approx(want["mse"], rel=1e-12, abs=1e-18)
    if math.isinf(want["psnr"]):
        assert math.isinf(got["psnr"])
    else:
        assert abs(got["psnr"] - want["psnr"]) <= psnr_tol, (got, want)
    if math.isnan(want["ssim"]):
        assert math.isnan(got["ssim"])
    else:
        assert abs(got["ssim"] - want["ssim"]) <= ssim_tol, (got, want)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_random_images_match_the_reference_metrics(shape, dtype):
    noisy, clean = noisy_pair(shape, dtype, seed=len(shape) + shape[0])
    want = metrics.image_metrics(noisy, clean)
    assert_close(fast_metrics.image_metrics(noisy, clean), want, 0.01, 0.001)
    # What float32 really achieves, so a regression shows long before the contract.
    assert_close(fast_metrics.image_metrics(noisy, clean), want, 1e-9, 1e-6)
    assert_close(fast_metrics.image_metrics(noisy, clean, np.float64), want, 1e-12, 1e-12)


def test_float_inputs_identical_and_tiny_images():
    rng = np.random.default_rng(3)
    a = rng.random((20, 30, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    assert_close(fast_metrics.image_metrics(a, b), metrics.image_metrics(a, b), 1e-9, 1e-6)
    same = fast_metrics.image_metrics(a, a)
    assert same["mse"] == 0 and math.isinf(same["psnr"]) and same["ssim"] == pytest.approx(1)
    tiny = fast_metrics.image_metrics(a[:2], b[:2])  # under 3 px: SSIM undefined
    assert math.isnan(tiny["ssim"]) and math.isnan(metrics.ssim(a[:2], b[:2]))
    with pytest.raises(ValueError, match="shapes differ"):
        fast_metrics.image_metrics(a, b[:10])


def degraded(photo: np.ndarray) -> list[np.ndarray]:
    """Noise, blur and a JPEG round trip of a real photograph (uint8 RGB)."""
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(photo, (5, 5), 1.2)
    ok, buf = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    return [noisy, blurred, cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_real_photographs_match_the_reference_metrics(name):
    photo = getattr(skdata, name)()
    for other in degraded(photo):
        want = metrics.image_metrics(other, photo)
        assert_close(fast_metrics.image_metrics(other, photo), want, 0.01, 0.001)
        assert_close(fast_metrics.image_metrics(other, photo), want, 1e-9, 1e-6)
        got64 = fast_metrics.image_metrics(other, photo, np.float64)
        assert_close(got64, want, 1e-12, 1e-12)
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)[..., None]
    noisy_grey = degraded(grey[..., 0])[0][..., None]
    want = metrics.image_metrics(noisy_grey, grey)
    assert_close(fast_metrics.image_metrics(noisy_grey, grey), want, 0.01, 0.001)
