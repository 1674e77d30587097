"""``_manifest.json``: the marker that a data set is complete, and its table of contents.

Ingest writes it last; readers refuse a folder without it, so a half-written data
set is never mistaken for a finished one. Readers take the file list from here
rather than listing the folder, so stray or partial files are never read.
"""

from __future__ import annotations

import json
from typing import Any

from . import storage

MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "errors.parquet"
SCHEMA_VERSION = 1


class DatasetNotReadyError(FileNotFoundError):
    """The URI holds no finished data set (missing or half-written)."""


def parse_set_spec(spec: str) -> tuple[str, str | None]:
    """``URI[#SPLIT]``, the one way commands name one split of a data set, as (URI, SPLIT or
    None when not given)."""
    uri, _, split = spec.partition("#")
    return uri, split or None


def manifest_uri(root: str) -> str:
    return storage.join(root, MANIFEST_NAME)


def write_manifest(root: str, manifest: dict[str, Any]) -> None:
    data = json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, indent=2, sort_keys=True)
    storage.write_bytes_atomic(manifest_uri(root), data.encode())


def read_manifest(root: str) -> dict[str, Any]:
    uri = manifest_uri(root)
    if not storage.exists(uri):
        raise DatasetNotReadyError(
            f"no {MANIFEST_NAME} under {root}: not an ingested data set, or ingest did not finish"
        )
    manifest = json.loads(storage.read_bytes(uri))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetNotReadyError(
            f"{uri}: schema version {manifest.get('schema_version')} (expected {SCHEMA_VERSION})"
        )
    return manifest


def split_files(root: str, split: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """URIs of the shard files of ``split`` (empty when the split has no rows)."""
    manifest = manifest or read_manifest(root)
    info = manifest["splits"].get(split)
    if info is None:
        available = ", ".join(sorted(manifest["splits"])) or "none"
        raise KeyError(f"{root} has no split {split!r} (available: {available})")
    return [storage.join(root, *f["path"].split("/")) for f in info["files"]]
