"""Training samples: several patches per decoded image, aligned pairs, seeded runs."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_core import codecs
from denoise_core.patches import PatchSampler, SamplerConfig, random_downscale
from denoise_core.synthetic import dead_leaves


def sampler(*args, **kwargs) -> PatchSampler:
    """A sampler from its frozen config (the fields keep the old argument order)."""
    return PatchSampler(SamplerConfig(*args, **kwargs))


def _png(image: np.ndarray) -> bytes:
    return codecs.encode_image(image, ".png")


@pytest.fixture
def batch() -> dict:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 200, size=(48, 40, 3), dtype=np.uint8)
    noisy = clean + np.uint8(20)  # a known, position-independent "noise"
    other = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
    return {
        "key": np.array(["pair", "clean_only"]),
        "noisy": np.array([_png(noisy), b""], dtype=object),
        "clean": np.array([_png(clean), _png(other)], dtype=object),
    }


def test_each_row_gives_k_distinct_aligned_patches(batch):
    out = sampler(16, "gaussian:25", seed=3, patches_per_image=3)(batch)
    assert out["noisy"].shape == out["clean"].shape == (6, 16, 16, 3)
    assert out["noisy"].dtype == out["clean"].dtype == np.float32
    # The paired row keeps its noise aligned with its clean patch through crops and flips.
    np.testing.assert_allclose(out["noisy"][:3] - out["clean"][:3], 20 / 255, atol=1e-6)
    # Independent crops: no two patches of one image are the same.
    for rows in (range(0, 3), range(3, 6)):
        patches = [out["clean"][i].tobytes() for i in rows]
        assert len(set(patches)) == 3
    # The clean-only row gets synthetic noise, a different draw per patch.
    residual = out["noisy"][3:] - out["clean"][3:]
    assert 0.05 < float(residual.std()) < 0.15  # sigma 25/255 = 0.098
    assert not np.allclose(residual[0], residual[1])


def test_same_seed_same_samples_and_one_patch_per_image_by_default(batch):
    a = sampler(16, "gaussian:25", seed=7, patches_per_image=2)(batch)
    b = sampler(16, "gaussian:25", seed=7, patches_per_image=2)(batch)
    for k in ("noisy", "clean"):
        np.testing.assert_array_equal(a[k], b[k])
    assert sampler(16, "gaussian:25", seed=7)(batch)["clean"].shape[0] == 2
    with pytest.raises(ValueError, match="patches_per_image"):
        sampler(16, patches_per_image=0)


def test_color_augment_changes_synthetic_rows_only(batch):
    plain = sampler(16, "gaussian:0", seed=5, patches_per_image=4)(batch)
    color = sampler(16, "gaussian:0", seed=5, patches_per_image=4, color_augment=True)(batch)
    # Paired rows keep their colours (real noise is not symmetric across channels).
    np.testing.assert_array_equal(plain["clean"][:4], color["clean"][:4])
    np.testing.assert_allclose(color["noisy"][:4] - color["clean"][:4], 20 / 255, atol=1e-6)
    # Clean-only rows get new channel orders / saturations, still images in [0, 1].
    assert not np.allclose(plain["clean"][4:], color["clean"][4:])
    assert 0.0 <= float(color["clean"].min()) and float(color["clean"].max()) <= 1.0


def test_random_color_leaves_grey_grey_and_spreads_saturation():
    from denoise_core.patches import random_color

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.uniform(0, 1, (8, 8, 1)).astype(np.float32), 3, axis=2)
    np.testing.assert_allclose(random_color(grey, rng), grey, atol=1e-6)
    colour = np.clip(rng.normal(0.5, 0.1, (8, 8, 3)), 0, 1).astype(np.float32)
    spread = colour.std(axis=-1).mean()
    spreads = [random_color(colour, rng).std(axis=-1).mean() for _ in range(40)]
    assert min(spreads) < 0.95 * spread and max(spreads) > 1.5 * spread


def test_fit_color_clip_keeps_texture_where_hard_clip_flattens():
    from denoise_core.patches import fitting_saturation, random_color

    # A saturated yellow with texture in every channel: blue near 0, red/green near 1.
    rng = np.random.default_rng(1)
    texture = rng.uniform(-0.04, 0.04, (32, 32, 1)).astype(np.float32)
    yellow = (np.float32([0.85, 0.8, 0.1]) + texture).astype(np.float32)
    limit = fitting_saturation(yellow, yellow.mean(axis=-1, keepdims=True))
    assert 1.0 < limit < 1.3  # blue reaches 0 at about 1.1x the chroma
    spreads = {}
    for clip in ("hard", "fit"):
        outs = [random_color(yellow, np.random.default_rng(s), clip=clip) for s in range(30)]
        # The least textured channel of each patch: hard clipping pins it flat at 0 or 1.
        spreads[clip] = min(float(o.reshape(-1, 3).std(axis=0).min()) for o in outs)
        assert all(0.0 <= float(o.min()) and float(o.max()) <= 1.0 for o in outs)
    assert spreads["hard"] < 1e-6
    assert spreads["fit"] > 0.005
    # A dull patch can still be made much more colourful.
    dull = (np.float32([0.5, 0.45, 0.4]) + texture).astype(np.float32)
    assert fitting_saturation(dull, dull.mean(axis=-1, keepdims=True)) > 4.0
    with pytest.raises(ValueError, match="clip"):
        random_color(yellow, rng, clip="fuzzy")
    with pytest.raises(ValueError, match="color_clip"):
        sampler(16, color_augment=True, color_clip="fuzzy")


def test_random_downscale_averages_noise_and_keeps_the_patch_size():
    rng = np.random.default_rng(0)
    flat = np.full((96, 80, 3), 100.0) + rng.normal(0, 10, (96, 80, 3))
    clean = np.clip(np.rint(flat), 0, 255).astype(np.uint8)
    small = random_downscale(clean, 0.5, 40, np.random.default_rng(1))
    assert small.dtype == np.uint8 and small.shape[2] == 3
    assert 40 <= min(small.shape[:2]) < 80  # shrunk, never below the patch
    assert small.std() < 0.9 * clean.std()  # area averaging removes some of the noise
    # The short side limits the factor: a 40-pixel side cannot shrink for a 40 patch.
    assert random_downscale(clean[:40], 0.5, 40, rng).shape == (40, 80, 3)


def test_scale_augment_touches_synthetic_rows_only(batch):
    plain = sampler(16, "gaussian:0", seed=5, patches_per_image=8)(batch)
    scaled = sampler(16, "gaussian:0", seed=5, patches_per_image=8, scale_augment=0.5)(batch)
    np.testing.assert_allclose(scaled["noisy"][:8] - scaled["clean"][:8], 20 / 255, atol=1e-6)
    assert scaled["clean"].shape == plain["clean"].shape
    assert not np.array_equal(plain["clean"][8:], scaled["clean"][8:])
    with pytest.raises(ValueError, match="scale_augment"):
        sampler(16, scale_augment=0.0)


def test_dead_leaves_images_have_edges_of_every_size_and_saturated_colours():
    img = dead_leaves(64, np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and img.dtype == np.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    np.testing.assert_array_equal(img, dead_leaves(64, np.random.default_rng(0)))
    assert not np.array_equal(img, dead_leaves(64, np.random.default_rng(1)))
    # Opaque shapes: flat insides and sharp edges, neither everywhere.
    grad = np.abs(np.diff(img, axis=1)).max(axis=-1)
    assert 0.1 < float((grad < 0.02).mean()) < 0.9
    assert 0.05 < float((grad > 0.2).mean()) < 0.6
    # Colours from the whole RGB cube: many pixels far from grey (CBSD432 has few).
    chroma = img.max(axis=-1) - img.min(axis=-1)
    assert float((chroma > 0.5).mean()) > 0.2
    with pytest.raises(ValueError, match="size"):
        dead_leaves(2, np.random.default_rng(0))


def _is_crop_of(patch: np.ndarray, image: np.ndarray) -> bool:
    """Whether ``patch`` is a window of ``image`` under one of the 8 flips/rotations."""
    windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)
    for k in range(8):
        p = np.rot90(patch, k % 4)
        p = p[:, ::-1] if k >= 4 else p
        if np.abs(windows - p).max(axis=(-3, -2, -1)).min() < 1e-5:
            return True
    return False


def test_dead_leaves_share_replaces_synthetic_crops_only(batch):
    plain = sampler(16, "gaussian:0", seed=5, patches_per_image=8)(batch)
    leaves = sampler(16, "gaussian:0", seed=5, patches_per_image=8, dead_leaves=1.0)(batch)
    # Paired rows are untouched: real noise needs its own clean image.
    np.testing.assert_allclose(leaves["noisy"][:8] - leaves["clean"][:8], 20 / 255, atol=1e-6)
    assert leaves["clean"].shape == plain["clean"].shape
    # Clean-only rows become generated images: no patch is a crop of the row's image.
    other = codecs.decode_image(batch["clean"][1]).astype(np.float32) / 255.0
    assert all(_is_crop_of(p, other) for p in plain["clean"][8:])
    assert not any(_is_crop_of(p, other) for p in leaves["clean"][8:])
    half = sampler(16, "gaussian:0", seed=5, patches_per_image=8, dead_leaves=0.5)(batch)
    crops = sum(_is_crop_of(p, other) for p in half["clean"][8:])
    assert 0 < crops < 8
    with pytest.raises(ValueError, match="dead_leaves"):
        sampler(16, dead_leaves=1.5)
