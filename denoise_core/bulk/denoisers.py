"""The model side of a run: which denoiser an actor loads, and how.

``--model identity`` is a null model (returns the decoded pixels as they are: no
TensorFlow import, no float conversion), so a run measures the pipeline's own
ceiling; ``identity:R`` also sleeps
megapixels / R seconds per image, a stand-in for an accelerator that denoises at
R MP/s without using the CPU. Anything else is a ``.keras`` file run by
:class:`~denoise_core.inference.Denoiser`, tile by tile.

GPU settings (none of them can be tested on this CPU-only machine):

- TensorFlow's memory growth is turned on before the GPU is touched, so actors
  with ``--gpus 0.5`` share a GPU instead of the first one taking all of it
  (ray#13680). Ray sets ``CUDA_VISIBLE_DEVICES`` per actor from ``num_gpus``.
- ``--precision auto`` on a GPU is bf16 on compute capability 8.0 and newer
  (A100, H100, H200: 390 against 205 MP/s for fp32 measured on an H200), fp16 on
  7.x (V100, T4), else fp32 (``Denoiser``'s own ``auto`` is for CPUs and says fp32
  whenever a GPU is present).
- Tiles have one fixed shape (``--tile``, not fitted per image) and every model
  call gets exactly ``--tile-batch`` tiles (a short batch is padded), so the
  ``tf.function`` traces once per actor (tensorflow#34907).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .settings import IDENTITY_MODEL, RunSettings, is_null_model

DenoiseFn = Callable[[np.ndarray], np.ndarray]


class NullModel:
    """The null model: returns its input (what a perfect, free model costs).

    ``returns_input`` tells :func:`~denoise_core.bulk.pixels.denoise_array` so: the
    null model gets the decoded pixels as they are (uint8 / uint16), never the float
    copy a real model needs, and a run measures the pipeline's own work."""

    returns_input = True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return image


identity = NullModel()


class StandIn(NullModel):
    """Returns its input after sleeping ``megapixels / mp_per_s`` seconds: a fast
    accelerator's latency without its CPU cost (the benchmark's GPU stand-in)."""

    def __init__(self, mp_per_s: float) -> None:
        if not mp_per_s > 0:
            raise ValueError(f"identity:R needs R > 0 MP/s, got {mp_per_s}")
        self.mp_per_s = mp_per_s

    def __call__(self, image: np.ndarray) -> np.ndarray:
        time.sleep(image.shape[0] * image.shape[1] / 1e6 / self.mp_per_s)
        return image


def null_model(model: str) -> DenoiseFn:
    if model == IDENTITY_MODEL:
        return identity
    rate = model.split(":", 1)[1]
    try:
        return StandIn(float(rate))
    except ValueError as exc:
        raise ValueError(f"--model identity:R needs R in MP/s, got {rate!r}") from exc


def allow_gpu_memory_growth() -> list:
    """Let TensorFlow take GPU memory as it needs it instead of the whole GPU at start-up
    (ray#13680); returns the GPUs this process sees. Must run before TensorFlow touches
    the GPU in this process."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    return gpus


def gpu_precision(requested: str, gpus: list) -> str:
    """``--precision auto`` on a GPU: bf16 from compute capability 8.0, fp16 on 7.x,
    else fp32; an explicit precision is kept."""
    if requested != "auto" or not gpus:
        return requested
    import tensorflow as tf

    major = (tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0,))[
        0
    ]
    return "bf16" if major >= 8 else "fp16" if major >= 7 else "fp32"


def load_denoiser(s: RunSettings) -> DenoiseFn:
    """The denoiser one actor runs (loaded once per actor)."""
    if is_null_model(s.model):
        assert s.model is not None
        return null_model(s.model)
    gpus = allow_gpu_memory_growth()
    from ..inference import Denoiser

    assert s.model is not None
    kwargs = {
        "tile": s.tile,
        "overlap": s.overlap,
        "batch_size": s.tile_batch,
        "precision": gpu_precision(s.precision, gpus),
        # CPUs: tiles fitted to each image (less padding); GPUs: one shape per run
        "fixed_shape": bool(gpus),
    }
    kwargs.update(model_options(s))
    try:
        denoiser = Denoiser.from_path(s.model, **kwargs)
    except Exception as exc:
        raise RuntimeError(f"cannot load model {s.model}: {type(exc).__name__}: {exc}") from exc
    return denoiser


def model_options(s: RunSettings) -> dict:
    """Keyword arguments for ``Denoiser.from_path`` beyond tiling and precision: the
    runtime that runs the model and the self-ensemble size."""
    return {"runtime": s.runtime, "ensemble": s.ensemble}
