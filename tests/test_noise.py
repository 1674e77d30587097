"""Noise synthesis has the statistics it documents."""

from itertools import pairwise

import numpy as np
import pytest

from denoise_core.noise import (
    GAIN_RANGE,
    JPEG_QUALITY_RANGE,
    READ_RANGE,
    SHOT_RANGE,
    NoiseSpec,
    add_camera_noise,
    add_gaussian,
    add_poisson_gaussian,
    jpeg_roundtrip,
    linear_to_srgb,
    parse_noise_spec,
    sample_camera_params,
    sample_noise_params,
    srgb_to_linear,
    synthesize,
)


def _flat(value, shape=(128, 128, 3)):
    return np.full(shape, value, dtype=np.float32)


def test_gaussian_std_and_no_clipping():
    rng = np.random.default_rng(0)
    img = _flat(0.02, (256, 256, 3))
    noisy = add_gaussian(img, 25, rng)
    assert noisy.dtype == np.float32 and noisy.shape == img.shape
    residual = noisy - img
    assert abs(residual.std() * 255 - 25) < 0.5
    assert abs(residual.mean()) < 1e-3
    assert noisy.min() < 0  # float protocol: not clipped
    clipped = add_gaussian(img, 25, np.random.default_rng(0), clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    np.testing.assert_array_equal(add_gaussian(img, 25, np.random.default_rng(0)), noisy)


def test_srgb_curve_roundtrip():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.214, abs=1e-3)


@pytest.mark.parametrize("level", [0.05, 0.2, 0.5, 0.8])
def test_poisson_gaussian_variance_in_linear_light(level):
    shot, read = 1e-3, 1e-2
    rng = np.random.default_rng(1)
    noisy = add_poisson_gaussian(_flat(level), shot, read, rng, gains=(2.0, 1.0, 1.0))
    var = noisy.reshape(-1, 3).var(axis=0)
    assert var[1] == pytest.approx(shot * level + read**2, rel=0.05)
    assert var[0] == pytest.approx(2 * shot * level + 4 * read**2, rel=0.05)
    assert noisy.reshape(-1, 3).mean(axis=0) == pytest.approx([level] * 3, abs=2e-3)


def test_camera_noise_grows_with_intensity():
    rng = np.random.default_rng(2)
    variances = []
    for srgb in (0.2, 0.4, 0.6, 0.8):
        noisy = add_camera_noise(_flat(srgb), rng, shot=2e-3, read=2e-3)
        assert noisy.dtype == np.float32 and 0 <= noisy.min() and noisy.max() <= 1
        variances.append(srgb_to_linear(noisy).var())
    assert all(a < b for a, b in pairwise(variances)), variances
    # In linear light the variance is shot * x + read**2, so it grows ~linearly.
    x = srgb_to_linear(np.float32(0.6))
    assert variances[2] == pytest.approx(2e-3 * x + 4e-6, rel=0.1)


def test_camera_noise_jpeg_is_8bit_and_keeps_colour_order():
    img = np.zeros((64, 64, 3), np.float32)
    img[..., 0] = 0.9  # red
    out = add_camera_noise(img, np.random.default_rng(3), shot=1e-4, read=1e-3, jpeg_quality=90)
    np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-3)
    assert out[..., 0].mean() > 0.8 and out[..., 2].mean() < 0.1
    gray = jpeg_roundtrip(_flat(0.5, (32, 32)), 80)
    assert gray.shape == (32, 32) and abs(gray.mean() - 0.5) < 0.01


def test_sample_camera_params_ranges():
    rng = np.random.default_rng(4)
    draws = [sample_camera_params(rng, jpeg=True) for _ in range(300)]
    shots = np.array([d.shot for d in draws])
    reads = np.array([d.read for d in draws])
    assert SHOT_RANGE[0] <= shots.min() and shots.max() <= SHOT_RANGE[1]
    assert READ_RANGE[0] <= reads.min() and reads.max() <= READ_RANGE[1]
    assert np.median(shots) == pytest.approx(1e-3, rel=0.5)  # log-uniform: geometric middle
    assert all(GAIN_RANGE[0] <= g <= GAIN_RANGE[1] for d in draws for g in d.gains)
    assert all(d.gains[1] == 1.0 for d in draws)
    qualities = {d.jpeg_quality for d in draws}
    assert min(qualities) >= JPEG_QUALITY_RANGE[0] and max(qualities) <= JPEG_QUALITY_RANGE[1]
    assert sample_camera_params(rng).jpeg_quality is None


def test_parse_noise_spec():
    assert parse_noise_spec("gaussian:25").sigmas == (25.0,)
    assert parse_noise_spec("gaussian:15,25,50").sigmas == (15.0, 25.0, 50.0)
    assert parse_noise_spec("gaussian:0-55").sigma_range == (0.0, 55.0)
    assert parse_noise_spec("camera") == NoiseSpec("camera", text="camera")
    assert parse_noise_spec(" Camera:JPEG ").jpeg
    assert parse_noise_spec("camera:jpeg=70-90").jpeg_range == (70, 90)
    spec = parse_noise_spec("gaussian:25")
    assert parse_noise_spec(spec) is spec and str(spec) == "gaussian:25"
    for bad in [
        "gaussian",
        "gaussian:abc",
        "gaussian:50-10",
        "poisson:3",
        "camera:raw",
        "camera:jpeg=0-200",
        "",
    ]:
        with pytest.raises(ValueError, match="noise spec"):
            parse_noise_spec(bad)


def test_synthesize_draws_per_image_parameters():
    rng = np.random.default_rng(5)
    picked = {sample_noise_params("gaussian:15,25,50", rng)["sigma"] for _ in range(60)}
    assert picked == {15.0, 25.0, 50.0}
    blind = [sample_noise_params("gaussian:0-55", rng)["sigma"] for _ in range(200)]
    assert 0 <= min(blind) < 5 and 50 < max(blind) <= 55

    clean = _flat(0.5, (64, 64, 3))
    stds = [(synthesize(clean, "gaussian:0-55", rng) - clean).std() * 255 for _ in range(20)]
    assert max(stds) - min(stds) > 10 and max(stds) < 57

    for spec in ["camera", "camera:jpeg"]:
        noisy = synthesize(clean, spec, rng)
        assert noisy.dtype == np.float32 and noisy.shape == clean.shape
        assert 0 <= noisy.min() and noisy.max() <= 1 and noisy.std() > 0
    gray = synthesize(clean[..., 0], "camera", rng)
    assert gray.shape == (64, 64) and gray.dtype == np.float32
    gray_g = synthesize(clean[..., 0], "gaussian:25", rng)
    assert gray_g.shape == (64, 64)
