"""``python -m jobs.train_jax``: the U-Net on one GPU with Keras 3 on JAX, no Ray or TensorFlow.

Why this exists: CPU training here makes ~45 patches/s; a lent H100/H200 has JAX
but no TensorFlow, so the same Keras model (:mod:`denoise_core.models`,
backend-neutral) is trained there with a hand-written JAX step, and the ``.keras``
file it writes loads unchanged in the TensorFlow stack (``denoise promote``,
``denoise run``).

What is this file's own: the sampling that runs on the device inside the jitted
step, so host cores never limit it. Every clean image sits in device memory as
uint8; each step draws random crops, one of the 8 flips/rotations, the colour
augmentation of :func:`denoise_core.patches.random_color`, and the ``--noise`` mix
(default :data:`denoise_core.noise.DEFAULT_TRAINING_NOISE`, as ``denoise train``):

- ``gaussian`` and ``camera`` (camera shot noise as its Gaussian approximation of
  equal variance) are rendered on the device;
- ``isp`` is a device twin of :mod:`denoise_core.isp` with the same constants:
  Brooks et al.'s unprocessing to an RGGB mosaic, Poisson-Gaussian raw noise (as a
  Gaussian of equal variance), bilinear demosaicing (the core also draws OpenCV's
  edge-aware one), colour matrix, gamma, tone curve, then the phone's processing of
  the noise (chroma kept, pixel-level part, blur or unsharp mask);
- specs the device cannot render (JPEG: ``isp:jpeg``, ``camera:jpeg``, and ``mix``)
  get their share of each batch from host processes running the core's own
  :func:`denoise_core.patches.clean_patches` (``--host-workers``; the log says how
  long the device waited for them).

A share of each batch (``--pairs-share``) comes from real noisy/clean pairs
(any layout ``denoise ingest`` detects as pairs), cropped at the same place in both;
``--pairs DIR@WEIGHT`` repeated mixes several sets in those rows by weight, as
``denoise train --data`` does (a set of 10 pairs can weigh as much as one of 77).
The learning rate is :func:`denoise_core.training.cosine_lr` (the schedule of
``denoise train``, decaying to 1%) over the *wall-clock* budget (``--minutes``),
since a lease is measured in minutes, not steps. Every ``--checkpoint-every``
seconds a checkpoint goes to ``OUT/jax/attempt-NNN/checkpoint_<step>/`` (the best
``--keep`` by validation PSNR and the newest are kept), so a lease that ends early
still returns a model; at the end :func:`denoise_core.run_folder.export_best`
writes ``OUT/model/model.keras`` and ``model_card.json``, the layout ``denoise
promote`` reads (``--checkpoint last`` ships the end of the schedule).

    KERAS_BACKEND=jax python -m jobs.train_jax \\
        --init-from denoise_core/weights/default.keras \\
        --clean DIR --pairs DIR --val DIR --minutes 7 --out OUT/gpu-run
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from denoise_core import (  # noqa: E402
    codecs,
    isp,
    layouts,
    metrics,
    model_file,
    models,
    noise,
    patches,
    run_folder,
    storage,
    training,
    valset,
    weights,
)
from denoise_core.precision import PRECISIONS  # noqa: E402
from denoise_core.train_config import (  # noqa: E402
    COLOR_CLIPS,
    ConfigError,
    SamplerConfig,
    parse_data_args,
)

PROG = ["KERAS_BACKEND=jax", "python", "-m", "jobs.train_jax"]
DEFAULT_VAL_NOISE = "gaussian:25"
# Exit status when the model's validation output is not finite before training starts
# (cluster/lent_gpu.sh reruns in fp32 on it).
NONFINITE_EXIT = 3

# ---------------------------------------------------------------------------
# Loaders (host): the core's listing, pairing and decoding
# ---------------------------------------------------------------------------


def _rgb8(data: bytes) -> np.ndarray:
    img = codecs.to_rgb(codecs.decode_image(data))
    if img.dtype != np.uint8:  # 16-bit sources: the device stack is 8-bit
        img = np.round(metrics.to_float01(img) * 255.0).astype(np.uint8)
    return img


def load_clean(folder: str) -> np.ndarray:
    """All images as one uint8 array, portrait ones transposed, centre-cropped to the smallest."""
    uris = list(storage.walk_images(folder))
    if not uris:
        raise ValueError(f"no images under {folder}")
    imgs = [_rgb8(storage.read_bytes(u)) for u in uris]
    imgs = [im.transpose(1, 0, 2) if im.shape[0] > im.shape[1] else im for im in imgs]
    h = min(im.shape[0] for im in imgs)
    w = min(im.shape[1] for im in imgs)
    out = []
    for im in imgs:
        y, x = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
        out.append(im[y : y + h, x : x + w])
    return np.stack(out)


def read_pairs(folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy, clean) uint8 images as ``denoise ingest``'s ``pairs`` layout finds them
    (``*_real`` / ``*_mean`` as PolyU, ``*_noisy`` / ``*_clean``, ``noisy/`` + ``clean/``)."""
    items, _ = layouts.pair_items(layouts.list_source(folder))
    if not items:
        raise ValueError(f"no noisy/clean pairs under {folder}")
    return [
        (_rgb8(storage.read_bytes(it.noisy)), _rgb8(storage.read_bytes(it.clean))) for it in items
    ]


def load_pairs(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of ``folder`` (:func:`read_pairs`) as two stacks, top-left cropped to the
    smallest."""
    pairs = read_pairs(folder)
    noisy, clean = [n for n, _ in pairs], [c for _, c in pairs]
    h = min(im.shape[0] for im in clean)
    w = min(im.shape[1] for im in clean)
    return np.stack([n[:h, :w] for n in noisy]), np.stack([c[:h, :w] for c in clean])


def load_pair_sources(
    specs: Sequence[tuple[str, float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Every ``(folder, weight)`` set of pairs as one noisy and one clean stack (top-left
    cropped to the smallest), each row's sampling probability (a set's weight spread over
    its rows) and one ``{source, rows, share}`` per set (``share``: of the pair rows)."""
    sets = [load_pairs(folder) for folder, _ in specs]
    h = min(n.shape[1] for n, _ in sets)
    w = min(n.shape[2] for n, _ in sets)
    total = sum(weight for _, weight in specs)
    row_p = np.concatenate(
        [np.full(len(n), wt / total / len(n)) for (n, _), (_, wt) in zip(sets, specs)]
    )
    sources = [
        {"source": folder, "rows": len(n), "share": weight / total}
        for (folder, weight), (n, _) in zip(specs, sets)
    ]
    noisy = np.concatenate([n[:, :h, :w] for n, _ in sets])
    clean = np.concatenate([c[:, :h, :w] for _, c in sets])
    return noisy, clean, row_p.astype(np.float32), sources


def load_val_pairs(folder: str) -> list:
    """Held-out real noisy/clean pairs as float32 validation items, each cropped to a
    multiple of 8: at GPU scale the few training pairs are memorised (6.5 H200 minutes:
    PolyU train +1.27 dB, held-out -0.27), which only held-out pairs reveal."""
    pairs = []
    for noisy, clean in read_pairs(folder):
        h, w = clean.shape[0] // 8 * 8, clean.shape[1] // 8 * 8
        pairs.append(tuple(im[:h, :w].astype(np.float32) / 255.0 for im in (noisy, clean)))
    return pairs


def load_val(folder: str, noise_spec: str = DEFAULT_VAL_NOISE) -> list:
    """Clean validation images with the core's fixed-seed noise (:func:`valset.val_pair`),
    cropped to a multiple of 8 (the U-Net's stride; the model runs on whole images)."""
    pairs = []
    for i, uri in enumerate(storage.walk_images(folder)):
        c = _rgb8(storage.read_bytes(uri)).astype(np.float32) / 255.0
        c = c[: c.shape[0] // 8 * 8, : c.shape[1] // 8 * 8]
        pairs.append(valset.val_pair(c, noise_spec, 0, i))
    return pairs


# ---------------------------------------------------------------------------
# Device sampling: crops, flips, colour, noise twins (jitted)
# ---------------------------------------------------------------------------


def _crop(stack, idx, y, x, p):
    return jax.lax.dynamic_slice(stack, (idx, y, x, 0), (1, p, p, stack.shape[-1]))[0]


def _dihedral(img, k):
    """One of 8 flips/rotations, chosen by k in 0..7 (square patches)."""
    branches = [
        (lambda a, r=r, f=f: jnp.rot90(a[:, ::-1] if f else a, r, axes=(0, 1)))
        for f in (False, True)
        for r in range(4)
    ]
    return jax.lax.switch(k, branches, img)


def _fitting_saturation(clean, grey, quantile: float = 0.02):
    """patches.fitting_saturation: the chroma scale that keeps 98% of unclipped pixels in range."""
    d = clean - grey
    up = jnp.where(d > 1e-6, (1.0 - grey) / jnp.where(d > 1e-6, d, 1.0), jnp.inf)
    down = jnp.where(d < -1e-6, grey / jnp.where(d < -1e-6, -d, 1.0), jnp.inf)
    limit = jnp.minimum(up, down).min(axis=-1)
    unclipped = ~((clean <= 1.5 / 255) | (clean >= 253.5 / 255)).any(axis=-1)
    limit = jnp.where(unclipped, jnp.minimum(limit, 1e6), jnp.nan)
    q = jnp.nanquantile(limit, quantile)
    return jnp.where(unclipped.any(), q, 1.0)


def _random_color(key, clean, color_clip: str):
    """patches.random_color: channel order and log-uniform saturation, then clipped."""
    k_perm, k_sat = jax.random.split(key)
    clean = clean[..., jax.random.permutation(k_perm, 3)]
    top = math.log(patches.MAX_SATURATION)
    scale = jnp.exp(jax.random.uniform(k_sat, minval=-top / 2, maxval=top))
    grey = clean.mean(axis=-1, keepdims=True)
    if color_clip == "fit":
        fit = jnp.maximum(1.0, _fitting_saturation(clean, grey))
        scale = jnp.where(scale > 1.0, jnp.minimum(scale, fit), scale)
    return jnp.clip(grey + scale * (clean - grey), 0.0, 1.0)


def _log_uniform(key, lo: float, hi: float, shape=()):
    return jnp.exp(jax.random.uniform(key, shape, minval=math.log(lo), maxval=math.log(hi)))


def gaussian_twin(key, clean, spec: noise.NoiseSpec):
    """noise.add_gaussian with the spec's sigma draw: unclipped (the published protocol)."""
    k_sigma, k_n = jax.random.split(key)
    if spec.sigma_range is not None:
        sigma = jax.random.uniform(k_sigma, minval=spec.sigma_range[0], maxval=spec.sigma_range[1])
    else:
        sigma = jax.random.choice(k_sigma, jnp.asarray(spec.sigmas, jnp.float32))
    return clean + sigma / 255.0 * jax.random.normal(k_n, clean.shape)


def camera_twin(key, clean, spec: noise.NoiseSpec | None = None):
    """noise.add_camera_noise (no JPEG): noise.sample_camera_params' ranges, Poisson shot
    noise as the Gaussian of equal variance, the core's sRGB curves."""
    k_shot, k_read, k_gain, k_n = jax.random.split(key, 4)
    shot = _log_uniform(k_shot, *noise.SHOT_RANGE)
    read = _log_uniform(k_read, *noise.READ_RANGE)
    rb = jax.random.uniform(k_gain, (2,), minval=noise.GAIN_RANGE[0], maxval=noise.GAIN_RANGE[1])
    gains = jnp.stack([rb[0], 1.0, rb[1]])
    lin = noise.srgb_to_linear(clean, xp=jnp)
    std = jnp.sqrt(gains * shot * lin + (gains * read) ** 2)
    return noise.linear_to_srgb(lin + std * jax.random.normal(k_n, clean.shape), xp=jnp)


def _cfa_masks(h: int, w: int):
    """RGGB: red at (even, even), blue at (odd, odd), green elsewhere (isp.unprocess's mosaic)."""
    y, x = np.mgrid[0:h, 0:w]
    r = (y % 2 == 0) & (x % 2 == 0)
    b = (y % 2 == 1) & (x % 2 == 1)
    return tuple(jnp.asarray(m, jnp.float32) for m in (r, ~(r | b), b))


def _conv3(img, kernel):
    """3x3 convolution of HxW with zeros outside (static kernel, nine shifted slices)."""
    h, w = img.shape
    p = jnp.pad(img, 1)
    return sum(
        kernel[i][j] * p[i : i + h, j : j + w] for i in range(3) for j in range(3) if kernel[i][j]
    )


_K_GREEN = ((0, 0.25, 0), (0.25, 1.0, 0.25), (0, 0.25, 0))
_K_RED_BLUE = ((0.25, 0.5, 0.25), (0.5, 1.0, 0.5), (0.25, 0.5, 0.25))


def demosaic_bilinear(mosaic):
    """RGGB mosaic HxW -> HxWx3 by bilinear interpolation; borders by normalised convolution."""
    r, g, b = _cfa_masks(*mosaic.shape)
    out = []
    for mask, k in ((r, _K_RED_BLUE), (g, _K_GREEN), (b, _K_RED_BLUE)):
        out.append(_conv3(mosaic * mask, k) / _conv3(mask, k))
    return jnp.stack(out, axis=-1)


def _blur(img, sigma, radius: int):
    """Separable Gaussian blur of HxWxC (traced ``sigma``), reflect-101 borders as OpenCV."""
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (t / jnp.maximum(sigma, 1e-3)) ** 2)
    w = w / w.sum()
    h, wd = img.shape[:2]
    p = jnp.pad(img, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    img = sum(w[i] * p[i : i + h] for i in range(2 * radius + 1))
    p = jnp.pad(img, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(w[i] * p[:, i : i + wd] for i in range(2 * radius + 1))


def _radius(sigma: float) -> int:
    return max(1, round(4 * sigma))  # OpenCV's float kernels span 4 sigma each side


def sample_isp_twin(key) -> dict:
    """isp.sample_isp_params on the device: same ranges, same constants (no JPEG here)."""
    ks = jax.random.split(key, 11)
    u = jax.random.uniform
    weights = u(ks[0], (len(isp.XYZ_TO_CAMS),), minval=1e-8, maxval=1.0)
    log_shot = u(ks[1], minval=math.log(isp.SHOT_MIN), maxval=math.log(isp.SHOT_MAX))
    log_read = isp.READ_SLOPE * log_shot + isp.READ_INTERCEPT
    log_read = log_read + isp.READ_STD * jax.random.normal(ks[2])
    brightness = isp.BRIGHTNESS_MEAN + isp.BRIGHTNESS_STD * jax.random.normal(ks[3])
    blur = jax.random.bernoulli(ks[4], isp.BLUR_PROBABILITY)
    return {
        "rgb_to_cam": isp.rgb_to_cam_matrix(weights, xp=jnp),
        "gains": jnp.stack(
            [
                u(ks[5], minval=isp.RED_GAIN_RANGE[0], maxval=isp.RED_GAIN_RANGE[1]),
                1.0,
                u(ks[6], minval=isp.BLUE_GAIN_RANGE[0], maxval=isp.BLUE_GAIN_RANGE[1]),
            ]  # fmt: skip
        )
        / jnp.maximum(isp.MIN_BRIGHTNESS, brightness),
        "shot": jnp.exp(log_shot),
        "read": jnp.exp(log_read),
        "chroma_keep": u(ks[7], minval=isp.CHROMA_KEEP_RANGE[0], maxval=isp.CHROMA_KEEP_RANGE[1]),
        "pixel_noise": u(ks[8], minval=isp.PIXEL_NOISE_RANGE[0], maxval=isp.PIXEL_NOISE_RANGE[1]),
        "blur": blur,
        "blur_sigma": u(ks[9], minval=isp.BLUR_SIGMA_RANGE[0], maxval=isp.BLUR_SIGMA_RANGE[1]),
        "sharpen": u(ks[10], minval=isp.SHARPEN_RANGE[0], maxval=isp.SHARPEN_RANGE[1]),
    }


def unprocess_twin(srgb, p: dict):
    """isp.unprocess: sRGB HxWx3 -> linear RGGB mosaic HxW."""
    x = isp.inverse_tone(srgb, xp=jnp) @ p["rgb_to_cam"].T
    x = jnp.clip(x / p["gains"], 0.0, 1.0)
    r, g, b = _cfa_masks(*srgb.shape[:2])
    return x[..., 0] * r + x[..., 1] * g + x[..., 2] * b


def process_twin(mosaic, p: dict):
    """isp.process with bilinear demosaicing: gains (white clip), demosaic, CCM, gamma, tone."""
    r, g, b = _cfa_masks(*mosaic.shape)
    gain = p["gains"][0] * r + p["gains"][1] * g + p["gains"][2] * b
    x = jnp.clip(jnp.minimum(mosaic * gain, 1.0), -isp.PEDESTAL, 1.0)
    return isp.tone(demosaic_bilinear(x) @ jnp.linalg.inv(p["rgb_to_cam"]).T, xp=jnp)


def isp_noise_twin(key, clean, p: dict):
    """isp.isp_noise: ``process(raw + n) - process(raw)``, then the phone's noise shaping."""
    k_raw, k_shared, k_own = jax.random.split(key, 3)
    raw = unprocess_twin(clean, p)
    variance = jnp.maximum(p["shot"] * raw + p["read"], 0.0)
    noisy_raw = raw + jax.random.normal(k_raw, raw.shape) * jnp.sqrt(variance)
    n = process_twin(noisy_raw, p) - process_twin(raw, p)
    luma = n.mean(axis=-1, keepdims=True)
    n = luma + p["chroma_keep"] * (n - luma)
    local = jnp.sqrt(_blur(n * n, isp.LOCAL_STD_SIGMA, _radius(isp.LOCAL_STD_SIGMA)))
    a = isp.PIXEL_NOISE_SHARED
    mixed = a * jax.random.normal(k_shared, n.shape[:2] + (1,))
    mixed = mixed + math.sqrt(1 - a * a) * jax.random.normal(k_own, n.shape)
    n = n + p["pixel_noise"] * local * mixed
    blurred = _blur(n, p["blur_sigma"], _radius(isp.BLUR_SIGMA_RANGE[1]))
    sharpened = n + p["sharpen"] * (n - _blur(n, isp.SHARPEN_SIGMA, _radius(isp.SHARPEN_SIGMA)))
    return jnp.where(p["blur"], blurred, sharpened)


def isp_twin(key, clean, spec: noise.NoiseSpec | None = None):
    """noise.add_isp_noise without JPEG: the camera-pipeline noise, clipped to [0, 1]."""
    k_params, k_noise = jax.random.split(key)
    return jnp.clip(clean + isp_noise_twin(k_noise, clean, sample_isp_twin(k_params)), 0.0, 1.0)


DEVICE_TWINS = {"gaussian": gaussian_twin, "camera": camera_twin, "isp": isp_twin}


def on_device(spec: noise.NoiseSpec) -> bool:
    """Whether the device renders ``spec`` (JPEG and ``mix`` are sampled on the host)."""
    return spec.kind in DEVICE_TWINS and not spec.jpeg


def split_counts(n: int, parts: int) -> list[int]:
    """``n`` rows over ``parts`` equal shares, the remainder to the first ones."""
    return [n // parts + (i < n % parts) for i in range(parts)] if parts else []


def plan_rows(
    noise_spec: str, n_synthetic: int
) -> tuple[list[tuple[noise.NoiseSpec, int]], str, int]:
    """Rows per device spec, the host specs (joined) and their row count: each spec of
    ``noise_spec`` gets an equal share of the synthetic rows, as the core mixes them."""
    specs = SamplerConfig(patch=2, noise=noise_spec).noise_specs()
    counts = split_counts(n_synthetic, len(specs))
    device = [(s, c) for s, c in zip(specs, counts) if on_device(s) and c]
    host = [(s, c) for s, c in zip(specs, counts) if not on_device(s)]
    return device, ";".join(str(s) for s, _ in host), sum(c for _, c in host)


def make_batch_fn(
    clean_stack,
    pair_noisy,
    pair_clean,
    batch: int,
    n_pairs: int,
    patch: int,
    color_augment: bool,
    color_clip: str = "hard",
    device_specs: list[tuple[noise.NoiseSpec, int]] | None = None,
    pair_p=None,
):
    """A jittable ``(key, host_noisy, host_clean) -> (noisy, clean)`` float32 batch: device
    synthetic rows first (``device_specs``: (spec, rows); default ``gaussian:0-55;camera``
    over all synthetic rows), then the host's rows (may be empty), then real pairs, each
    drawn with probability ``pair_p`` (default: uniform)."""
    if device_specs is None:
        device_specs, _, _ = plan_rows("gaussian:0-55;camera", batch - n_pairs)

    def synthetic(key, spec, n):
        k_idx, k_y, k_x, k_d, k_col, k_noise = jax.random.split(key, 6)
        idx = jax.random.randint(k_idx, (n,), 0, clean_stack.shape[0])
        ys = jax.random.randint(k_y, (n,), 0, clean_stack.shape[1] - patch + 1)
        xs = jax.random.randint(k_x, (n,), 0, clean_stack.shape[2] - patch + 1)
        ds = jax.random.randint(k_d, (n,), 0, 8)
        crops = jax.vmap(lambda i, y, x: _crop(clean_stack, i, y, x, patch))(idx, ys, xs)
        crops = jax.vmap(_dihedral)(crops, ds).astype(jnp.float32) / 255.0
        if color_augment:
            keys = jax.random.split(k_col, n)
            crops = jax.vmap(lambda k, c: _random_color(k, c, color_clip))(keys, crops)
        twin = DEVICE_TWINS[spec.kind]
        noisy = jax.vmap(lambda k, c: twin(k, c, spec))(jax.random.split(k_noise, n), crops)
        return noisy, crops

    def real(key):
        k_idx, k_y, k_x, k_d = jax.random.split(key, 4)
        if pair_p is None:
            idx = jax.random.randint(k_idx, (n_pairs,), 0, pair_clean.shape[0])
        else:
            idx = jax.random.choice(k_idx, pair_clean.shape[0], (n_pairs,), p=pair_p)
        ys = jax.random.randint(k_y, (n_pairs,), 0, pair_clean.shape[1] - patch + 1)
        xs = jax.random.randint(k_x, (n_pairs,), 0, pair_clean.shape[2] - patch + 1)
        ds = jax.random.randint(k_d, (n_pairs,), 0, 8)

        def one(i, y, x, d):
            n = _dihedral(_crop(pair_noisy, i, y, x, patch), d)
            c = _dihedral(_crop(pair_clean, i, y, x, patch), d)
            return n, c

        n, c = jax.vmap(one)(idx, ys, xs, ds)
        return n.astype(jnp.float32) / 255.0, c.astype(jnp.float32) / 255.0

    def make(key, host_noisy=None, host_clean=None):
        keys = jax.random.split(key, len(device_specs) + 1)
        parts = [synthetic(k, s, n) for k, (s, n) in zip(keys, device_specs)]
        if host_noisy is not None and host_noisy.shape[0]:
            parts.append((host_noisy, host_clean))
        if n_pairs:
            parts.append(real(keys[-1]))
        return tuple(jnp.concatenate([p[i] for p in parts]) for i in (0, 1))

    return make


class HostRows:
    """The host's share of each batch, prefetched by a process pool (spawned: JAX's
    threads do not survive a fork), each task one batch's rows from the core's sampler."""

    def __init__(self, images, n: int, config: SamplerConfig, workers: int, seed: int) -> None:
        self.n, self.config, self.seed, self.waited = n, config, seed, 0.0
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=patches.init_host_images,
            initargs=(images,),
        )
        self.queue: collections.deque = collections.deque()
        self.count = 0
        for _ in range(2 * workers):
            self._submit()

    def _submit(self) -> None:
        self.count += 1
        self.queue.append(
            self.pool.submit(
                patches.clean_patches, self.n, self.config, self.seed * 1_000_003 + self.count
            )
        )

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        t = time.time()
        noisy, clean = self.queue.popleft().result()
        self.waited += time.time() - t
        self._submit()
        return noisy, clean

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------
# Model, step, run
# ---------------------------------------------------------------------------


def build(args) -> keras.Model:
    training.set_precision(args.precision)
    source = models.load_model(args.init_from) if args.init_from else None
    if args.model_args or source is None:
        model = models.build_model(args.model, **json.loads(args.model_args or "{}"))
        if source is not None:
            copied, fresh = models.transfer_weights(source, model)
            print(f"grow: {copied} layers copied from {args.init_from}, {fresh} new", flush=True)
        return model
    return models.with_precision(source, args.precision)


def load_teacher(path: str | None, precision: str) -> keras.Model | None:
    """The frozen distillation teacher (None without --teacher), in the run's precision."""
    return models.as_teacher(models.load_model(path), precision) if path else None


def make_loss_fn(
    model: keras.Model,
    teacher: keras.Model | None = None,
    teacher_weight=0.0,
    loss: str = "l1",
):
    """``(tv, ntv, noisy, clean, teacher_vars) -> (loss, ntv)``: ``loss`` (one of
    ``training.LOSSES``, the same per-example formulas as ``denoise train --loss``)
    against the clean target, mixed as ``denoise train --teacher`` mixes it with the
    teacher's output (``teacher_vars`` = the teacher's (trainable, non-trainable)
    values, or ``((), ())``); the batch mean of the per-example values."""
    per_example = training.per_example_loss(loss)

    def loss_fn(tv, ntv, noisy, clean, teacher_vars):
        pred, ntv = model.stateless_call(tv, ntv, noisy, training=True)
        pred = pred.astype(jnp.float32)
        value = per_example(clean, pred)
        if teacher is not None:
            target = teacher.stateless_call(*teacher_vars, noisy, training=False)[0]
            target = jax.lax.stop_gradient(target.astype(jnp.float32))
            value = training.distillation_mix(value, per_example(target, pred), teacher_weight)
        return jnp.mean(value), ntv

    return loss_fn


def noisy_psnr(val: list) -> float:
    """Mean PSNR of the noisy validation inputs (the floor the model's figure is read against)."""
    return float(np.mean([metrics.psnr(n, c) for n, c in val])) if val else float("nan")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init-from", help=".keras model to warm-start from")
    p.add_argument(
        "--model",
        default=models.DEFAULT_MODEL,
        choices=models.MODEL_NAMES,
        help="architecture built from --model-args (default unet)",
    )
    p.add_argument(
        "--model-args", help="JSON arguments of --model: build this and grow --init-from into it"
    )
    p.add_argument(
        "--teacher",
        metavar="MODEL",
        help="distil from this .keras model or packaged tier (default, fast), as denoise train",
    )
    p.add_argument(
        "--teacher-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="with --teacher: loss = (1 - W) * L(clean) + W * L(teacher output), W in (0, 1]",
    )
    p.add_argument(
        "--loss",
        choices=training.LOSSES,
        default="l1",
        help="per-patch loss, as denoise train --loss (psnr: -PSNR in dB, each patch "
        "weighted by its dB; default %(default)s)",
    )
    p.add_argument("--clean", required=True, help="folder of clean training images")
    p.add_argument(
        "--pairs",
        action="append",
        metavar="DIR[@WEIGHT]",
        help="folder of noisy/clean pairs (any layout ingest calls pairs); repeat to mix "
        "sets by weight (default 1 each) within the --pairs-share rows",
    )
    p.add_argument(
        "--pairs-share", type=float, default=0.2, help="share of each batch from --pairs"
    )
    p.add_argument("--val", help="folder of clean validation images (fixed-seed noise)")
    p.add_argument("--val-noise", default=DEFAULT_VAL_NOISE, help="noise for --val images")
    p.add_argument(
        "--val-pairs",
        help="folder of held-out real noisy/clean pairs: they join the validation mean "
        "the export is chosen by (also logged alone as val_pairs_psnr)",
    )
    p.add_argument(
        "--noise",
        default=noise.DEFAULT_TRAINING_NOISE,
        help="noise for clean images, as denoise train --noise (default %(default)s); "
        "JPEG and mix are sampled on the host",
    )
    p.add_argument("--host-workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument(
        "--warmup", type=float, default=0.03, help="share of the budget spent warming up"
    )
    p.add_argument("--precision", default="bf16", choices=PRECISIONS)
    p.add_argument("--no-color-augment", action="store_true")
    p.add_argument(
        "--color-clip", choices=COLOR_CLIPS, default="hard", help="as denoise train --color-clip"
    )
    p.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds")
    p.add_argument(
        "--keep", type=int, default=3, help="keep the best K checkpoints (and the newest)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder (local or s3://)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jobs.train_jax", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    if args.patch % 2 or args.batch < 1 or not 0 <= args.pairs_share < 1 or args.keep < 1:
        p.error("--patch must be even (whole Bayer cells), --batch and --keep positive, "
                "--pairs-share in [0, 1)")  # fmt: skip
    if not 0.0 < args.teacher_weight <= 1.0:
        p.error(f"--teacher-weight must be in (0, 1], got {args.teacher_weight:g}")
    try:
        args.init_from = weights.resolve_model(args.init_from)  # default|fast: a packaged tier
        args.teacher = weights.resolve_model(args.teacher)
    except weights.NoPackagedModel as exc:
        p.error(str(exc))
    missing = model_file.missing_model_file(
        {"--init-from": args.init_from, "--teacher": args.teacher}
    )
    if missing:
        p.error(missing)
    try:
        pair_specs = parse_data_args(args.pairs or [])
    except ConfigError as exc:
        p.error(f"--pairs {exc.rule}")
    start = time.time()
    run_uri = storage.absolute(args.out)
    if run_folder.checkpoint_states(run_uri):
        p.error(f"{run_uri} already holds a run; choose another --out")
    attempt = storage.join(
        run_uri, run_folder.JAX_DIR, run_folder.next_attempt(run_uri, run_folder.JAX_DIR)
    )
    print(f"devices: {jax.devices()}  jax {jax.__version__}  keras {keras.__version__}", flush=True)

    clean_np = load_clean(args.clean)
    pair_noisy = pair_clean = pair_p = None
    pair_sources: list[dict] = []
    if pair_specs:
        pair_noisy, pair_clean, pair_p, pair_sources = load_pair_sources(pair_specs)
    n_pairs = round(args.batch * args.pairs_share) if pair_sources else 0
    device_specs, host_noise, n_host = plan_rows(args.noise, args.batch - n_pairs)
    mixed = len(pair_sources) > 1  # say how the pair rows split between the sets
    mix_note = "".join(f", {p['share']:.0%} {p['source']}" for p in pair_sources if mixed)
    print(
        f"data: {clean_np.shape} clean, {None if pair_noisy is None else pair_noisy.shape} pairs "
        f"({n_pairs}/{args.batch} per batch"
        f"{mix_note}"
        f"), loaded in {time.time() - start:.1f}s; noise on "
        f"device {', '.join(f'{s}x{n}' for s, n in device_specs) or '-'}, on host "
        f"{f'{host_noise} x{n_host}' if n_host else '-'}",
        flush=True,
    )
    host = None
    if n_host:
        host_config = SamplerConfig(
            patch=args.patch, noise=host_noise, color_augment=not args.no_color_augment,
            color_clip=args.color_clip,
        )  # fmt: skip
        host = HostRows(clean_np, n_host, host_config, args.host_workers, args.seed)

    def on_device(array):
        return None if array is None else jax.device_put(array)

    make_batch = make_batch_fn(
        jax.device_put(clean_np), on_device(pair_noisy), on_device(pair_clean), args.batch,
        n_pairs, args.patch, not args.no_color_augment, args.color_clip, device_specs,
        on_device(pair_p),
    )  # fmt: skip

    model = build(args)
    info = models.model_info(models.with_precision(model, "fp32"))
    print(
        f"model: {info['params']} params, {info['flops_per_megapixel'] / 1e9:.0f} GFLOP/MP",
        flush=True,
    )
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=args.lr)
    opt_state = tx.init(trainable)

    teacher = load_teacher(args.teacher, args.precision)
    teacher_vars = (
        ([v.value for v in teacher.trainable_variables],
         [v.value for v in teacher.non_trainable_variables])
        if teacher is not None else ((), ())
    )  # fmt: skip
    if teacher is not None:
        print(f"teacher: {args.teacher} (weight {args.teacher_weight:g})", flush=True)
    loss_fn = make_loss_fn(model, teacher, args.teacher_weight, args.loss)

    @jax.jit
    def train_step(tv, ntv, opt_state, key, lr, host_noisy, host_clean, teacher_vars):
        noisy, clean = make_batch(key, host_noisy, host_clean)
        (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            tv, ntv, noisy, clean, teacher_vars
        )
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = tx.update(grads, opt_state, tv)
        return optax.apply_updates(tv, updates), ntv, opt_state, loss

    @jax.jit
    def predict(tv, ntv, x):
        return model.stateless_call(tv, ntv, x, training=False)[0]

    val = load_val(args.val, args.val_noise) if args.val else []
    val_pairs = load_val_pairs(args.val_pairs) if args.val_pairs else []

    def validate(tv, ntv) -> tuple[float, float]:
        """Mean PSNR over every validation item (what the export is chosen by) and over
        the real pairs alone."""
        psnrs = [
            metrics.psnr(np.clip(np.asarray(predict(tv, ntv, n[None]), np.float32)[0], 0, 1), c)
            for n, c in val + val_pairs
        ]
        real = psnrs[len(val) :]
        return (
            float(np.mean(psnrs)) if psnrs else float("nan"),
            float(np.mean(real)) if real else float("nan"),
        )

    empty = np.zeros((0, args.patch, args.patch, 3), np.float32)

    def host_rows():
        return host.next() if host else (empty, empty)

    def checkpoint(tv, ntv, state: dict) -> None:
        for var, value in zip(model.trainable_variables, tv):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, ntv):
            var.assign(value)
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, run_folder.MODEL_FILE)
            models.with_precision(model, "fp32").save(local)
            ckpt = storage.join(attempt, run_folder.checkpoint_name(state["step"]))
            run_folder.write_checkpoint(ckpt, local, state)
        run_folder.prune(run_uri, args.keep)

    log_uri = storage.join(run_uri, "log.jsonl")
    records: list[dict] = []

    def log(rec: dict) -> None:
        print(json.dumps(rec), flush=True)
        records.append(rec)
        storage.write_bytes_atomic(log_uri, "".join(json.dumps(r) + "\n" for r in records).encode())

    key = jax.random.PRNGKey(args.seed)
    t0 = time.time()
    key, sub = jax.random.split(key)
    trainable, non_trainable, opt_state, loss = train_step(
        trainable, non_trainable, opt_state, sub, jnp.float32(0.0), *host_rows(), teacher_vars
    )
    loss.block_until_ready()
    v0, real0 = validate(trainable, non_trainable)
    real_note = f" (real pairs {real0:.3f})" if val_pairs else ""
    print(
        f"compiled first step in {time.time() - t0:.1f}s; val before: {v0:.3f} dB{real_note}",
        flush=True,
    )
    if (val or val_pairs) and not math.isfinite(v0):
        # Seen with XLA:CPU (jaxlib 0.11.2): the fast tier's jitted bf16 forward pass is
        # all NaN on 128 px inputs. Training on would rank checkpoints by NaN.
        print(
            f"error: the model's output on the validation images is not finite in "
            f"{args.precision} on {jax.default_backend()}; rerun with --precision fp32",
            file=sys.stderr,
            flush=True,
        )
        return NONFINITE_EXIT
    log({"step": 0, "val_psnr": v0} | ({"val_pairs_psnr": real0} if val_pairs else {}))

    budget = args.minutes * 60.0
    train_start = time.time()
    last_ckpt = train_start
    step, losses, lr = 0, [], 0.0

    def record(final: bool = False) -> dict:
        elapsed = time.time() - train_start
        v, real = validate(trainable, non_trainable)
        rec = {
            "step": step,
            "seconds": round(elapsed, 1),
            "lr": lr,
            "loss": float(np.mean(losses[-20:])) if losses else None,
            "val_psnr": v,
            "val_noisy_psnr": noisy_psnr(val + val_pairs),
            "patches_per_s": round(step * args.batch / max(elapsed, 1e-9), 1),
            "host_wait_s": round(host.waited, 1) if host else 0.0,
        }
        return (
            rec
            | ({"val_pairs_psnr": real} if val_pairs else {})
            | ({"final": True} if final else {})
        )

    try:
        while (frac := (time.time() - train_start) / budget) < 1.0:
            key, sub = jax.random.split(key)
            lr = training.cosine_lr(frac, 1.0, args.lr, args.warmup)
            trainable, non_trainable, opt_state, loss = train_step(
                trainable, non_trainable, opt_state, sub, jnp.float32(lr), *host_rows(),
                teacher_vars,
            )  # fmt: skip
            step += 1
            if step % 50 == 0:
                losses.append(float(loss))
            if time.time() - last_ckpt >= args.checkpoint_every:
                rec = record()
                log(rec)
                try:
                    checkpoint(trainable, non_trainable, rec)
                except Exception as exc:  # a failed save must not end the lease's training
                    print(f"checkpoint failed: {exc!r}", flush=True)
                last_ckpt = time.time()
    finally:
        if host:
            host.close()
    train_wall = time.time() - train_start
    rec = record(final=True)
    log(rec)
    checkpoint(trainable, non_trainable, rec)

    card = run_folder.base_card(
        command=run_folder.command_line(PROG, argv if argv is not None else sys.argv[1:]),
        data=[
            {
                "source": args.clean,
                "layout": "clean",
                "rows": {"train": int(clean_np.shape[0])},
                "weight": round(1 - n_pairs / args.batch, 3),
            }
        ]
        + [
            {
                "source": s["source"],
                "layout": "pairs",
                "rows": {"train": s["rows"]},
                "weight": round(n_pairs / args.batch * s["share"], 3),
            }
            for s in pair_sources
        ],
        validation={
            "source": args.val,
            "limit": len(val),
            "noise": args.val_noise,
            "pairs": args.val_pairs,
            "pairs_count": len(val_pairs),
            "note": "mean PSNR over the noised --val images and the --val-pairs, each "
            "cropped to a multiple of 8 (seed 0 noise); the export is the best by it",
        },
        training={
            "trainer": "jobs.train_jax",
            "batch_size": args.batch,
            "patch": args.patch,
            "lr": args.lr,
            "loss": args.loss,
            "schedule": "cosine over wall time",
            "warmup": args.warmup,
            "precision": args.precision,
            "color_augment": not args.no_color_augment,
            "color_clip": args.color_clip,
            "noise": args.noise,
            "noise_on_device": [f"{s}x{n}" for s, n in device_specs],
            "noise_on_host": {"spec": host_noise, "rows": n_host},
            "init_from": args.init_from,
            "teacher": args.teacher,
            "teacher_weight": args.teacher_weight if args.teacher else None,
            "model": args.model if args.model_args or not args.init_from else None,
            "model_args": args.model_args,
            "backend": "jax " + jax.__version__,
            "keras": keras.__version__,
        },
        wall_time_s=round(time.time() - start, 1),
        train_time_s=round(train_wall, 1),
        hardware=run_folder.hardware(gpu=run_folder.gpu_name() or str(jax.devices()[0]), gpus=1),
    )
    card = run_folder.export_best(run_uri, card, saved_model=False)
    print(
        f"done: {step} steps, {train_wall / 60:.1f} min, val {rec['val_psnr']:.3f} dB; exported "
        f"step {card['best']['step']} -> {run_folder.exported_model_uri(run_uri)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
