"""The model side of a run: which denoiser an actor loads, and how.

``--model identity`` is a null model (returns its input, no TensorFlow import),
so a run measures the pipeline's own ceiling. Anything else is a ``.keras`` file
run by :class:`~denoise_core.inference.Denoiser`, tile by tile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .settings import IDENTITY_MODEL, RunSettings

DenoiseFn = Callable[[np.ndarray], np.ndarray]


def identity(image: np.ndarray) -> np.ndarray:
    """The null model: float RGB in, the same out (what a perfect, free model costs)."""
    return image


def allow_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of the whole GPU at start-up
    (ray#13680), so several actors can share a GPU (``--gpus 0.5``). Must run before
    TensorFlow touches the GPU in this process. Untested here: no GPU."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass


def load_denoiser(s: RunSettings) -> DenoiseFn:
    """The denoiser one actor runs (loaded once per actor)."""
    if s.model == IDENTITY_MODEL:
        return identity
    allow_gpu_memory_growth()
    from ..inference import Denoiser

    assert s.model is not None
    try:
        return Denoiser.from_path(
            s.model, tile=s.tile, overlap=s.overlap, batch_size=s.tile_batch, precision=s.precision
        )
    except Exception as exc:
        raise RuntimeError(f"cannot load model {s.model}: {type(exc).__name__}: {exc}") from exc
