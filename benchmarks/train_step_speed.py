"""Training-step throughput of a model in fp32 and bf16, measured in one process.

Only the optimizer step (forward, backward, Adam update inside one ``tf.function``)
on in-memory random patches: the ceiling the data pipeline has to feed. Prints the
CPU model, patches/s per precision and the bf16 / fp32 ratio; quote the ratio.

    python benchmarks/train_step_speed.py [--model denoise_core/weights/default.keras]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
        "unknown",
    )


def patches_per_second(model_path: str, precision: str, batch: int, patch: int, steps: int):
    import keras
    import tensorflow as tf

    from denoise_core import models

    keras.mixed_precision.set_global_policy(models.PRECISION_POLICIES[precision])
    model = models.with_precision(models.load_model(model_path), precision)
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    clean = rng.random((batch, patch, patch, 3), dtype=np.float32)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
    x, y = tf.constant(noisy), tf.constant(clean)
    for _ in range(3):  # trace and warm up
        step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    rate = steps * batch / (time.perf_counter() - start)
    keras.mixed_precision.set_global_policy("float32")
    return rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "denoise_core/weights/default.keras"))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precisions", default="fp32,bf16")
    args = p.parse_args()
    print(f"CPU: {cpu_model()}; model {args.model}; batch {args.batch} x {args.patch}^2")
    rates = {}
    for precision in args.precisions.split(","):
        rates[precision] = patches_per_second(
            args.model, precision, args.batch, args.patch, args.steps
        )
        print(f"{precision:5s} {rates[precision]:7.1f} patches/s")
    if "fp32" in rates:
        for precision, rate in rates.items():
            if precision != "fp32":
                print(f"{precision} / fp32: {rate / rates['fp32']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
