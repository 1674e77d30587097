"""The Parquet shard format written by ingest and read by training and bulk runs.

One row is one patch pair (or one clean patch): PNG bytes for ``noisy`` (null for
clean-only sets) and ``clean``, the patch position in its source image, and SIDD
metadata where known. Files live under ``DST/<split>/part-*.parquet``; a
``_manifest.json`` written last lists them (see :mod:`denoise_core.manifest`).

Shards are sized for streaming: a file is closed once it reaches
``target_file_bytes`` (default 64 MiB) and a row group is flushed every
``row_group_bytes`` (default 8 MiB), so a reader holds a few MiB per row group
whatever the patch size.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_key", pa.string()),
        ("split", pa.string()),
        ("layout", pa.string()),
        ("scene", pa.string()),
        ("scene_instance", pa.string()),
        ("phone", pa.string()),
        ("iso", pa.int32()),
        ("shutter", pa.int32()),
        ("illuminant", pa.int32()),
        ("brightness", pa.string()),
        ("image_index", pa.int32()),
        ("block_index", pa.int32()),
        ("y", pa.int32()),
        ("x", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("channels", pa.int8()),
        ("bit_depth", pa.int8()),
        ("noisy", pa.binary()),
        ("clean", pa.binary()),
    ]
)
# errors.parquet of `denoise ingest` and `denoise run`: one row per input skipped, why.
ERRORS_SCHEMA = pa.schema([("key", pa.string()), ("reason", pa.string())])

DEFAULT_TARGET_FILE_BYTES = 64 * 2**20
DEFAULT_ROW_GROUP_BYTES = 8 * 2**20


@dataclass
class WrittenFile:
    path: str  # relative to the dataset root
    split: str
    rows: int
    bytes: int


@dataclass
class _OpenShard:
    uri: str
    rel: str
    writer: pq.ParquetWriter
    sink: Any
    rows: int = 0
    bytes: int = 0


@dataclass
class ShardWriter:
    """Rolls rows into size-bounded Parquet files, one stream per split.

    File names carry the work-unit id so parallel tasks never collide and a retried
    task overwrites its own files instead of adding duplicates.
    """

    root: str
    unit_id: int
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES
    written: list[WrittenFile] = field(default_factory=list)
    _buffers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _buffer_bytes: dict[str, int] = field(default_factory=dict)
    _open: dict[str, _OpenShard] = field(default_factory=dict)
    _seq: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        split = row["split"]
        self._buffers.setdefault(split, []).append(row)
        size = len(row.get("clean") or b"") + len(row.get("noisy") or b"")
        self._buffer_bytes[split] = self._buffer_bytes.get(split, 0) + size
        if self._buffer_bytes[split] >= self.row_group_bytes:
            self._flush(split)

    def _flush(self, split: str) -> None:
        rows = self._buffers.get(split)
        if not rows:
            return
        shard = self._open.get(split) or self._open_shard(split)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        shard.writer.write_table(table, row_group_size=len(rows))
        shard.rows += len(rows)
        shard.bytes += self._buffer_bytes[split]
        self._buffers[split], self._buffer_bytes[split] = [], 0
        if shard.bytes >= self.target_file_bytes:
            self._close(split)

    def _open_shard(self, split: str) -> _OpenShard:
        seq = self._seq.get(split, 0)
        self._seq[split] = seq + 1
        rel = posixpath.join(split, f"part-{self.unit_id:05d}-{seq:03d}.parquet")
        uri = storage.join(self.root, *rel.split("/"))
        fs, path = storage.open_fs(uri)
        if not storage.is_remote_fs(fs):
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
        sink = fs.open(path, "wb")
        writer = pq.ParquetWriter(sink, SCHEMA, compression="none")  # PNG bytes are compressed
        shard = _OpenShard(uri=uri, rel=rel, writer=writer, sink=sink)
        self._open[split] = shard
        return shard

    def _close(self, split: str) -> None:
        shard = self._open.pop(split, None)
        if shard is None:
            return
        shard.writer.close()
        shard.sink.close()
        fs, path = storage.open_fs(shard.uri)
        self.written.append(WrittenFile(shard.rel, split, shard.rows, int(fs.size(path))))

    def close(self) -> list[WrittenFile]:
        """Flush and close everything; the files written by this unit."""
        for split in list(self._buffers):
            self._flush(split)
        for split in list(self._open):
            self._close(split)
        return self.written


def errors_table(errors: Iterable[dict[str, str]]) -> pa.Table:
    """The ``errors.parquet`` table of skipped inputs (``key``, ``reason``), sorted by key."""
    rows = sorted(
        ({"key": e["key"], "reason": e["reason"]} for e in errors),
        key=lambda e: e["key"],
    )
    return pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    """A table as the bytes of one Parquet file (written atomically by the caller)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
