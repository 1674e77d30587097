"""The hand-written train step: its loss is the batch mean of the per-example loss,
and with a teacher (distillation) the mix (1 - w) * loss(clean) + w * loss(teacher)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from denoise_core import training
from denoise_core.models import build_model

TINY_UNET = {"widths": (8, 16), "blocks_per_level": 1}
BATCH = 4


def _model(seed: int):
    keras.utils.set_random_seed(seed)
    return build_model("unet", **TINY_UNET)


def _batch():
    rng = np.random.default_rng(0)
    clean = rng.random((BATCH, 16, 16, 3), dtype=np.float32)
    noisy = clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32)
    return tf.constant(noisy), tf.constant(clean)


def _l1(a, b) -> np.ndarray:
    return np.abs(np.asarray(a) - np.asarray(b)).mean(axis=(1, 2, 3))


def _step(student, teacher=None, weight=0.0):
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(student.trainable_variables)
    return training.make_train_step(
        tf.distribute.get_strategy(), student, optimizer, "l1", BATCH, teacher, weight
    )


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_distillation_loss_mixes_clean_and_teacher_targets(weight):
    student, teacher = _model(0), _model(1)
    noisy, clean = _batch()
    pred, target = student(noisy), teacher(noisy)
    assert _l1(pred, target).mean() > 1e-3  # two different models
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]

    loss = float(_step(student, teacher, weight)(noisy, clean))

    expected = ((1 - weight) * _l1(pred, clean) + weight * _l1(pred, target)).mean()
    assert loss == pytest.approx(expected, rel=1e-5)
    for w, w0 in zip(teacher.get_weights(), teacher_before, strict=True):
        np.testing.assert_array_equal(w, w0)  # the teacher never learns
    assert any(not np.array_equal(w, w0) for w, w0 in zip(student.get_weights(), student_before))


def test_without_a_teacher_the_loss_is_the_clean_target_s():
    student = _model(0)
    noisy, clean = _batch()
    expected = _l1(student(noisy), clean).mean()
    assert float(_step(student)(noisy, clean)) == pytest.approx(expected, rel=1e-5)


def test_a_student_equal_to_its_teacher_gets_no_gradient_at_weight_one():
    student, teacher = _model(0), _model(0)
    noisy, clean = _batch()
    before = [w.copy() for w in student.get_weights()]
    assert float(_step(student, teacher, 1.0)(noisy, clean)) == 0.0
    for w, w0 in zip(student.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, w0)


def test_psnr_loss_is_each_examples_negative_psnr():
    """The "psnr" loss ranks patches by dB, as the benchmark does: it equals minus
    the metric's PSNR of each example, and a patch twice as far off costs 6 dB more
    whatever its noise level."""
    from denoise_core.metrics import psnr

    noisy, clean = _batch()
    per_example = training.per_example_loss("psnr")(clean, noisy).numpy()
    expected = [-psnr(np.asarray(noisy[i]), np.asarray(clean[i])) for i in range(BATCH)]
    np.testing.assert_allclose(per_example, expected, atol=1e-3)
    doubled = clean + 2 * (noisy - clean)
    gap = training.per_example_loss("psnr")(clean, doubled).numpy() - per_example
    np.testing.assert_allclose(gap, 20 * np.log10(2), atol=1e-3)
