"""``denoise run INPUT OUTPUT``: denoise a folder, a bucket prefix or an ingested data set.

Run as ``python -m jobs.run INPUT OUTPUT …`` under ``ray job submit`` or through the
``denoise`` CLI. The driver lists INPUT and plans one small work row per image
(keys and URIs only). Ray Data streams the rows to an actor pool: each actor
loads the model once and, per image, reads the bytes, decodes (EXIF orientation
applied, 8/16-bit, grey, RGBA kept), denoises tile by tile (the model's memory
is bounded by the tile; the decoded image by --max-megapixels), blends the result
with the input by ``--strength``, encodes in the input's format and depth with the
input's EXIF, XMP and ICC profile, writes the output atomically under OUTPUT at the
input's key, and scores it against the reference. Decoded pixels never leave the
actor; only result rows (metrics) come back. The driver writes ``metrics.parquet``,
``errors.parquet``, ``summary.json`` and ``report.html``.

Re-running skips images whose output exists (their metrics are recomputed from
the existing file); ``--overwrite`` denoises them again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from datetime import datetime, timezone
from typing import Any

from tqdm import tqdm

from denoise_core import bulk, codecs, model_file, report, storage
from denoise_core.manifest import DatasetNotReadyError
from jobs import preflight
from jobs.common import fail, init_ray, job_main


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
        help="Keras .keras model (local or s3://; default: the packaged model)",
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
        "bmp, heic",
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
        help="model actors (default: GPUs / --gpus with GPUs, else one per node)",
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
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="compute precision of the model; auto (default): bf16 on CPUs with native "
        "bf16 (AVX-512 BF16 or AMX; about 2x faster, PSNR within 0.02 dB), else fp32; "
        "output layers always stay float32",
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
    p.add_argument("--limit", type=int, default=None, help="only the first N images (by key)")
    p.add_argument(
        "--overwrite", action="store_true", help="denoise again images whose output exists"
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero if any image failed")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")


# --------------------------------------------------------------------------
# The model actor
# --------------------------------------------------------------------------


class DenoiseActor:
    """One per actor-pool slot: loads the model once, then processes batches of rows."""

    def __init__(
        self,
        model: str,
        output: str,
        existing: list[str],
        overwrite: bool,
        tile: int,
        overlap: int,
        tile_batch: int,
        threads: int,
        precision: str = "auto",
        max_megapixels: float | None = codecs.DEFAULT_MAX_MEGAPIXELS,
        strength: float = 1.0,
        skip_below: float | None = None,
        jpeg_quality: int = 95,
        heic_quality: int = codecs.DEFAULT_HEIC_QUALITY,
    ) -> None:
        import tensorflow as tf

        # TensorFlow grabs the whole GPU unless told otherwise (ray#13680).
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised in this process
                pass
        from denoise_core.inference import Denoiser

        try:
            denoiser = Denoiser.from_path(
                model, tile=tile, overlap=overlap, batch_size=tile_batch, precision=precision
            )
        except Exception as exc:
            raise RuntimeError(f"cannot load model {model}: {type(exc).__name__}: {exc}") from exc
        self.processor = bulk.BulkProcessor(
            denoiser,
            output,
            existing=existing,
            overwrite=overwrite,
            threads=threads,
            max_megapixels=max_megapixels,
            strength=strength,
            skip_below=skip_below,
            jpeg_quality=jpeg_quality,
            heic_quality=heic_quality,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = bulk.batch_to_rows(batch)
        return bulk.rows_to_batch(self.processor.process(rows))


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def default_model() -> str | None:
    """The packaged model, if this installation has one."""
    from denoise_core.weights import default_model_path

    return default_model_path()


def check_model_file(uri: str) -> None:
    """Fail early, in the driver, for a missing or obviously wrong model file."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"model not found: {uri}")
    fs, path = storage.open_fs(uri)
    if fs.isdir(path):
        raise ValueError(f"{uri} is a folder; --model takes a .keras file")
    with fs.open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise ValueError(f"{uri} is not a Keras .keras file (a zip archive)")
        fh.seek(0)
        try:  # only the zip's directory and config.json are read, also on S3
            config = model_file.read_config(fh)
        except (zipfile.BadZipFile, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{uri} is not a readable .keras model: {exc}") from exc
    # Refused here once, not in every actor (Lambda) or on every image (channels).
    problem = model_file.problem(model_file.inspect_config(config), uri)
    if problem:
        raise ValueError(problem)


def _check_places(args: argparse.Namespace) -> str | None:
    """Why OUTPUT may not be used, or None. Places are compared resolved (symbolic links,
    ``..``, S3 prefixes): OUTPUT equal to INPUT or the reference, or holding either, would
    put outputs over the user's photos. OUTPUT inside INPUT is fine: listing leaves it out."""
    for name, place in (("INPUT", args.input), ("--reference", args.reference)):
        relation = storage.path_relation(args.output, place) if place else None
        if relation in ("same", "contains"):
            what = "is" if relation == "same" else "contains"
            return (
                f"OUTPUT must differ from {name} and not contain it (inputs are never "
                f"overwritten): {args.output} {what} {place}"
            )
    return None


def _default_concurrency(gpus: float) -> int:
    import ray

    if gpus > 0:
        total = ray.cluster_resources().get("GPU", 0)
        return max(1, int(total // gpus))
    return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))


def build_dataset(plan: bulk.Plan, args: argparse.Namespace, existing: list[str]):
    import ray

    if plan.source == "parquet":
        ds = ray.data.read_parquet(plan.parquet_files).select_columns(
            ["key", "noisy", "clean", "phone", "iso", "brightness", "scene"]
        )
        if args.limit is not None:
            ds = ds.limit(args.limit)
        ds = ds.map_batches(
            bulk.parquet_rows, fn_kwargs={"fmt": plan.fmt}, batch_size=args.batch_size
        )
    else:
        rows = [
            {
                "key": it.key,
                "output_key": it.output_key,
                "noisy": it.noisy,
                "reference": it.reference,
                "meta": it.meta,
            }
            for it in plan.items
        ]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 200)))
        if args.io == "tasks":
            ds = ds.map_batches(bulk.read_inputs, batch_size=args.batch_size, num_cpus=0.5)
    concurrency = args.concurrency or _default_concurrency(args.gpus)
    args.concurrency = concurrency
    return ds.map_batches(
        DenoiseActor,
        fn_constructor_kwargs={
            "model": args.model,
            "output": args.output,
            "existing": existing,
            "overwrite": args.overwrite,
            "tile": args.tile,
            "overlap": args.overlap,
            "tile_batch": args.tile_batch,
            "threads": args.threads,
            "precision": args.precision,
            "max_megapixels": args.max_megapixels,
            "strength": args.strength,
            "skip_below": args.skip_below,
            "jpeg_quality": args.jpeg_quality,
            "heic_quality": args.heic_quality,
        },
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=args.cpus_per_actor,
        num_gpus=args.gpus or None,
    )


def _validate(args: argparse.Namespace) -> str | None:
    for name in ("tile", "tile_batch", "batch_size"):
        if getattr(args, name) <= 0:
            return f"--{name.replace('_', '-')} must be positive"
    if args.overlap < 0 or args.overlap >= args.tile:
        return "--overlap must be in [0, --tile)"
    if args.gpus < 0 or args.cpus_per_actor < 0:
        return "--gpus and --cpus-per-actor must not be negative"
    if args.concurrency is not None and args.concurrency <= 0:
        return "--concurrency must be positive"
    if args.limit is not None and args.limit < 0:
        return "--limit must not be negative"
    if args.threads < 0:
        return "--threads must not be negative"
    if not 0.0 <= args.strength <= 1.0:
        return (
            f"--strength must be in [0, 1] (0: the input unchanged, 1: the model's output), "
            f"got {args.strength:g}"
        )
    for name in ("jpeg_quality", "heic_quality"):
        if not 0 <= getattr(args, name) <= 100:
            return f"--{name.replace('_', '-')} must be in [0, 100], got {getattr(args, name)}"
    if args.skip_below is not None and not 0.0 <= args.skip_below < float("inf"):
        return (
            "--skip-below must be a noise sigma >= 0 on the 0-255 scale (e.g. 2 for clean "
            f"photos), got {args.skip_below:g}"
        )
    return None


def _reference_source(plan: bulk.Plan, reference: str | None) -> str:
    if reference:
        return reference
    if plan.source == "parquet":
        return "data set pairs"
    return f"{plan.layout} layout" if plan.layout != "none" else "none"


def run(args: argparse.Namespace) -> int:
    start = time.time()
    message = _validate(args)
    if message:
        return fail(message)
    args.input, args.output = storage.absolute(args.input), storage.absolute(args.output)
    if args.reference:
        args.reference = storage.absolute(args.reference)
    message = _check_places(args)
    if message:
        return fail(message)
    if args.model is None:
        args.model = default_model()
        if args.model is None:
            return fail(
                "no packaged model in this installation (denoise_core/weights/default.keras); "
                "pass --model PATH with a .keras file, e.g. RUN/model/model.keras from "
                "`denoise train`"
            )
    args.model = storage.absolute(args.model)
    message = preflight.check_output_place(args.output) or preflight.check_remote_reachable(
        [args.input, args.output, args.reference, args.model]
    )
    if message:
        return fail(message)
    try:
        check_model_file(args.model)
        fmt = bulk.normalize_format(args.format)
        plan = bulk.plan_run(
            args.input,
            args.output,
            reference=args.reference,
            layout=args.layout,
            fmt=fmt,
            limit=args.limit,
        )
    except (FileNotFoundError, NotADirectoryError, ValueError, DatasetNotReadyError) as exc:
        return fail(str(exc))
    except Exception as exc:  # storage failing after the probe: one line, not a traceback
        line = preflight.storage_error_line(exc)
        if line is None:
            raise
        return fail(line)
    if plan.total == 0:
        return fail(f"no images found under {args.input}", 1)
    out_keys = plan.output_keys()
    if len(set(out_keys)) != len(out_keys):
        dupes = sorted({k for k in out_keys if out_keys.count(k) > 1})[:3]
        return fail(f"several inputs map to the same output key (e.g. {dupes}); drop --format")
    clash = bulk.overwritten_input(plan, args.output)
    if clash:
        return fail(
            f"an output under {args.output} would replace the input {clash}; choose another OUTPUT"
        )
    existing = sorted(set(out_keys) & plan.existing) if not args.overwrite else []
    removed = bulk.remove_partial_writes(args.output)
    ref_text = _reference_source(plan, args.reference)
    print(
        f"run: {plan.total} images from {args.input} (reference: {ref_text})"
        + (f", {len(existing)} already done" if existing else "")
        + (f", {removed} partial writes removed" if removed else "")
    )
    if plan.missing_reference:
        print(
            f"  warning: {plan.missing_reference} images have no reference under "
            f"{args.reference}; they are denoised without metrics"
        )

    init_ray(args.address)
    ds = build_dataset(plan, args, existing)
    results: list[dict[str, Any]] = []
    arrivals: list[float] = []
    n_errors = len(plan.errors)
    try:
        with tqdm(total=plan.total, desc="denoise", unit="img", file=sys.stderr) as bar:
            for row in ds.iter_rows():
                row = {k: bulk.plain(v) for k, v in row.items()}
                results.append(row)
                arrivals.append(time.time())
                if row["error"]:
                    n_errors += 1
                bar.set_postfix(errors=n_errors, refresh=False)
                bar.update(1)
    except Exception as exc:  # the actor could not start (bad model) or the cluster failed
        return fail(f"the run failed: {_root_cause(exc)}", 1)

    errors = plan.errors + [{"key": r["key"], "reason": r["error"]} for r in results if r["error"]]
    records = bulk.metrics_records(results)
    seconds = time.time() - start
    summary = bulk.summarize(
        records,
        errors,
        seconds=seconds,
        extra={
            "input": args.input,
            "output": args.output,
            "model": args.model,
            "reference_source": ref_text,
            "layout": plan.layout,
            "format": fmt,
            "strength": args.strength,
            "skip_below": args.skip_below,
            "jpeg_quality": args.jpeg_quality,
            "heic_quality": args.heic_quality,
            "tiling": f"{args.tile} / {args.overlap}",
            "tile": args.tile,
            "overlap": args.overlap,
            "gpus_per_actor": args.gpus,
            "concurrency": args.concurrency,
            "io": args.io,
            "missing_reference": plan.missing_reference,
            "ignored_files": plan.ignored,
            "startup_seconds": (arrivals[0] - start) if arrivals else None,
            "steady_mp_per_s": _steady_rate(results, arrivals),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    join = storage.join
    storage.write_bytes_atomic(
        join(args.output, bulk.METRICS_NAME), bulk.parquet_bytes(bulk.metrics_table(records))
    )
    storage.write_bytes_atomic(
        join(args.output, bulk.ERRORS_NAME), bulk.parquet_bytes(bulk.errors_table(errors))
    )
    storage.write_bytes_atomic(join(args.output, bulk.SUMMARY_NAME), bulk.summary_json(summary))
    if not args.no_report:
        _write_report(args, plan, summary, records, errors)
    print(bulk.summary_line(summary) + f" -> {args.output}")
    for err in errors[:10]:
        print(f"  error {err['key']}: {err['reason']}")
    if len(errors) > 10:
        print(f"  … {len(errors) - 10} more in {join(args.output, bulk.ERRORS_NAME)}")
    if not records:
        return fail("no image was denoised", 1)
    if args.strict and errors:
        return fail(f"{len(errors)} images failed (--strict)", 1)
    return 0


def _steady_rate(results: list[dict[str, Any]], arrivals: list[float]) -> float | None:
    """MP/s after the first result: throughput without start-up (Ray, actors, model
    load, first trace). Results come a batch at a time, so the pixels of everything
    that arrived with the first result are left out. None when too few results."""
    if not arrivals or arrivals[-1] - arrivals[0] < 1e-3:
        return None
    mp = sum(
        r["height"] * r["width"] / 1e6
        for r, t in zip(results, arrivals, strict=True)
        if t > arrivals[0] and not r["error"] and not r["skipped"]
    )
    return mp / (arrivals[-1] - arrivals[0]) if mp > 0 else None


def _root_cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if "cannot load model" in line:
            return line.strip()
    return text[-1] if text else type(exc).__name__


def _write_report(args, plan: bulk.Plan, summary, records, errors) -> None:
    item_by_key = {it.key: it for it in plan.items}
    samples = []
    for label, rec in bulk.pick_samples(records):
        try:
            noisy, out, ref = bulk.load_sample(rec, plan, args.output, item_by_key)
        except Exception as exc:  # a sample vanished: the report goes on without it
            print(f"  report: cannot load {rec['key']}: {exc}", file=sys.stderr)
            continue
        samples.append((label, rec, noisy, out, ref))
    html = report.render_html(
        summary, records, errors, samples, title=f"denoise run: {os.path.basename(args.input)}"
    )
    storage.write_bytes_atomic(storage.join(args.output, bulk.REPORT_NAME), html.encode())


def main(argv: list[str] | None = None) -> int:
    return job_main("run", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
