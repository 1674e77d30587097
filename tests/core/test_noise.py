"""Noise synthesis has the statistics it documents."""

import dataclasses
import math
from itertools import pairwise

import numpy as np
import pytest

from denoise_core import isp
from denoise_core.noise import (
    GAIN_RANGE,
    JPEG_QUALITY_RANGE,
    MIX_CORRELATION_SCALE,
    MIX_JPEG_RANGE,
    MIX_POISSON_LOG10_PHOTONS,
    MIX_SIGMA_RANGE,
    MIX_STEPS,
    READ_RANGE,
    SHOT_RANGE,
    NoiseSpec,
    add_camera_noise,
    add_gaussian,
    add_isp_noise,
    add_mixed_noise,
    add_poisson_gaussian,
    jpeg_roundtrip,
    linear_to_srgb,
    parse_noise_spec,
    sample_camera_params,
    sample_mixed_params,
    sample_noise_params,
    srgb_to_linear,
    synthesize,
)
from denoise_core.noise_stats import measure


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


# --------------------------------------------------------------------------
# Camera pipeline (isp) noise
# --------------------------------------------------------------------------


def _isp_params(seed=0, **changes):
    """Sampled camera params with ``changes`` applied (e.g. the phone's processing off)."""
    return dataclasses.replace(isp.sample_isp_params(np.random.default_rng(seed)), **changes)


_RAW_ONLY = {"chroma_keep": 1.0, "pixel_noise": 0.0, "blur_sigma": 0.0, "sharpen": 0.0}


@pytest.mark.parametrize("demosaic", isp.DEMOSAICS)
def test_isp_noise_is_exactly_zero_without_sensor_noise(demosaic):
    # The noise is process(raw + n) - process(raw): with n = 0 nothing is left, odd sizes too.
    params = _isp_params(1, shot=0.0, read=0.0, demosaic=demosaic, pixel_noise=0.0)
    params = dataclasses.replace(params, blur_sigma=0.0, sharpen=0.0)
    img = np.random.default_rng(2).uniform(0, 1, (33, 47, 3)).astype(np.float32)
    n = isp.isp_noise(img, params, np.random.default_rng(3))
    assert n.shape == img.shape
    assert not n.any()
    np.testing.assert_array_equal(add_isp_noise(img, params, np.random.default_rng(3)), img)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("demosaic", isp.DEMOSAICS)
def test_isp_process_inverts_unprocess(seed, demosaic):
    # Flat in-gamut colours survive sRGB -> raw mosaic -> sRGB; red and blue are not swapped.
    params = _isp_params(seed, demosaic=demosaic)
    for colour in ([0.5, 0.5, 0.5], [0.3, 0.4, 0.5], [0.8, 0.7, 0.6], [0.6, 0.2, 0.1]):
        img = np.broadcast_to(np.array(colour), (16, 16, 3))
        raw = isp.unprocess(img, params)
        assert raw.shape == (16, 16) and 0 <= raw.min() and raw.max() <= 1
        np.testing.assert_allclose(isp.process(raw, params), img, atol=1e-3, err_msg=str(colour))


def _isp_std(level, params, seed=3):
    clean = _flat(level, (64, 64, 3))
    return float(isp.isp_noise(clean, params, np.random.default_rng(seed)).std() * 255)


def test_isp_noise_level_follows_gamma_and_tone_curve():
    # Shot-dominated noise (what the read line gives): in sRGB it peaks in the mid-tones;
    # the tone curve's flat ends damp the deepest shadows and the highlights, but relative
    # to the signal the shadows are by far the noisiest.
    shot = _isp_params(0, shot=1e-3, read=1e-6, **_RAW_ONLY)
    dark, mid, bright = (_isp_std(v, shot) for v in (0.05, 0.5, 0.95))
    assert mid > 1.15 * dark and mid > 1.5 * bright, (dark, mid, bright)
    assert dark / 0.05 > 4 * mid / 0.5 > 4 * bright / 0.95
    # Read-dominated noise (a dark, high-gain frame) is strongest in absolute terms in the dark.
    read = _isp_params(0, shot=1e-5, read=1e-4, **_RAW_ONLY)
    dark, mid, bright = (_isp_std(v, read) for v in (0.05, 0.5, 0.95))
    assert dark > 1.2 * mid > 1.2 * bright, (dark, mid, bright)
    # More shot noise, more noise.
    assert _isp_std(0.5, dataclasses.replace(shot, shot=1e-2)) > 2.5 * _isp_std(0.5, shot)


def test_isp_noise_is_spatially_correlated_unlike_white_noise():
    clean = _flat(0.4, (64, 64, 3))
    for seed in range(8):  # the full sampled pipeline, pixel-level component and all
        n = isp.isp_noise(
            clean,
            isp.sample_isp_params(np.random.default_rng(seed)),
            np.random.default_rng(seed + 100),
        )
        stats = measure("isp", [(clean + n, clean)])
        assert stats.autocorr[1] > 0.2, (seed, stats.autocorr)
    white = add_gaussian(clean, 10, np.random.default_rng(0))
    assert abs(measure("white", [(white, clean)]).autocorr[1]) < 0.05


def test_isp_chroma_keep_sets_channel_correlation():
    clean = _flat(0.5, (64, 64, 3))

    def cross(keep):
        params = _isp_params(7, shot=1e-3, read=1e-6, **{**_RAW_ONLY, "chroma_keep": keep})
        n = isp.isp_noise(clean, params, np.random.default_rng(3))
        return measure("isp", [(clean + n, clean)]).cross_corr

    grey, some, full = cross(0.0), cross(0.3), cross(1.0)
    assert min(grey.values()) > 0.99  # no chroma left: the channels share one noise
    # All the chroma kept: the colour matrix's negative mixing shows.
    assert min(full.values()) < -0.2
    for pair in ("RG", "RB", "GB"):
        assert grey[pair] > some[pair] > full[pair], pair


def test_isp_noise_reproducible_shapes_and_jpeg():
    img = np.random.default_rng(0).uniform(0.1, 0.9, (31, 45, 3)).astype(np.float32)
    a = synthesize(img, "isp", np.random.default_rng(11))
    np.testing.assert_array_equal(a, synthesize(img, "isp", np.random.default_rng(11)))
    assert not np.array_equal(a, synthesize(img, "isp", np.random.default_rng(12)))
    assert a.dtype == np.float32 and a.shape == img.shape
    assert 0 <= a.min() and a.max() <= 1 and np.abs(a - img).max() > 0
    grey = synthesize(img[..., 0], "isp", np.random.default_rng(11))
    assert grey.shape == (31, 45) and grey.dtype == np.float32
    assert synthesize(img[:1, :1], "isp", np.random.default_rng(0)).shape == (1, 1, 3)
    params = sample_noise_params("isp:jpeg=70-80", np.random.default_rng(4))["params"]
    assert 70 <= params.jpeg_quality <= 80
    out = add_isp_noise(img, params, np.random.default_rng(4))
    np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-3)  # 8-bit JPEG
    assert sample_noise_params("isp", np.random.default_rng(4))["params"].jpeg_quality is None


def test_sample_isp_params_ranges():
    rng = np.random.default_rng(5)
    draws = [isp.sample_isp_params(rng) for _ in range(400)]

    def within(name, lo, hi):
        values = np.array([getattr(d, name) for d in draws])
        assert lo <= values.min() and values.max() <= hi, name
        return values

    within("red_gain", *isp.RED_GAIN_RANGE)
    within("blue_gain", *isp.BLUE_GAIN_RANGE)
    brightness = within("brightness_gain", 0.5, 2.5)  # 1 / N(0.8, 0.1), N floored at 0.4
    assert np.median(brightness) == pytest.approx(1 / isp.BRIGHTNESS_MEAN, rel=0.05)
    shots = within("shot", isp.SHOT_MIN, isp.SHOT_MAX)
    log_mid = (math.log(isp.SHOT_MIN) + math.log(isp.SHOT_MAX)) / 2
    assert np.median(np.log(shots)) == pytest.approx(log_mid, abs=0.5)  # log-uniform
    reads = np.array([d.read for d in draws])
    off_line = np.log(reads) - (isp.READ_SLOPE * np.log(shots) + isp.READ_INTERCEPT)
    assert abs(off_line.mean()) < 0.05 and off_line.std() == pytest.approx(isp.READ_STD, rel=0.15)
    within("chroma_keep", *isp.CHROMA_KEEP_RANGE)
    within("pixel_noise", *isp.PIXEL_NOISE_RANGE)
    blurs = np.array([d.blur_sigma for d in draws])
    sharpens = np.array([d.sharpen for d in draws])
    assert (blurs > 0).mean() == pytest.approx(isp.BLUR_PROBABILITY, abs=0.07)
    assert (
        np.all(blurs[blurs > 0] >= isp.BLUR_SIGMA_RANGE[0])
        and blurs.max() <= isp.BLUR_SIGMA_RANGE[1]
    )
    assert np.all(sharpens[blurs > 0] == 0)  # blur or sharpen, never both
    assert 0 <= sharpens.min() and sharpens.max() <= isp.SHARPEN_RANGE[1]
    assert {d.demosaic for d in draws} == set(isp.DEMOSAICS)
    assert all(d.jpeg_quality is None for d in draws)
    for d in draws[:20]:
        np.testing.assert_allclose(np.sum(d.rgb_to_cam, axis=1), 1.0, atol=1e-9)  # grey stays grey
    qualities = {isp.sample_isp_params(rng, (60, 62)).jpeg_quality for _ in range(60)}
    assert qualities == {60, 61, 62}


def test_parse_noise_spec_isp_and_mix():
    assert parse_noise_spec("isp") == NoiseSpec("isp", text="isp")
    spec = parse_noise_spec("isp:jpeg")
    assert spec.kind == "isp" and spec.jpeg and spec.jpeg_range == JPEG_QUALITY_RANGE
    spec = parse_noise_spec(" ISP:jpeg=70-90 ")
    assert spec.kind == "isp" and spec.jpeg and spec.jpeg_range == (70, 90)
    assert parse_noise_spec("mix") == NoiseSpec("mix", text="mix")
    for bad in ["mix:foo", "isp:bogus", "isp:jpeg=0-50", "isp:jpeg=90-70"]:
        with pytest.raises(ValueError, match="noise spec") as info:
            parse_noise_spec(bad)
        message = str(info.value)
        assert repr(bad) in message
        for form in ("isp, isp:jpeg, isp:jpeg=LO-HI", "mix", "camera:jpeg=LO-HI", "gaussian:LO-HI"):
            assert form in message, (bad, form)


# --------------------------------------------------------------------------
# Mixed degradations
# --------------------------------------------------------------------------


def test_sample_mixed_params_steps_and_ranges():
    rng = np.random.default_rng(6)
    draws = [sample_mixed_params(rng) for _ in range(300)]
    seen_first = set()
    for steps in draws:
        names = [s["step"] for s in steps]
        assert names and set(names) <= set(MIX_STEPS) and len(set(names)) == len(names)
        if "jpeg" in names:
            assert names[-1] == "jpeg"
        seen_first.add(names[0])
        for s in steps:
            if s["step"] in ("color_gaussian", "correlated_gaussian"):
                assert MIX_SIGMA_RANGE[0] <= s["sigma"] <= MIX_SIGMA_RANGE[1]
            if s["step"] == "color_gaussian":
                cov = np.array(s["cov"])
                np.testing.assert_allclose(cov, cov.T, atol=1e-9)
                assert np.trace(cov) == pytest.approx(3.0) and np.linalg.eigvalsh(cov).min() > -1e-9
            elif s["step"] == "correlated_gaussian":
                assert MIX_CORRELATION_SCALE[0] <= s["scale"] <= MIX_CORRELATION_SCALE[1]
            elif s["step"] == "poisson":
                lo, hi = MIX_POISSON_LOG10_PHOTONS
                assert 10**lo <= s["photons"] <= 10**hi and isinstance(s["grey"], bool)
            else:
                assert MIX_JPEG_RANGE[0] <= s["quality"] <= MIX_JPEG_RANGE[1]
    assert seen_first == set(MIX_STEPS)  # random order (jpeg first only when alone)
    assert {len(steps) for steps in draws} == {1, 2, 3, 4}


def test_add_mixed_noise_shape_clip_and_reproducible():
    img = np.random.default_rng(0).uniform(0, 1, (24, 37, 3)).astype(np.float32)
    for seed in range(25):
        out = synthesize(img, "mix", np.random.default_rng(seed))
        np.testing.assert_array_equal(out, synthesize(img, "mix", np.random.default_rng(seed)))
        assert out.dtype == np.float32 and out.shape == img.shape
        assert 0 <= out.min() and out.max() <= 1 and not np.array_equal(out, img)
        grey = synthesize(img[..., 0], "mix", np.random.default_rng(seed))
        assert grey.shape == (24, 37) and grey.dtype == np.float32
        assert 0 <= grey.min() and grey.max() <= 1
    assert not np.array_equal(synthesize(img, "mix", np.random.default_rng(0)), out)


def test_mixed_steps_have_their_statistics():
    clean = _flat(0.5, (128, 128, 3))

    def stats(step, seed=0):
        return measure(
            step["step"], [(add_mixed_noise(clean, [step], np.random.default_rng(seed)), clean)]
        )

    independent = stats({"step": "color_gaussian", "sigma": 10.0, "cov": np.eye(3).tolist()})
    assert independent.std == pytest.approx(10, rel=0.03)
    assert max(abs(v) for v in independent.cross_corr.values()) < 0.05
    shared = stats({"step": "color_gaussian", "sigma": 10.0, "cov": np.ones((3, 3)).tolist()})
    assert min(shared.cross_corr.values()) > 0.99 and shared.std == pytest.approx(10, rel=0.03)
    blotchy = stats({"step": "correlated_gaussian", "sigma": 10.0, "scale": 2.0})
    assert blotchy.std == pytest.approx(10, rel=0.02) and blotchy.autocorr[1] > 0.5
    assert abs(independent.autocorr[1]) < 0.05
    poisson = stats({"step": "poisson", "photons": 1000.0, "grey": False})
    assert poisson.std == pytest.approx(255 * math.sqrt(0.5 / 1000), rel=0.05)
    assert max(abs(v) for v in poisson.cross_corr.values()) < 0.05
    grey_poisson = stats({"step": "poisson", "photons": 1000.0, "grey": True})
    assert min(grey_poisson.cross_corr.values()) > 0.99
    out = add_mixed_noise(clean, [{"step": "jpeg", "quality": 50}], np.random.default_rng(0))
    np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-3)
