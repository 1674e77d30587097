"""Planning a run: what to denoise, where each output goes, against what reference.

Everything here is decided in the driver before any pixel is read, from listings
only, so that a bad OUTPUT, a clash with an input or an empty INPUT is refused
before Ray starts.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from .. import layouts, manifest, sidd, storage

METRICS_NAME = "metrics.parquet"
SUMMARY_NAME = "summary.json"
ERRORS_NAME = "errors.parquet"
REPORT_NAME = "report.html"
RUN_FILES = (METRICS_NAME, SUMMARY_NAME, ERRORS_NAME, REPORT_NAME)

OUTPUT_FORMATS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif")
OUTPUT_FORMATS += (".avif",)  # 8- or 10-bit, metadata given to the encoder (codecs)
KEEP_FORMAT = "keep"  # --format keep (the default): each output in its input's format
_TMP_RE = re.compile(r"\.tmp-[0-9a-f]{32}$")  # storage.write_bytes_atomic's temporary names


@dataclass
class WorkItem:
    """One image to denoise; only small strings, so it travels cheaply through Ray."""

    key: str  # the input's key (relative to INPUT); metrics and errors use it
    output_key: str  # where the result goes, relative to OUTPUT
    noisy: str = ""  # input URI ("" when the bytes come with the row, as from Parquet)
    reference: str = ""  # ground-truth URI, "" when there is none
    meta: str = "{}"  # JSON of the group columns (phone, iso, brightness, scene, folder)


@dataclass
class Plan:
    """What :func:`plan_run` found: items to run, listing-time errors and provenance."""

    source: str  # "files" or "parquet"
    layout: str  # detected layout, "reference" with --reference, "parquet"
    items: list[WorkItem] = field(default_factory=list)  # file inputs only
    parquet_files: list[str] = field(default_factory=list)  # Parquet inputs only
    parquet_keys: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)  # output keys already under OUTPUT
    missing_reference: int = 0  # with --reference: inputs that found no reference
    ignored: int = 0  # non-image files and ground-truth images not denoised
    other_files: dict[str, int] = field(default_factory=dict)  # extension -> count, not images
    fmt: str | None = None  # --format, normalised (".png"), None keeps each input's

    @property
    def total(self) -> int:
        return len(self.parquet_keys) if self.source == "parquet" else len(self.items)

    def output_keys(self) -> list[str]:
        if self.source == "parquet":
            return [parquet_output_key(k, self.fmt) for k in self.parquet_keys]
        return [it.output_key for it in self.items]

    def to_skip(self, overwrite: bool) -> int:
        return 0 if overwrite else sum(k in self.existing for k in self.output_keys())


def normalize_format(fmt: str | None) -> str | None:
    """``png`` / ``.PNG`` -> ``.png``; None (``keep``, empty) keeps each input's own format."""
    if not fmt or fmt.lower() == KEEP_FORMAT:
        return None
    ext = "." + fmt.lower().lstrip(".")
    if ext not in OUTPUT_FORMATS:
        choices = ", ".join((KEEP_FORMAT, *OUTPUT_FORMATS))
        raise ValueError(f"unsupported --format {fmt!r}; choose one of {choices}")
    return ext


def output_key(key: str, fmt: str | None = None) -> str:
    """The output key of input ``key``: the same key, with the extension of ``fmt`` if given."""
    if fmt is None:
        return key
    return posixpath.splitext(key)[0] + fmt


def parquet_output_key(row_key: str, fmt: str | None = None) -> str:
    """Rows of an ingested data set become ``<row key>.png`` (or ``--format``)."""
    return row_key + (fmt or ".png")


def key_meta(key: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Group columns of one input: SIDD metadata from its scene folder where known."""
    folder = posixpath.dirname(key) or "."
    parsed = dict(meta or {})
    if not parsed.get("phone"):
        for part in reversed(key.split("/")[:-1]):
            found = sidd.parse_scene_folder(part)
            if found:
                parsed = found
                break
    return {
        "phone": parsed.get("phone"),
        "iso": None if parsed.get("iso") is None else int(parsed["iso"]),
        "brightness": parsed.get("brightness"),
        "scene": parsed.get("scene"),
        "folder": folder,
    }


def list_images(
    root: str, exclude_prefix: str | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """``{key: URI}`` of every image under ``root`` (recursive, case-insensitive
    extensions, hidden files skipped) and the other files' extensions with their counts,
    commonest first (hidden ones not counted), so that a run can say what it left alone."""
    listing = layouts.list_source(root)
    images: dict[str, str] = {}
    others: dict[str, int] = {}
    for key, (uri, _) in listing.files.items():
        if exclude_prefix and (key == exclude_prefix or key.startswith(exclude_prefix + "/")):
            continue
        if storage.is_input_image(key):
            images[key] = uri
        elif not storage.is_hidden_key(key):
            kind = file_kind(key)
            others[kind] = others.get(kind, 0) + 1
    return images, dict(sorted(others.items(), key=lambda kv: (-kv[1], kv[0])))


def file_kind(key: str) -> str:
    """A key's extension in lower case (``.gif``), or ``no extension``."""
    ext = posixpath.splitext(posixpath.basename(key))[1].lower()
    return ext or "no extension"


def describe_other_files(kinds: dict[str, int], most: int = 4) -> str:
    """``3 other files left alone (2 .dng, 1 .txt)`` from :func:`list_images`'s counts
    (commonest first), the first ``most`` kinds named; "" if none."""
    total = sum(kinds.values())
    if not total:
        return ""
    shown = [f"{n} {kind}" for kind, n in list(kinds.items())[:most]]
    if len(kinds) > most:
        shown.append("…")
    return f"{total} other file{'' if total == 1 else 's'} left alone ({', '.join(shown)})"


def match_references(keys: Iterable[str], refs: dict[str, str]) -> dict[str, str]:
    """Reference URI of each key: the same relative key, else the same key with any
    image extension (``a/b.jpg`` finds ``a/b.png``), case-insensitively."""
    by_stem: dict[str, str] = {}
    for rkey in sorted(refs):
        by_stem.setdefault(posixpath.splitext(rkey)[0].lower(), refs[rkey])
    lower = {k.lower(): v for k, v in sorted(refs.items(), reverse=True)}
    out = {}
    for key in keys:
        uri = (
            refs.get(key)
            or lower.get(key.lower())
            or by_stem.get(posixpath.splitext(key)[0].lower())
        )
        if uri:
            out[key] = uri
    return out


def overwritten_input(plan: Plan, output: str) -> str | None:
    """An input or reference file that writing ``plan``'s outputs under ``output`` would
    replace, else None. Why: a symbolic link inside INPUT or OUTPUT can make an output key
    and an input one file, which no check of the two folders alone can see."""
    inputs = [u for it in plan.items for u in (it.noisy, it.reference) if u]
    places = {storage.location(u): u for u in [*inputs, *plan.parquet_files]}
    for key in [*plan.output_keys(), *RUN_FILES]:
        hit = places.get(storage.location(storage.join(output, *key.split("/"))))
        if hit:
            return hit
    return None


def existing_outputs(output: str) -> set[str]:
    """Keys of every object under OUTPUT (what a resumed run skips)."""
    fs, path = storage.open_fs(output)
    fs.invalidate_cache()  # Ray workers wrote there: never trust a cached listing
    if not fs.exists(path):
        return set()
    return {storage.relative_key(output, p) for p in fs.find(path)}


def remove_partial_writes(output: str) -> int:
    """Delete temporary files an interrupted local write left behind; returns how many."""
    fs, path = storage.open_fs(output)
    if storage.is_remote_fs(fs) or not fs.exists(path):
        return 0
    stale = [p for p in fs.find(path) if _TMP_RE.search(p)]
    for p in stale:
        fs.rm(p)
    return len(stale)


def is_dataset(uri: str) -> bool:
    """True for a folder holding an ingested Parquet data set (``_manifest.json``)."""
    try:
        return storage.exists(manifest.manifest_uri(uri))
    except Exception:
        return False


def plan_run(
    src: str,
    output: str,
    *,
    reference: str | None = None,
    layout: str = "auto",
    fmt: str | None = None,
    limit: int | None = None,
) -> Plan:
    """Everything the driver decides before any pixel is read.

    ``layout``: ``auto`` pairs noisy images with their ground truth in SIDD folders,
    suffix pairs (``*_real``/``*_mean``, ``*_noisy``/``*_clean``) and ``noisy/`` +
    ``clean/`` folders (the ground-truth images are then references, not inputs);
    ``none`` denoises every image. ``--reference`` overrides both.
    """
    if is_dataset(src):
        plan = _plan_parquet(src, fmt)
    else:
        plan = _plan_files(src, output, reference=reference, layout=layout, fmt=fmt)
    if limit is not None:
        plan.items = plan.items[:limit]
        plan.parquet_keys = plan.parquet_keys[:limit]
    plan.existing = existing_outputs(output) - set(RUN_FILES)
    plan.fmt = fmt
    return plan


def _plan_files(src: str, output: str, *, reference, layout, fmt) -> Plan:
    exclude = storage.relative_location(src, output)
    images, others = list_images(src, exclude_prefix=exclude or None)
    ignored = sum(others.values())
    if reference:
        refs, _ = list_images(reference)
        matched = match_references(images, refs)
        items = [
            WorkItem(k, output_key(k, fmt), uri, matched.get(k, ""), json.dumps(key_meta(k)))
            for k, uri in sorted(images.items())
        ]
        plan = Plan("files", "reference", items, ignored=ignored, other_files=others)
        plan.missing_reference = sum(1 for it in items if not it.reference)
        return plan
    if layout not in ("auto", "sidd", "pairs", "none"):
        raise ValueError(f"unknown layout {layout!r}; choose auto, sidd, pairs or none")
    detected = "none"
    pairs: dict[str, layouts.Item] = {}
    clean_keys: set[str] = set()
    if layout != "none":
        listing = layouts.Listing(src, {k: (u, 0) for k, u in images.items()})
        detected, found, rejected = layouts.collect_items(listing, layout)
        if detected in ("sidd", "pairs"):
            pairs = {it.key: it for it in found}
            uri_key = {u: k for k, u in images.items()}
            clean_keys = {uri_key[it.clean] for it in found if it.clean in uri_key}
            clean_keys |= {r.key for r in rejected if r.reason.startswith("ground truth without")}
        else:
            detected = "none"
    items = []
    for key, uri in sorted(images.items()):
        if key in clean_keys:
            continue
        pair = pairs.get(key)
        meta = key_meta(key, pair.meta if pair else None)
        items.append(
            WorkItem(key, output_key(key, fmt), uri, pair.clean if pair else "", json.dumps(meta))
        )
    return Plan("files", detected, items, ignored=ignored + len(clean_keys), other_files=others)


def _plan_parquet(src: str, fmt: str | None) -> Plan:
    info = manifest.read_manifest(src)
    if not info.get("paired", False):
        raise ValueError(
            f"{src} is a clean-only data set (no noisy images to denoise); "
            "run on the image folder instead"
        )
    files = [f for split in sorted(info["splits"]) for f in manifest.split_files(src, split, info)]
    keys: list[str] = []
    for uri in files:
        fs, path = storage.open_fs(uri)
        with fs.open(path, "rb") as fh:
            keys.extend(pq.read_table(fh, columns=["key"]).column("key").to_pylist())
    return Plan("parquet", "parquet", parquet_files=files, parquet_keys=keys, fmt=fmt)
