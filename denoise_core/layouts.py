"""Recognise image-set layouts and turn a file listing into ingest items.

Layout functions work on a plain listing (relative key -> URI), so they are pure and
cheap to test; :func:`list_source` produces that listing for a folder, an ``s3://``
prefix or a ``.zip`` archive.

Layouts:
- ``sidd``: SIDD Small/Medium sRGB, ``<scene folder>/[NNNN_]GT_SRGB_0xx.PNG`` + NOISY twin.
- ``sidd-mat``: ``ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat``.
- ``pairs``: suffix pairs (``*_real`` / ``*_mean`` as PolyU, ``*_noisy`` / ``*_clean`` …)
  or ``noisy/`` + ``clean/`` (or ``gt/``) folders with matching names.
- ``clean``: clean images only; noise is synthesised at training time.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import sidd, storage

LAYOUTS = ("auto", "sidd", "sidd-mat", "pairs", "clean")

# (noisy suffix, clean suffix), matched case-insensitively at the end of the file stem.
DEFAULT_SUFFIX_PAIRS = (
    ("_real", "_mean"),
    ("_noisy", "_clean"),
    ("_noisy", "_gt"),
    ("_noisy", "_target"),
)
# (noisy folder, clean folder) names, matched case-insensitively.
DEFAULT_FOLDER_PAIRS = (("noisy", "clean"), ("noisy", "gt"), ("input", "target"))

# Crops of one shot are often numbered (PolyU: ``Canon5D2_5_160_3200_chair_11``): one scene.
DEFAULT_SCENE_PATTERN = r"^(?P<scene>.+?)(?:_\d+)?$"

VAL_BLOCKS_SPLIT = "val_blocks"


@dataclass
class Item:
    """One unit of ingest: a noisy/clean pair, a clean image, or a pair of .mat block files."""

    key: str
    scene: str
    layout: str
    clean: str | None = None
    noisy: str | None = None
    size_bytes: int = 0
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=sidd.empty_metadata)


@dataclass
class Rejected:
    """An input refused while listing, with the reason users will read."""

    key: str
    reason: str


@dataclass
class Listing:
    """Files of a source: relative key -> (URI, size in bytes)."""

    root: str
    files: dict[str, tuple[str, int]]


def list_source(src: str) -> Listing:
    """List every file under a folder, ``s3://`` prefix or ``.zip`` archive."""
    if src.lower().endswith(".zip"):
        fs, _ = storage.open_fs(f"zip://::{src}")
        files = {
            key: (f"zip://{key}::{src}", int(info.get("size", 0)))
            for key, info in sorted(fs.find("", detail=True).items())
            if info.get("type") != "directory"
        }
        return Listing(src, files)
    fs, path = storage.open_fs(src)
    if not fs.exists(path):
        raise FileNotFoundError(f"source does not exist: {src}")
    if not fs.isdir(path):
        raise NotADirectoryError(f"source is neither a folder, a prefix nor a .zip: {src}")
    root = path.rstrip("/")
    files = {}
    for p, info in sorted(fs.find(path, detail=True).items()):
        key = p[len(root) + 1 :] if p.startswith(root + "/") else posixpath.basename(p)
        files[key] = (storage.protocol_uri(fs, p), int(info.get("size", 0)))
    return Listing(src, files)


def detect_layout(listing: Listing) -> str:
    """Best guess of the layout from file names alone."""
    names = {posixpath.basename(k) for k in listing.files}
    if sidd.MAT_NOISY in names or sidd.MAT_GT in names:
        return "sidd-mat"
    for key in listing.files:
        parts = key.split("/")
        if (
            len(parts) >= 2
            and sidd.SCENE_FOLDER_RE.match(parts[-2])
            and sidd.SRGB_FILE_RE.match(parts[-1])
        ):
            return "sidd"
    images = [k for k in listing.files if storage.is_input_image(k)]
    stems = [posixpath.splitext(k)[0].lower() for k in images]
    for noisy_sfx, clean_sfx in DEFAULT_SUFFIX_PAIRS:
        if any(s.endswith(noisy_sfx) for s in stems) and any(s.endswith(clean_sfx) for s in stems):
            return "pairs"
    folders = {part.lower() for k in images for part in k.split("/")[:-1]}
    for noisy_dir, clean_dir in DEFAULT_FOLDER_PAIRS:
        if noisy_dir in folders and clean_dir in folders:
            return "pairs"
    return "clean"


def _scene_of(stem_key: str, pattern: re.Pattern[str]) -> str:
    folder, name = posixpath.split(stem_key)
    m = pattern.match(name)
    scene = m.group("scene") if m and "scene" in pattern.groupindex else name
    return posixpath.join(folder, scene) if folder else scene


def sidd_items(listing: Listing) -> tuple[list[Item], list[Rejected]]:
    """Pairs of SIDD Small/Medium sRGB images inside scene-instance folders."""
    items, rejected = [], []
    by_key = {k: v for k, v in listing.files.items() if not storage.is_hidden_key(k)}
    for key, (uri, size) in by_key.items():
        parts = key.split("/")
        if len(parts) < 2:
            continue
        meta = sidd.parse_scene_folder(parts[-2])
        m = sidd.SRGB_FILE_RE.match(parts[-1])
        if meta is None or m is None:
            continue
        kind = m["kind"].upper()
        twin_name = re.sub(
            r"(GT|NOISY)_SRGB", "NOISY_SRGB" if kind == "GT" else "GT_SRGB", parts[-1], flags=re.I
        )
        twin_candidates = [
            k
            for k in by_key
            if k.rsplit("/", 1)[0] == key.rsplit("/", 1)[0]
            and k.rsplit("/", 1)[-1].lower() == twin_name.lower()
        ]
        if kind == "NOISY":
            if not twin_candidates:
                rejected.append(Rejected(key, "noisy image without ground truth (no GT_SRGB twin)"))
            continue
        if not twin_candidates:
            rejected.append(Rejected(key, "ground truth without noisy image (no NOISY_SRGB twin)"))
            continue
        noisy_uri, noisy_size = by_key[twin_candidates[0]]
        items.append(
            Item(
                key=twin_candidates[0],
                scene=meta["scene"],
                layout="sidd",
                clean=uri,
                noisy=noisy_uri,
                size_bytes=size + noisy_size,
                meta=meta,
            )
        )
    return items, rejected


def sidd_mat_items(listing: Listing) -> tuple[list[Item], list[Rejected]]:
    """The SIDD validation block files, as one item (expanded to blocks by the reader)."""
    by_name: dict[str, list[str]] = {}
    for key in listing.files:
        by_name.setdefault(posixpath.basename(key), []).append(key)
    noisy, gt = by_name.get(sidd.MAT_NOISY, []), by_name.get(sidd.MAT_GT, [])
    if noisy and not gt:
        return [], [Rejected(noisy[0], f"noisy blocks without ground truth ({sidd.MAT_GT})")]
    if gt and not noisy:
        return [], [Rejected(gt[0], f"ground-truth blocks without noisy ({sidd.MAT_NOISY})")]
    if not noisy:
        return [], []
    (n_uri, n_size), (g_uri, g_size) = listing.files[noisy[0]], listing.files[gt[0]]
    item = Item(
        key=noisy[0],
        scene="sidd-validation",
        layout="sidd-mat",
        clean=g_uri,
        noisy=n_uri,
        size_bytes=n_size + g_size,
        split=VAL_BLOCKS_SPLIT,
    )
    return [item], []


def pair_items(
    listing: Listing,
    suffix_pairs: Iterable[tuple[str, str]] = DEFAULT_SUFFIX_PAIRS,
    folder_pairs: Iterable[tuple[str, str]] = DEFAULT_FOLDER_PAIRS,
    scene_pattern: str = DEFAULT_SCENE_PATTERN,
) -> tuple[list[Item], list[Rejected]]:
    """Noisy/clean pairs matched by file-name suffix or by parallel folders."""
    pattern = re.compile(scene_pattern)
    images = {k: v for k, v in listing.files.items() if storage.is_input_image(k)}
    # Map every image to (role, pair id); the pair id is what noisy and clean share.
    roles: dict[str, tuple[str, str]] = {}
    for key in images:
        stem, _ = posixpath.splitext(key)
        low = stem.lower()
        for noisy_sfx, clean_sfx in suffix_pairs:
            if low.endswith(noisy_sfx.lower()):
                roles[key] = ("noisy", stem[: -len(noisy_sfx)])
                break
            if low.endswith(clean_sfx.lower()):
                roles[key] = ("clean", stem[: -len(clean_sfx)])
                break
        else:
            parts = stem.split("/")
            for i, part in enumerate(parts[:-1]):
                for noisy_dir, clean_dir in folder_pairs:
                    role = {noisy_dir: "noisy", clean_dir: "clean"}.get(part.lower())
                    if role:
                        rest = "/".join(parts[:i] + ["*"] + parts[i + 1 :])
                        roles[key] = (role, rest)
                        break
                if key in roles:
                    break
    groups: dict[str, dict[str, str]] = {}
    for key, (role, pair_id) in roles.items():
        groups.setdefault(pair_id, {}).setdefault(role, key)
    items, rejected = [], []
    for pair_id, members in sorted(groups.items()):
        if "clean" not in members:
            rejected.append(Rejected(members["noisy"], "noisy image without ground truth"))
            continue
        if "noisy" not in members:
            rejected.append(Rejected(members["clean"], "ground truth without noisy image"))
            continue
        (n_uri, n_size), (c_uri, c_size) = images[members["noisy"]], images[members["clean"]]
        scene_key = pair_id.replace("/*/", "/").replace("*/", "")
        items.append(
            Item(
                key=members["noisy"],
                scene=_scene_of(scene_key, pattern),
                layout="pairs",
                clean=c_uri,
                noisy=n_uri,
                size_bytes=n_size + c_size,
            )
        )
    return items, rejected


def clean_items(
    listing: Listing, scene_pattern: str = DEFAULT_SCENE_PATTERN
) -> tuple[list[Item], list[Rejected]]:
    """Every image as a clean-only item."""
    pattern = re.compile(scene_pattern)
    items = [
        Item(
            key=key,
            scene=_scene_of(posixpath.splitext(key)[0], pattern),
            layout="clean",
            clean=uri,
            size_bytes=size,
        )
        for key, (uri, size) in listing.files.items()
        if storage.is_input_image(key)
    ]
    return items, []


def collect_items(
    listing: Listing, layout: str = "auto", scene_pattern: str = DEFAULT_SCENE_PATTERN
) -> tuple[str, list[Item], list[Rejected]]:
    """Items and listing-time rejections for ``layout`` (detected when ``auto``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(listing)
    if layout == "sidd":
        items, rejected = sidd_items(listing)
    elif layout == "sidd-mat":
        items, rejected = sidd_mat_items(listing)
    elif layout == "pairs":
        items, rejected = pair_items(listing, scene_pattern=scene_pattern)
    else:
        items, rejected = clean_items(listing, scene_pattern=scene_pattern)
    return layout, items, rejected


def assign_splits(items: list[Item], val_fraction: float, seed: int) -> None:
    """Split by scene, deterministically: every item of a scene lands on the same side.

    At least one scene stays in train; with ``val_fraction > 0`` and two or more
    scenes at least one goes to val. Items already on their own split (SIDD
    validation blocks) keep it.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("--val-fraction must be in [0, 1)")
    scenes = sorted({it.scene for it in items if it.split == "train"})
    n_val = 0
    if val_fraction > 0 and len(scenes) > 1:
        n_val = min(len(scenes) - 1, max(1, math.floor(len(scenes) * val_fraction + 0.5)))
    rng = np.random.default_rng(seed)
    val_scenes = set(rng.permutation(scenes)[:n_val].tolist()) if n_val else set()
    for it in items:
        if it.split == "train" and it.scene in val_scenes:
            it.split = "val"
