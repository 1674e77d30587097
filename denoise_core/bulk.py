"""The Ray-free half of ``denoise run``: plan work items, process images, aggregate.

``jobs/run.py`` only wires these into Ray Data. Everything here runs (and is
tested) in a plain process:

- :func:`plan_run` lists INPUT (a folder / ``s3://`` prefix, or a Parquet data set
  written by ``denoise ingest``), decides each image's output key and reference
  (``--reference`` by key, a paired layout, or the data set's clean twin) and
  which outputs already exist (resume).
- :class:`BulkProcessor` turns work rows into result rows, one image at a time:
  read → decode → estimate the input's noise → denoise (tiled; blended with the input
  by ``strength``; an input whose noise is below ``skip_below`` is copied through instead)
  → encode (the input's EXIF, XMP and ICC profile written in) → atomic write → metrics
  (with the output's estimated noise). Reading and
  decoding the next images and encoding/writing/scoring the previous ones run in
  a small thread pool while the model works on the current one (TensorFlow,
  OpenCV, s3fs and NumPy release the GIL), so only keys and bytes ever travel
  between Ray operators, never decoded pixels.
- :func:`metrics_table`, :func:`errors_table` and :func:`summarize` build
  ``metrics.parquet``, ``errors.parquet`` and ``summary.json``.

Resume rule: an image whose output already exists is not denoised again; its
metrics are recomputed from the existing output file (so ``metrics.parquet``
always describes the files on disk, and an interrupted run, which never wrote
its metrics, loses nothing). ``overwrite=True`` denoises every image again.

Every input ends up in exactly one of ``metrics.parquet`` (it has an output) or
``errors.parquet`` (it has none, with the reason).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import codecs, greyscale, layouts, manifest, metadata, sidd, storage
from .metrics import image_metrics, to_float01
from .noise_estimate import noise_sigma_255

METRICS_NAME = "metrics.parquet"
SUMMARY_NAME = "summary.json"
ERRORS_NAME = "errors.parquet"
REPORT_NAME = "report.html"
RUN_FILES = (METRICS_NAME, SUMMARY_NAME, ERRORS_NAME, REPORT_NAME)

OUTPUT_FORMATS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif")
KEEP_FORMAT = "keep"  # --format keep (the default): each output in its input's format
# OpenCV's WebP default (quality 100) is lossless; HEIC is x265 at --heic-quality.
LOSSY_FORMATS = (".jpg", ".jpeg", ".heic", ".heif")
# Formats that keep a 16-bit result deeper than 8 bits (HEIC as 10-bit).
DEPTH16_FORMATS = (".png", ".tif", ".tiff", ".heic", ".heif")
GROUP_COLUMNS = ("phone", "iso", "brightness")
_TMP_RE = re.compile(r"\.tmp-[0-9a-f]{32}$")  # storage.write_bytes_atomic's temporary names

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
ERRORS_SCHEMA = pa.schema([("key", pa.string()), ("reason", pa.string())])
_FLOAT_FIELDS = tuple(f.name for f in METRICS_SCHEMA if pa.types.is_floating(f.type))
_META_FIELDS = ("phone", "iso", "brightness", "scene", "folder")


# --------------------------------------------------------------------------
# Planning: what to denoise, where it goes, against what
# --------------------------------------------------------------------------


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


def is_image_key(key: str) -> bool:
    return key.lower().endswith(storage.IMAGE_EXTENSIONS)


def _hidden(key: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in key.split("/"))


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


def list_images(root: str, exclude_prefix: str | None = None) -> tuple[dict[str, str], int]:
    """``{key: URI}`` of every image under ``root`` (recursive, case-insensitive
    extensions, hidden files skipped) and the number of other files ignored."""
    listing = layouts.list_source(root)
    images, ignored = {}, 0
    for key, (uri, _) in listing.files.items():
        if exclude_prefix and (key == exclude_prefix or key.startswith(exclude_prefix + "/")):
            continue
        if is_image_key(key) and not _hidden(key):
            images[key] = uri
        else:
            ignored += 1
    return images, ignored


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
    images, ignored = list_images(src, exclude_prefix=exclude or None)
    if reference:
        refs, _ = list_images(reference)
        matched = match_references(images, refs)
        items = [
            WorkItem(k, output_key(k, fmt), uri, matched.get(k, ""), json.dumps(key_meta(k)))
            for k, uri in sorted(images.items())
        ]
        plan = Plan("files", "reference", items, ignored=ignored)
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
    return Plan("files", detected, items, ignored=ignored + len(clean_keys))


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


def rows_to_batch(rows: Sequence[dict[str, Any]]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in RESULT_FIELDS}


# --------------------------------------------------------------------------
# Processing one image
# --------------------------------------------------------------------------

# What the processor returns per image (fixed columns so every Ray block has one schema;
# NaN for metrics without a reference, "" for no error).
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

SKIPPED_EXISTING = "output existed"  # skipped_reason of a resumed image
CLEAN_REASON_PREFIX = "input noise"  # skipped_reason of a --skip-below copy starts so


class InputError(ValueError):
    """A bad input or reference; the message is the reason users read in errors.parquet."""


def color_channels(image: np.ndarray) -> np.ndarray:
    """The channels metrics look at: RGB of RGBA (alpha is passed through, not scored)."""
    return image[..., :3] if image.shape[2] == 4 else image


def check_skip_below(skip_below: float | None) -> None:
    """Raise ValueError unless ``skip_below`` is None or a finite number >= 0."""
    if skip_below is not None and not 0.0 <= skip_below < math.inf:
        raise ValueError(f"skip_below must be a noise sigma >= 0 (0-255 scale), got {skip_below}")


def image_format(data: bytes) -> str | None:
    """Pillow's format name of encoded bytes (``PNG``, ``JPEG``, ...), None if unknown."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:
        return None


_EXT_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".heic": "HEIF",  # pillow-heif's plugin, registered by codecs
    ".heif": "HEIF",
}


def check_strength(strength: float) -> None:
    """Raise ValueError unless ``strength`` is in [0, 1] (NaN is not)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")


def denoise_array(
    denoise_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Denoise a decoded HxWxC uint8/uint16 image, returning the same dtype and channels.

    ``strength`` chooses how much noise is removed: 1 is the model's output, 0 the
    input unchanged (the model is not run), values between blend
    ``output * strength + input * (1 - strength)`` on the [0, 1] scale before rounding,
    as photo editors' strength sliders do: a lighter touch keeps grain and texture.

    The model sees float RGB on the [0, 1] scale. Grey images (one channel, or three equal ones
    as in grey+alpha decoded to RGBA) go in through :func:`greyscale.model_input`,
    which gives each channel independent noise as in training, and come back as the
    channel mean (replicated grey kept its noise: +0.15 dB against +9 dB). Alpha is
    put back untouched; the result is rounded to the input's bit depth.
    """
    if image.dtype not in codecs.SUPPORTED_DTYPES:
        raise InputError(f"unsupported bit depth: {image.dtype}")
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise InputError(f"unsupported channel count: {channels}")
    check_strength(strength)
    if strength == 0.0:
        return image.copy()
    colour = color_channels(image)
    grey = channels == 1 or greyscale.is_grey(colour)
    if grey:
        model_in = greyscale.model_input(to_float01(colour[..., 0], np.float32))
    else:
        model_in = to_float01(colour, np.float32)
    out = np.asarray(denoise_fn(model_in), dtype=np.float32)
    if out.shape != model_in.shape:
        raise InputError(f"model returned shape {out.shape} for input {model_in.shape}")
    if grey:
        out = greyscale.model_output(out)
    if strength != 1.0:
        # The input's own float copy (the model's input, for colour) is scaled in place.
        base = to_float01(colour[..., :1], np.float32) if grey else model_in
        np.multiply(base, np.float32(1.0 - strength), out=base)
        out = np.multiply(out, np.float32(strength), dtype=np.float32)
        out += base
        del base
    del model_in
    top = np.iinfo(image.dtype).max
    scaled = np.multiply(out, top, dtype=np.float32)  # in place from here: no temporaries
    np.clip(scaled, 0.0, top, out=scaled)
    result = np.rint(scaled, out=scaled).astype(image.dtype)
    if grey and colour.shape[2] == 3:
        result = np.repeat(result, 3, axis=2)
    if channels == 4:
        result = np.concatenate([result, image[..., 3:]], axis=2)
    return result


def encodable(image: np.ndarray, ext: str) -> np.ndarray:
    """16-bit results for 8-bit-only formats (BMP, WebP, JPEG) are reduced to 8 bits (HEIC
    keeps them: written 10-bit)."""
    if image.dtype == np.uint16 and ext not in DEPTH16_FORMATS:
        return (image >> 8).astype(np.uint8)
    return image


def check_reference(image: np.ndarray, reference: np.ndarray) -> None:
    """A reference must have the input's size and colour channels (alpha aside)."""
    if image.shape[:2] != reference.shape[:2]:
        raise InputError(
            f"reference size mismatch: input {image.shape[1]}x{image.shape[0]}, "
            f"reference {reference.shape[1]}x{reference.shape[0]}"
        )
    ci, cr = color_channels(image).shape[2], color_channels(reference).shape[2]
    if ci != cr:
        raise InputError(f"reference has {cr} colour channel(s), input has {ci}")


def score(output: np.ndarray, noisy: np.ndarray, reference: np.ndarray | None) -> dict:
    """Metrics of the output and of the noisy input against ``reference`` (NaN without one),
    plus ``change_rms``: how much the denoiser changed the image ([0, 1] scale)."""
    out_c, in_c = color_channels(output), color_channels(noisy)
    if out_c.dtype == in_c.dtype and np.issubdtype(out_c.dtype, np.integer):
        # Integer codes differenced directly: one float32 pass instead of two conversions.
        top = float(np.iinfo(out_c.dtype).max)
        diff = np.subtract(out_c, in_c, dtype=np.float32)
        change = math.sqrt(float(np.mean(np.square(diff), dtype=np.float64))) / top
    else:
        diff = to_float01(out_c, np.float32) - to_float01(in_c, np.float32)
        change = math.sqrt(float(np.mean(np.square(diff), dtype=np.float64)))
    result = {"change_rms": change}
    nan = float("nan")
    if reference is None:
        result.update(psnr=nan, mse=nan, ssim=nan, input_psnr=nan, input_mse=nan, input_ssim=nan)
        return result
    ref_c = color_channels(reference)
    result.update(image_metrics(out_c, ref_c))
    result.update({f"input_{k}": v for k, v in image_metrics(in_c, ref_c).items()})
    return result


@dataclass
class _Loaded:
    row: dict[str, Any]
    noisy: np.ndarray | None = None
    reference: np.ndarray | None = None
    existing: np.ndarray | None = None  # the output already on disk (resume)
    file_metadata: metadata.Metadata | None = None  # the input's EXIF, XMP and ICC profile
    started: float = 0.0
    noise_in: float = math.nan  # estimated noise sigma of the input, 0-255 scale
    data: bytes = b""  # the input's encoded bytes, kept for a --skip-below copy
    clean: bool = False  # below skip_below: copied through, the model does not run
    verbatim: bool = False  # a clean input whose output has its format: bytes copied


class BulkProcessor:
    """Runs work rows through read → decode → denoise → encode → write → metrics.

    ``denoise_fn`` maps float RGB HxWx3 in [0, 1] to the same (a
    :class:`~denoise_core.inference.Denoiser`). ``existing`` holds output keys already
    under ``output_root``; they are skipped unless ``overwrite``. ``threads`` > 0
    overlaps loading and finishing with the model (``prefetch`` images read ahead);
    0 runs every step in order in the calling thread. Images whose header gives more
    than ``max_megapixels`` (``--max-megapixels``; None: no limit) are not decoded but
    reported as errors, so that one huge image cannot exhaust the actor's memory.
    ``strength`` blends the model's output with the input (:func:`denoise_array`). Each
    output carries its input's EXIF, XMP and ICC profile (:mod:`denoise_core.metadata`).

    Every input's and output's noise is estimated without a reference
    (:func:`~denoise_core.noise_estimate.estimate_sigma`, 0-255 scale). With
    ``skip_below``, an input estimated below it is copied through unchanged instead of
    denoised: its bytes as they are when the output has the input's format, else its
    pixels encoded in the output format; ``skipped_reason`` says so.
    """

    def __init__(
        self,
        denoise_fn: Callable[[np.ndarray], np.ndarray],
        output_root: str,
        *,
        existing: Iterable[str] = (),
        overwrite: bool = False,
        threads: int = 2,
        prefetch: int = 2,
        max_megapixels: float | None = codecs.DEFAULT_MAX_MEGAPIXELS,
        strength: float = 1.0,
        skip_below: float | None = None,
        jpeg_quality: int = 95,
        heic_quality: int = codecs.DEFAULT_HEIC_QUALITY,
    ) -> None:
        check_strength(strength)
        self.jpeg_quality = jpeg_quality
        self.heic_quality = heic_quality
        check_skip_below(skip_below)
        self.denoise_fn = denoise_fn
        self.strength = strength
        self.skip_below = skip_below
        self.max_megapixels = max_megapixels
        self.output_root = output_root
        self.existing = set(existing)
        self.overwrite = overwrite
        self.prefetch = max(1, prefetch)
        self.pool = ThreadPoolExecutor(threads, "bulk") if threads > 0 else None

    # -- steps -------------------------------------------------------------

    def _skip(self, row: dict[str, Any]) -> bool:
        return not self.overwrite and row["output_key"] in self.existing

    def _read(self, row: dict[str, Any], what: str) -> bytes:
        data = row.get(f"{what}_bytes") or b""
        uri = row.get(what) or ""
        if not data and uri:
            try:
                data = storage.read_bytes(uri)
            except Exception as exc:
                label = "reference: " if what == "reference" else ""
                raise InputError(f"{label}unreadable: {type(exc).__name__}: {exc}") from exc
        return data

    def _decode(self, data: bytes, what: str) -> np.ndarray:
        label = "reference: " if what == "reference" else ""
        try:
            return codecs.decode_image(data, max_megapixels=self.max_megapixels)
        except codecs.ImageTooLargeError as exc:
            limit = f"--max-megapixels {codecs.format_megapixels(exc.limit)}"
            raise InputError(f"{label}{exc.describe(limit)}") from exc
        except codecs.ImageDecodeError as exc:
            raise InputError(f"{label}{exc}") from exc

    def _load(self, row: dict[str, Any]) -> _Loaded:
        loaded = _Loaded(row, started=time.perf_counter())
        if row.get("read_error"):
            raise InputError(row["read_error"])
        data = self._read(row, "noisy")
        loaded.noisy = self._decode(data, "noisy")
        if row.get("reference") or row.get("reference_bytes"):
            loaded.reference = self._decode(self._read(row, "reference"), "reference")
            check_reference(loaded.noisy, loaded.reference)
        if self._skip(row):
            uri = storage.join(self.output_root, *row["output_key"].split("/"))
            try:
                # Outputs are written upright (orientation 1 or none); a --skip-below
                # copy keeps its input's orientation tag, and is read upright so.
                loaded.existing = codecs.decode_image(
                    storage.read_bytes(uri), max_megapixels=self.max_megapixels
                )
            except Exception:
                loaded.existing = None  # unreadable leftover: denoise again
        loaded.noise_in = noise_sigma_255(color_channels(loaded.noisy))
        if (
            loaded.existing is None
            and self.skip_below is not None
            and loaded.noise_in < self.skip_below
        ):
            loaded.clean = True
            loaded.data = data
            ext = posixpath.splitext(row["output_key"])[1].lower()
            if image_format(data) == _EXT_FORMAT.get(ext):
                loaded.verbatim = True
                return loaded  # copied byte for byte: metadata and all
        if loaded.existing is None:  # it will be written: with the input's metadata
            # decode_image turned the pixels (HEIF: libheif did, by the container's
            # transforms; the EXIF tag an iPhone also writes must then say 1)
            turned = codecs.is_heif(data) or codecs.exif_orientation(data) != 1
            size = (loaded.noisy.shape[1], loaded.noisy.shape[0])
            loaded.file_metadata = metadata.capture(data, upright_size=size if turned else None)
        return loaded

    def _finish(self, loaded: _Loaded, output: np.ndarray | None) -> dict[str, Any]:
        row, noisy = loaded.row, loaded.noisy
        assert noisy is not None
        skipped = output is None
        reason = ""
        noise_out = math.nan
        if loaded.clean:
            reason = (
                f"{CLEAN_REASON_PREFIX} {loaded.noise_in:.2f} below --skip-below "
                f"{self.skip_below:g}: copied unchanged"
            )
            written = self._copy_through(loaded)
            if written is noisy:
                noise_out = loaded.noise_in
        elif skipped:
            reason = SKIPPED_EXISTING
            written = loaded.existing
            assert written is not None
            if written.shape[:2] != noisy.shape[:2]:
                raise InputError(
                    f"existing output {row['output_key']} has another size; rerun with --overwrite"
                )
        else:
            ext = posixpath.splitext(row["output_key"])[1].lower()
            written = encodable(output, ext)
            data = self._encode(written, ext, loaded.file_metadata)
            uri = storage.join(self.output_root, *row["output_key"].split("/"))
            storage.write_bytes_atomic(uri, data)
            if ext in LOSSY_FORMATS:  # score what is on disk, as a resumed run would
                written = codecs.decode_image(data, apply_exif=False)
        if written.dtype != noisy.dtype:  # e.g. 16-bit input written as 8-bit WebP
            noisy_cmp = (noisy >> 8).astype(np.uint8) if noisy.dtype == np.uint16 else noisy
        else:
            noisy_cmp = noisy
        result = score(written, noisy_cmp, loaded.reference)
        if math.isnan(noise_out):
            noise_out = noise_sigma_255(color_channels(written))
        result.update(
            key=row["key"],
            output_key=row["output_key"],
            error="",
            height=int(noisy.shape[0]),
            width=int(noisy.shape[1]),
            channels=int(noisy.shape[2]),
            bit_depth=16 if noisy.dtype == np.uint16 else 8,
            seconds=0.0 if reason == SKIPPED_EXISTING else time.perf_counter() - loaded.started,
            skipped=skipped,
            skipped_reason=reason,
            noise_sigma_in=loaded.noise_in,
            noise_sigma_out=noise_out,
            reference=row.get("reference") or ("<dataset>" if row.get("reference_bytes") else ""),
            meta=row.get("meta") or "{}",
        )
        return result

    def _copy_through(self, loaded: _Loaded) -> np.ndarray:
        """Write a clean input to its output unchanged; returns the pixels written (the
        decoded input itself when its bytes were copied)."""
        row, noisy = loaded.row, loaded.noisy
        assert noisy is not None
        uri = storage.join(self.output_root, *row["output_key"].split("/"))
        if loaded.verbatim:
            storage.write_bytes_atomic(uri, loaded.data)
            return noisy
        ext = posixpath.splitext(row["output_key"])[1].lower()
        written = encodable(noisy, ext)
        data = self._encode(written, ext, loaded.file_metadata)
        storage.write_bytes_atomic(uri, data)
        if ext in LOSSY_FORMATS:
            written = codecs.decode_image(data, apply_exif=False)
        return written

    def _encode(self, image: np.ndarray, ext: str, meta: metadata.Metadata | None) -> bytes:
        return metadata.encode(
            image, ext, meta, jpeg_quality=self.jpeg_quality, heic_quality=self.heic_quality
        )

    @staticmethod
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

    def _denoise(self, loaded: _Loaded) -> np.ndarray | None:
        if loaded.existing is not None or loaded.clean:
            return None
        assert loaded.noisy is not None
        return denoise_array(self.denoise_fn, loaded.noisy, self.strength)

    # -- driving -----------------------------------------------------------

    def _submit(self, fn, *args) -> Future:
        if self.pool is None:
            fut: Future = Future()
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                fut.set_exception(exc)
            return fut
        return self.pool.submit(fn, *args)

    def process(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Result rows (:data:`RESULT_FIELDS`) for ``rows``, in order; never raises for
        a bad image: its result has ``error`` set."""
        n = len(rows)
        results: list[dict[str, Any] | None] = [None] * n
        loads: dict[int, Future] = {}
        finishing: list[tuple[int, Future]] = []
        for i in range(min(self.prefetch, n)):
            loads[i] = self._submit(self._load, rows[i])
        for i, row in enumerate(rows):
            if i + self.prefetch < n:
                loads[i + self.prefetch] = self._submit(self._load, rows[i + self.prefetch])
            try:
                loaded = loads.pop(i).result()
                output = self._denoise(loaded)
            except Exception as exc:
                results[i] = self.error_row(row, exc)
                continue
            finishing.append((i, self._submit(self._finish, loaded, output)))
            # Bound the images held in memory: wait for all but the latest finish.
            while len(finishing) > 1:
                self._collect(finishing.pop(0), rows, results)
        for item in finishing:
            self._collect(item, rows, results)
        return [r for r in results if r is not None]

    def _collect(self, item: tuple[int, Future], rows, results) -> None:
        i, fut = item
        try:
            results[i] = fut.result()
        except Exception as exc:
            results[i] = self.error_row(rows[i], exc)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


# --------------------------------------------------------------------------
# Outputs: metrics.parquet, errors.parquet, summary.json
# --------------------------------------------------------------------------


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


def errors_table(errors: list[dict[str, str]]) -> pa.Table:
    rows = sorted(
        ({"key": e["key"], "reason": e["reason"]} for e in errors), key=lambda e: e["key"]
    )
    return pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


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
    clean = sum(
        1 for r in records if (r.get("skipped_reason") or "").startswith(CLEAN_REASON_PREFIX)
    )
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
        f"run: {summary['count']} images{skipped}, {summary['megapixels']:.2f} MP in "
        f"{summary['seconds']:.1f} s, {mp_s or 0:.3f} MP/s, {summary['errors']} errors, "
        f"mean PSNR gain {gain_text}{noise_text}"
    )


# --------------------------------------------------------------------------
# Report samples
# --------------------------------------------------------------------------


def pick_samples(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Best, median and worst image by PSNR (with references), else the images the
    denoiser changed most, median and least (by ``change_rms``)."""
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
