"""Callable classes for Ray Data's ``map_batches``: each loads what it needs once per
actor or task and maps a column batch to a column batch. Ray sees nothing else of
the run's processing.
"""

from __future__ import annotations

from typing import Any

from .denoisers import load_denoiser
from .processor import BulkProcessor
from .settings import RunSettings


class FusedStage:
    """The fused path in one actor: read → decode → denoise → encode → write → metrics."""

    def __init__(self, settings: RunSettings, existing: list[str]) -> None:
        s = settings
        self.processor = BulkProcessor(
            load_denoiser(s),
            s.output,
            existing=existing,
            threads=s.threads,
            **s.image_step_options(),
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return self.processor(batch)
