"""Checkpoint state round trip: weights, step counter and Adam moments come back; a
constant learning rate comes from the resumed run's own ``--lr``, not the checkpoint."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from denoise_core import training
from denoise_core.models import build_model
from denoise_core.run_folder import OPTIMIZER_FILE

TINY_UNET = {"widths": (8, 16), "blocks_per_level": 1}


def _one_step(model, optimizer) -> None:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((2, 16, 16, 3), dtype=np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(model(x, training=True) - x * 0.5))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


def _slots(optimizer) -> list[np.ndarray]:
    """Adam's moment variables, in the optimizer's own order."""
    return [
        v.numpy()
        for v in optimizer.variables
        if not v.path.endswith(("learning_rate", "iteration"))
    ]


def test_state_round_trip_keeps_moments_and_takes_new_constant_lr(tmp_path):
    model = build_model("unet", **TINY_UNET)
    optimizer = keras.optimizers.Adam(training.make_schedule("constant", 1e-3, 10))
    optimizer.build(model.trainable_variables)
    _one_step(model, optimizer)
    training.save_state(str(tmp_path), model, optimizer, {"step": 1})

    fresh = build_model("unet", **TINY_UNET)
    resumed = keras.optimizers.Adam(training.make_schedule("constant", 2.5e-4, 10))
    state = training.load_state(str(tmp_path), fresh, resumed)

    assert state["step"] == 1
    assert int(resumed.iterations.numpy()) == 1
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    saved, restored = _slots(optimizer), _slots(resumed)
    assert len(saved) == len(restored) == 2 * len(model.trainable_variables)
    assert any(np.any(v != 0) for v in saved)  # the step really moved the moments
    for a, b in zip(saved, restored, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isclose(float(resumed.learning_rate.numpy()), 2.5e-4)


def test_a_run_resumes_under_another_schedule_and_from_old_files(tmp_path):
    """A cosine run resumed with --schedule constant (and back) keeps its moments: the
    checkpoint leaves out the constant learning rate (it failed with 'optimizer state
    has 73 variables, expected 74'); a file saved with it (older runs) still loads."""
    model = build_model("unet", **TINY_UNET)
    optimizer = keras.optimizers.Adam(training.make_schedule("cosine", 1e-3, 10, 0))
    optimizer.build(model.trainable_variables)
    _one_step(model, optimizer)
    training.save_state(str(tmp_path / "cosine"), model, optimizer, {"step": 1})

    constant = keras.optimizers.Adam(training.make_schedule("constant", 1e-4, 10))
    training.load_state(str(tmp_path / "cosine"), build_model("unet", **TINY_UNET), constant)
    assert int(constant.iterations.numpy()) == 1
    assert np.isclose(float(constant.learning_rate.numpy()), 1e-4)
    for a, b in zip(_slots(optimizer), _slots(constant), strict=True):
        np.testing.assert_array_equal(a, b)

    # The old layout: every optimizer variable, the constant learning rate second.
    training.save_state(str(tmp_path / "old"), model, constant, {"step": 1})
    old = dict(np.load(tmp_path / "old" / OPTIMIZER_FILE))
    names = sorted(old)
    old = {
        f"v{i:04d}": a
        for i, a in enumerate([old[names[0]], np.float32(1e-4)] + [old[k] for k in names[1:]])
    }
    np.savez(tmp_path / "old" / OPTIMIZER_FILE, **old)
    again = keras.optimizers.Adam(training.make_schedule("cosine", 1e-3, 10, 0))
    training.load_state(str(tmp_path / "old"), build_model("unet", **TINY_UNET), again)
    for a, b in zip(_slots(optimizer), _slots(again), strict=True):
        np.testing.assert_array_equal(a, b)
