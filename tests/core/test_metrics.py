"""Metrics equal scikit-image's under the stated convention, and uint8 cannot overflow."""

import math

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from denoise_core.metrics import image_metrics, mse, psnr, ssim, to_float01


def _pair(shape=(48, 40, 3), seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.random(shape)
    noisy = np.clip(clean + rng.normal(0, 0.1, shape), 0, 1)
    return clean.astype(np.float32), noisy.astype(np.float32)


def test_float_pairs_match_skimage():
    a, b = _pair()
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert mse(a, b) == pytest.approx(mean_squared_error(a64, b64), rel=1e-12)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a64, b64, data_range=1), rel=1e-12)
    expected = structural_similarity(a64, b64, data_range=1, channel_axis=-1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    assert 0 < ssim(a, b) < 1


def test_uint8_is_scaled_and_does_not_wrap():
    a8 = np.zeros((16, 16, 3), np.uint8)
    b8 = np.full((16, 16, 3), 255, np.uint8)
    assert mse(a8, b8) == 1.0  # uint8 subtraction would wrap to 1/255**2
    assert psnr(a8, b8) == 0.0

    a, b = _pair(seed=1)
    a8 = np.rint(a * 255).astype(np.uint8)
    b8 = np.rint(b * 255).astype(np.uint8)
    assert psnr(a8, b8) == pytest.approx(peak_signal_noise_ratio(a8, b8, data_range=255), 1e-10)
    assert mse(a8, b8) == pytest.approx(mean_squared_error(a8, b8) / 255**2, rel=1e-10)
    expected = structural_similarity(a8, b8, data_range=255, channel_axis=-1)
    assert ssim(a8, b8) == pytest.approx(expected, rel=1e-9)


def test_uint16_and_to_float01():
    a16 = np.array([[0, 65535], [32768, 1]], np.uint16)
    f = to_float01(a16)
    assert f.dtype == np.float32 and f.max() == 1.0 and f.min() == 0.0
    assert to_float01(np.array([255], np.uint8), np.float64)[0] == 1.0
    x = np.array([0.25], np.float32)
    assert to_float01(x) is x  # floats pass through unscaled
    with pytest.raises(ValueError, match="signed"):
        to_float01(np.array([1], np.int16))
    b16 = np.array([[0, 0], [32768, 1]], np.uint16)
    assert psnr(a16, b16) == pytest.approx(
        peak_signal_noise_ratio(a16, b16, data_range=65535), rel=1e-10
    )


def test_grayscale_identical_and_shape_errors():
    a, b = _pair((40, 40))
    expected = structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    assert psnr(a, a) == math.inf and mse(a, a) == 0.0 and ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        mse(a, b[:-1])


def test_image_metrics_keys():
    a, b = _pair()
    m = image_metrics(b, a)
    assert set(m) == {"mse", "psnr", "ssim"}
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / m["mse"]))


@pytest.mark.parametrize(
    "shape, win", [((3, 7, 3), 3), ((4, 9), 3), ((6, 5, 3), 5), ((8, 8, 3), 7)]
)
def test_ssim_window_fits_small_images(shape, win):
    """scikit-image refuses a 7×7 window on smaller images: the largest odd one that fits."""
    a, b = _pair(shape)
    axis = -1 if len(shape) == 3 else None
    expected = structural_similarity(
        a.astype(np.float64), b.astype(np.float64), data_range=1, channel_axis=axis, win_size=win
    )
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_is_nan_under_three_pixels():
    a, b = _pair((2, 9, 3))
    assert math.isnan(ssim(a, b))
    m = image_metrics(b, a)
    assert math.isnan(m["ssim"]) and math.isfinite(m["psnr"]) and m["mse"] > 0
