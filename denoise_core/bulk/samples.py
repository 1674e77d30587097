"""Report samples: which images the report shows, and their pixels.

The best, median and worst images are decoded again from storage after the run
(three images, whatever the run's size), so no decoded pixels are kept in the
driver while the run streams.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .. import codecs, storage
from .plan import Plan, WorkItem
from .rows import copied_unchanged


def pick_samples(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Best, median and worst image by PSNR (with references), else the images the
    denoiser changed most, median and least (by ``change_rms``); ``--skip-below``
    copies are not shown (their output is their input)."""
    records = [r for r in records if not copied_unchanged(r)]
    scored = [r for r in records if r["psnr"] is not None and math.isfinite(r["psnr"])]
    if scored:
        by, labels = sorted(scored, key=lambda r: r["psnr"]), ("worst", "median", "best")
    else:
        changed = [r for r in records if r["change_rms"] is not None]
        by = sorted(changed, key=lambda r: r["change_rms"])
        labels = ("least changed", "median change", "most changed")
    if not by:
        return []
    picks = {labels[2]: by[-1], labels[1]: by[len(by) // 2], labels[0]: by[0]}
    seen, out = set(), []
    for label in (labels[2], labels[1], labels[0]):
        rec = picks[label]
        if rec["key"] not in seen:
            seen.add(rec["key"])
            out.append((label, rec))
    return out


def load_sample(
    record: dict[str, Any], plan: Plan, output_root: str, item_by_key: dict[str, WorkItem]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(noisy, output, reference or None) of one image, decoded, for the report."""
    # Outputs are upright (orientation 1 or none) but for --skip-below copies, which
    # keep their input's tag: read upright, like the input.
    out = codecs.decode_image(
        storage.read_bytes(storage.join(output_root, *record["output_key"].split("/")))
    )
    if plan.source == "parquet":
        row = _parquet_row(plan.parquet_files, record["key"])
        noisy = codecs.decode_image(row["noisy"])
        ref = codecs.decode_image(row["clean"]) if row.get("clean") else None
        return noisy, out, ref
    item = item_by_key[record["key"]]
    noisy = codecs.decode_image(storage.read_bytes(item.noisy))
    ref = codecs.decode_image(storage.read_bytes(item.reference)) if item.reference else None
    return noisy, out, ref


def _parquet_row(files: list[str], key: str) -> dict[str, Any]:
    for uri in files:
        fs, path = storage.open_fs(uri)
        with fs.open(path, "rb") as fh:
            table = pq.read_table(
                fh, columns=["key", "noisy", "clean"], filters=[("key", "=", key)]
            )
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]
    raise KeyError(key)
