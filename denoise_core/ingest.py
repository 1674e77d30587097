"""Turn ingest items into shard rows: read, decode, check, crop, PNG-encode, write.

Ray-free so it can be tested alone; ``jobs/ingest.py`` runs :func:`process_unit`
as Ray Data tasks, one work unit (a few items) per task, so memory per task is
bounded by the largest image pair in it, not by the data set.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import codecs, sidd, storage
from .layouts import Item
from .shards import ShardWriter, WrittenFile


@dataclass
class CropSpec:
    """``patch=None`` keeps whole images; otherwise a grid of patch×patch crops.

    Crops start at 0 and step by ``stride``; a border narrower than a patch is dropped.
    """

    patch: int | None = None
    stride: int | None = None

    def positions(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        if self.patch is None:
            return [(0, 0, height, width)]
        stride = self.stride or self.patch
        ys = range(0, height - self.patch + 1, stride)
        xs = range(0, width - self.patch + 1, stride)
        return [(y, x, self.patch, self.patch) for y in ys for x in xs]


@dataclass
class UnitResult:
    files: list[WrittenFile] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    items: int = 0
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [asdict(f) for f in self.files],
            "errors": self.errors,
            "items": self.items,
            "rows": self.rows,
        }


def _decode(uri: str) -> np.ndarray:
    try:
        data = storage.read_bytes(uri)
    except Exception as exc:  # unreadable object: permissions, vanished, bad zip member
        raise codecs.ImageDecodeError(f"unreadable: {type(exc).__name__}: {exc}") from exc
    image = codecs.decode_image(data)
    return codecs.to_rgb(image)


def load_pair(item: Item) -> tuple[np.ndarray | None, np.ndarray]:
    """Decoded (noisy, clean) for an item, checked to be a usable pair."""
    clean = _decode(item.clean)
    if item.noisy is None:
        return None, clean
    noisy = _decode(item.noisy)
    if noisy.shape != clean.shape:
        raise codecs.ImageDecodeError(
            f"size mismatch: noisy {noisy.shape[1]}x{noisy.shape[0]} vs "
            f"clean {clean.shape[1]}x{clean.shape[0]}"
        )
    if noisy.dtype != clean.dtype:
        raise codecs.ImageDecodeError(
            f"bit depth mismatch: noisy {noisy.dtype} vs clean {clean.dtype}"
        )
    return noisy, clean


def _rows_for_images(
    item: Item,
    noisy: np.ndarray | None,
    clean: np.ndarray,
    crop: CropSpec,
    extra: dict[str, Any],
    key: str,
) -> Iterator[dict[str, Any]]:
    height, width = clean.shape[:2]
    positions = crop.positions(height, width)
    if not positions:
        raise codecs.ImageDecodeError(
            f"image {width}x{height} is smaller than --patch {crop.patch}"
        )
    depth = 16 if clean.dtype == np.uint16 else 8
    for y, x, h, w in positions:
        sl = (slice(y, y + h), slice(x, x + w))
        yield {
            "key": key if crop.patch is None else f"{key}#y{y}x{x}",
            "source_key": item.key,
            "split": item.split,
            "layout": item.layout,
            **item.meta,
            "scene": item.meta.get("scene") or item.scene,
            **extra,
            "y": y,
            "x": x,
            "height": h,
            "width": w,
            "channels": clean.shape[2],
            "bit_depth": depth,
            "noisy": None if noisy is None else codecs.encode_png(noisy[sl]),
            "clean": codecs.encode_png(clean[sl]),
        }


def _mat_rows(item: Item, crop: CropSpec) -> Iterator[dict[str, Any]]:
    """Rows of the SIDD validation blocks (images × blocks × H × W × 3)."""
    from scipy.io import loadmat

    def load(uri: str, name: str) -> np.ndarray:
        try:
            mat = loadmat(io.BytesIO(storage.read_bytes(uri)))
        except Exception as exc:
            raise codecs.ImageDecodeError(f"unreadable .mat file: {exc}") from exc
        var = name.removesuffix(".mat")
        if var not in mat:
            raise codecs.ImageDecodeError(f"{name} has no array named {var}")
        arr = mat[var]
        if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise codecs.ImageDecodeError(
                f"{var}: expected images×blocks×H×W×3 uint8, got {arr.shape} {arr.dtype}"
            )
        return arr

    noisy = load(item.noisy, sidd.MAT_NOISY)
    clean = load(item.clean, sidd.MAT_GT)
    if noisy.shape != clean.shape:
        raise codecs.ImageDecodeError(
            f"block arrays differ: noisy {noisy.shape} vs gt {clean.shape}"
        )
    for i in range(noisy.shape[0]):
        for b in range(noisy.shape[1]):
            extra = {"image_index": i, "block_index": b}
            yield from _rows_for_images(
                item, noisy[i, b], clean[i, b], crop, extra, f"{item.key}#i{i:02d}b{b:02d}"
            )


def process_unit(
    items: list[Item],
    root: str,
    unit_id: int,
    crop: CropSpec,
    target_file_bytes: int,
    row_group_bytes: int,
) -> UnitResult:
    """Ingest ``items`` into shard files under ``root``; bad items become error records."""
    writer = ShardWriter(root, unit_id, target_file_bytes, row_group_bytes)
    result = UnitResult()
    for item in items:
        try:
            if item.layout == "sidd-mat":
                # Streamed: the block arrays are checked on load, before the first row.
                rows = _mat_rows(item, crop)
            else:
                # Materialised per image so a failing image leaves no partial rows.
                noisy, clean = load_pair(item)
                extra = {"image_index": None, "block_index": None}
                rows = iter(list(_rows_for_images(item, noisy, clean, crop, extra, item.key)))
            n_rows = 0
            for row in rows:
                writer.add(row)
                n_rows += 1
        except codecs.ImageDecodeError as exc:
            result.errors.append({"key": item.key, "reason": str(exc)})
            continue
        except Exception as exc:  # an unforeseen bad input must not sink the other items
            result.errors.append({"key": item.key, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        result.items += 1
        result.rows += n_rows
    result.files = writer.close()
    return result


def plan_units(items: list[Item], target_bytes: int, max_items: int = 64) -> list[list[Item]]:
    """Group items into work units of about ``target_bytes`` of source data.

    One unit is one Ray task and writes its own shard files, so units must be big
    enough for well-filled shards and small enough to spread over a cluster.
    """
    units: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in sorted(items, key=lambda it: (it.split, it.key)):
        if current and (size + item.size_bytes > target_bytes or len(current) >= max_items):
            units.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size_bytes
    if current:
        units.append(current)
    return units
