"""Running a denoiser on whole images of any size with bounded memory.

One :class:`Denoiser` per process (or Ray actor): the model is wrapped in a
``tf.function`` once and always sees tiles of one shape, so TensorFlow traces a
single graph (varying shapes retrace, tensorflow#34907) and memory per call is
bounded by the tile batch, not by the image.
"""

from __future__ import annotations

import numpy as np

from . import metrics, models, tiling


class Denoiser:
    """A Keras denoiser applied tile by tile to float images in [0, 1]."""

    def __init__(
        self,
        model,
        tile: int = 512,
        overlap: int = 32,
        batch_size: int = 4,
        precision: str = "fp32",
    ) -> None:
        import tensorflow as tf

        model = models.with_precision(model, precision)
        self.model = model
        self.precision = precision
        self.multiple = models.model_size_multiple(model)
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self._predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    @classmethod
    def from_path(cls, path: str, **kwargs) -> Denoiser:
        """Load a ``.keras`` file (local or any storage URI) with ``safe_mode=True``."""
        return cls(load_model_any(path), **kwargs)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(batch), dtype=np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Denoise an HxWx3 float image in [0, 1]; returns float32 clipped to [0, 1]."""
        out = tiling.denoise_tiled(
            self.predict_batch,
            image,
            tile=self.tile,
            overlap=self.overlap,
            multiple=self.multiple,
            batch_size=self.batch_size,
        )
        return np.clip(out, 0.0, 1.0)


def load_model_any(path: str):
    """``keras.models.load_model(safe_mode=True)`` for a local path or a storage URI."""
    import os
    import tempfile

    from . import storage

    if not storage.is_remote(path):
        return models.load_model(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(path.rstrip("/")) or "model.keras")
        with open(local, "wb") as f:
            f.write(storage.read_bytes(path))
        return models.load_model(local)


def evaluate_pairs(denoiser: Denoiser, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean PSNR/SSIM of the denoised output and of the noisy input over (noisy, clean) pairs."""
    out_psnr, out_ssim, in_psnr = [], [], []
    for noisy, clean in pairs:
        denoised = denoiser(noisy)
        out_psnr.append(metrics.psnr(denoised, clean))
        out_ssim.append(metrics.ssim(denoised, clean))
        in_psnr.append(metrics.psnr(noisy, clean))
    return {
        "val_psnr": float(np.mean(out_psnr)),
        "val_ssim": float(np.mean(out_ssim)),
        "val_noisy_psnr": float(np.mean(in_psnr)),
        "val_images": len(pairs),
    }
