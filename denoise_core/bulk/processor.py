"""The fused path: one callable that reads, decodes, denoises, encodes, writes and
scores, image by image, inside the model actor.

Reading and decoding the next images and encoding, writing and scoring the
previous ones run in a small thread pool while the model works on the current
one (TensorFlow, OpenCV, s3fs and NumPy release the GIL), so only keys and bytes
travel between Ray operators, never decoded pixels. On a small CPU-only machine
this beats the split stages (measured by ``benchmarks/bench_run.py``); on a GPU node
the actor's own CPU, not the GPU, would set the speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .pixels import denoise_array
from .rows import batch_to_rows, error_row, rows_to_batch
from .steps import ImageSteps, Loaded


class BulkProcessor(ImageSteps):
    """Runs work rows through read → decode → denoise → encode → write → metrics.

    ``denoise_fn`` maps float RGB HxWx3 in [0, 1] to the same (a
    :class:`~denoise_core.inference.Denoiser`), or is a null model
    (:func:`~denoise_core.bulk.pixels.denoise_array`). ``threads`` > 0 overlaps
    loading and finishing with the model (``prefetch`` images read ahead); 0 runs
    every step in order in the calling thread. ``existing`` and ``step_options``
    (``overwrite``, ``max_megapixels``, ``strength``, ``skip_below``, ``jpeg_quality``,
    ``heic_quality``, ``metrics``; :meth:`RunSettings.image_step_options
    <denoise_core.bulk.settings.RunSettings.image_step_options>` gives a run's) are
    :class:`~denoise_core.bulk.steps.ImageSteps`' own, typed and checked there.
    """

    def __init__(
        self,
        denoise_fn: Callable[[np.ndarray], np.ndarray],
        output_root: str,
        *,
        existing: Iterable[str] = (),
        threads: int = 2,
        prefetch: int = 2,
        **step_options: Any,
    ) -> None:
        super().__init__(output_root, existing=existing, **step_options)
        self.denoise_fn = denoise_fn
        self.prefetch = max(1, prefetch)
        self.pool = ThreadPoolExecutor(threads, "bulk") if threads > 0 else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        """Ray Data's ``map_batches`` entry: a column batch of work rows in, results out."""
        return rows_to_batch(self.process(batch_to_rows(batch)))

    def _denoise(self, loaded: Loaded) -> np.ndarray | None:
        if not loaded.needs_model:
            return None
        assert loaded.noisy is not None
        return denoise_array(self.denoise_fn, loaded.noisy, self.strength)

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
        """Result rows (:data:`~denoise_core.bulk.rows.RESULT_FIELDS`) for ``rows``, in
        order; never raises for a bad image: its result has ``error`` set."""
        n = len(rows)
        results: list[dict[str, Any] | None] = [None] * n
        loads: dict[int, Future] = {}
        finishing: list[tuple[int, Future]] = []
        for i in range(min(self.prefetch, n)):
            loads[i] = self._submit(self.load, rows[i])
        for i, row in enumerate(rows):
            if i + self.prefetch < n:
                loads[i + self.prefetch] = self._submit(self.load, rows[i + self.prefetch])
            try:
                loaded = loads.pop(i).result()
                output = self._denoise(loaded)
            except Exception as exc:
                results[i] = error_row(row, exc)
                continue
            finishing.append((i, self._submit(self.finish, loaded, output)))
            # Bound the images held in memory: wait for all but the latest finish.
            while len(finishing) > 1:
                self._collect(finishing.pop(0), rows, results)
        for item in finishing:
            self._collect(item, rows, results)
        return [r for r in results if r is not None]

    @staticmethod
    def _collect(item: tuple[int, Future], rows, results) -> None:
        i, fut = item
        try:
            results[i] = fut.result()
        except Exception as exc:
            results[i] = error_row(rows[i], exc)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
