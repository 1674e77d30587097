"""The run's sequence, owned by the core: plan → execute → aggregate → write → report.

``jobs/run.py`` parses arguments, checks storage reachability and passes an
``execute`` function that streams result rows through Ray Data; anything else
that yields result rows for a :class:`Prepared` run (a plain loop over
:class:`~denoise_core.bulk.processor.BulkProcessor`, as the tests do) runs the
same sequence without Ray.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tqdm import tqdm

from .. import model_file, report, shards, storage
from ..manifest import DatasetNotReadyError
from . import outputs, samples
from .plan import (
    ERRORS_NAME,
    METRICS_NAME,
    REPORT_NAME,
    SUMMARY_NAME,
    Plan,
    describe_other_files,
    overwritten_input,
    remove_partial_writes,
)
from .plan import plan_run as make_plan
from .rows import plain
from .settings import RunRefused, RunSettings, is_null_model


@dataclass
class Prepared:
    """A planned run: what the executor needs besides the settings."""

    settings: RunSettings
    plan: Plan
    existing: list[str]  # output keys to skip (resume); empty with --overwrite
    reference_source: str
    started: float = field(default_factory=time.time)


@dataclass
class Execution:
    """What an executor returns: result rows as they arrive, and summary fields about how
    they were produced (concurrency, pipeline and why)."""

    rows: Iterable[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


Execute = Callable[[Prepared], Execution]


def check_model_file(uri: str) -> None:
    """Fail early, in the driver, for a missing or obviously wrong model file."""
    if is_null_model(uri):
        return
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


def reference_source(plan: Plan, reference: str | None) -> str:
    if reference:
        return reference
    if plan.source == "parquet":
        return "data set pairs"
    return f"{plan.layout} layout" if plan.layout != "none" else "none"


def prepare(s: RunSettings, storage_error: Callable[[Exception], str | None]) -> Prepared:
    """Check the model file, plan, refuse clashes, remove partial writes; print the plan.
    ``storage_error`` turns a storage failure into one line (None: re-raise)."""
    started = time.time()
    try:
        check_model_file(s.model or "")
        plan = make_plan(
            s.input, s.output, reference=s.reference, layout=s.layout, fmt=s.format, limit=s.limit
        )
    except (FileNotFoundError, NotADirectoryError, ValueError, DatasetNotReadyError) as exc:
        raise RunRefused(str(exc)) from exc
    except Exception as exc:  # storage failing after the probe: one line, not a traceback
        line = storage_error(exc)
        if line is None:
            raise
        raise RunRefused(line) from exc
    if plan.total == 0:
        raise RunRefused(f"no images found under {s.input}", 1)
    out_keys = plan.output_keys()
    if len(set(out_keys)) != len(out_keys):
        dupes = sorted({k for k in out_keys if out_keys.count(k) > 1})[:3]
        raise RunRefused(f"several inputs map to the same output key (e.g. {dupes}); drop --format")
    clash = overwritten_input(plan, s.output)
    if clash:
        raise RunRefused(
            f"an output under {s.output} would replace the input {clash}; choose another OUTPUT"
        )
    existing = sorted(set(out_keys) & plan.existing) if not s.overwrite else []
    removed = remove_partial_writes(s.output)
    ref_text = reference_source(plan, s.reference)
    print(
        f"run: {plan.total} image{'' if plan.total == 1 else 's'} from {s.input} "
        f"(reference: {ref_text})"
        + (f", {len(existing)} already done" if existing else "")
        + (f", {removed} partial writes removed" if removed else "")
    )
    if plan.other_files:
        print(f"  {describe_other_files(plan.other_files)}: not images this command reads")
    if plan.missing_reference:
        print(
            f"  warning: {plan.missing_reference} images have no reference under "
            f"{s.reference}; they are denoised without metrics"
        )
    return Prepared(s, plan, existing, ref_text, started)


def collect(prepared: Prepared, execution: Execution) -> tuple[list[dict], list[float]]:
    """Result rows as they stream in (a progress bar on stderr) and their arrival times."""
    results: list[dict[str, Any]] = []
    arrivals: list[float] = []
    n_errors = len(prepared.plan.errors)
    try:
        with tqdm(total=prepared.plan.total, desc="denoise", unit="img", file=sys.stderr) as bar:
            for row in execution.rows:
                row = {k: plain(v) for k, v in row.items()}
                results.append(row)
                arrivals.append(time.time())
                if row["error"]:
                    n_errors += 1
                bar.set_postfix(errors=n_errors, refresh=False)
                bar.update(1)
    except Exception as exc:  # the actor could not start (bad model) or the cluster failed
        raise RunRefused(f"the run failed: {root_cause(exc)}", 1) from exc
    return results, arrivals


def finish(
    prepared: Prepared,
    results: list[dict[str, Any]],
    arrivals: list[float],
    info: dict[str, Any] | None = None,
) -> int:
    """Aggregate, write metrics / errors / summary / report, print; the exit code."""
    s, plan = prepared.settings, prepared.plan
    errors = plan.errors + [{"key": r["key"], "reason": r["error"]} for r in results if r["error"]]
    records = outputs.metrics_records(results)
    summary = outputs.summarize(
        records,
        errors,
        seconds=time.time() - prepared.started,
        extra={
            "input": s.input,
            "output": s.output,
            "model": s.model,
            "reference_source": prepared.reference_source,
            "layout": plan.layout,
            "format": s.format,
            "strength": s.strength,
            "skip_below": s.skip_below,
            "jpeg_quality": s.jpeg_quality,
            "heic_quality": s.heic_quality,
            "tiling": f"{s.tile} / {s.overlap}",
            "tile": s.tile,
            "overlap": s.overlap,
            "gpus_per_actor": s.gpus,
            "concurrency": s.concurrency,
            "io": s.io,
            "metrics": s.metrics,
            "runtime": s.runtime,
            "ensemble": s.ensemble,
            "missing_reference": plan.missing_reference,
            "ignored_files": plan.ignored,
            "other_files": plan.other_files,
            "startup_seconds": (arrivals[0] - prepared.started) if arrivals else None,
            "steady_mp_per_s": steady_rate(results, arrivals),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(info or {}),
        },
    )
    join = storage.join
    storage.write_bytes_atomic(
        join(s.output, METRICS_NAME), shards.table_bytes(outputs.metrics_table(records))
    )
    storage.write_bytes_atomic(
        join(s.output, ERRORS_NAME), shards.table_bytes(shards.errors_table(errors))
    )
    storage.write_bytes_atomic(join(s.output, SUMMARY_NAME), outputs.summary_json(summary))
    if not s.no_report:
        write_report(prepared, summary, records, errors)
    print(outputs.summary_line(summary) + f" -> {s.output}")
    for err in errors[:10]:
        print(f"  error {err['key']}: {err['reason']}")
    if len(errors) > 10:
        print(f"  … {len(errors) - 10} more in {join(s.output, ERRORS_NAME)}")
    if not records:
        raise RunRefused("no image was denoised", 1)
    if s.strict and errors:
        raise RunRefused(f"{len(errors)} images failed (--strict)", 1)
    return 0


def run(
    s: RunSettings,
    execute: Execute,
    storage_error: Callable[[Exception], str | None] = lambda exc: None,
) -> int:
    """The whole run after argument checks: 0, or raises :class:`RunRefused`."""
    prepared = prepare(s, storage_error)
    execution = execute(prepared)
    results, arrivals = collect(prepared, execution)
    return finish(prepared, results, arrivals, execution.info)


def steady_rate(results: list[dict[str, Any]], arrivals: list[float]) -> float | None:
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


def root_cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if "cannot load model" in line:
            return line.strip()
    return text[-1] if text else type(exc).__name__


def write_report(prepared: Prepared, summary, records, errors) -> None:
    s, plan = prepared.settings, prepared.plan
    item_by_key = {it.key: it for it in plan.items}
    picked = []
    for label, rec in samples.pick_samples(records):
        try:
            noisy, out, ref = samples.load_sample(rec, plan, s.output, item_by_key)
        except Exception as exc:  # a sample vanished: the report goes on without it
            print(f"  report: cannot load {rec['key']}: {exc}", file=sys.stderr)
            continue
        picked.append((label, rec, noisy, out, ref))
    html = report.render_html(
        summary, records, errors, picked, title=f"denoise run: {os.path.basename(s.input)}"
    )
    storage.write_bytes_atomic(storage.join(s.output, REPORT_NAME), html.encode())
