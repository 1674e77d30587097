"""Train the default U-Net on one GPU with Keras 3 on JAX, for machines without TensorFlow or Ray.

Why this exists: CPU training here makes ~45 patches/s; a lent H100/H200 has JAX
but no TensorFlow, so the same Keras model (``denoise_core.models``, backend-neutral)
is trained there with a hand-written JAX step, and the ``.keras`` file it writes
loads unchanged in the TensorFlow stack (``denoise promote``, ``denoise run``).

The whole sample pipeline runs on the GPU inside the jitted step, so 16 host cores
never limit it: every clean image sits in device memory as uint8, and each step
draws random crops, one of the 8 flips/rotations, the colour augmentation of
:func:`denoise_core.patches.random_color`, and the ``gaussian:0-55;camera`` noise
mix of :mod:`denoise_core.noise` (camera shot noise as its Gaussian approximation).
A fixed share of each batch comes from real noisy/clean pairs (PolyU's training
split), cropped at the same place in both.

The learning rate follows a cosine over the *wall-clock* budget (``--minutes``),
since a lease is measured in minutes, not steps. A checkpoint and a validation
line are written every ``--checkpoint-every`` seconds so a lease that ends early
still returns a model. Output: ``OUT/model/model.keras`` (float32 policy) and
``OUT/model/model_card.json`` in the layout ``denoise promote`` reads.

    KERAS_BACKEND=jax python cluster/jax_gpu_train.py \\
        --init-from denoise_core/weights/default.keras \\
        --clean DIR --pairs DIR --val DIR --minutes 7 --out OUT/gpu-run
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from denoise_core import metrics, models  # noqa: E402

MAX_SAT = 2.0  # patches.random_color's default


def read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_clean(folder: str) -> np.ndarray:
    """All images as one uint8 array, portrait ones transposed, centre-cropped to the smallest."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if os.path.isfile(p))
    imgs = [read_rgb(p) for p in paths]
    imgs = [im.transpose(1, 0, 2) if im.shape[0] > im.shape[1] else im for im in imgs]
    h = min(im.shape[0] for im in imgs)
    w = min(im.shape[1] for im in imgs)
    out = []
    for im in imgs:
        y, x = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
        out.append(im[y : y + h, x : x + w])
    return np.stack(out)


def load_pairs(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """PolyU naming: ``*_real.*`` noisy beside ``*_mean.*`` ground truth."""
    noisy, clean = [], []
    for p in sorted(glob.glob(os.path.join(folder, "*_real.*"))):
        noisy.append(read_rgb(p))
        clean.append(read_rgb(p.replace("_real.", "_mean.")))
    h = min(im.shape[0] for im in clean)
    w = min(im.shape[1] for im in clean)
    return np.stack([n[:h, :w] for n in noisy]), np.stack([c[:h, :w] for c in clean])


# ---------------------------------------------------------------------------
# Sample pipeline (jax, on device)
# ---------------------------------------------------------------------------


def _crop(stack, idx, y, x, p):
    return jax.lax.dynamic_slice(stack, (idx, y, x, 0), (1, p, p, stack.shape[-1]))[0]


def _dihedral(img, k):
    """One of 8 flips/rotations, chosen by k in 0..7 (square patches)."""
    branches = [
        (lambda a, r=r, f=f: jnp.rot90(a[:, ::-1] if f else a, r, axes=(0, 1)))
        for f in (False, True)
        for r in range(4)
    ]
    return jax.lax.switch(k, branches, img)


def _srgb_to_linear(x):
    x = jnp.clip(x, 0.0, 1.0)
    return jnp.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x):
    x = jnp.clip(x, 0.0, 1.0)
    return jnp.where(x <= 0.0031308, 12.92 * x, 1.055 * jnp.maximum(x, 1e-8) ** (1 / 2.4) - 0.055)


def _fitting_saturation(clean, grey, quantile: float = 0.02):
    """patches.fitting_saturation: the chroma scale that keeps 98% of unclipped pixels in range."""
    d = clean - grey
    up = jnp.where(d > 1e-6, (1.0 - grey) / jnp.where(d > 1e-6, d, 1.0), jnp.inf)
    down = jnp.where(d < -1e-6, grey / jnp.where(d < -1e-6, -d, 1.0), jnp.inf)
    limit = jnp.minimum(up, down).min(axis=-1)
    unclipped = ~((clean <= 1.5 / 255) | (clean >= 253.5 / 255)).any(axis=-1)
    limit = jnp.where(unclipped, jnp.minimum(limit, 1e6), jnp.nan)
    q = jnp.nanquantile(limit, quantile)
    return jnp.where(unclipped.any(), q, 1.0)


def _synthetic_one(key, clean, color_augment: bool, color_clip: str = "hard"):
    """noise.PatchSampler._one for a clean-only row: colour, then gaussian:0-55 or camera."""
    k_perm, k_sat, k_kind, k_sig, k_shot, k_read, k_gain, k_n1, k_n2 = jax.random.split(key, 9)
    if color_augment:
        clean = clean[..., jax.random.permutation(k_perm, 3)]
        log_s = jax.random.uniform(k_sat, minval=-math.log(MAX_SAT) / 2, maxval=math.log(MAX_SAT))
        grey = clean.mean(axis=-1, keepdims=True)
        scale = jnp.exp(log_s)
        if color_clip == "fit":
            fit = jnp.maximum(1.0, _fitting_saturation(clean, grey))
            scale = jnp.where(scale > 1.0, jnp.minimum(scale, fit), scale)
        clean = jnp.clip(grey + scale * (clean - grey), 0.0, 1.0)
    # Gaussian, sigma ~ U[0, 55] / 255, unclipped (the published protocol).
    sigma = jax.random.uniform(k_sig, minval=0.0, maxval=55.0) / 255.0
    gaussian = clean + sigma * jax.random.normal(k_n1, clean.shape)
    # Camera: noise.sample_camera_params ranges; Poisson shot noise ~ Gaussian of equal variance.
    shot = jnp.exp(jax.random.uniform(k_shot, minval=math.log(1e-4), maxval=math.log(1e-2)))
    read = jnp.exp(jax.random.uniform(k_read, minval=math.log(1e-3), maxval=math.log(3e-2)))
    rb = jax.random.uniform(k_gain, (2,), minval=1.0, maxval=2.0)
    gains = jnp.stack([rb[0], 1.0, rb[1]])
    lin = _srgb_to_linear(clean)
    std = jnp.sqrt(gains * shot * lin + (gains * read) ** 2)
    camera = _linear_to_srgb(lin + std * jax.random.normal(k_n2, clean.shape))
    noisy = jnp.where(jax.random.bernoulli(k_kind), camera, gaussian)
    return noisy, clean


def make_batch_fn(
    clean_stack,
    pair_noisy,
    pair_clean,
    batch: int,
    n_pairs: int,
    patch: int,
    color_augment: bool,
    color_clip: str = "hard",
):
    """A jittable key -> (noisy, clean) float32 batch, synthetic rows first, real pairs last."""
    n_syn = batch - n_pairs

    def synthetic(key):
        k_idx, k_y, k_x, k_d, k_noise = jax.random.split(key, 5)
        idx = jax.random.randint(k_idx, (n_syn,), 0, clean_stack.shape[0])
        ys = jax.random.randint(k_y, (n_syn,), 0, clean_stack.shape[1] - patch + 1)
        xs = jax.random.randint(k_x, (n_syn,), 0, clean_stack.shape[2] - patch + 1)
        ds = jax.random.randint(k_d, (n_syn,), 0, 8)
        crops = jax.vmap(lambda i, y, x: _crop(clean_stack, i, y, x, patch))(idx, ys, xs)
        crops = jax.vmap(_dihedral)(crops, ds).astype(jnp.float32) / 255.0
        keys = jax.random.split(k_noise, n_syn)
        return jax.vmap(lambda k, c: _synthetic_one(k, c, color_augment, color_clip))(keys, crops)

    def real(key):
        k_idx, k_y, k_x, k_d = jax.random.split(key, 4)
        idx = jax.random.randint(k_idx, (n_pairs,), 0, pair_clean.shape[0])
        ys = jax.random.randint(k_y, (n_pairs,), 0, pair_clean.shape[1] - patch + 1)
        xs = jax.random.randint(k_x, (n_pairs,), 0, pair_clean.shape[2] - patch + 1)
        ds = jax.random.randint(k_d, (n_pairs,), 0, 8)

        def one(i, y, x, d):
            n = _dihedral(_crop(pair_noisy, i, y, x, patch), d)
            c = _dihedral(_crop(pair_clean, i, y, x, patch), d)
            return n, c

        n, c = jax.vmap(one)(idx, ys, xs, ds)
        return n.astype(jnp.float32) / 255.0, c.astype(jnp.float32) / 255.0

    def make(key):
        k_syn, k_real = jax.random.split(key)
        noisy, clean = synthetic(k_syn)
        if n_pairs:
            rn, rc = real(k_real)
            noisy = jnp.concatenate([noisy, rn])
            clean = jnp.concatenate([clean, rc])
        return noisy, clean

    return make


# ---------------------------------------------------------------------------
# Model and step
# ---------------------------------------------------------------------------


def build(args) -> keras.Model:
    keras.mixed_precision.set_global_policy(models.PRECISION_POLICIES[args.precision])
    source = models.load_model(args.init_from) if args.init_from else None
    if args.model_args or source is None:
        model = models.build_model("unet", **json.loads(args.model_args or "{}"))
        if source is not None:
            copied, fresh = models.transfer_weights(source, model)
            print(f"grow: {copied} layers copied from {args.init_from}, {fresh} new", flush=True)
        return model
    return models.with_precision(source, args.precision)


def noisy_psnr(val: list) -> float:
    """Mean PSNR of the noisy validation inputs (the floor the model's figure is read against)."""
    return float(np.mean([metrics.psnr(n, c) for n, c in val])) if val else float("nan")


def lr_at(fraction: float, peak: float, warmup_fraction: float) -> float:
    if fraction < warmup_fraction:
        return peak * fraction / warmup_fraction
    f = min(1.0, (fraction - warmup_fraction) / max(1e-9, 1 - warmup_fraction))
    return peak * 0.5 * (1 + math.cos(math.pi * f))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init-from", help=".keras model to warm-start from")
    p.add_argument(
        "--model-args", help="JSON unet arguments: build this and grow --init-from into it"
    )
    p.add_argument("--clean", required=True, help="folder of clean training images")
    p.add_argument("--pairs", help="folder of *_real / *_mean noisy/clean pairs")
    p.add_argument(
        "--pairs-share", type=float, default=0.2, help="share of each batch from --pairs"
    )
    p.add_argument("--val", help="folder of clean validation images (sigma 25, fixed seed)")
    p.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument(
        "--warmup", type=float, default=0.03, help="share of the budget spent warming up"
    )
    p.add_argument("--precision", default="bf16", choices=sorted(models.PRECISION_POLICIES))
    p.add_argument("--no-color-augment", action="store_true")
    p.add_argument(
        "--color-clip",
        choices=["hard", "fit"],
        default="hard",
        help="as denoise train --color-clip",
    )
    p.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    start = time.time()
    os.makedirs(os.path.join(args.out, "model"), exist_ok=True)
    print(f"devices: {jax.devices()}  jax {jax.__version__}  keras {keras.__version__}", flush=True)

    clean_np = load_clean(args.clean)
    pairs_np = load_pairs(args.pairs) if args.pairs else None
    n_pairs = round(args.batch * args.pairs_share) if pairs_np is not None else 0
    print(
        f"data: {clean_np.shape} clean, {None if pairs_np is None else pairs_np[0].shape} pairs "
        f"({n_pairs}/{args.batch} per batch), loaded in {time.time() - start:.1f}s",
        flush=True,
    )
    clean_dev = jax.device_put(clean_np)
    pn_dev, pc_dev = (
        (jax.device_put(pairs_np[0]), jax.device_put(pairs_np[1])) if pairs_np else (None, None)
    )
    make_batch = make_batch_fn(
        clean_dev,
        pn_dev,
        pc_dev,
        args.batch,
        n_pairs,
        args.patch,
        not args.no_color_augment,
        args.color_clip,
    )

    model = build(args)
    info = models.model_info(models.with_precision(model, "fp32"))
    print(
        f"model: {info['params']} params, {info['flops_per_megapixel'] / 1e9:.0f} GFLOP/MP",
        flush=True,
    )
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=args.lr)
    opt_state = tx.init(trainable)

    def loss_fn(tv, ntv, noisy, clean):
        pred, ntv = model.stateless_call(tv, ntv, noisy, training=True)
        return jnp.mean(jnp.abs(pred.astype(jnp.float32) - clean)), ntv

    @jax.jit
    def train_step(tv, ntv, opt_state, key, lr):
        noisy, clean = make_batch(key)
        (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, noisy, clean)
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = tx.update(grads, opt_state, tv)
        return optax.apply_updates(tv, updates), ntv, opt_state, loss

    @jax.jit
    def predict(tv, ntv, x):
        return model.stateless_call(tv, ntv, x, training=False)[0]

    val = []
    if args.val:
        rng = np.random.default_rng(0)
        for path in sorted(glob.glob(os.path.join(args.val, "*"))):
            c = read_rgb(path).astype(np.float32) / 255.0
            c = c[: c.shape[0] // 8 * 8, : c.shape[1] // 8 * 8]
            val.append((c + rng.standard_normal(c.shape, dtype=np.float32) * 25 / 255, c))

    def validate(tv, ntv) -> float:
        psnrs = [
            metrics.psnr(np.clip(np.asarray(predict(tv, ntv, n[None]), np.float32)[0], 0, 1), c)
            for n, c in val
        ]
        return float(np.mean(psnrs)) if psnrs else float("nan")

    log = open(os.path.join(args.out, "log.jsonl"), "a")

    def checkpoint(tv, ntv, name):
        for var, value in zip(model.trainable_variables, tv):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, ntv):
            var.assign(value)
        models.with_precision(model, "fp32").save(os.path.join(args.out, name))

    key = jax.random.PRNGKey(args.seed)
    t0 = time.time()
    key, sub = jax.random.split(key)
    trainable, non_trainable, opt_state, loss = train_step(
        trainable, non_trainable, opt_state, sub, jnp.float32(0.0)
    )
    loss.block_until_ready()
    v0 = validate(trainable, non_trainable)
    print(
        f"compiled first step in {time.time() - t0:.1f}s; val sigma25 before: {v0:.3f} dB",
        flush=True,
    )
    log.write(json.dumps({"step": 0, "val_psnr": v0}) + "\n")
    log.flush()
    best = {"step": 0, "val_psnr": v0}

    budget = args.minutes * 60.0
    train_start = time.time()
    last_ckpt = train_start
    step, losses = 0, []
    while True:
        frac = (time.time() - train_start) / budget
        if frac >= 1.0:
            break
        key, sub = jax.random.split(key)
        lr = lr_at(frac, args.lr, args.warmup)
        trainable, non_trainable, opt_state, loss = train_step(
            trainable, non_trainable, opt_state, sub, jnp.float32(lr)
        )
        step += 1
        if step % 50 == 0:
            losses.append(float(loss))
        if time.time() - last_ckpt >= args.checkpoint_every:
            vp = validate(trainable, non_trainable)
            elapsed = time.time() - train_start
            rec = {
                "step": step,
                "seconds": round(elapsed, 1),
                "lr": lr,
                "loss": float(np.mean(losses[-20:])) if losses else None,
                "val_psnr": vp,
                "patches_per_s": round(step * args.batch / elapsed, 1),
            }
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if vp > best["val_psnr"]:
                best = {"step": step, "val_psnr": vp}
            try:
                checkpoint(trainable, non_trainable, "checkpoint.keras")
            except Exception as exc:  # a failed save must not end the lease's training
                print(f"checkpoint failed: {exc!r}", flush=True)
            last_ckpt = time.time()

    train_wall = time.time() - train_start
    vp = validate(trainable, non_trainable)
    rec = {
        "step": step,
        "seconds": round(train_wall, 1),
        "val_psnr": vp,
        "final": True,
        "patches_per_s": round(step * args.batch / train_wall, 1),
    }
    print(json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    log.close()
    if vp >= best["val_psnr"]:
        best = {"step": step, "val_psnr": vp}
    checkpoint(trainable, non_trainable, os.path.join("model", "model.keras"))
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        gpu = str(jax.devices()[0])
    card = {
        "command": shlex.join(["python", "cluster/jax_gpu_train.py", *(argv or sys.argv[1:])]),
        "steps": step,
        "wall_time_s": round(time.time() - start, 1),
        "train_time_s": round(train_wall, 1),
        "data": [
            {
                "source": args.clean,
                "layout": "clean",
                "rows": {"train": int(clean_np.shape[0])},
                "weight": round(1 - n_pairs / args.batch, 3),
            },
        ]
        + (
            [
                {
                    "source": args.pairs,
                    "layout": "pairs",
                    "rows": {"train": int(pairs_np[0].shape[0])},
                    "weight": round(n_pairs / args.batch, 3),
                }
            ]
            if pairs_np
            else []
        ),
        "validation": {
            "source": args.val,
            "limit": len(val),
            "noise": "gaussian:25",
            "note": "monitoring only: crops to a multiple of 8, seed 0 noise",
        },
        "best": {**best, "val_noisy_psnr": noisy_psnr(val)},
        "training": {
            "batch_size": args.batch,
            "patch": args.patch,
            "lr": args.lr,
            "loss": "l1",
            "schedule": "cosine over wall time",
            "precision": args.precision,
            "color_augment": not args.no_color_augment,
            "color_clip": args.color_clip,
            "noise": "gaussian:0-55;camera",
            "init_from": args.init_from,
            "model_args": args.model_args,
            "backend": "jax " + jax.__version__,
            "keras": keras.__version__,
        },
        "architecture": {"name": model.name, **info},
        "hardware": {"gpu": gpu, "gpus": 1},
    }
    with open(os.path.join(args.out, "model", "model_card.json"), "w") as f:
        json.dump(card, f, indent=2)
    print(f"done: {step} steps, {train_wall / 60:.1f} min, val {vp:.3f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
