"""The no-reference noise estimate of ``denoise run`` (issue 21): wavelet MAD, Donoho and
Johnstone 1994 (:mod:`denoise_core.noise_estimate`).

Accuracy on real photos with synthetic Gaussian noise of known sigma (0-255 scale), on
192x192 centre crops of six ``skimage.data`` photos (measured, estimate / true):

    sigma 5: 1.00-1.31   sigma 10: 1.00-1.10   sigma 15: 0.99-1.04
    sigma 25: 0.98-1.01  sigma 50: 1.00-1.01

So on these crops within 10% from sigma 10 up and within 5% from 15 up; at sigma 5 the
texture and the photos' own noise count as noise and textured photos read up to 31%
high. On the whole photos (up to 1411x1411): 0.99-1.04 at sigma 25-50, 1.00-1.09 at 15,
1.00-1.15 at 10 and 1.00-1.32 at 5 (``coffee`` the highest); the clean photos read
0.3 to 2.2. The noise is added in float and not clipped (stored as
8-bit and clipped to 0..255, dark and bright areas lose some of their noise and the
estimate falls with them: 0.8-0.95 at sigma 50).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import skimage.data

from denoise_core import benchmark, greyscale, noise_estimate

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def centre_crop(name: str, side: int = 192) -> np.ndarray:
    image = getattr(skimage.data, name)().astype(np.float32)
    h, w = image.shape[:2]
    return image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]


def unclipped_estimate(image255: np.ndarray) -> float:
    """The estimate (0-255) of a float image that may leave [0, 255]: mapped affinely
    into [0, 1] first, so that the estimator's clipping removes no noise."""
    return 3 * 255 * noise_estimate.estimate_sigma((image255 / 255 + 1) / 3)


@pytest.mark.parametrize("name", PHOTOS)
def test_estimate_on_photos_with_known_gaussian_noise(name):
    crop = centre_crop(name)
    ratios = {}
    for sigma in (5, 10, 15, 25, 50):
        noise = np.random.default_rng(sigma).normal(0, sigma, crop.shape).astype(np.float32)
        ratios[sigma] = unclipped_estimate(crop + noise) / sigma
    for sigma in (15, 25, 50):
        assert ratios[sigma] == pytest.approx(1.0, abs=0.10), ratios
    assert 0.95 <= ratios[10] <= 1.12, ratios
    assert 0.95 <= ratios[5] <= 1.40, ratios  # texture reads as noise at low sigma


def test_equals_scikit_image_and_serves_benchmark_and_greyscale():
    pytest.importorskip("pywt")  # scikit-image's estimate_sigma needs PyWavelets
    from skimage.restoration import estimate_sigma

    rng = np.random.default_rng(0)
    image = centre_crop("coffee", 96) / 255 + rng.normal(0, 0.05, (96, 96, 3))
    image = np.clip(image, 0, 1)
    ours = noise_estimate.estimate_sigma(image)
    theirs = estimate_sigma(image, channel_axis=-1, average_sigmas=True)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert benchmark.estimate_sigma is noise_estimate.estimate_sigma  # one owner
    assert greyscale.estimate_noise_sigma is noise_estimate.laplacian_sigma


def test_dtypes_channels_and_tiny_images_share_the_0_255_scale():
    rng = np.random.default_rng(1)
    crop = centre_crop("chelsea", 128)
    u8 = np.clip(np.rint(crop + rng.normal(0, 20, crop.shape)), 0, 255).astype(np.uint8)
    sigma = noise_estimate.noise_sigma_255(u8)
    assert sigma == pytest.approx(20, rel=0.1)
    assert noise_estimate.noise_sigma_255(u8.astype(np.uint16) * 257) == pytest.approx(sigma)
    alpha = np.concatenate([u8, rng.integers(0, 256, (128, 128, 1), dtype=np.uint8)], axis=2)
    assert noise_estimate.noise_sigma_255(alpha) == sigma  # alpha is not looked at
    grey = u8[..., 1]
    assert noise_estimate.noise_sigma_255(grey) == noise_estimate.noise_sigma_255(grey[..., None])
    assert noise_estimate.noise_sigma_255(np.zeros((1, 5, 3), np.uint8)) == 0.0


def test_large_images_are_sampled_cheaply():
    """A 12 MP photo is estimated from 36 crops of 256x256 (2.4 MP): the same answer as
    the whole image, at a fraction of the cost (about 0.07 s measured on a busy core)."""
    rng = np.random.default_rng(2)
    tile = np.clip(
        np.rint(centre_crop("astronaut", 512) + rng.normal(0, 12, (512, 512, 3))), 0, 255
    ).astype(np.uint8)
    photo = np.ascontiguousarray(np.tile(tile, (6, 8, 1))[:3024, :4032])  # 12.2 MP
    assert len(noise_estimate.sample_crops(photo, tiles=noise_estimate.ESTIMATE_TILES)) == 36
    started = time.perf_counter()
    sigma = noise_estimate.noise_sigma_255(photo)
    seconds = time.perf_counter() - started
    assert sigma == pytest.approx(noise_estimate.noise_sigma_255(tile), rel=0.05)
    assert seconds < 1.0  # generous: the machine may be busy
