"""Grey images through the colour model: denoised about as well as colour ones (issue 17.9).

Replicated to three channels, a grey image's noise is the same in every channel and the
packaged model kept it: +0.15 dB at sigma 25 against +9 to +11 dB for the same content
in colour. :mod:`denoise_core.greyscale` gives each channel independent noise around
the grey and averages the model's answer back.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from denoise_core import bulk, greyscale, metrics, weights
from denoise_core.inference import Denoiser


def test_model_input_keeps_the_grey_as_mean_and_makes_channel_noise_independent():
    rng = np.random.default_rng(0)
    sigma = 0.05
    noisy = (0.5 + rng.normal(0, sigma, (256, 256))).astype(np.float32)
    x = greyscale.model_input(noisy, sigma=sigma)
    assert x.shape == (256, 256, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=2), noisy, atol=1e-6)  # nothing lost or added
    noise = (x - 0.5).reshape(-1, 3).T  # the grey's noise plus the added zero-sum part
    corr = np.corrcoef(noise)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.02  # independent channels
    np.testing.assert_allclose(noise.std(axis=1), np.sqrt(3) * sigma, rtol=0.02)
    np.testing.assert_array_equal(x, greyscale.model_input(noisy, sigma=sigma))  # seeded


@pytest.mark.parametrize("shape", [(96, 96), (1500, 3000)])  # the second one is sampled
def test_noise_estimate_sees_noise_not_content(shape):
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] / 96.0
    clean = (0.5 + 0.3 * np.sin(x) * np.cos(0.7 * y)).astype(np.float32)
    assert greyscale.estimate_noise_sigma(clean) < 0.002
    for sigma in (0.02, 0.1):
        noisy = clean + rng.normal(0, sigma, shape).astype(np.float32)
        assert greyscale.estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.08)
    assert greyscale.estimate_noise_sigma(np.zeros((2, 9), np.float32)) == 0.0


def test_is_grey_needs_all_three_channels_equal():
    grey = np.random.default_rng(2).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    rgb = np.repeat(grey, 3, axis=2)
    assert greyscale.is_grey(rgb)
    rgb[10, 7, 2] ^= 1  # one pixel off, past the first row
    assert not greyscale.is_grey(rgb)
    assert not greyscale.is_grey(grey)


@pytest.fixture(scope="module")
def packaged() -> Denoiser:
    return Denoiser.from_path(weights.default_model_path(), tile=512, precision="fp32")


def _gain(out: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float:
    return metrics.psnr(out, clean) - metrics.psnr(noisy, clean)


# Measured (8-bit, sigma 25, packaged model): grey +8.9 / +12.7 dB, the same crops in
# colour +10.6 / +12.5 dB; before the fix grey gained +0.14 / +0.16 dB.
@pytest.mark.parametrize(
    "crop",
    [skimage.data.astronaut()[100:196, 180:276], skimage.data.coffee()[100:196, 200:296]],
    ids=["astronaut", "coffee"],
)
def test_packaged_model_denoises_grey_about_as_well_as_colour(packaged, crop):
    rng = np.random.default_rng(0)
    grey = np.rint(crop.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
    noisy_grey = np.clip(np.rint(grey + rng.normal(0, 25, grey.shape)), 0, 255).astype(np.uint8)
    noisy_rgb = np.clip(np.rint(crop + rng.normal(0, 25, crop.shape)), 0, 255).astype(np.uint8)

    out_grey = bulk.denoise_array(packaged, noisy_grey)
    out_rgb = bulk.denoise_array(packaged, noisy_rgb)
    assert out_grey.shape == grey.shape and out_grey.dtype == np.uint8
    grey_gain, rgb_gain = _gain(out_grey, noisy_grey, grey), _gain(out_rgb, noisy_rgb, crop)
    assert grey_gain > 6.0, (grey_gain, rgb_gain)
    assert abs(grey_gain - rgb_gain) < 2.5, (grey_gain, rgb_gain)

    # Grey + alpha arrives as RGBA with three equal channels: denoised the same way,
    # written with equal channels, alpha untouched.
    alpha = rng.integers(0, 256, grey.shape, dtype=np.uint8)
    out_ga = bulk.denoise_array(packaged, np.concatenate([noisy_grey] * 3 + [alpha], axis=2))
    np.testing.assert_array_equal(out_ga[..., 3:], alpha)
    assert greyscale.is_grey(out_ga[..., :3])
    np.testing.assert_array_equal(out_ga[..., :1], out_grey)
