"""The split path: decode, denoise and finish as separate ``map_batches`` stages.

- :class:`DecodeStage` (CPU workers): read, header check, decode, input noise, resume
  and ``--skip-below`` decisions. Only images the model must see carry pixels on.
- :class:`DenoiseStage` (actor pool, GPU or CPU): the model on uint8 / uint16 pixels
  in and out; nothing else, so an accelerator is not held up by codec work.
- :class:`FinishStage` (CPU workers): encode with the input's metadata, atomic write,
  metrics against the reference, output noise.

Decoded pixels live in Ray's object store twice per image at most (input pixels
between decode and denoise, output pixels between denoise and finish), each as one
short-lived row. The finish stage decodes the input again from its encoded bytes,
which travel with the row (a JPEG decodes at ~90 MP/s per core), rather than
carrying the input's pixels through the model actor as well. The CPU workers are
small actor pools (half a CPU each) so that settings and the resume list are sent
once per worker, not with every batch.
"""

from __future__ import annotations

import time
from typing import Any

from .denoisers import DenoiseFn, load_denoiser
from .pixels import denoise_array
from .rows import (
    DECODED_FIELDS,
    InputError,
    batch_to_rows,
    error_row,
    pixels_of,
    rows_to_batch,
    with_pixels,
)
from .settings import RunSettings
from .steps import ImageSteps, Loaded

MODEL, EXISTING, CLEAN, ERROR = "model", "existing", "clean", "error"


def image_steps(s: RunSettings, existing: list[str]) -> ImageSteps:
    return ImageSteps(s.output, existing=existing, **s.image_step_options())


class DecodeStage:
    """Work rows → decoded rows (:data:`~denoise_core.bulk.rows.DECODED_FIELDS`)."""

    def __init__(self, settings: RunSettings, existing: list[str]) -> None:
        self.steps = image_steps(settings, existing)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return rows_to_batch([self.decode(row) for row in batch_to_rows(batch)], DECODED_FIELDS)

    def decode(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {
            **row,
            "noisy_bytes": row.get("noisy_bytes") or b"",
            "reference_bytes": row.get("reference_bytes") or b"",
            "started": time.time(),
            "noise_in": float("nan"),
            "error": "",
        }
        try:
            loaded = self.steps.load(row, reference=False)
        except Exception as exc:
            return with_pixels({**out, "state": ERROR, "error": error_row(row, exc)["error"]})
        assert loaded.noisy is not None
        out.update(noisy_bytes=loaded.data, noise_in=loaded.noise_in, started=loaded.started)
        if loaded.existing is not None:
            return with_pixels({**out, "state": EXISTING})
        if loaded.clean:
            return with_pixels({**out, "state": CLEAN})
        return with_pixels({**out, "state": MODEL}, loaded.noisy)


class DenoiseStage:
    """Decoded rows → the same rows with the model's output pixels (same dtype/shape).

    One per actor: the model is loaded once (``--model identity``: no model);
    ``denoise_fn`` replaces it (float RGB in [0, 1] to the same)."""

    def __init__(self, settings: RunSettings, denoise_fn: DenoiseFn | None = None) -> None:
        self.strength = settings.strength
        self.denoise_fn = denoise_fn or load_denoiser(settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return rows_to_batch([self.denoise(row) for row in batch_to_rows(batch)], DECODED_FIELDS)

    def denoise(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["state"] != MODEL:
            return row
        try:
            output = denoise_array(self.denoise_fn, pixels_of(row), self.strength)
        except Exception as exc:
            return with_pixels({**row, "state": ERROR, "error": error_row(row, exc)["error"]})
        return with_pixels(row, output)


class FinishStage:
    """Denoised rows → result rows: encode, write, score (CPU workers)."""

    def __init__(self, settings: RunSettings, existing: list[str]) -> None:
        self.steps = image_steps(settings, existing)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return rows_to_batch([self.finish(row) for row in batch_to_rows(batch)])

    def finish(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            if row["state"] == ERROR:
                raise InputError(row["error"])
            loaded = self._reload(row)
            output = pixels_of(row) if row["state"] == MODEL else None
            return self.steps.finish(loaded, output)
        except Exception as exc:
            return error_row(row, exc)

    def _reload(self, row: dict[str, Any]) -> Loaded:
        """The input again, from the encoded bytes that came with the row."""
        steps = self.steps
        loaded = Loaded(row, started=row["started"], noise_in=row["noise_in"])
        loaded.data = row["noisy_bytes"]
        loaded.noisy = steps.decode(loaded.data, "noisy")
        if row["state"] == EXISTING:
            loaded.existing = steps.existing_output(row)
            if loaded.existing is None:
                raise InputError(f"existing output {row['output_key']} became unreadable")
        if row["state"] == CLEAN:
            loaded.clean = True
            loaded.verbatim = steps.copies_verbatim(row, loaded.data)
        steps.attach_reference(loaded)
        steps.attach_metadata(loaded)
        return loaded
