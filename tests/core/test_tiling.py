"""Tiled inference must equal whole-image inference for a small-receptive-field model."""

from itertools import pairwise

import keras
import numpy as np
import pytest
import tensorflow as tf

from denoise_core.models import build_model
from denoise_core.tiling import (
    crop_to,
    denoise_tiled,
    denoise_whole,
    fit_tile,
    pad_to_multiple,
    tile_positions,
)


def _predict_fn(model):
    fn = tf.function(lambda x: model(x, training=False))
    return lambda batch: fn(tf.convert_to_tensor(batch)).numpy()


@pytest.fixture(scope="module")
def small_conv():
    """Fully convolutional, receptive-field radius 2 (two 3×3 convs)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(3, 3, padding="same")(x)
    return keras.Model(inputs, outputs)


def _image(h, w, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def test_pad_and_crop_roundtrip():
    img = _image(37, 53)
    padded, size = pad_to_multiple(img, 16)
    assert padded.shape == (48, 64, 3) and size == (37, 53)
    np.testing.assert_array_equal(padded[:37, :53], img)
    np.testing.assert_array_equal(padded[37:, :53], img[35:24:-1])  # reflect, no edge repeat
    np.testing.assert_array_equal(crop_to(padded, size), img)
    tiny, _ = pad_to_multiple(_image(1, 2), 8, min_size=(16, 4))
    assert tiny.shape == (16, 8, 3)
    same, _ = pad_to_multiple(img, 1)
    assert same is img


def test_tile_positions_cover_and_end_flush():
    assert tile_positions(50, 64, 32) == [0]
    pos = tile_positions(300, 64, 32)
    assert pos[0] == 0 and pos[-1] == 300 - 64
    assert all(0 < b - a <= 32 for a, b in pairwise(pos))


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (65, 129), (130, 70)])
def test_identity_predictor_reproduces_image(shape):
    """Weights are normalised: an identity model gives back the input exactly."""
    img = _image(*shape)
    out = denoise_tiled(lambda b: b, img, tile=32, overlap=12, batch_size=3)
    np.testing.assert_allclose(out, img, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 517), (64, 200), (129, 64)])
def test_tiled_equals_whole_image(small_conv, shape):
    img = _image(*shape, seed=1)
    predict = _predict_fn(small_conv)
    whole = denoise_whole(predict, img)
    tiled = denoise_tiled(predict, img, tile=64, overlap=32, batch_size=4)
    assert tiled.shape == img.shape and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() < 1e-5


@pytest.mark.parametrize("shape", [(37, 53), (20, 200), (1, 1)])
def test_smaller_than_tile(small_conv, shape):
    """An image below the tile size is reflect-padded to the tile: the output equals the
    model on that padded canvas, and the plain whole-image output away from the
    bottom/right border (where only the padding differs)."""
    img = _image(*shape, seed=2)
    predict = _predict_fn(small_conv)
    tiled = denoise_tiled(predict, img, tile=64, overlap=32)
    canvas, size = pad_to_multiple(img, 1, min_size=64)
    on_canvas = crop_to(predict(canvas[None])[0], size)
    assert tiled.shape == img.shape
    assert np.abs(tiled - on_canvas).max() < 1e-5
    whole = denoise_whole(predict, img)
    h, w = shape
    assert np.abs(tiled[: h - 2, : w - 2] - whole[: h - 2, : w - 2]).max(initial=0) < 1e-5


@pytest.mark.parametrize("fit", [False, True])
def test_unet_with_size_multiple_matches_whole_image(fit):
    """Tiles start on the pooling grid, so a small U-Net matches whole-image inference
    (with fixed tiles and with tiles fitted to the image)."""
    keras.utils.set_random_seed(0)
    model = build_model("unet", widths=(4, 8), blocks_per_level=1)
    predict = _predict_fn(model)
    img = _image(150, 203, seed=3)
    whole = denoise_whole(predict, img, multiple=2)
    tiled = denoise_tiled(predict, img, tile=64, overlap=48, multiple=2, margin=12, fit=fit)
    assert np.abs(tiled - whole).max() < 1e-5


def test_fixed_batch_shape_grayscale_and_bad_predictor():
    shapes = []

    def record(batch):
        shapes.append(batch.shape)
        return batch * 2

    img = _image(100, 90, c=1)[..., 0]
    out = denoise_tiled(record, img, tile=32, overlap=8, batch_size=4)
    assert out.shape == (100, 90)
    np.testing.assert_allclose(out, img * 2, atol=1e-6)
    assert len(shapes) > 1 and set(shapes) == {(4, 32, 32, 1)}

    with pytest.raises(ValueError, match="predict_fn returned shape"):
        denoise_tiled(lambda b: b[:, :16], _image(40, 40), tile=32, overlap=8)
    with pytest.raises(ValueError, match="stride"):
        denoise_tiled(lambda b: b, _image(40, 40), tile=32, overlap=32)


@pytest.mark.parametrize("length", [1024, 4032, 3024, 1000, 520, 300, 512, 8])
def test_fit_tile_needs_no_more_tiles_and_never_grows(length):
    tile, overlap, multiple = 512, 32, 8
    side = fit_tile(length, tile, overlap, multiple)
    assert side % multiple == 0 and side <= tile
    full = len(tile_positions(length, tile, tile - overlap))
    if full == 1:
        assert side >= length
    else:
        fitted = tile_positions(length, side, (side - overlap) // multiple * multiple)
        assert len(fitted) <= full
    assert fit_tile(1024, 512, 32, 8) == 368  # 3 tiles of 368 instead of 3 of 512


@pytest.mark.parametrize("shape", [(300, 517), (37, 53), (129, 64)])
def test_fitted_tiles_equal_whole_image(small_conv, shape):
    img = _image(*shape, seed=4)
    predict = _predict_fn(small_conv)
    shapes = []

    def recording(batch):
        shapes.append(batch.shape[1:3])
        return predict(batch)

    whole = denoise_whole(predict, img)
    tiled = denoise_tiled(recording, img, tile=64, overlap=32, batch_size=4, fit=True)
    assert np.abs(tiled - whole).max() < 1e-5
    assert all(h <= 64 and w <= 64 for h, w in shapes)
    # Less model work than fixed 64 px tiles: never more tiles, each no larger.
    fixed = []
    denoise_tiled(lambda b: fixed.append(b.shape) or b, img, tile=64, overlap=32, batch_size=1)
    fitted = []
    denoise_tiled(lambda b: fitted.append(b.shape) or b, img, tile=64, overlap=32, batch_size=1,
                  fit=True)  # fmt: skip
    assert sum(np.prod(s) for s in fitted) < sum(np.prod(s) for s in fixed)
