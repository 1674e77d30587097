"""The pieces of a training step that do not depend on Ray: losses, schedules, state.

The train step is written by hand (``strategy.run`` + ``strategy.reduce``) because
Keras 3 ``model.fit`` fails under MultiWorkerMirroredStrategy (ray#47464). The loss
is divided by the *global* batch, so N workers train exactly like one worker with
N× the batch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import numpy as np

from . import precision as precision_names
from .run_folder import MODEL_FILE, OPTIMIZER_FILE, STATE_FILE

LOSSES = ("mse", "l1", "charbonnier", "psnr")
SCHEDULES = ("cosine", "step", "constant")
CHARBONNIER_EPS = 1e-3
# Floor of the "psnr" loss's MSE ([0, 1] pixels), as in NAFNet's PSNRLoss: keeps the
# log finite on a patch the model already reproduces exactly.
PSNR_LOSS_EPS = 1e-8
COSINE_FLOOR = 0.01  # cosine decays to this share of the peak, and warm-up starts there


def per_example_loss(name: str) -> Callable:
    """A loss returning one value per example (mean over pixels and channels).

    Written in ``keras.ops``, so the TensorFlow trainer and the JAX one
    (``jobs.train_jax``) run the same formulas."""
    from keras import ops

    def mse(clean, pred):
        return ops.mean(ops.square(pred - clean), axis=(1, 2, 3))

    def l1(clean, pred):
        return ops.mean(ops.abs(pred - clean), axis=(1, 2, 3))

    def charbonnier(clean, pred):
        return ops.mean(ops.sqrt(ops.square(pred - clean) + CHARBONNIER_EPS**2), axis=(1, 2, 3))

    def psnr(clean, pred):
        # -PSNR in dB (peak 1): each patch counts by its dB, as the benchmark averages
        # them, so heavy-noise patches stop outweighing light ones (NAFNet's loss).
        return (10.0 / math.log(10.0)) * ops.log(mse(clean, pred) + PSNR_LOSS_EPS)

    losses = {"mse": mse, "l1": l1, "charbonnier": charbonnier, "psnr": psnr}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return losses[name]


def make_schedule(kind: str, lr: float, total_steps: int, warmup_steps: int = 0):
    """Learning rate as a function of the optimizer's step counter.

    cosine: linear warm-up to ``lr`` then cosine decay to 1% of it (:func:`cosine_lr`
    is the same curve in plain Python, for the JAX trainer); step: ÷10 at 50% and
    75% of the run; constant: ``lr`` throughout.
    """
    import keras

    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    if kind == "constant":
        return lr
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr * COSINE_FLOOR if warmup_steps else lr,
            decay_steps=max(total_steps - warmup_steps, 1),
            alpha=COSINE_FLOOR,
            warmup_target=lr if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if kind == "step":
        bounds = [max(1, total_steps // 2), max(2, total_steps * 3 // 4)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, [lr, lr / 10, lr / 100])
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def cosine_lr(t: float, total: float, lr: float, warmup: float = 0.0) -> float:
    """:func:`make_schedule`'s cosine at position ``t`` of ``total`` (steps or seconds).

    Warm-up rises linearly from ``COSINE_FLOOR * lr`` to ``lr`` over ``warmup``, then a
    cosine falls to ``COSINE_FLOOR * lr`` at ``total`` and stays there. Keras's
    ``CosineDecay`` computes the same at integer steps (a parity test holds them equal).
    """
    if warmup > 0 and t < warmup:
        start = lr * COSINE_FLOOR
        return start + (lr - start) * t / warmup
    span = total - warmup
    f = 1.0 if span <= 0 else min(max(t - warmup, 0.0), span) / span
    return lr * ((1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * f)) + COSINE_FLOOR)


def set_precision(precision: str) -> None:
    """Keras global dtype policy; bf16 speeds up CPUs with AVX-512 BF16 or AMX."""
    import keras

    policy = precision_names.POLICIES[precision_names.check(precision)]
    keras.mixed_precision.set_global_policy(policy)


def distillation_mix(clean_loss, teacher_loss, teacher_weight: float):
    """The distillation loss of both trainers: ``(1 - w) * clean + w * teacher``
    (tensors or arrays of any backend)."""
    return (1.0 - teacher_weight) * clean_loss + teacher_weight * teacher_loss


def make_train_step(
    strategy,
    model,
    optimizer,
    loss_name: str,
    global_batch: int,
    teacher=None,
    teacher_weight: float = 0.0,
) -> Callable:
    """A compiled distributed step: (noisy, clean) local batches -> global mean loss.

    With a ``teacher`` (distillation), each example's loss is
    ``(1 - w) * loss(clean, pred) + w * loss(teacher(noisy), pred)``, ``w =
    teacher_weight``: the teacher's output, a smoother target than the clean image,
    steadies a small student's gradients. The teacher runs in inference mode and
    gets no gradient.
    """
    import tensorflow as tf

    loss_fn = per_example_loss(loss_name)
    scaled = hasattr(optimizer, "scale_loss") and getattr(optimizer, "dynamic", False)

    def example_losses(noisy, clean, pred):
        if teacher is None:
            return loss_fn(clean, pred)
        target = tf.stop_gradient(tf.cast(teacher(noisy, training=False), tf.float32))
        return distillation_mix(loss_fn(clean, pred), loss_fn(target, pred), teacher_weight)

    def replica_step(noisy, clean):
        with tf.GradientTape() as tape:
            pred = tf.cast(model(noisy, training=True), tf.float32)
            loss = tf.nn.compute_average_loss(
                example_losses(noisy, clean, pred), global_batch_size=global_batch
            )
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled_loss = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def step(noisy, clean):
        per_replica = strategy.run(replica_step, args=(noisy, clean))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step


# -- training state: model + optimizer + counters, as plain files ------------------
# (file names: denoise_core.run_folder, which owns the run folder's layout)


def save_state(directory: str, model, optimizer, state: dict) -> None:
    """Write a resumable training state into a local ``directory``."""
    os.makedirs(directory, exist_ok=True)
    model.save(os.path.join(directory, MODEL_FILE))
    values = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(_slots(optimizer))}
    np.savez(os.path.join(directory, OPTIMIZER_FILE), **values)
    with open(os.path.join(directory, STATE_FILE), "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)


def _slots(optimizer) -> list:
    """The optimizer variables a checkpoint keeps: all but a constant learning rate,
    which the resuming run's own --lr sets (a schedule keeps none), so a run can be
    resumed with another --lr or --schedule."""
    return [v for v in optimizer.variables if v.path.split("/")[-1] != "learning_rate"]


def load_state(directory: str, model, optimizer) -> dict:
    """Restore weights and optimizer slots saved by :func:`save_state`; returns the counters."""
    from . import models

    saved = models.load_model(os.path.join(directory, MODEL_FILE))
    model.set_weights(saved.get_weights())
    return restore_optimizer(directory, model, optimizer)


def restore_optimizer(directory: str, model, optimizer) -> dict:
    """:func:`load_state` for a ``model`` already loaded from that checkpoint: the
    optimizer slots and the counters only."""
    optimizer.build(model.trainable_variables)
    opt_path = os.path.join(directory, OPTIMIZER_FILE)
    if os.path.exists(opt_path):
        with np.load(opt_path) as data:
            arrays = [data[k] for k in sorted(data.files)]
        slots = _slots(optimizer)
        if len(arrays) == len(slots) + 1 and arrays[1].ndim == 0 and arrays[1].dtype.kind == "f":
            # Saved before learning rates were left out: Keras keeps a constant one
            # second, after the iteration counter.
            arrays = arrays[:1] + arrays[2:]
        if len(arrays) != len(slots):
            raise ValueError(
                f"optimizer state has {len(arrays)} variables, expected {len(slots)}: "
                "the checkpoint is of another optimizer or model"
            )
        for var, value in zip(slots, arrays):
            var.assign(value)
    with open(os.path.join(directory, STATE_FILE)) as f:
        return json.load(f)
