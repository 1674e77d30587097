"""The row contract between the stages of ``denoise run``.

Rows are what Ray Data moves between operators, so they hold small strings,
encoded bytes and, between decode and finish, raw pixels as bytes with their
shape: never a variable-shape tensor column (ray#38050, ray#49883). Every
stage returns fixed columns, so every block of one operator has one schema.

- work row (:func:`work_rows`, :func:`parquet_rows`): ``key``, ``output_key``,
  ``noisy`` / ``reference`` URIs (or ``*_bytes`` from an ingested data set), ``meta``;
- decoded row (:data:`DECODED_FIELDS`): a work row plus the input's pixels
  (``pixels``, ``shape``, ``dtype``) and what was decided from them;
- denoised row: a decoded row whose ``pixels`` are the model's output (same
  shape and dtype: uint8 or uint16 in and out, a quarter of float32's bytes);
- result row (:data:`RESULT_FIELDS`): metrics of one image, or its ``error``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import storage
from .plan import Plan, key_meta, parquet_output_key

WORK_FIELDS = ("key", "output_key", "noisy", "reference", "meta")

# Per-image float metrics: NaN when there is nothing to measure (no reference, an error).
METRIC_FIELDS = (
    "psnr",
    "mse",
    "ssim",
    "input_psnr",
    "input_mse",
    "input_ssim",
    "change_rms",
    "noise_sigma_in",
    "noise_sigma_out",
)
RESULT_FIELDS = (
    "key",
    "output_key",
    "error",
    *METRIC_FIELDS,
    "height",
    "width",
    "channels",
    "bit_depth",
    "seconds",
    "skipped",
    "skipped_reason",
    "reference",
    "meta",
)

# Between decode and finish (the split path): a work row, its encoded input, the decision
# made from its pixels (``state``: model, existing, clean or error) and, for images the
# model must see, the pixels themselves (input pixels before the model, output after).
DECODED_FIELDS = (
    *WORK_FIELDS,
    "noisy_bytes",
    "reference_bytes",
    "state",
    "error",
    "started",
    "noise_in",
    "pixels",
    "height",
    "width",
    "channels",
    "dtype",
)

SKIPPED_EXISTING = "output existed"  # skipped_reason of a resumed image
CLEAN_REASON_PREFIX = "input noise"  # skipped_reason of a --skip-below copy starts so


def copied_unchanged(record: dict[str, Any]) -> bool:
    """Whether a result row is a ``--skip-below`` copy (its output is its input)."""
    return (record.get("skipped_reason") or "").startswith(CLEAN_REASON_PREFIX)


class InputError(ValueError):
    """A bad input or reference; the message is the reason users read in errors.parquet."""


def work_rows(plan: Plan) -> list[dict[str, str]]:
    """One work row per planned file input (keys and URIs only)."""
    return [
        {
            "key": it.key,
            "output_key": it.output_key,
            "noisy": it.noisy,
            "reference": it.reference,
            "meta": it.meta,
        }
        for it in plan.items
    ]


def parquet_rows(batch: dict[str, Any], fmt: str | None = None) -> dict[str, list]:
    """A batch of ingested shard rows as work rows (bytes travel with the row)."""
    keys = [str(k) for k in batch["key"]]
    n = len(keys)
    metas = []
    for i in range(n):
        meta = {c: plain(batch[c][i]) if c in batch else None for c in ("phone", "iso")}
        meta["brightness"] = plain(batch["brightness"][i]) if "brightness" in batch else None
        meta["scene"] = plain(batch["scene"][i]) if "scene" in batch else None
        metas.append(json.dumps(key_meta(keys[i], meta)))
    return {
        "key": keys,
        "output_key": [parquet_output_key(k, fmt) for k in keys],
        "noisy": [""] * n,
        "reference": [""] * n,
        "meta": metas,
        "noisy_bytes": [bytes(b) if b is not None else b"" for b in batch["noisy"]],
        "reference_bytes": [bytes(b) if b is not None else b"" for b in batch["clean"]],
    }


def plain(value):
    """NumPy scalars as Python values, NaN as None (rows coming back from Ray Data)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """Fetch the encoded input and reference bytes of work rows (the ``--io tasks`` stage)."""
    out = {k: list(v) for k, v in batch.items()}
    noisy_bytes, ref_bytes, read_errors = [], [], []
    for uri, ref in zip(out["noisy"], out["reference"], strict=True):
        try:
            noisy_bytes.append(storage.read_bytes(uri))
            ref_bytes.append(storage.read_bytes(ref) if ref else b"")
            read_errors.append("")
        except Exception as exc:  # reported by the processor, with the key
            noisy_bytes.append(b"")
            ref_bytes.append(b"")
            read_errors.append(f"unreadable: {type(exc).__name__}: {exc}")
    out["noisy_bytes"], out["reference_bytes"], out["read_error"] = (
        noisy_bytes,
        ref_bytes,
        read_errors,
    )
    return out


def batch_to_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Data's column batch (dict of arrays) as a list of row dicts."""
    names = list(batch)
    n = len(batch[names[0]]) if names else 0
    return [{k: plain(batch[k][i]) for k in names} for i in range(n)]


def rows_to_batch(
    rows: Sequence[dict[str, Any]], fields: Sequence[str] = RESULT_FIELDS
) -> dict[str, list]:
    """Row dicts as a column batch with exactly ``fields`` (one schema per operator)."""
    return {k: [r[k] for r in rows] for k in fields}


def with_pixels(row: dict[str, Any], image: np.ndarray | None = None) -> dict[str, Any]:
    """``row`` carrying ``image`` as raw bytes with its shape and dtype (None: no pixels).

    Raw bytes, not a tensor column: images of different sizes in one block are what
    Ray Data's variable-shape tensors fail on (ray#38050, ray#49883)."""
    if image is None:
        return {**row, "pixels": b"", "height": 0, "width": 0, "channels": 0, "dtype": ""}
    h, w, c = image.shape
    data = np.ascontiguousarray(image).tobytes()
    return {
        **row,
        "pixels": data,
        "height": h,
        "width": w,
        "channels": c,
        "dtype": image.dtype.name,
    }


def pixels_of(row: dict[str, Any]) -> np.ndarray:
    """The image a :func:`with_pixels` row carries (read-only, no copy)."""
    shape = (int(row["height"]), int(row["width"]), int(row["channels"]))
    return np.frombuffer(row["pixels"], dtype=np.dtype(row["dtype"])).reshape(shape)


def error_row(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    nan = float("nan")
    return {
        "key": row["key"],
        "output_key": row["output_key"],
        "error": reason or type(exc).__name__,
        **dict.fromkeys(METRIC_FIELDS, nan),
        "height": 0,
        "width": 0,
        "channels": 0,
        "bit_depth": 0,
        "seconds": 0.0,
        "skipped": False,
        "skipped_reason": "",
        "reference": row.get("reference") or "",
        "meta": row.get("meta") or "{}",
    }
