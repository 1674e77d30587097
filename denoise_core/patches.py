"""Training samples from shard rows: decode, random crop, flips/rotations, noise.

:class:`PatchSampler` is the Ray Data ``map_batches`` callable of the training
pipeline, so this CPU work runs in data tasks and never inside the training step.
Paired rows keep their real noise; clean-only rows get noise synthesised from
:mod:`denoise_core.noise` specs (several joined by ``;`` are mixed uniformly).
"""

from __future__ import annotations

import zlib
from typing import Any

import cv2
import numpy as np

from . import codecs, metrics, noise, synthetic
from .train_config import COLOR_CLIPS, SamplerConfig

MAX_SATURATION = 2.0  # random_color's chroma scale: x1/sqrt(2) .. x2, log-uniform

__all__ = ["PatchSampler", "SamplerConfig", "random_color", "random_crop_pair", "random_dihedral"]


def _row_seed(key: str, seed: int) -> int:
    return zlib.crc32(key.encode()) ^ (seed * 2654435761 % 2**32)


def random_crop_pair(
    noisy: np.ndarray | None, clean: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray]:
    """The same random ``size``×``size`` window of both images (reflect-padded if small)."""
    h, w = clean.shape[:2]
    if h < size or w < size:
        pad = ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0))
        clean = np.pad(clean, pad, mode="reflect")
        noisy = None if noisy is None else np.pad(noisy, pad, mode="reflect")
        h, w = clean.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    sl = (slice(y, y + size), slice(x, x + size))
    return (None if noisy is None else noisy[sl]), clean[sl]


def random_dihedral(arrays: list[np.ndarray | None], rng: np.random.Generator) -> list:
    """One of the 8 flips/90° rotations, applied identically to every array."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        a = np.rot90(a, k)
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out


def random_downscale(
    clean: np.ndarray, min_scale: float, patch: int, rng: np.random.Generator
) -> np.ndarray:
    """``clean`` shrunk by a random factor in [``min_scale``, 1] (area averaging).

    Shrinking a photograph averages away its own noise and JPEG blocks and packs
    its textures into fewer pixels: cleaner targets and finer detail than the
    source resolution gives (small clean sets such as CBSD432 are 481x321 JPEGs).
    The factor never takes the short side below ``patch``.
    """
    h, w = clean.shape[:2]
    low = max(min_scale, patch / min(h, w))
    if low >= 1.0:
        return clean
    scale = float(rng.uniform(low, 1.0))
    size = (max(patch, round(w * scale)), max(patch, round(h * scale)))
    out = cv2.resize(clean, size, interpolation=cv2.INTER_AREA)
    return out if out.ndim == clean.ndim else out[..., None]


def fitting_saturation(clean: np.ndarray, grey: np.ndarray, quantile: float = 0.02) -> float:
    """The largest chroma scale that keeps all but ``quantile`` of the pixels inside [0, 1].

    Per pixel the limit is where its first channel reaches 0 or 1 along
    ``grey + s * (x - grey)``; grey pixels have no limit. Pixels already clipped in
    the source (a channel at 0 or 255 of 8 bits, common in JPEGs) are left out:
    they are flat there whatever the scale, and would otherwise forbid any boost.
    """
    d = clean - grey
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(d > 1e-6, (1.0 - grey) / d, np.inf)
        down = np.where(d < -1e-6, grey / -d, np.inf)
    limit = np.minimum(up, down).min(axis=-1)
    unclipped = ~((clean <= 1.5 / 255) | (clean >= 253.5 / 255)).any(axis=-1)
    if not unclipped.any():
        return 1.0
    return float(np.quantile(limit[unclipped], quantile))


def random_color(
    clean: np.ndarray,
    rng: np.random.Generator,
    max_saturation: float = MAX_SATURATION,
    clip: str = "hard",
):
    """A random channel order and saturation for a clean float patch in [0, 1].

    CBSD432 (the training set) holds few strongly saturated colours, while
    McMaster and phone photos of signs, fabric or stained glass hold many: a CNN
    trained on the former loses up to 2 dB to CBM3D on such images. Permuting the
    channels and scaling the chroma around the per-pixel grey (then clipping, which
    also yields the flat 0/1 channels of saturated pixels) widens the colour
    statistics at no cost per step. Only for synthetic noise: real noise is not
    symmetric across channels, so paired rows keep their colours.

    ``clip="hard"`` clips to [0, 1], which leaves flat 0/1 channels wherever the
    scaled chroma leaves the range, and a CNN learns to flatten such channels (the
    dark channel of stained glass or a sign, textured in real photos). ``"fit"``
    lowers a saturation boost to what keeps 98% of the pixels in range
    (:func:`fitting_saturation`), so no channel is flattened.
    """
    if clip not in COLOR_CLIPS:
        raise ValueError(f"unknown clip {clip!r}; choose one of {', '.join(COLOR_CLIPS)}")
    out = clean[..., rng.permutation(3)]
    log_s = rng.uniform(-np.log(max_saturation) / 2, np.log(max_saturation))
    if abs(log_s) > 1e-3:
        grey = out.mean(axis=-1, keepdims=True)
        scale = float(np.exp(log_s))
        if clip == "fit" and scale > 1.0:
            scale = min(scale, max(1.0, fitting_saturation(out, grey)))
        out = grey + np.float32(scale) * (out - grey)
        out = np.clip(out, 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)


class PatchSampler:
    """Ray Data batch transform: shard rows -> float32 (noisy, clean) training patches.

    Built from a :class:`SamplerConfig` (validated where it was made), by name.

    Decoding a whole image costs far more than cutting a patch from it, so each row
    yields ``patches_per_image`` patches (independent crops, flips and noise) from one
    decode, and the crop happens on the 8/16-bit image before float conversion.
    With ``seed`` set, each row's randomness depends only on its key and the seed,
    so a run (or a test) sees the same samples whatever the block layout.
    """

    def __init__(self, config: SamplerConfig) -> None:
        # Checked once where the config was built (denoise train, before Ray starts).
        self.config = config
        self.noise_specs = config.noise_specs()
        self._rng = np.random.default_rng(config.seed)

    def _rng_for(self, key: str) -> np.random.Generator:
        if self.config.seed is None:
            return self._rng
        return np.random.default_rng(_row_seed(key, self.config.seed))

    def _one(self, noisy, clean, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if noisy is None and cfg.dead_leaves and rng.random() < cfg.dead_leaves:
            # A generated clean patch in place of this row's crop (the row still paces
            # the pipeline); uniform colours already, so no colour augmentation.
            return self._add_noise(synthetic.dead_leaves(cfg.patch, rng), rng)
        # Half the synthetic-noise samples at a smaller scale, half at the source's own.
        if noisy is None and cfg.augment and cfg.scale_augment < 1.0 and rng.random() < 0.5:
            clean = random_downscale(clean, cfg.scale_augment, cfg.patch, rng)
        if cfg.augment or clean.shape[0] != cfg.patch or clean.shape[1] != cfg.patch:
            noisy, clean = random_crop_pair(noisy, clean, cfg.patch, rng)
        if cfg.augment:
            noisy, clean = random_dihedral([noisy, clean], rng)
        clean = metrics.to_float01(clean)
        if noisy is None:
            colour = cfg.augment and cfg.color_augment
            if colour and clean.ndim == 3 and clean.shape[-1] == 3:
                clean = random_color(clean.astype(np.float32, copy=False), rng, clip=cfg.color_clip)
            return self._add_noise(clean, rng)
        noisy = metrics.to_float01(noisy)
        return noisy.astype(np.float32), clean.astype(np.float32)

    def _add_noise(self, clean: np.ndarray, rng: np.random.Generator):
        """(noisy, clean) with noise from one of the specs, drawn uniformly."""
        spec = self.noise_specs[int(rng.integers(len(self.noise_specs)))]
        noisy = noise.synthesize(clean, spec, rng)
        return noisy.astype(np.float32), clean.astype(np.float32)

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        noisy_out, clean_out = [], []
        keys = batch.get("key")
        for i, clean_bytes in enumerate(batch["clean"]):
            rng = self._rng_for(str(keys[i]) if keys is not None else str(i))
            clean = codecs.to_rgb(codecs.decode_image(bytes(clean_bytes)))
            noisy_bytes = batch["noisy"][i] if "noisy" in batch else None
            noisy = None
            if noisy_bytes is not None and len(noisy_bytes) > 0:
                noisy = codecs.to_rgb(codecs.decode_image(bytes(noisy_bytes)))
            for _ in range(self.config.patches_per_image):
                n, c = self._one(noisy, clean, rng)
                noisy_out.append(n)
                clean_out.append(c)
        return {"noisy": np.stack(noisy_out), "clean": np.stack(clean_out)}


# -- the GPU trainer's host share: noise its device twin cannot render (JPEG, mix) --------

_HOST_IMAGES: np.ndarray | None = None


def init_host_images(images: np.ndarray) -> None:
    """Process-pool initializer: the clean uint8 stack, sent once per worker."""
    global _HOST_IMAGES
    _HOST_IMAGES = images


def clean_patches(
    n: int, config: SamplerConfig, seed: int, images: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (noisy, clean) float32 patches cut from a stack of clean uint8 images, exactly
    as :class:`PatchSampler` treats a clean-only row (crop, flips, colour, ``config.noise``)."""
    images = _HOST_IMAGES if images is None else images
    sampler, rng = PatchSampler(config), np.random.default_rng(seed)
    pairs = [sampler._one(None, images[int(rng.integers(len(images)))], rng) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
