"""``denoise train``: fit a denoiser data-parallel with Ray Train from ingested shards.

Ray Data reads the Parquet shards and does every CPU-heavy step (PNG decode,
random crops, flips, noise synthesis) in data tasks; ``TensorflowTrainer`` runs one
replica per worker under MultiWorkerMirroredStrategy with a hand-written step.
Rank 0 validates whole images at a fixed interval, writes TensorBoard logs and
checkpoints to the run folder (local or ``s3://``). At the end the best checkpoint
is exported as ``RUN/model/model.keras``, a SavedModel and ``model_card.json``.

Run as ``python -m jobs.train …`` under ``ray job submit``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import ray

from denoise_core import manifest, storage
from denoise_core.noise import DEFAULT_TRAINING_NOISE
from denoise_core.training import LOSSES, PRECISIONS, SCHEDULES, STATE_FILE
from jobs import preflight, quiet
from jobs.common import fail, init_ray, job_main

RAY_DIR = "ray"  # RUN/ray/attempt-NNN/checkpoint_*: one Ray Train run per invocation
MODEL_DIR = "model"
TB_DIR = "tensorboard"
FAIL_MARKER = "_injected_failure"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from denoise_core.models import DEFAULT_MODEL, MODEL_NAMES

    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="URI[@WEIGHT]",
        help="ingested data set (repeat to mix several; @WEIGHT sets its share of samples)",
    )
    p.add_argument("--val", default=None, help="data set for validation (default: first --data)")
    p.add_argument("--val-split", default="val", help="split of the validation set (default val)")
    p.add_argument("--val-limit", type=int, default=24, help="validate on at most N images")
    p.add_argument(
        "--val-noise", default="gaussian:25", help="noise for clean-only val images (fixed seed)"
    )
    p.add_argument(
        "--storage", required=True, metavar="RUN_URI", help="run folder (local or s3://)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODEL_NAMES, help="architecture")
    p.add_argument(
        "--model-args",
        default="{}",
        help="JSON keyword arguments for the model builder, e.g. '{\"widths\": [16, 32]}'",
    )
    p.add_argument("--init-from", default=None, help="warm start from a .keras model (any URI)")
    p.add_argument("--workers", type=int, default=1, help="data-parallel training workers")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="CPUs reserved per worker (default leaves one CPU of the cluster for data tasks)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1000)")
    budget.add_argument("--epochs", type=float, default=None, help="passes over the train split")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="also stop after this many minutes (checked at validation points); the "
        "learning-rate schedule still spans --steps/--epochs",
    )
    p.add_argument("--batch-size", type=int, default=16, help="global batch (split over workers)")
    p.add_argument("--patch", type=int, default=128, help="random crop size")
    p.add_argument(
        "--patches-per-image",
        type=int,
        default=8,
        help="patches cut from each decoded image per pass (default %(default)s): decoding "
        "dominates the data tasks' CPU, and each pass over the data starts a new Ray Data "
        "execution (about 10 s here), so longer passes keep the trainer fed",
    )
    p.add_argument(
        "--noise",
        default=DEFAULT_TRAINING_NOISE,
        help="noise for clean-only rows; specs joined by ';' are mixed (see denoise_core.noise; "
        "default %(default)s: phone-camera noise, blind Gaussian and the simple camera model)",
    )
    p.add_argument("--loss", choices=LOSSES, default="l1")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32, or bf16 (variables stay float32; about 3x the steps per minute on CPUs "
        "with AMX, 1.6x with AVX-512 BF16 only) or fp16 (GPUs)",
    )
    p.add_argument(
        "--clipnorm",
        type=float,
        default=None,
        help="clip the global gradient norm to this value (steadies bf16 at high lr)",
    )
    p.add_argument("--val-every", type=int, default=250, help="validate + checkpoint every N steps")
    p.add_argument("--keep", type=int, default=3, help="keep the best K checkpoints by val PSNR")
    p.add_argument("--max-failures", type=int, default=2, help="worker failures tolerated")
    p.add_argument(
        "--placement",
        choices=["PACK", "SPREAD", "STRICT_SPREAD"],
        default="PACK",
        help="where workers go: PACK fills a node first (default), SPREAD prefers "
        "different nodes, STRICT_SPREAD requires one node per worker",
    )
    resume = p.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint (refused when the run has none)",
    )
    resume.add_argument(
        "--resume-if-any",
        action="store_true",
        help="continue from the newest checkpoint if there is one, else start a new run: "
        "for submissions that are retried as they are (a RayJob's backoffLimit)",
    )
    p.add_argument(
        "--grow",
        action="store_true",
        help="with --init-from: build --model/--model-args (a bigger architecture with the "
        "same layer names, e.g. a unet with res_blocks) and copy the trained weights in",
    )
    p.add_argument("--no-augment", action="store_true", help="no random crops/flips (tests)")
    p.add_argument(
        "--color-augment",
        action="store_true",
        help="random channel order and saturation (x0.7..x2) for synthetic-noise rows: "
        "widens the colours of a small clean set such as CBSD432",
    )
    p.add_argument(
        "--color-clip",
        choices=["hard", "fit"],
        default="hard",
        help="with --color-augment: 'hard' clips chroma scaled out of [0, 1] (flat 0/1 "
        "channels), 'fit' limits the saturation boost to what keeps the patch in range",
    )
    p.add_argument(
        "--scale-augment",
        type=float,
        default=1.0,
        metavar="MIN",
        help="for synthetic-noise rows: shrink half the images by a random factor in "
        "[MIN, 1] before cropping (area averaging: cleaner targets, finer textures); "
        "1 (default) is off",
    )
    p.add_argument(
        "--dead-leaves",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the synthetic-noise samples drawn as dead-leaves images (random "
        "shapes of every size and saturated colour, denoise_core.synthetic) instead of "
        "cropped from the clean photos; 0 (default) is off",
    )
    p.add_argument("--seed", type=int, default=None, help="seed the data pipeline (deterministic)")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")
    p.add_argument("--fail-at-step", default=None, help=argparse.SUPPRESS)  # test hook "STEP:RANK"


# --------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------


def _build_model(config: dict):
    from denoise_core import models
    from denoise_core.inference import load_model_any

    if config.get("init_from") and config.get("grow"):
        # A bigger architecture that contains the trained one (new blocks start as
        # the identity): built under the global precision policy, weights copied in.
        model = models.build_model(config["model"], **config["model_args"])
        copied, fresh = models.transfer_weights(load_model_any(config["init_from"]), model)
        _say(f"train: grew {config['init_from']}: {copied} layers copied, {fresh} new")
        return model
    if config.get("init_from"):
        # A saved model pins each layer's dtype; re-policy it so --precision applies.
        return models.with_precision(load_model_any(config["init_from"]), config["precision"])
    return models.build_model(config["model"], **config["model_args"])


def _say(message: str) -> None:
    """Print a line from a train worker once.

    Ray Train V2 patches ``print`` to log to its logger *and*, when ``sys.stdout`` is
    not ``sys.__stdout__`` (Ray wraps it in every worker), to tee to the real print
    (ray#61075), so a plain ``print`` shows up twice. Writing to the original stream
    bypasses the patch; Ray still forwards the worker's stdout to the driver.
    """
    print(message, file=sys.__stdout__ or sys.stdout, flush=True)


def _maybe_inject_failure(config: dict, step: int, rank: int) -> None:
    """Test hook: rank R exits once at step S (a marker in the run folder makes it once)."""
    spec = config.get("fail_at_step")
    if not spec:
        return
    fail_step, fail_rank = (int(v) for v in spec.split(":"))
    marker = storage.join(config["storage"], FAIL_MARKER)
    if step == fail_step and rank == fail_rank and not storage.exists(marker):
        storage.write_bytes_atomic(marker, b"injected\n")
        _say(f"[test hook] rank {rank} exiting at step {step}")
        os._exit(1)


def _upload_dir(local: str, uri: str) -> None:
    fs, path = storage.open_fs(uri)
    if storage.is_remote_fs(fs):
        fs.put(local.rstrip("/") + "/", path, recursive=True)
    else:
        import shutil

        shutil.copytree(local, path, dirs_exist_ok=True)


def train_loop_per_worker(config: dict) -> None:
    """One data-parallel replica: stream batches, step, validate/checkpoint on rank 0."""
    import tensorflow as tf

    from denoise_core import training
    from denoise_core.inference import Denoiser, evaluate_pairs
    from denoise_core.valset import load_val_pairs

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if world > 1:  # where each replica runs: the first thing to check on a cluster
        node = ray.get_runtime_context().get_node_id()
        _say(f"worker {rank}/{world} on node {node} ({platform.node()})")
    threads = config.get("threads") or 0
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
    training.set_precision(config["precision"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    global_batch = config["batch_size"]
    local_batch = global_batch // world
    total_steps = config["steps"]

    with strategy.scope():
        model = _build_model(config)
        schedule = training.make_schedule(
            config["schedule"], config["lr"], total_steps, config["warmup_steps"]
        )
        optimizer = tf_optimizer(config, schedule)
        optimizer.build(model.trainable_variables)
        step, best = 0, {}
        checkpoint = ray.train.get_checkpoint()
        resume_dir = None
        if checkpoint is not None:
            resume_dir = checkpoint.to_directory()
        elif previous := _checkpoint_states(config["storage"]):
            # --resume starts from the run folder's newest checkpoint, and so does a restart
            # after a failure Ray holds no checkpoint for: Ray registers one only once every
            # worker's report reached the controller, and a worker that dies right after
            # reporting takes its report with it (the files were already uploaded).
            resume_dir = tempfile.mkdtemp(prefix="resume-")
            _download_dir(max(previous, key=lambda s: s[1]["step"])[0], resume_dir)
        if resume_dir:
            state = training.load_state(resume_dir, model, optimizer)
            step, best = state["step"], state.get("best", {})
            if rank == 0:
                _say(f"resumed at step {step} from checkpoint")
    train_step = training.make_train_step(strategy, model, optimizer, config["loss"], global_batch)

    val_pairs, tb_local, writer, denoiser = [], None, None, None
    if rank == 0:
        val_pairs = load_val_pairs(
            config["val_data"], config["val_split"], config["val_limit"], config["val_noise"]
        )
        tb_local = tempfile.mkdtemp(prefix="tb-")
        writer = tf.summary.create_file_writer(tb_local)
        # Same precision as training, so the denoiser wraps the live model, not a copy.
        denoiser = Denoiser(model, tile=config.get("val_tile", 512), precision=config["precision"])

    shard = ray.train.get_dataset_shard("train")
    deadline = time.time() + config["minutes"] * 60 if config.get("minutes") else None
    started, seen, window_start, window_steps, loss_sum = time.time(), 0, time.time(), 0, 0.0

    def batches():
        while True:
            empty = True
            for batch in shard.iter_batches(
                batch_size=local_batch,
                drop_last=True,
                batch_format="numpy",
                prefetch_batches=2,
                local_shuffle_buffer_size=None if config["no_augment"] else 8 * local_batch,
            ):
                empty = False
                yield batch
            if empty:  # a share smaller than one batch would loop here forever
                raise RuntimeError(f"worker {rank}: its share of the data holds no full batch")

    if step >= total_steps:  # resumed a run that already reached --steps
        if rank == 0:
            _say(f"nothing to do: step {step} already reached --steps {total_steps}")
        return
    for batch in batches():
        _maybe_inject_failure(config, step, rank)
        loss = float(train_step(tf.constant(batch["noisy"]), tf.constant(batch["clean"])))
        step += 1
        seen += global_batch
        window_steps += 1
        loss_sum += loss
        if step % config["val_every"] and step < total_steps:
            continue
        # Checked only here, where every worker stands at the same step: a collective
        # between validation points would deadlock workers whose clocks differ.
        out_of_time = deadline is not None and time.time() >= deadline
        if deadline is not None and world > 1:
            flag = strategy.reduce(
                tf.distribute.ReduceOp.SUM,  # no MAX in tf.distribute: any worker out of time
                strategy.run(lambda t=float(out_of_time): tf.constant(t)),
                axis=None,
            )
            out_of_time = bool(flag > 0)
        last = step >= total_steps or out_of_time
        rate = window_steps * global_batch / max(time.time() - window_start, 1e-9)
        metrics: dict[str, Any] = {
            "step": step,
            "loss": loss_sum / window_steps,
            "patches_per_s": rate,
            "lr": float(optimizer.learning_rate.numpy())
            if hasattr(optimizer, "learning_rate")
            else 0,
            "wall_s": time.time() - started,
        }
        ckpt = None
        if rank == 0:
            metrics.update(evaluate_pairs(denoiser, val_pairs))
            if not best or metrics["val_psnr"] > best.get("val_psnr", -1):
                best = {k: metrics[k] for k in ("step", "val_psnr", "val_ssim")}
            metrics["best_val_psnr"] = best["val_psnr"]
            with writer.as_default(step=step):
                for k in ("loss", "val_psnr", "val_ssim", "patches_per_s", "lr"):
                    tf.summary.scalar(k, metrics[k])
            writer.flush()
            _upload_dir(tb_local, storage.join(config["storage"], TB_DIR))
            _say(
                f"step {step}/{total_steps}  loss {metrics['loss']:.4f}  "
                f"val PSNR {metrics['val_psnr']:.2f} dB (noisy {metrics['val_noisy_psnr']:.2f})  "
                f"SSIM {metrics['val_ssim']:.4f}  {rate:.1f} patches/s"
            )
            ckpt_dir = tempfile.mkdtemp(prefix="ckpt-")
            training.save_state(
                ckpt_dir,
                model,
                optimizer,
                {**{k: v for k, v in metrics.items()}, "best": best, "total_steps": total_steps},
            )
            ckpt = ray.train.Checkpoint.from_directory(ckpt_dir)
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"checkpoint_{step:08d}")
        window_start, window_steps, loss_sum = time.time(), 0, 0.0
        if last:
            break


def tf_optimizer(config: dict, schedule):
    import keras

    optimizer = keras.optimizers.Adam(
        learning_rate=schedule, global_clipnorm=config.get("clipnorm") or None
    )
    if config["precision"] == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _download_dir(uri: str, local: str) -> None:
    fs, path = storage.open_fs(uri)
    fs.get(path.rstrip("/") + "/", local, recursive=True)


# --------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------


def _parse_data_args(values: list[str]) -> list[tuple[str, float]]:
    out = []
    for v in values:
        uri, _, weight = v.rpartition("@") if "@" in v.rsplit("/", 1)[-1] else (v, "", "")
        out.append((uri, float(weight) if weight else 1.0))
    return out


def _checkpoint_states(run_uri: str) -> list[tuple[str, dict]]:
    """(URI, state) of every checkpoint in the run, from every attempt."""
    fs, path = storage.open_fs(storage.join(run_uri, RAY_DIR))
    fs.invalidate_cache()  # Ray workers wrote the checkpoints: never trust a cached listing
    if not fs.exists(path):
        return []
    found = []
    for state_path in fs.glob(f"{path.rstrip('/')}/*/checkpoint_*/{STATE_FILE}"):
        with fs.open(state_path, "rb") as f:
            state = json.load(f)
        found.append((storage.protocol_uri(fs, state_path.rsplit("/", 1)[0]), state))
    return found


def _next_attempt(run_uri: str) -> str:
    fs, path = storage.open_fs(storage.join(run_uri, RAY_DIR))
    fs.invalidate_cache()
    existing = fs.glob(f"{path.rstrip('/')}/attempt-*") if fs.exists(path) else []
    return f"attempt-{len(existing) + 1:03d}"


def build_train_dataset(datasets: list[tuple[str, float]], config: dict):
    """Ray Data pipeline: weighted union of train splits -> decoded, augmented patches."""
    from denoise_core.patches import PatchSampler

    parts, rows = [], []
    for uri, _ in datasets:
        files = manifest.split_files(uri, "train")
        if not files:
            raise ValueError(f"{uri} has no train rows")
        parts.append(ray.data.read_parquet(files).select_columns(["key", "noisy", "clean"]))
        rows.append(manifest.read_manifest(uri)["splits"]["train"]["rows"])
    total_weight = sum(w for _, w in datasets)
    # Repeat each set so its share of an epoch matches its weight (smallest share ≥ 1 copy).
    shares = [w / total_weight for _, w in datasets]
    base = max(r / s for r, s in zip(rows, shares))
    mixed = None
    for ds, r, s in zip(parts, rows, shares):
        copies = max(1, round(base * s / r))
        for _ in range(copies):
            mixed = ds if mixed is None else mixed.union(ds)
    if len(parts) > 1 and not config["no_augment"]:
        mixed = mixed.randomize_block_order()

    sampler_args = (
        config["patch"],
        config["noise"],
        not config["no_augment"],
        config["seed"],
        config.get("patches_per_image", 1),
        bool(config.get("color_augment")) and not config["no_augment"],
        config.get("color_clip", "hard"),
        config.get("scale_augment", 1.0),
        config.get("dead_leaves", 0.0),
    )

    def sample(batch):
        return PatchSampler(*sampler_args)(batch)

    rows_per_epoch = sum(max(1, round(base * s / r)) * r for r, s in zip(rows, shares))
    patches_per_epoch = rows_per_epoch * config.get("patches_per_image", 1)
    return mixed.map_batches(sample, batch_size=32, batch_format="numpy"), patches_per_epoch


def _default_cpus_per_worker(workers: int) -> float:
    total = ray.cluster_resources().get("CPU", 1.0)
    return max(0.25, min(1.0, (total - 1.0) / workers))


def _hardware() -> dict:
    model_name = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        model_name = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            model_name,
        )
    except (OSError, subprocess.SubprocessError):
        pass
    resources = ray.cluster_resources()
    return {
        "cpu_model": model_name,
        "cluster_cpus": resources.get("CPU"),
        "gpus": resources.get("GPU", 0),
    }


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def export_best(run_uri: str, card: dict) -> dict:
    """Best checkpoint by val PSNR -> RUN/model/{model.keras, saved_model/, model_card.json}."""
    from denoise_core import models
    from denoise_core.training import MODEL_FILE

    states = _checkpoint_states(run_uri)
    if not states:
        raise RuntimeError(f"no checkpoint found under {run_uri}")
    best_uri, best_state = max(states, key=lambda s: s[1].get("val_psnr", float("-inf")))
    latest_uri, latest_state = max(states, key=lambda s: s[1]["step"])
    with tempfile.TemporaryDirectory() as tmp:
        local_model = os.path.join(tmp, MODEL_FILE)
        with open(local_model, "wb") as f:
            f.write(storage.read_bytes(storage.join(best_uri, MODEL_FILE)))
        # Exported in float32: a bf16-trained checkpoint pins bf16 layers, and the
        # inference side chooses its own precision (denoise run --precision).
        model = models.with_precision(models.load_model(local_model), "fp32")
        model.save(local_model)
        info = models.model_info(model)
        storage.write_bytes_atomic(
            storage.join(run_uri, MODEL_DIR, MODEL_FILE), open(local_model, "rb").read()
        )
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        _upload_dir(saved, storage.join(run_uri, MODEL_DIR, "saved_model"))
    card = {
        **card,
        "architecture": {"name": model.name, **info},
        "steps": latest_state["step"],
        "best_checkpoint": best_uri,
        "best": {k: best_state.get(k) for k in ("step", "val_psnr", "val_ssim", "val_noisy_psnr")},
        "last": {k: latest_state.get(k) for k in ("step", "val_psnr", "val_ssim", "loss")},
    }
    storage.write_bytes_atomic(
        storage.join(run_uri, MODEL_DIR, "model_card.json"),
        json.dumps(card, indent=2, sort_keys=True).encode(),
    )
    return card


def check_arguments(args: argparse.Namespace) -> str | None:
    """Why the numbers given cannot train, or None. Checked before Ray starts: a zero or
    negative count used to train the default 1000 steps or fail deep inside Ray, and a
    negative learning rate trained and exported a broken model with exit status 0."""
    positive = (
        "steps", "epochs", "batch_size", "patch", "patches_per_image", "val_every", "keep",
        "workers", "val_limit", "minutes", "clipnorm", "cpus_per_worker",
    )  # fmt: skip
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and not value > 0:  # also refuses NaN
            return f"--{name.replace('_', '-')} must be positive, got {value:g}"
    if not (math.isfinite(args.lr) and args.lr > 0):
        return f"--lr must be a positive finite number, got {args.lr:g}"
    for name in ("warmup_steps", "gpus_per_worker", "max_failures"):
        value = getattr(args, name)
        if not value >= 0:
            return f"--{name.replace('_', '-')} must not be negative, got {value:g}"
    if not 0.0 < args.scale_augment <= 1.0:
        return f"--scale-augment must be in (0, 1], got {args.scale_augment:g}"
    if not 0.0 <= args.dead_leaves <= 1.0:
        return f"--dead-leaves must be in [0, 1], got {args.dead_leaves:g}"
    return None


def run(args: argparse.Namespace) -> int:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    start = time.time()
    message = check_arguments(args)
    if message:
        return fail(message)
    args.data = [storage.absolute(d) for d in args.data]
    args.storage = storage.absolute(args.storage)
    args.val = storage.absolute(args.val) if args.val else None
    args.init_from = storage.absolute(args.init_from) if args.init_from else None
    message = preflight.check_remote_reachable(
        [d.rsplit("@", 1)[0] for d in args.data] + [args.storage, args.val, args.init_from]
    )
    if message:
        return fail(message)
    if args.grow and not args.init_from:
        return fail("--grow needs --init-from (the trained model to grow)")
    if args.batch_size % args.workers:
        return fail(f"--batch-size {args.batch_size} must be divisible by --workers {args.workers}")
    try:
        datasets = _parse_data_args(args.data)
        manifests = {uri: manifest.read_manifest(uri) for uri, _ in datasets}
        val_uri = args.val or datasets[0][0]
        val_manifest = manifests.get(val_uri) or manifest.read_manifest(val_uri)
        if args.val_split not in val_manifest["splits"]:
            return fail(f"{val_uri} has no split {args.val_split!r}; pass --val or --val-split")
        model_args = json.loads(args.model_args)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return fail(str(exc))

    previous = _checkpoint_states(args.storage)
    if previous and not (args.resume or args.resume_if_any):
        return fail(
            f"{args.storage} already holds a run; pass --resume or choose another --storage"
        )
    if args.resume and not previous:
        return fail(
            f"--resume: no checkpoint under {args.storage} to resume from; drop --resume to "
            "start a new run there (--resume-if-any does either)"
        )
    resume_from = max(previous, key=lambda s: s[1]["step"])[0] if previous else None

    init_ray(args.address)
    ds, epoch_patches = build_train_dataset(
        datasets,
        {
            "patch": args.patch,
            "noise": args.noise,
            "no_augment": args.no_augment,
            "seed": args.seed,
            "patches_per_image": args.patches_per_image,
            "color_augment": args.color_augment,
            "color_clip": args.color_clip,
            "scale_augment": args.scale_augment,
            "dead_leaves": args.dead_leaves,
        },
    )
    if epoch_patches < args.batch_size:
        # Each worker would loop over its share forever without filling one batch.
        return fail(
            f"the train data gives {epoch_patches} patches per pass, fewer than "
            f"--batch-size {args.batch_size}"
        )
    if args.epochs is not None:
        steps = max(1, math.ceil(args.epochs * epoch_patches / args.batch_size))
    else:
        steps = args.steps or 1000
    cpus = args.cpus_per_worker or _default_cpus_per_worker(args.workers)
    nproc = os.cpu_count() or 1
    config = {
        "model": args.model,
        "model_args": model_args,
        "init_from": args.init_from,
        "grow": args.grow,
        "storage": args.storage,
        "steps": steps,
        "minutes": args.minutes,
        "batch_size": args.batch_size,
        "loss": args.loss,
        "lr": args.lr,
        "schedule": args.schedule,
        "warmup_steps": args.warmup_steps,
        "precision": args.precision,
        "clipnorm": args.clipnorm,
        "val_every": args.val_every,
        "val_data": val_uri,
        "val_split": args.val_split,
        "val_limit": args.val_limit,
        "val_noise": args.val_noise,
        "no_augment": args.no_augment,
        "resume_from": resume_from,
        "fail_at_step": args.fail_at_step,
        "threads": max(1, nproc // args.workers) if args.gpus_per_worker == 0 else 0,
    }
    pa_fs, pa_path = storage.pyarrow_filesystem(storage.join(args.storage, RAY_DIR))
    storage.makedirs(storage.join(args.storage, RAY_DIR))
    resources = {"CPU": cpus}
    if args.gpus_per_worker:
        resources["GPU"] = args.gpus_per_worker
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=args.workers,
            use_gpu=args.gpus_per_worker > 0,
            resources_per_worker=resources,
            placement_strategy=args.placement,
        ),
        run_config=RunConfig(
            name=_next_attempt(args.storage),
            storage_path=pa_path,
            storage_filesystem=pa_fs,
            checkpoint_config=CheckpointConfig(
                num_to_keep=args.keep,
                checkpoint_score_attribute="val_psnr",
                checkpoint_score_order="max",
            ),
            failure_config=FailureConfig(max_failures=args.max_failures),
            logging_config=LoggingConfig(log_level=quiet.train_log_level()),
        ),
        datasets={"train": ds},
    )
    print(
        f"train: {args.model if not args.init_from else args.init_from} on "
        f"{', '.join(u for u, _ in datasets)}, {args.workers} worker(s) × {cpus:g} CPU, "
        f"{steps} steps{f' or {args.minutes:g} min' if args.minutes else ''}"
        f"{', resuming from ' + resume_from if resume_from else ''}",
        flush=True,
    )
    trainer.fit()
    wall = time.time() - start
    if getattr(args, "argv", None) is not None:  # main(argv): the arguments it was given
        command = shlex.join(["denoise", "train", *args.argv])
    elif os.path.basename(sys.argv[0]) == "denoise":
        command = shlex.join(["denoise", "train", *sys.argv[2:]])
    else:
        command = shlex.join([sys.executable, *sys.argv])
    card = {
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": [
            {
                "uri": u,
                "weight": w,
                "layout": manifests[u].get("layout"),
                "source": manifests[u].get("source"),
                "rows": {k: v["rows"] for k, v in manifests[u]["splits"].items()},
            }
            for u, w in datasets
        ],
        "validation": {
            "uri": val_uri,
            "split": args.val_split,
            "limit": args.val_limit,
            "noise": args.val_noise,
        },
        "training": {
            k: config[k] for k in ("batch_size", "loss", "lr", "schedule", "precision", "clipnorm")
        }
        | {
            "patch": args.patch,
            "patches_per_image": args.patches_per_image,
            "color_augment": args.color_augment,
            "color_clip": args.color_clip if args.color_augment else None,
            "scale_augment": args.scale_augment,
            "dead_leaves": args.dead_leaves,
            "noise": args.noise,
            "workers": args.workers,
            "init_from": args.init_from,
            "grow": args.grow,
            "resumed_from": resume_from,
        }
        | (
            {"model": args.model, "model_args": model_args}
            if args.grow or not args.init_from
            else {}
        ),
        "wall_time_s": round(wall, 1),
        "hardware": _hardware(),
        "git_commit": _git_commit(),
    }
    card = export_best(args.storage, card)
    print(
        f"train: {card['steps']} steps in {wall / 60:.1f} min; best val PSNR "
        f"{card['best']['val_psnr']:.2f} dB (SSIM {card['best']['val_ssim']:.4f}) at step "
        f"{card['best']['step']} -> {storage.join(args.storage, MODEL_DIR, 'model.keras')}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("train", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
