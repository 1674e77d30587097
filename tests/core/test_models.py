"""Models build, train, save/reload safely, and report their cost."""

from itertools import pairwise

import keras
import numpy as np
import pytest
import tensorflow as tf

from denoise_core.models import (
    MODEL_NAMES,
    build_model,
    depth_to_space_ops,
    load_model,
    model_info,
    model_size_multiple,
    space_to_depth_ops,
    transfer_weights,
    with_precision,
)

TINY = {
    "seed_cnn": {"filters": (8, 8)},
    "dncnn": {"depth": 4, "filters": 8},
    "unet": {"widths": (8, 16), "blocks_per_level": 1},
    "unet_s2d": {"widths": (8, 16), "blocks_per_level": 1},
}


def _pairs(n=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.repeat(rng.random((n, size // 4, size // 4, 3)), 4, 1), 4, 2)
    x = y + rng.normal(0, 0.1, y.shape)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def test_registry():
    assert set(TINY) == set(MODEL_NAMES)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_then_save_and_reload_safely(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(name, **TINY[name])
    x, y = _pairs()
    out = model(x)
    assert out.shape == x.shape and out.dtype == "float32"

    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    losses = [float(model.train_on_batch(x, y)) for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0], losses

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    probe = np.random.default_rng(1).random((1, 32, 48, 3), dtype=np.float32)
    np.testing.assert_array_equal(reloaded(probe).numpy(), model(probe).numpy())
    np.testing.assert_array_equal(load_model(str(path))(probe).numpy(), model(probe).numpy())
    assert model_size_multiple(reloaded) == model_size_multiple(name, **TINY[name])


def test_residual_outputs():
    x, _ = _pairs()
    ident = build_model("unet", widths=(8, 16), blocks_per_level=1, zero_init_last=True)
    np.testing.assert_array_equal(ident(x).numpy(), x)  # zero head: output = input

    model = build_model("dncnn", depth=3, filters=8)
    noise = keras.Model(model.input, model.get_layer("noise").output)
    np.testing.assert_allclose(model(x).numpy(), x - noise(x).numpy(), atol=1e-6)


def test_space_to_depth_matches_tf_and_inverts():
    x = tf.random.uniform((2, 8, 12, 3))
    s2d = space_to_depth_ops(x, 2)
    np.testing.assert_array_equal(s2d.numpy(), tf.nn.space_to_depth(x, 2).numpy())
    np.testing.assert_array_equal(depth_to_space_ops(s2d, 2).numpy(), x.numpy())


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("seed_cnn", {}, 1),
        ("dncnn", {}, 1),
        ("unet", {}, 8),
        ("unet", {"stem": "s2d"}, 16),
        ("unet", {"widths": (8, 16, 32), "down": "conv", "up": "d2s"}, 4),
        ("unet_s2d", {"widths": (8,)}, 2),
    ],
)
def test_size_multiple(name, kwargs, expected):
    assert model_size_multiple(name, **kwargs) == expected
    model = build_model(name, **kwargs)
    assert model_size_multiple(model) == expected
    m = expected
    out = model(np.zeros((1, 3 * m, 5 * m, 3), np.float32))
    assert out.shape == (1, 3 * m, 5 * m, 3)


def test_model_info_counts():
    info = model_info(build_model("seed_cnn"))
    widths = [3, 32, 64, 64, 32, 3]
    macs_per_pixel = sum(9 * a * b for a, b in pairwise(widths))
    assert info["flops_per_megapixel"] == 2 * macs_per_pixel * 1e6
    assert info["params"] == sum(9 * a * b + b for a, b in pairwise(widths))

    full = model_info(build_model("unet"))
    s2d = model_info(build_model("unet", stem="s2d"))
    assert 1.5e6 < full["params"] < 2.5e6
    assert abs(s2d["params"] - full["params"]) / full["params"] < 0.01
    ratio = full["flops_per_megapixel"] / s2d["flops_per_megapixel"]
    assert 3.5 < ratio < 4.2, ratio
    dn = model_info(build_model("dncnn"))
    assert dn["params"] > 5e5 and dn["flops_per_megapixel"] > full["flops_per_megapixel"]


@pytest.mark.parametrize("name", ["unet_s2d", "dncnn"])
def test_mixed_bfloat16(name, policy, tmp_path):
    policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = build_model(name, **TINY[name])
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    x, y = _pairs()
    out = model(x)
    assert out.dtype == "float32"
    policy("float32")
    reference = build_model(name, **TINY[name])
    reference.set_weights(model.get_weights())
    policy("mixed_bfloat16")
    assert np.abs(out.numpy() - reference(x).numpy()).max() < 0.05  # same function, bf16 math
    model.compile(optimizer="adam", loss="mse")
    assert np.isfinite(float(model.train_on_batch(x, y)))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_with_precision_bf16_keeps_weights_and_float32_output(name):
    """A trained fp32 model rebuilt for bf16 inference: same weights, float32 output, and
    outputs within bf16 rounding of the fp32 ones (not bit-equal: the convolutions are
    really computed in bf16)."""
    model = build_model(name, **TINY[name])
    x, _ = _pairs(n=2, size=32)
    fast = with_precision(model, "bf16")
    assert with_precision(model, "fp32") is model
    for a, b in zip(model.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    convs = [layer for layer in fast.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    y32 = model(x, training=False).numpy()
    y16 = fast(x, training=False)
    assert y16.dtype == "float32"
    diff = np.abs(y16.numpy() - y32)
    assert 0 < diff.max() < 0.05, diff.max()
    with pytest.raises(ValueError, match="unknown precision"):
        with_precision(model, "int8")


def test_grown_unet_starts_as_the_trained_one_and_then_learns(tmp_path):
    small = build_model("unet", widths=(8, 16), blocks_per_level=1)
    small.compile(optimizer="adam", loss="mse")
    x, y = _pairs(n=8, size=16)
    small.fit(x, y, epochs=2, verbose=0)
    grown = build_model("unet", widths=(8, 16), blocks_per_level=1, res_blocks=1)
    copied, fresh = transfer_weights(small, grown)
    assert copied == len([la for la in small.layers if la.weights])
    assert fresh == 4  # two residual blocks (bottleneck, decoder), two convs each
    # New blocks are the identity: the grown model computes exactly what the small one did.
    np.testing.assert_allclose(grown.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)
    # ...and their weights train (the zero conv gets a gradient through the add).
    grown.compile(optimizer="adam", loss="mse")
    grown.fit(x, y, epochs=2, verbose=0)
    assert np.abs(grown.get_layer("dec0_res0_conv_b").get_weights()[0]).max() > 0
    # A model that is not a growth of the source is refused, naming the layer.
    with pytest.raises(ValueError, match="enc0_conv0"):
        transfer_weights(small, build_model("unet", widths=(12, 16), blocks_per_level=1))


def test_global_context_grows_as_the_identity_and_sees_the_whole_image():
    small = build_model("unet", widths=(8, 16), blocks_per_level=1)
    small.compile(optimizer="adam", loss="mse")
    x, y = _pairs(n=8, size=16)
    small.fit(x, y, epochs=1, verbose=0)
    grown = build_model("unet", widths=(8, 16), blocks_per_level=1, global_context=True)
    copied, fresh = transfer_weights(small, grown)
    assert fresh == 3  # gates after the first level, the bottleneck and the decoder level
    np.testing.assert_allclose(grown.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)
    grown.compile(optimizer="adam", loss="mse")
    grown.fit(x, y, epochs=2, verbose=0)
    assert np.abs(grown.get_layer("mid_global_gate").get_weights()[0]).max() > 0

    # A change far outside the convolutions' reach moves a corner's output only through
    # the gates' image-wide mean.
    image = np.random.default_rng(1).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    changed = image.copy()
    changed[:, 40:, 40:] = 1.0
    for model, moves in ((small, False), (grown, True)):
        a, b = (model.predict(v, verbose=0)[0, :8, :8] for v in (image, changed))
        assert (np.abs(a - b).max() > 1e-6) == moves, model.name
