"""``denoise run INPUT OUTPUT``: denoise a folder, a bucket prefix or an ingested data set.

Run as ``python -m jobs.run INPUT OUTPUT …`` under ``ray job submit`` or through the
``denoise`` CLI. This module parses the arguments, checks that storage answers and
wires Ray Data; everything else is :mod:`denoise_core.bulk`: the settings, the plan
(one small work row per image: keys and URIs only), the per-image work and the run's
sequence (:func:`denoise_core.bulk.runner.run`), which writes ``metrics.parquet``,
``errors.parquet``, ``summary.json`` and ``report.html``.

Two pipelines (:func:`denoise_core.bulk.choose_pipeline`): fused, where one actor
per model reads, decodes, denoises, encodes, writes and scores each image, and
split, where decode and finish run in CPU workers and the actors only denoise.

Re-running skips images whose output exists (their metrics are recomputed from
the existing file); ``--overwrite`` denoises them again.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import Any

from denoise_core import bulk, codecs
from denoise_core.bulk import runner
from denoise_core.precision import INFERENCE_PRECISIONS
from jobs import preflight
from jobs.common import fail, init_ray, job_main, raise_if_interrupted


def _positive_megapixels(text: str) -> float:
    """``--max-megapixels`` as a number above zero, else argparse's one-line error."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of megapixels, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        metavar="INPUT",
        help="folder or s3:// prefix of images (searched recursively; png, jpg, tif, bmp, "
        "webp), or a Parquet data set written by `denoise ingest`",
    )
    p.add_argument(
        "output", metavar="OUTPUT", help="folder or s3:// prefix for results (keys mirror INPUT)"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="Keras .keras model (local or s3://), or a packaged tier: 'default' (the "
        "default when --model is not given) or 'fast' (about 1/8 of the default's FLOPs per "
        "megapixel, for CPUs without bf16; less quality); 'identity': "
        "a null model that returns its input without loading TensorFlow, to measure the "
        "pipeline's own ceiling; 'identity:R': the same after sleeping MP/R seconds per image "
        "(an accelerator at R MP/s that costs no CPU)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="URI",
        help="ground truth with the same relative keys (extension may differ); default: "
        "pairs found in INPUT (SIDD, *_noisy/*_clean, noisy/ + clean/) or the data set's",
    )
    p.add_argument(
        "--layout",
        choices=("auto", "sidd", "pairs", "none"),
        default="auto",
        help="how to find ground truth inside INPUT; 'none' denoises every image",
    )
    p.add_argument(
        "--format",
        default=bulk.KEEP_FORMAT,
        metavar="EXT",
        help="output format: keep (default: each input's own format), png, tif, jpg, webp, "
        "bmp, heic, avif",
    )
    p.add_argument(
        "--jpeg-quality",
        type=int,
        default=95,
        metavar="Q",
        help="JPEG output quality, 0-100 (default 95)",
    )
    p.add_argument(
        "--heic-quality",
        type=int,
        default=codecs.DEFAULT_HEIC_QUALITY,
        metavar="Q",
        help=f"HEIC/HEIF output quality, 0-100 (default {codecs.DEFAULT_HEIC_QUALITY}); 8-bit "
        "inputs are written 8-bit, deeper ones (16-bit PNG/TIFF, 10-bit HEIC) 10-bit",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="how much noise to remove, in [0, 1]: 1 (default) is the model's output, 0 the "
        "input unchanged, between blends output*S + input*(1-S) before rounding",
    )
    p.add_argument(
        "--skip-below",
        type=float,
        default=None,
        metavar="SIGMA",
        help="copy images whose estimated noise sigma (0-255 scale, wavelet MAD, in "
        "metrics.parquet as noise_sigma_in) is below SIGMA through unchanged instead of "
        "denoising them (bytes as they are when the output keeps the input's format); "
        "recorded with skipped_reason. Default: denoise every image",
    )
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per model actor (may be < 1)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="model actors (default: GPUs / --gpus with GPUs, else one per node; with "
        "--model identity fused, one per --cpus-per-actor CPUs)",
    )
    p.add_argument(
        "--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per model actor"
    )
    p.add_argument(
        "--batch-size", type=int, default=4, help="images per actor call (default %(default)s)"
    )
    p.add_argument(
        "--tile",
        type=int,
        default=1024,
        help="largest tile of tiled inference; each image's tiles shrink to the fewest "
        "that cover it (a 12 MP photo: 3.6 MP/s with 1024 against 2.9 with 512 here, "
        "about 0.45 GB more memory per actor)",
    )
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles (pixels)")
    p.add_argument(
        "--max-megapixels",
        type=_positive_megapixels,
        default=codecs.DEFAULT_MAX_MEGAPIXELS,
        metavar="MP",
        help="refuse images larger than this (width x height / 1e6, read from the header "
        "before decoding): they are listed in errors.parquet and the others go on; "
        "default %(default)g MP; an actor needs about 75 bytes per pixel (8 GB at 100 MP)",
    )
    p.add_argument("--tile-batch", type=int, default=4, help="tiles per model call")
    p.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="auto",
        help="compute precision of the model; auto (default): bf16 on CPUs with native "
        "bf16 (AVX-512 BF16 or AMX; about 2x faster, PSNR within 0.02 dB), else fp32; "
        "output layers always stay float32. int8 (with --runtime openvino only): the "
        "model quantised once and cached, about 2.5x fp32 on CPUs with AVX-512 VNNI, at "
        "a PSNR cost (about 0.2-0.6 dB, most on faint noise; README)",
    )
    p.add_argument(
        "--io",
        choices=("actor", "tasks"),
        default="actor",
        help="where input bytes are read: in the model actor's prefetch threads (default) "
        "or in separate Ray tasks ahead of it",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="prefetch/write threads per actor (0: strictly sequential)",
    )
    p.add_argument(
        "--runtime",
        choices=("auto", "tensorflow", "openvino", "onnxruntime"),
        default="tensorflow",
        help="what runs the model in each actor (default tensorflow): openvino and "
        "onnxruntime run the float32 model converted once and cached; auto: the fastest "
        "installed (denoise_core.inference.resolve_runtime)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        choices=(1, 2, 4, 8),
        default=1,
        help="predictions per tile over flips and 90-degree rotations, averaged (k times "
        "the model's work; default 1)",
    )
    p.add_argument(
        "--pipeline",
        choices=("auto", "fused", "split"),
        default="auto",
        help="fused: read, decode, denoise, encode, write and score in the model actor; "
        "split: decode and finish in CPU workers, only the model in the actors; auto "
        "(default): split with --gpus, else fused",
    )
    p.add_argument(
        "--data-cpus",
        type=int,
        default=None,
        help="split pipeline: CPUs for the decode and finish workers together (up to N "
        "of each, half a CPU each; default: the cluster's CPUs not reserved by model actors)",
    )
    p.add_argument(
        "--metrics",
        choices=("exact", "fast"),
        default="exact",
        help="PSNR/MSE/SSIM arithmetic (scikit-image's convention either way): exact "
        "(default) in float64, equal to scikit-image's to ~1e-15; fast in float32, within "
        "1e-6 SSIM and about half the time",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N images (by key)")
    p.add_argument(
        "--overwrite", action="store_true", help="denoise again images whose output exists"
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero if any image failed")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")


# --------------------------------------------------------------------------
# Ray wiring
# --------------------------------------------------------------------------


def _concurrency(s: bulk.RunSettings, pipeline: str, blocks: int | None) -> int:
    """Model actors: ``--concurrency``, else one per GPU share; on CPUs one per node (the
    model's own threads use the node's cores), except the fused null model, whose
    per-image work is single-threaded: one per CPU (2-core AMD EPYC, 12 MP JPEGs: 70
    against 50 MP/s). A default is never more than the blocks of work (``blocks``,
    where known): an idle actor costs its start-up, and Ray Data warns about a pool it
    cannot fill."""
    import ray

    if s.concurrency:
        return s.concurrency
    if s.gpus > 0:
        total = ray.cluster_resources().get("GPU", 0)
        actors = int(total // s.gpus)
    elif s.model == bulk.IDENTITY_MODEL and pipeline == "fused" and s.cpus_per_actor > 0:
        actors = int(ray.cluster_resources().get("CPU", 1) // s.cpus_per_actor)
    else:
        actors = sum(1 for n in ray.nodes() if n.get("Alive"))
    return max(1, min(actors, blocks or actors))


def _data_cpus(s: bulk.RunSettings, concurrency: int, blocks: int | None) -> int:
    """Split path: ``--data-cpus``, else the cluster's CPUs that the model actors leave,
    at least one and at most the blocks of work (``blocks``, where known)."""
    import ray

    if s.data_cpus:
        return s.data_cpus
    total = ray.cluster_resources().get("CPU", 1)
    cpus = int(total - concurrency * s.cpus_per_actor)
    return max(1, min(cpus, blocks or cpus))


def _work_dataset(prepared: runner.Prepared, *, fused: bool) -> tuple[Any, int | None]:
    """Work rows as a Ray dataset (planned file rows, or an ingested set's shard rows) and
    its number of blocks where known (file rows; None for Parquet)."""
    import ray

    s, plan = prepared.settings, prepared.plan
    if plan.source == "parquet":
        ds = ray.data.read_parquet(plan.parquet_files).select_columns(
            ["key", "noisy", "clean", "phone", "iso", "brightness", "scene"]
        )
        if s.limit is not None:
            ds = ds.limit(s.limit)
        shard_rows = ds.map_batches(
            bulk.parquet_rows, fn_kwargs={"fmt": plan.fmt}, batch_size=s.batch_size
        )
        return shard_rows, None
    rows = bulk.work_rows(plan)
    # Fused: blocks of one model batch; each block costs the driver's scheduler about
    # as much CPU as a 1 MP image costs the actor (blocks of one row: 14 ms each).
    # Split: blocks of one row, so that each decoded image is a block of its own.
    blocks = -(-len(rows) // s.batch_size) if fused else len(rows)
    blocks = max(1, min(blocks, 200))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    if fused and s.io == "tasks":
        ds = ds.map_batches(bulk.read_inputs, batch_size=s.batch_size, num_cpus=0.5)
    return ds, blocks


def _interruptible(rows: Iterable[dict]) -> Iterator[dict]:
    """The result rows, stopping at the first one after a Ctrl-C that was lost."""
    for row in rows:
        raise_if_interrupted()
        yield row


def execute(prepared: runner.Prepared) -> runner.Execution:
    """Stream result rows through Ray Data, fused or split (bulk.choose_pipeline)."""
    import ray

    from denoise_core.bulk import split, stages

    s, existing = prepared.settings, prepared.existing
    init_ray(s.address)
    pipeline, why = bulk.choose_pipeline(s)
    ds, blocks = _work_dataset(prepared, fused=pipeline == "fused")
    concurrency = _concurrency(s, pipeline, blocks)
    model_actors = {
        "batch_size": s.batch_size,
        "compute": ray.data.ActorPoolStrategy(size=concurrency),
        "num_cpus": s.cpus_per_actor,
        "num_gpus": s.gpus or None,
    }
    info = {"concurrency": concurrency, "pipeline": pipeline, "pipeline_reason": why}
    if pipeline == "fused":
        ds = ds.map_batches(
            stages.FusedStage,
            fn_constructor_kwargs={"settings": s, "existing": existing},
            **model_actors,
        )
        return runner.Execution(_interruptible(ds.iter_rows()), info)
    # One image per data call: a decoded 12 MP photo is 36 MB, so blocks stay one image
    # and leave the object store as soon as the next operator has taken them. Decode and
    # finish alternate per image: each worker reserves half a CPU, so both pools
    # reserve --data-cpus CPUs together, and one CPU runs one of each. Fixed-size
    # pools: all workers start with the run, not while it streams.
    data_cpus = _data_cpus(s, concurrency, blocks)
    data_workers = {
        "batch_size": 1,
        "compute": ray.data.ActorPoolStrategy(size=data_cpus),
        "num_cpus": 0.5,
    }
    ds = ds.map_batches(
        split.DecodeStage,
        fn_constructor_kwargs={"settings": s, "existing": existing},
        **data_workers,
    )
    ds = ds.map_batches(split.DenoiseStage, fn_constructor_kwargs={"settings": s}, **model_actors)
    ds = ds.map_batches(
        split.FinishStage,
        fn_constructor_kwargs={"settings": s, "existing": existing},
        **data_workers,
    )
    return runner.Execution(_interruptible(ds.iter_rows()), {**info, "data_cpus": data_cpus})


def default_model() -> str | None:
    """The packaged model, if this installation has one."""
    from denoise_core.weights import default_model_path

    return default_model_path()


def run(args: argparse.Namespace) -> int:
    """Settings from the arguments, storage reachable, then the core's run sequence."""
    try:
        settings = bulk.build_settings(args, default_model=default_model())
        message = preflight.check_output_place(settings.output)
        model = None if bulk.settings.is_null_model(settings.model) else settings.model
        message = message or preflight.check_remote_reachable(
            [settings.input, settings.output, settings.reference, model]
        )
        if message:
            return fail(message)
        return runner.run(settings, execute, preflight.storage_error_line)
    except bulk.RunRefused as exc:
        return fail(str(exc), exc.code)


def main(argv: list[str] | None = None) -> int:
    return job_main("run", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
