"""The steps of one image, shared by the fused processor and the split stages.

read → decode (header checked against ``--max-megapixels`` first) → resume and
``--skip-below`` decisions → reference → the input's metadata → (the model, done
by the caller) → encode → atomic write → metrics. :class:`ImageSteps` holds only
settings, so the same object can run in a model actor (fused) or in CPU workers
(split), and both give the same rows.
"""

from __future__ import annotations

import math
import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import codecs, metadata, storage
from ..noise_estimate import noise_sigma_255
from .pixels import (
    EXT_FORMAT,
    LOSSY_FORMATS,
    METRIC_DTYPES,
    check_reference,
    check_skip_below,
    check_strength,
    color_channels,
    encodable,
    image_format,
    score,
)
from .rows import CLEAN_REASON_PREFIX, SKIPPED_EXISTING, InputError


@dataclass
class Loaded:
    """One image between its load and its finish."""

    row: dict[str, Any]
    noisy: np.ndarray | None = None
    reference: np.ndarray | None = None
    existing: np.ndarray | None = None  # the output already on disk (resume)
    file_metadata: metadata.Metadata | None = None  # the input's EXIF, XMP and ICC profile
    started: float = 0.0  # wall-clock time.time(): it travels between processes
    noise_in: float = math.nan  # estimated noise sigma of the input, 0-255 scale
    data: bytes = b""  # the input's encoded bytes (metadata, a --skip-below copy)
    clean: bool = False  # below skip_below: copied through, the model does not run
    verbatim: bool = False  # a clean input whose output has its format: bytes copied

    @property
    def needs_model(self) -> bool:
        return self.existing is None and not self.clean


class ImageSteps:
    """Per-image steps with a run's settings; no model, no Ray.

    ``existing`` holds output keys already under ``output_root``; they are skipped
    unless ``overwrite``. Images whose header gives more than ``max_megapixels`` are
    not decoded but reported as errors, so that one huge image cannot exhaust a
    worker's memory. ``strength`` blends the model's output with the input
    (:func:`~denoise_core.bulk.pixels.denoise_array`); with ``skip_below`` an input
    estimated below it is copied through unchanged instead of denoised. ``metrics``
    chooses the scoring arithmetic (:data:`~denoise_core.bulk.pixels.METRIC_DTYPES`).
    """

    def __init__(
        self,
        output_root: str,
        *,
        existing: Iterable[str] = (),
        overwrite: bool = False,
        max_megapixels: float | None = codecs.DEFAULT_MAX_MEGAPIXELS,
        strength: float = 1.0,
        skip_below: float | None = None,
        jpeg_quality: int = 95,
        heic_quality: int = codecs.DEFAULT_HEIC_QUALITY,
        metrics: str = "exact",
    ) -> None:
        check_strength(strength)
        if metrics not in METRIC_DTYPES:
            raise ValueError(f"metrics must be one of {sorted(METRIC_DTYPES)}, got {metrics!r}")
        check_skip_below(skip_below)
        self.output_root = output_root
        self.existing = set(existing)
        self.overwrite = overwrite
        self.max_megapixels = max_megapixels
        self.strength = strength
        self.skip_below = skip_below
        self.jpeg_quality = jpeg_quality
        self.heic_quality = heic_quality
        self.metrics = metrics

    # -- loading -----------------------------------------------------------

    def read(self, row: dict[str, Any], what: str) -> bytes:
        data = row.get(f"{what}_bytes") or b""
        uri = row.get(what) or ""
        if not data and uri:
            try:
                data = storage.read_bytes(uri)
            except Exception as exc:
                label = "reference: " if what == "reference" else ""
                raise InputError(f"{label}unreadable: {type(exc).__name__}: {exc}") from exc
        return data

    def decode(self, data: bytes, what: str) -> np.ndarray:
        label = "reference: " if what == "reference" else ""
        try:
            return codecs.decode_image(data, max_megapixels=self.max_megapixels)
        except codecs.ImageTooLargeError as exc:
            limit = f"--max-megapixels {codecs.format_megapixels(exc.limit)}"
            raise InputError(f"{label}{exc.describe(limit)}") from exc
        except codecs.ImageDecodeError as exc:
            raise InputError(f"{label}{exc}") from exc

    def load(self, row: dict[str, Any], *, reference: bool = True) -> Loaded:
        """Read and decode the input (and, with ``reference``, its reference); decide
        resume and ``--skip-below``; capture the input's metadata if it will be written."""
        loaded = Loaded(row, started=time.time())
        if row.get("read_error"):
            raise InputError(row["read_error"])
        loaded.data = self.read(row, "noisy")
        loaded.noisy = self.decode(loaded.data, "noisy")
        if reference:
            self.attach_reference(loaded)
        if self._skip(row):
            loaded.existing = self.existing_output(row)
        loaded.noise_in = noise_sigma_255(color_channels(loaded.noisy))
        if (
            loaded.existing is None
            and self.skip_below is not None
            and loaded.noise_in < self.skip_below
        ):
            loaded.clean = True
            loaded.verbatim = self.copies_verbatim(row, loaded.data)
        if reference:
            self.attach_metadata(loaded)
        return loaded

    def attach_reference(self, loaded: Loaded) -> None:
        row = loaded.row
        if row.get("reference") or row.get("reference_bytes"):
            assert loaded.noisy is not None
            loaded.reference = self.decode(self.read(row, "reference"), "reference")
            check_reference(loaded.noisy, loaded.reference)

    def attach_metadata(self, loaded: Loaded) -> None:
        """The input's EXIF, XMP and ICC profile, for an output that will be encoded."""
        if loaded.existing is not None or loaded.verbatim:
            return  # not written, or copied byte for byte: metadata and all
        assert loaded.noisy is not None
        data = loaded.data
        # decode_image turned the pixels (HEIF: libheif did, by the container's
        # transforms; the EXIF tag an iPhone also writes must then say 1)
        turned = codecs.is_heif(data) or codecs.exif_orientation(data) != 1
        size = (loaded.noisy.shape[1], loaded.noisy.shape[0])
        loaded.file_metadata = metadata.capture(data, upright_size=size if turned else None)

    def _skip(self, row: dict[str, Any]) -> bool:
        return not self.overwrite and row["output_key"] in self.existing

    @staticmethod
    def copies_verbatim(row: dict[str, Any], data: bytes) -> bool:
        """Whether a clean input is copied byte for byte: its output has its format."""
        ext = posixpath.splitext(row["output_key"])[1].lower()
        return image_format(data) == EXT_FORMAT.get(ext)

    def existing_output(self, row: dict[str, Any]) -> np.ndarray | None:
        uri = storage.join(self.output_root, *row["output_key"].split("/"))
        try:
            # Outputs are written upright (orientation 1 or none); a --skip-below
            # copy keeps its input's orientation tag, and is read upright so.
            return codecs.decode_image(storage.read_bytes(uri), max_megapixels=self.max_megapixels)
        except Exception:
            return None  # unreadable leftover: denoise again

    # -- finishing ---------------------------------------------------------

    def finish(self, loaded: Loaded, output: np.ndarray | None) -> dict[str, Any]:
        """Encode and write ``output`` (None: nothing new to write), score what is on
        disk; returns the result row."""
        row, noisy = loaded.row, loaded.noisy
        assert noisy is not None
        skipped = output is None
        reason = ""
        if loaded.clean:
            reason = (
                f"{CLEAN_REASON_PREFIX} {loaded.noise_in:.2f} below --skip-below "
                f"{self.skip_below:g}: copied unchanged"
            )
            written = self._copy_through(loaded)
        elif skipped:
            reason = SKIPPED_EXISTING
            written = loaded.existing
            assert written is not None
            if written.shape[:2] != noisy.shape[:2]:
                raise InputError(
                    f"existing output {row['output_key']} has another size; rerun with --overwrite"
                )
        else:
            assert output is not None
            written = self._write(row, output, loaded.file_metadata)
        if written.dtype != noisy.dtype:  # e.g. 16-bit input written as 8-bit WebP
            noisy_cmp = (noisy >> 8).astype(np.uint8) if noisy.dtype == np.uint16 else noisy
        else:
            noisy_cmp = noisy
        result = score(written, noisy_cmp, loaded.reference, self.metrics)
        # The input's own pixels (a copy, a null model, a lossless write): its estimate.
        noise_out = (
            loaded.noise_in if written is noisy else noise_sigma_255(color_channels(written))
        )
        result.update(
            key=row["key"],
            output_key=row["output_key"],
            error="",
            height=int(noisy.shape[0]),
            width=int(noisy.shape[1]),
            channels=int(noisy.shape[2]),
            bit_depth=16 if noisy.dtype == np.uint16 else 8,
            seconds=0.0 if reason == SKIPPED_EXISTING else time.time() - loaded.started,
            skipped=skipped,
            skipped_reason=reason,
            noise_sigma_in=loaded.noise_in,
            noise_sigma_out=noise_out,
            reference=row.get("reference") or ("<dataset>" if row.get("reference_bytes") else ""),
            meta=row.get("meta") or "{}",
        )
        return result

    def _output_uri(self, row: dict[str, Any]) -> str:
        return storage.join(self.output_root, *row["output_key"].split("/"))

    def _copy_through(self, loaded: Loaded) -> np.ndarray:
        """Write a clean input to its output unchanged; returns the pixels written (the
        decoded input itself when its bytes were copied)."""
        row, noisy = loaded.row, loaded.noisy
        assert noisy is not None
        if loaded.verbatim:
            storage.write_bytes_atomic(self._output_uri(row), loaded.data)
            return noisy
        return self._write(row, noisy, loaded.file_metadata)

    def _write(
        self, row: dict[str, Any], image: np.ndarray, meta: metadata.Metadata | None
    ) -> np.ndarray:
        """Encode ``image`` with ``meta`` and write it atomically; returns the pixels
        written: ``image`` itself for lossless formats at its depth, else what a
        resumed run would read back (a lossy file decoded again, so that metrics score
        what is on disk)."""
        ext = posixpath.splitext(row["output_key"])[1].lower()
        written = encodable(image, ext)
        data = self._encode(written, ext, meta)
        storage.write_bytes_atomic(self._output_uri(row), data)
        if ext in LOSSY_FORMATS:
            written = codecs.decode_image(data, apply_exif=False)
        return written

    def _encode(self, image: np.ndarray, ext: str, meta: metadata.Metadata | None) -> bytes:
        return metadata.encode(
            image, ext, meta, jpeg_quality=self.jpeg_quality, heic_quality=self.heic_quality
        )
