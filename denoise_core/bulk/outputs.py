"""The run's tables and summary: ``metrics.parquet``, ``errors.parquet``, ``summary.json``.

Pure functions of result rows, so the driver's aggregation is tested without Ray.
Every input ends up in exactly one of ``metrics.parquet`` (it has an output) or
``errors.parquet`` (it has none, with the reason).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from .rows import copied_unchanged

GROUP_COLUMNS = ("phone", "iso", "brightness")

METRICS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("output_key", pa.string()),
        ("psnr", pa.float64()),
        ("mse", pa.float64()),
        ("ssim", pa.float64()),
        ("input_psnr", pa.float64()),
        ("input_mse", pa.float64()),
        ("input_ssim", pa.float64()),
        ("psnr_gain", pa.float64()),
        ("change_rms", pa.float64()),
        ("noise_sigma_in", pa.float64()),  # no-reference noise estimates, 0-255 scale
        ("noise_sigma_out", pa.float64()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("channels", pa.int8()),
        ("bit_depth", pa.int8()),
        ("megapixels", pa.float64()),
        ("seconds", pa.float64()),
        ("skipped", pa.bool_()),
        ("skipped_reason", pa.string()),  # why the model did not run; null when it did
        ("reference", pa.string()),
        ("phone", pa.string()),
        ("iso", pa.int32()),
        ("brightness", pa.string()),
        ("scene", pa.string()),
        ("folder", pa.string()),
    ]
)
_FLOAT_FIELDS = tuple(f.name for f in METRICS_SCHEMA if pa.types.is_floating(f.type))
_META_FIELDS = ("phone", "iso", "brightness", "scene", "folder")


def _none_if_nan(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def metrics_records(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Result rows without error, flattened to the ``metrics.parquet`` columns."""
    records = []
    for r in results:
        if r.get("error"):
            continue
        rec = {name: r.get(name) for name in METRICS_SCHEMA.names}
        meta = json.loads(r.get("meta") or "{}")
        for name in _META_FIELDS:
            rec[name] = meta.get(name)
        for name in _FLOAT_FIELDS:
            rec[name] = _none_if_nan(None if rec[name] is None else float(rec[name]))
        rec["megapixels"] = int(r["height"]) * int(r["width"]) / 1e6
        psnr, in_psnr = rec["psnr"], rec["input_psnr"]
        rec["psnr_gain"] = psnr - in_psnr if psnr is not None and in_psnr is not None else None
        if rec["psnr_gain"] is not None and not math.isfinite(rec["psnr_gain"]):
            rec["psnr_gain"] = None
        rec["reference"] = rec["reference"] or None
        rec["skipped_reason"] = rec["skipped_reason"] or None
        records.append(rec)
    return sorted(records, key=lambda rec: rec["key"])


def metrics_table(records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=METRICS_SCHEMA)


def _finite(values: Iterable[Any]) -> np.ndarray:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean(values) -> float | None:
    arr = _finite(values)
    return float(arr.mean()) if arr.size else None


def _median(values) -> float | None:
    arr = _finite(values)
    return float(np.median(arr)) if arr.size else None


def _natural(value: str) -> tuple:
    """Sort key: numbers by value (ISO 100 < 800 < 1600), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def group_columns(records: list[dict[str, Any]]) -> list[str]:
    """Columns worth grouping by: SIDD phone/ISO/brightness where known, else the folder
    when images come from several (and not too many) folders."""
    cols = [c for c in GROUP_COLUMNS if any(r.get(c) is not None for r in records)]
    if not cols:
        folders = {r.get("folder") for r in records}
        if 1 < len(folders) <= 50:
            cols = ["folder"]
    return cols


def summarize(
    records: list[dict[str, Any]],
    errors: list[dict[str, str]],
    *,
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``summary.json``: counts, means and medians (finite values only; an exact match's
    infinite PSNR is left out of the means), per-group means and throughput.

    ``megapixels`` and ``mp_per_s`` count the images denoised by this run (not the
    skipped ones) over the whole wall time of the run. ``skipped`` counts both the
    images whose output existed (``skipped_existing``) and the clean ones copied
    through by ``--skip-below`` (``skipped_clean``). ``noise_sigma_*_mean`` are the
    no-reference noise estimates (0-255 scale); ``noise_removed_mean`` is the mean of
    input minus output over the images denoised now.
    """
    done = [r for r in records if not r["skipped"]]
    megapixels = sum(r["megapixels"] for r in done)
    clean = sum(1 for r in records if copied_unchanged(r))
    summary: dict[str, Any] = {
        "count": len(records),
        "denoised": len(done),
        "skipped": len(records) - len(done),
        "skipped_existing": len(records) - len(done) - clean,
        "skipped_clean": clean,
        "errors": len(errors),
        "with_reference": sum(1 for r in records if r["psnr"] is not None),
    }
    for name in ("psnr", "mse", "ssim"):
        summary[f"{name}_mean"] = _mean(r[name] for r in records)
    for name in ("psnr", "mse", "ssim"):
        summary[f"{name}_median"] = _median(r[name] for r in records)
    for name in ("psnr", "mse", "ssim"):
        summary[f"input_{name}_mean"] = _mean(r[f"input_{name}"] for r in records)
    summary["psnr_gain_mean"] = _mean(r["psnr_gain"] for r in records)
    summary["psnr_gain_median"] = _median(r["psnr_gain"] for r in records)
    summary["change_rms_mean"] = _mean(r["change_rms"] for r in records)
    summary["noise_sigma_in_mean"] = _mean(r.get("noise_sigma_in") for r in records)
    summary["noise_sigma_in_median"] = _median(r.get("noise_sigma_in") for r in records)
    summary["noise_sigma_out_mean"] = _mean(r.get("noise_sigma_out") for r in records)
    summary["noise_removed_mean"] = _mean(noise_removed(r) for r in done)
    groups: dict[str, dict[str, Any]] = {}
    for col in group_columns(records):
        by_value: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            if r.get(col) is not None:
                by_value.setdefault(str(r[col]), []).append(r)
        groups[col] = {
            value: {
                "count": len(rows),
                "psnr_mean": _mean(r["psnr"] for r in rows),
                "ssim_mean": _mean(r["ssim"] for r in rows),
                "input_psnr_mean": _mean(r["input_psnr"] for r in rows),
                "psnr_gain_mean": _mean(r["psnr_gain"] for r in rows),
                "noise_sigma_in_mean": _mean(r.get("noise_sigma_in") for r in rows),
                "noise_sigma_out_mean": _mean(r.get("noise_sigma_out") for r in rows),
            }
            for value, rows in sorted(by_value.items(), key=lambda kv: _natural(kv[0]))
        }
    summary["groups"] = groups
    summary["megapixels"] = megapixels
    summary["megapixels_total"] = sum(r["megapixels"] for r in records)
    summary["seconds"] = seconds
    summary["mp_per_s"] = megapixels / seconds if seconds > 0 else None
    summary.update(extra or {})
    return summary


def noise_removed(record: dict[str, Any]) -> float | None:
    """Estimated input noise minus output noise (0-255 scale), None if either is unknown."""
    a, b = record.get("noise_sigma_in"), record.get("noise_sigma_out")
    return None if a is None or b is None else a - b


def summary_json(summary: dict[str, Any]) -> bytes:
    """Strict JSON (non-finite numbers become null)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(summary), indent=2, sort_keys=True, allow_nan=False).encode()


def summary_line(summary: dict[str, Any]) -> str:
    gain = summary.get("psnr_gain_mean")
    gain_text = f"{gain:+.2f} dB" if gain is not None else "n/a (no reference)"
    mp_s = summary.get("mp_per_s")
    notes = []
    if summary.get("skipped_existing", summary.get("skipped")):
        notes.append(f"{summary.get('skipped_existing', summary.get('skipped'))} already done")
    if summary.get("skipped_clean"):
        notes.append(f"{summary['skipped_clean']} below --skip-below copied unchanged")
    skipped = f" ({', '.join(notes)})" if notes else ""
    noise = summary.get("noise_sigma_in_mean")
    noise_text = "" if noise is None else f", mean estimated noise {noise:.1f}/255 in"
    out_noise = summary.get("noise_sigma_out_mean")
    if noise is not None and out_noise is not None:
        noise_text += f" -> {out_noise:.1f} out"
    return (
        f"run: {summary['count']} image{'' if summary['count'] == 1 else 's'}{skipped}, "
        f"{summary['megapixels']:.2f} MP in {summary['seconds']:.1f} s, {mp_s or 0:.3f} MP/s, "
        f"{summary['errors']} error{'' if summary['errors'] == 1 else 's'}, "
        f"mean PSNR gain {gain_text}{noise_text}"
    )
