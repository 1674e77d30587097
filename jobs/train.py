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
import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
from typing import Any

import ray

from denoise_core import manifest, model_file, run_folder, storage
from denoise_core.noise import DEFAULT_TRAINING_NOISE
from denoise_core.precision import PRECISIONS
from denoise_core.run_folder import MODEL_DIR, MODEL_FILE, RAY_DIR, TB_DIR  # noqa: F401
from denoise_core.train_config import (
    COLOR_CLIPS,
    DEFAULT_STEPS,
    LOSSES,
    PLACEMENTS,
    SCHEDULES,
    VAL_TILE,
    ConfigError,
    TrainConfig,
)
from jobs import preflight, quiet
from jobs.common import fail, init_ray, job_main

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
    p.add_argument(
        "--val",
        action="append",
        metavar="URI[#SPLIT]",
        help="data set to validate on (repeat to validate on several, e.g. clean photos with "
        "--val-noise and held-out real pairs: the export is the checkpoint with the best mean "
        "PSNR over all their images, each set also logged alone; default: first --data)",
    )
    p.add_argument(
        "--val-split", default="val", help="split of a --val set given without #SPLIT (default val)"
    )
    p.add_argument("--val-limit", type=int, default=24, help="validate on at most N images per set")
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
    p.add_argument(
        "--init-from",
        default=None,
        help="warm start from a .keras model (any URI) or a packaged tier (default, fast)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL",
        help="distil from this model (a .keras URI or a packaged tier: default, fast): "
        "each patch's loss mixes the clean target with the teacher's output (a small "
        "student's usual recipe); the teacher runs on every batch, so steps cost more",
    )
    p.add_argument(
        "--teacher-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="with --teacher: the loss is (1 - W) * loss(clean) + W * loss(teacher output), "
        "W in (0, 1] (default %(default)s)",
    )
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
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="l1",
        help="per-patch loss (psnr: -PSNR in dB, so every patch counts by its dB as the "
        "benchmark averages them; default %(default)s)",
    )
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
        choices=PLACEMENTS,
        default="PACK",
        help="where workers go: PACK fills a node first (default), SPREAD prefers "
        "different nodes, STRICT_SPREAD requires one node per worker",
    )
    resume = p.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint, with the run's own architecture "
        "(refused when the run has none)",
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
        choices=COLOR_CLIPS,
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


def _build_model(cfg: TrainConfig, resume_dir: str | None = None):
    """The model to train: a resumed run's own architecture (from its checkpoint, whatever
    --model or --init-from the resuming command names), else --init-from or --model."""
    from denoise_core import models
    from denoise_core.inference import load_model_any

    if resume_dir:
        saved = models.load_model(os.path.join(resume_dir, MODEL_FILE))
        return models.with_precision(saved, cfg.precision)
    if cfg.init_from and cfg.grow:
        # A bigger architecture that contains the trained one (new blocks start as
        # the identity): built under the global precision policy, weights copied in.
        model = models.build_model(cfg.model, **cfg.model_args)
        copied, fresh = models.transfer_weights(load_model_any(cfg.init_from), model)
        _say(f"train: grew {cfg.init_from}: {copied} layers copied, {fresh} new")
        return model
    if cfg.init_from:
        # A saved model pins each layer's dtype; re-policy it so --precision applies.
        return models.with_precision(load_model_any(cfg.init_from), cfg.precision)
    return models.build_model(cfg.model, **cfg.model_args)


def _load_teacher(cfg: TrainConfig):
    """The frozen teacher for distillation (None without --teacher), computing in the
    run's precision like the student."""
    if not cfg.teacher:
        return None
    from denoise_core import models
    from denoise_core.inference import load_model_any

    return models.as_teacher(load_model_any(cfg.teacher), cfg.precision)


def _say(message: str) -> None:
    """Print a line from a train worker once.

    Ray Train V2 patches ``print`` to log to its logger *and*, when ``sys.stdout`` is
    not ``sys.__stdout__`` (Ray wraps it in every worker), to tee to the real print
    (ray#61075), so a plain ``print`` shows up twice. Writing to the original stream
    bypasses the patch; Ray still forwards the worker's stdout to the driver.
    """
    print(message, file=sys.__stdout__ or sys.stdout, flush=True)


def _maybe_inject_failure(cfg: TrainConfig, step: int, rank: int) -> None:
    """Test hook: rank R exits once at step S (a marker in the run folder makes it once)."""
    if not cfg.fail_at_step:
        return
    fail_step, fail_rank = (int(v) for v in cfg.fail_at_step.split(":"))
    marker = storage.join(cfg.storage, FAIL_MARKER)
    if step == fail_step and rank == fail_rank and not storage.exists(marker):
        storage.write_bytes_atomic(marker, b"injected\n")
        _say(f"[test hook] rank {rank} exiting at step {step}")
        os._exit(1)


def train_loop_per_worker(loop_config: dict) -> None:
    """One data-parallel replica: stream batches, step, validate/checkpoint on rank 0."""
    import tensorflow as tf

    from denoise_core import training
    from denoise_core.inference import Denoiser, evaluate_sets
    from denoise_core.valset import load_val_pairs, val_set_names

    cfg: TrainConfig = loop_config["config"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if world > 1:  # where each replica runs: the first thing to check on a cluster
        node = ray.get_runtime_context().get_node_id()
        _say(f"worker {rank}/{world} on node {node} ({platform.node()})")
    if cfg.threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, cfg.threads // 2))
    training.set_precision(cfg.precision)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    global_batch = cfg.batch_size
    local_batch = global_batch // world
    total_steps = cfg.steps

    checkpoint = ray.train.get_checkpoint()
    resume_dir = None
    if checkpoint is not None:
        resume_dir = checkpoint.to_directory()
    elif previous := run_folder.checkpoint_states(cfg.storage):
        # --resume starts from the run folder's newest checkpoint, and so does a restart
        # after a failure Ray holds no checkpoint for: Ray registers one only once every
        # worker's report reached the controller, and a worker that dies right after
        # reporting takes its report with it (the files were already uploaded).
        resume_dir = tempfile.mkdtemp(prefix="resume-")
        run_folder.download_dir(run_folder.choose(previous, "last")[0], resume_dir)

    with strategy.scope():
        model = _build_model(cfg, resume_dir)
        schedule = training.make_schedule(cfg.schedule, cfg.lr, total_steps, cfg.warmup_steps)
        optimizer = tf_optimizer(cfg, schedule)
        optimizer.build(model.trainable_variables)
        step, best = 0, {}
        if resume_dir:
            state = training.restore_optimizer(resume_dir, model, optimizer)  # model: its own
            step, best = state["step"], state.get("best", {})
            if rank == 0:
                _say(f"resumed at step {step} from checkpoint")
        teacher = _load_teacher(cfg)
    train_step = training.make_train_step(
        strategy, model, optimizer, cfg.loss, global_batch, teacher, cfg.teacher_weight
    )

    val_sets, tb_local, writer, denoiser = {}, None, None, None
    if rank == 0:
        val_sets = {
            name: load_val_pairs(uri, split, cfg.val_limit, cfg.val_noise)
            for name, (uri, split) in zip(val_set_names(cfg.val_sets), cfg.val_sets)
        }
        tb_local = tempfile.mkdtemp(prefix="tb-")
        writer = tf.summary.create_file_writer(tb_local)
        # Same precision as training, so the denoiser wraps the live model, not a copy.
        denoiser = Denoiser(model, tile=VAL_TILE, precision=cfg.precision)

    shard = ray.train.get_dataset_shard("train")
    deadline = time.time() + cfg.minutes * 60 if cfg.minutes else None
    started, seen, window_start, window_steps, loss_sum = time.time(), 0, time.time(), 0, 0.0

    def batches():
        while True:
            empty = True
            for batch in shard.iter_batches(
                batch_size=local_batch,
                drop_last=True,
                batch_format="numpy",
                prefetch_batches=2,
                local_shuffle_buffer_size=8 * local_batch if cfg.sampler.augment else None,
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
        _maybe_inject_failure(cfg, step, rank)
        loss = float(train_step(tf.constant(batch["noisy"]), tf.constant(batch["clean"])))
        step += 1
        seen += global_batch
        window_steps += 1
        loss_sum += loss
        if step % cfg.val_every and step < total_steps:
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
            metrics.update(evaluate_sets(denoiser, val_sets))
            if not best or metrics["val_psnr"] > best.get("val_psnr", -1):
                best = {k: metrics[k] for k in ("step", "val_psnr", "val_ssim")}
            metrics["best_val_psnr"] = best["val_psnr"]
            per_set = {k: v for k, v in metrics.items() if k.startswith("val_psnr/")}
            with writer.as_default(step=step):
                for k in ("loss", "val_psnr", "val_ssim", "patches_per_s", "lr", *per_set):
                    tf.summary.scalar(k, metrics[k])
            writer.flush()
            run_folder.upload_dir(tb_local, storage.join(cfg.storage, TB_DIR))
            _say(
                f"step {step}/{total_steps}  loss {metrics['loss']:.4f}  "
                f"val PSNR {metrics['val_psnr']:.2f} dB (noisy {metrics['val_noisy_psnr']:.2f})  "
                f"SSIM {metrics['val_ssim']:.4f}  {rate:.1f} patches/s"
                + "".join(f"\n    {k.partition('/')[2]}: {v:.2f} dB" for k, v in per_set.items())
            )
            ckpt_dir = tempfile.mkdtemp(prefix="ckpt-")
            training.save_state(
                ckpt_dir,
                model,
                optimizer,
                {**{k: v for k, v in metrics.items()}, "best": best, "total_steps": total_steps},
            )
            ckpt = ray.train.Checkpoint.from_directory(ckpt_dir)
        ray.train.report(
            metrics, checkpoint=ckpt, checkpoint_dir_name=run_folder.checkpoint_name(step)
        )
        window_start, window_steps, loss_sum = time.time(), 0, 0.0
        if last:
            break


def tf_optimizer(cfg: TrainConfig, schedule):
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=cfg.clipnorm)
    if cfg.precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# --------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------


def build_train_dataset(cfg: TrainConfig):
    """Ray Data pipeline: weighted union of train splits -> decoded, augmented patches."""
    from denoise_core.patches import PatchSampler

    parts, rows = [], []
    for uri, _ in cfg.data:
        files = manifest.split_files(uri, "train")
        if not files:
            raise ValueError(f"{uri} has no train rows")
        parts.append(ray.data.read_parquet(files).select_columns(["key", "noisy", "clean"]))
        rows.append(manifest.read_manifest(uri)["splits"]["train"]["rows"])
    total_weight = sum(w for _, w in cfg.data)
    # Repeat each set so its share of an epoch matches its weight (smallest share ≥ 1 copy).
    shares = [w / total_weight for _, w in cfg.data]
    base = max(r / s for r, s in zip(rows, shares))
    mixed = None
    for ds, r, s in zip(parts, rows, shares):
        copies = max(1, round(base * s / r))
        for _ in range(copies):
            mixed = ds if mixed is None else mixed.union(ds)
    if len(parts) > 1 and cfg.sampler.augment:
        mixed = mixed.randomize_block_order()

    sampler_config = cfg.sampler  # only the sampler's own frozen part travels to the tasks

    def sample(batch):
        return PatchSampler(sampler_config)(batch)

    rows_per_epoch = sum(max(1, round(base * s / r)) * r for r, s in zip(rows, shares))
    patches_per_epoch = rows_per_epoch * cfg.sampler.patches_per_image
    return mixed.map_batches(sample, batch_size=32, batch_format="numpy"), patches_per_epoch


def _default_cpus_per_worker(workers: int) -> float:
    total = ray.cluster_resources().get("CPU", 1.0)
    return max(0.25, min(1.0, (total - 1.0) / workers))


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """Every URI of ``cfg`` made absolute (workers run elsewhere, in other folders)."""
    return dataclasses.replace(
        cfg,
        data=tuple((storage.absolute(u), w) for u, w in cfg.data),
        storage=storage.absolute(cfg.storage),
        val_sets=tuple((storage.absolute(u), split) for u, split in cfg.val_sets),
        init_from=storage.absolute(cfg.init_from) if cfg.init_from else None,
        teacher=storage.absolute(cfg.teacher) if cfg.teacher else None,
    )


def resolve_datasets(cfg: TrainConfig) -> tuple[dict[str, dict], str | None]:
    """The manifest of every ``--data`` set, or why the sets cannot train: each must be a
    folder ``denoise ingest`` finished (its ``_manifest.json``) with a train split, and
    every ``--val`` set must hold its split."""
    try:
        manifests = {uri: manifest.read_manifest(uri) for uri in cfg.data_uris}
        for uri, m in manifests.items():
            if "train" not in m["splits"]:
                return manifests, f"{uri} has no train split (splits: {', '.join(m['splits'])})"
        for uri, split in cfg.val_sets:
            val_manifest = manifests.get(uri) or manifest.read_manifest(uri)
            if split not in val_manifest["splits"]:
                return manifests, (
                    f"{uri} has no split {split!r} (splits: {', '.join(val_manifest['splits'])});"
                    " pass --val URI#SPLIT or --val-split"
                )
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return {}, str(exc)
    return manifests, None


def run(args: argparse.Namespace) -> int:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from denoise_core import weights

    start = time.time()
    try:
        args.init_from = weights.resolve_model(args.init_from)  # default|fast: a packaged tier
        args.teacher = weights.resolve_model(args.teacher)
    except weights.NoPackagedModel as exc:
        return fail(str(exc))
    try:
        cfg = _absolute(TrainConfig.from_args(args))  # the one place arguments are checked
    except ConfigError as exc:
        return fail(exc.flag_message)
    message = preflight.check_remote_reachable(
        [*cfg.data_uris, cfg.storage, *(u for u, _ in cfg.val_sets), cfg.init_from, cfg.teacher]
    ) or model_file.missing_model_file({"--init-from": cfg.init_from, "--teacher": cfg.teacher})
    if message:
        return fail(message)
    manifests, message = resolve_datasets(cfg)
    if message:
        return fail(message)

    previous = run_folder.checkpoint_states(cfg.storage)
    if previous and not (cfg.resume or cfg.resume_if_any):
        return fail(f"{cfg.storage} already holds a run; pass --resume or choose another --storage")
    if cfg.resume and not previous:
        return fail(
            f"--resume: no checkpoint under {cfg.storage} to resume from; drop --resume to "
            "start a new run there (--resume-if-any does either)"
        )
    resume_from = run_folder.choose(previous, "last")[0] if previous else None

    init_ray(args.address)
    ds, epoch_patches = build_train_dataset(cfg)
    if epoch_patches < cfg.batch_size:
        # Each worker would loop over its share forever without filling one batch.
        return fail(
            f"the train data gives {epoch_patches} patches per pass, fewer than "
            f"--batch-size {cfg.batch_size}"
        )
    if cfg.epochs is not None:
        steps = max(1, math.ceil(cfg.epochs * epoch_patches / cfg.batch_size))
    else:
        steps = cfg.steps or DEFAULT_STEPS
    cpus = cfg.cpus_per_worker or _default_cpus_per_worker(cfg.workers)
    nproc = os.cpu_count() or 1
    threads = max(1, nproc // cfg.workers) if cfg.gpus_per_worker == 0 else 0
    cfg = dataclasses.replace(cfg, steps=steps, cpus_per_worker=cpus, threads=threads)
    attempts = storage.join(cfg.storage, RAY_DIR)
    pa_fs, pa_path = storage.pyarrow_filesystem(attempts)
    storage.makedirs(attempts)
    resources = {"CPU": cpus}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers,
            use_gpu=cfg.gpus_per_worker > 0,
            resources_per_worker=resources,
            placement_strategy=cfg.placement,
        ),
        run_config=RunConfig(
            name=run_folder.next_attempt(cfg.storage),
            storage_path=pa_path,
            storage_filesystem=pa_fs,
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.keep,
                checkpoint_score_attribute="val_psnr",
                checkpoint_score_order="max",
            ),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            logging_config=LoggingConfig(log_level=quiet.train_log_level()),
        ),
        datasets={"train": ds},
    )
    distil = (
        f", distilling from {cfg.teacher} (weight {cfg.teacher_weight:g})" if cfg.teacher else ""
    )
    # A resumed run trains its checkpoint's model, whatever --model names.
    what = "the run's model" if resume_from else cfg.init_from or cfg.model
    print(
        f"train: {what} on {', '.join(cfg.data_uris)}, "
        f"{cfg.workers} worker(s) × {cpus:g} CPU, "
        f"{steps} steps{f' or {cfg.minutes:g} min' if cfg.minutes else ''}"
        f"{distil}"
        f"{', resuming from ' + resume_from if resume_from else ''}",
        flush=True,
    )
    try:
        trainer.fit()
    except SystemExit:
        # Ray Train swaps in its own Ctrl-C handler during fit: it aborts the run and the
        # driver's wait then ends in SystemExit(1) (or its handler's sys.exit(0)), with
        # nothing printed; it is the user's Ctrl-C: one line, status 130 (run_guarded).
        raise KeyboardInterrupt from None
    wall = time.time() - start
    card = run_folder.base_card(
        command=run_folder.command_line(["denoise", "train"], getattr(args, "argv", None)),
        data=[
            {
                "uri": u,
                "weight": w,
                "layout": manifests[u].get("layout"),
                "source": manifests[u].get("source"),
                "rows": {k: v["rows"] for k, v in manifests[u]["splits"].items()},
            }
            for u, w in cfg.data
        ],
        validation={
            "sets": [{"uri": u, "split": split} for u, split in cfg.val_sets],
            "limit": cfg.val_limit,
            "noise": cfg.val_noise,
            "note": "the export is the checkpoint with the best mean PSNR over every image of "
            "every set (at most limit per set); clean-only sets get the noise, fixed per image",
        },
        training={**cfg.card(), "resumed_from": resume_from},
        wall_time_s=round(wall, 1),
        hardware=run_folder.hardware(
            cluster_cpus=ray.cluster_resources().get("CPU"),
            gpus=ray.cluster_resources().get("GPU", 0),
        ),
    )
    card = run_folder.export_best(cfg.storage, card)
    print(
        f"train: {card['steps']} steps in {wall / 60:.1f} min; best val PSNR "
        f"{card['best']['val_psnr']:.2f} dB (SSIM {card['best']['val_ssim']:.4f}) at step "
        f"{card['best']['step']} -> {run_folder.exported_model_uri(cfg.storage)}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("train", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
