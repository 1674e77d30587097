"""Noise synthesis for training on clean photos.

Images are float32 numpy arrays in [0, 1], HxWxC (HxW also works), RGB.
Every function takes a ``numpy.random.Generator`` so results are
reproducible per worker/seed.

Specs (see :func:`parse_noise_spec`)::

    gaussian:25          one sigma (0-255 units)
    gaussian:15,25,50    one of these per image
    gaussian:0-55        uniform in [0, 55] per image (blind denoising)
    camera               Poisson-Gaussian noise in linear light, sRGB out
    camera:jpeg          ... then a JPEG round-trip, quality in [60, 95]
    camera:jpeg=70-90    ... with that quality range
    isp                  a phone's camera pipeline run backwards and forwards with raw
                         noise: correlated, colour-mixed, signal-dependent
                         (denoise_core.isp, after Brooks et al. 2019)
    isp:jpeg[=LO-HI]     ... then a JPEG round-trip
    mix                  random degradations in random order (after Zhang et al.'s
                         SCUNet data synthesis): colour-correlated Gaussian,
                         spatially correlated Gaussian, Poisson, JPEG
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import isp

__all__ = [
    "CameraParams",
    "NoiseSpec",
    "add_camera_noise",
    "add_gaussian",
    "add_poisson_gaussian",
    "apply_noise",
    "jpeg_roundtrip",
    "add_isp_noise",
    "add_mixed_noise",
    "sample_mixed_params",
    "linear_to_srgb",
    "parse_noise_spec",
    "sample_camera_params",
    "sample_noise_params",
    "srgb_to_linear",
    "synthesize",
]

# What `denoise train` synthesises on clean rows by default (unet-v11's recipe; v9 and v10
# had no gaussian:5-30): three sevenths of the samples phone-like (isp, isp with JPEG, the
# mixed degradations), three sevenths blind Gaussian, one of them at low and middle sigma
# (keeps Gaussian denoising, light noise and fine texture), a seventh the simple camera model.
DEFAULT_TRAINING_NOISE = "isp;isp:jpeg=70-95;mix;gaussian:0-55;gaussian:0-55;gaussian:5-30;camera"

# Ranges sample_camera_params draws from (documented there).
SHOT_RANGE = (1e-4, 1e-2)
READ_RANGE = (1e-3, 3e-2)
GAIN_RANGE = (1.0, 2.0)
JPEG_QUALITY_RANGE = (60, 95)


def add_gaussian(
    img: np.ndarray, sigma_255: float, rng: np.random.Generator, clip: bool = False
) -> np.ndarray:
    """Adds white Gaussian noise of std ``sigma_255/255``.

    Unclipped by default: the published AWGN protocol (DnCNN, FFDNet, ...)
    adds the noise in float and evaluates on the unclipped noisy image.
    """
    img = np.asarray(img, dtype=np.float32)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma_255 / 255.0)
    out = img + noise
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def srgb_to_linear(x: np.ndarray, xp=np) -> np.ndarray:
    """Inverse sRGB transfer curve (IEC 61966-2-1), input clipped to [0, 1].

    ``xp`` is numpy or ``jax.numpy`` (the GPU trainer's twin uses this same curve).
    """
    x = xp.clip(xp.asarray(x, dtype=xp.float32), 0.0, 1.0)
    return xp.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(xp.float32)


def linear_to_srgb(x: np.ndarray, xp=np) -> np.ndarray:
    """sRGB transfer curve, input clipped to [0, 1] (``xp``: numpy or ``jax.numpy``)."""
    x = xp.clip(xp.asarray(x, dtype=xp.float32), 0.0, 1.0)
    return xp.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055).astype(xp.float32)


@dataclass(frozen=True)
class CameraParams:
    """Poisson-Gaussian noise parameters in linear light.

    Per channel c the noisy raw value has variance
    ``g_c * shot * x + (g_c * read)**2`` (x the linear clean value, g_c the
    channel gain): as if the channel was recorded at x/g_c and amplified by
    g_c, the way white balance amplifies the red and blue channels' noise.
    """

    shot: float
    read: float
    gains: tuple[float, ...] = (1.0, 1.0, 1.0)
    jpeg_quality: int | None = None


def sample_camera_params(
    rng: np.random.Generator, jpeg: bool = False, jpeg_range: tuple[int, int] = JPEG_QUALITY_RANGE
) -> CameraParams:
    """Draws camera noise parameters for one image.

    - ``shot``: log-uniform in [1e-4, 1e-2] (variance per unit linear signal;
      1e-2 is a dark high-ISO phone shot, 1e-4 a clean base-ISO one; the range
      of Brooks et al. 2019, "Unprocessing images").
    - ``read``: read-noise std, log-uniform in [1e-3, 3e-2], drawn
      independently of ``shot`` so the model sees read-dominated dark noise too.
    - ``gains``: green 1, red and blue each uniform in [1, 2] (white-balance
      gains relative to green).
    - ``jpeg_quality``: uniform integer in ``jpeg_range`` if ``jpeg`` else None.
    """
    shot = math.exp(rng.uniform(math.log(SHOT_RANGE[0]), math.log(SHOT_RANGE[1])))
    read = math.exp(rng.uniform(math.log(READ_RANGE[0]), math.log(READ_RANGE[1])))
    red, blue = rng.uniform(*GAIN_RANGE, size=2)
    quality = int(rng.integers(jpeg_range[0], jpeg_range[1] + 1)) if jpeg else None
    return CameraParams(shot, read, (float(red), 1.0, float(blue)), quality)


def add_poisson_gaussian(
    linear: np.ndarray,
    shot: float,
    read: float,
    rng: np.random.Generator,
    gains: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Signal-dependent noise on linear values (unclipped): variance ``g*shot*x + (g*read)**2``.

    Shot noise is drawn as a scaled Poisson count (exact at low light, where a
    Gaussian approximation would be wrong), read noise as a Gaussian. ``gains``
    (one per channel) default to 1; gains of another length are ignored.
    """
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, None)
    channels = x.shape[-1] if x.ndim == 3 else 1
    if gains is None or len(gains) != channels:  # e.g. RGB gains on a grayscale image
        g = np.ones(channels)
    else:
        g = np.asarray(gains, dtype=np.float64)
    if x.ndim == 2:
        g = g[0]
    if shot > 0:
        # Per channel: raw = x / g, photons = raw / shot, Poisson, back, amplify by g.
        y = rng.poisson(x / (g * shot)) * (g * shot)
    else:
        y = x.copy()
    y = y + rng.standard_normal(x.shape) * (g * read)
    return y.astype(np.float32)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encodes to 8-bit JPEG with OpenCV at ``quality`` and decodes back to [0, 1] float32."""
    u8 = np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    rgb = u8.ndim == 3 and u8.shape[-1] == 3
    if rgb:
        u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    flag = cv2.IMREAD_COLOR if rgb else cv2.IMREAD_GRAYSCALE
    out = cv2.imdecode(buf, flag)
    if rgb:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3:
        out = out[..., None]
    return out.astype(np.float32) / 255.0


def add_camera_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    shot: float = 1e-3,
    read: float = 5e-3,
    gains: tuple[float, ...] | None = None,
    jpeg_quality: int | None = None,
) -> np.ndarray:
    """Camera-like noise on an sRGB image: linearise, Poisson-Gaussian, re-encode, clip.

    Real sensor noise is signal-dependent in linear light and then bent by the
    sRGB curve (dark areas get relatively more noise) and clipped; an optional
    JPEG round-trip adds the blocky, spatially correlated residue phones leave.
    """
    linear = srgb_to_linear(img)
    noisy = add_poisson_gaussian(linear, shot, read, rng, gains)
    out = linear_to_srgb(noisy)  # clips to [0, 1]
    if jpeg_quality is not None:
        out = jpeg_roundtrip(out, jpeg_quality)
    return out.astype(np.float32)


# --------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec; see the module docstring for the text form."""

    kind: str  # "gaussian", "camera", "isp" or "mix"
    sigmas: tuple[float, ...] = ()  # gaussian: pick one of these ...
    sigma_range: tuple[float, float] | None = None  # ... or uniform in this range
    jpeg: bool = False
    jpeg_range: tuple[int, int] = field(default=JPEG_QUALITY_RANGE)
    text: str = ""

    def __str__(self) -> str:
        return self.text or self.kind


def _parse_range(text: str, spec: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split("-", 1))
    if not 0 <= lo <= hi:
        raise ValueError(f"bad range {text!r} in noise spec {spec!r}")
    return lo, hi


def parse_noise_spec(text: str | NoiseSpec) -> NoiseSpec:
    """Parses ``gaussian:25``, ``gaussian:15,25,50``, ``gaussian:0-55``, ``camera``,
    ``camera:jpeg``, ``camera:jpeg=70-90``; raises ValueError with the accepted forms."""
    if isinstance(text, NoiseSpec):
        return text
    spec = text.strip()
    kind, _, arg = spec.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    try:
        if kind == "gaussian":
            if not arg:
                raise ValueError("gaussian needs sigmas")
            if "-" in arg and "," not in arg:
                return NoiseSpec("gaussian", sigma_range=_parse_range(arg, spec), text=spec)
            sigmas = tuple(float(v) for v in arg.split(","))
            if any(s < 0 for s in sigmas):
                raise ValueError("negative sigma")
            return NoiseSpec("gaussian", sigmas=sigmas, text=spec)
        if kind == "mix":
            if arg:
                raise ValueError("mix takes no options")
            return NoiseSpec("mix", text=spec)
        if kind in ("camera", "isp"):
            if not arg:
                return NoiseSpec(kind, text=spec)
            name, _, qrange = arg.partition("=")
            if name.strip().lower() != "jpeg":
                raise ValueError(f"unknown camera option {name!r}")
            jr = JPEG_QUALITY_RANGE
            if qrange:
                lo, hi = _parse_range(qrange, spec)
                jr = (int(lo), int(hi))
                if not 1 <= jr[0] <= jr[1] <= 100:
                    raise ValueError("JPEG quality must be in 1..100")
            return NoiseSpec(kind, jpeg=True, jpeg_range=jr, text=spec)
    except ValueError as exc:
        raise ValueError(f"bad noise spec {text!r}: {exc}. {_FORMS}") from None
    raise ValueError(f"bad noise spec {text!r}: unknown kind {kind!r}. {_FORMS}")


_FORMS = (
    "Use gaussian:SIGMA[,SIGMA...], gaussian:LO-HI, camera, camera:jpeg, camera:jpeg=LO-HI, "
    "isp, isp:jpeg, isp:jpeg=LO-HI or mix (sigma in 0-255 units)."
)


def sample_noise_params(spec: str | NoiseSpec, rng: np.random.Generator) -> dict:
    """Draws one image's noise parameters from ``spec`` (for logging or reuse)."""
    spec = parse_noise_spec(spec)
    if spec.kind == "gaussian":
        if spec.sigma_range is not None:
            sigma = float(rng.uniform(*spec.sigma_range))
        else:
            sigma = float(spec.sigmas[int(rng.integers(len(spec.sigmas)))])
        return {"kind": "gaussian", "sigma": sigma}
    if spec.kind == "isp":
        jpeg_range = spec.jpeg_range if spec.jpeg else None
        return {"kind": "isp", "params": isp.sample_isp_params(rng, jpeg_range)}
    if spec.kind == "mix":
        return {"kind": "mix", "steps": sample_mixed_params(rng)}
    params = sample_camera_params(rng, jpeg=spec.jpeg, jpeg_range=spec.jpeg_range)
    return {"kind": "camera", **params.__dict__}


def apply_noise(clean: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Applies parameters from :func:`sample_noise_params` to one image."""
    if params["kind"] == "gaussian":
        return add_gaussian(clean, params["sigma"], rng)
    if params["kind"] == "isp":
        return add_isp_noise(clean, params["params"], rng)
    if params["kind"] == "mix":
        return add_mixed_noise(clean, params["steps"], rng)
    return add_camera_noise(
        clean,
        rng,
        shot=params["shot"],
        read=params["read"],
        gains=params["gains"],
        jpeg_quality=params["jpeg_quality"],
    )


def synthesize(clean: np.ndarray, spec: str | NoiseSpec, rng: np.random.Generator) -> np.ndarray:
    """Returns a float32 noisy version of ``clean`` with parameters drawn per call from ``spec``."""
    return apply_noise(clean, sample_noise_params(spec, rng), rng)


# --------------------------------------------------------------------------
# Camera pipeline and mixed degradations
# --------------------------------------------------------------------------


def add_isp_noise(clean: np.ndarray, params: isp.IspParams, rng: np.random.Generator):
    """Phone-pipeline noise (:mod:`denoise_core.isp`) on an RGB image, clipped to [0, 1].

    Grey (one-channel) images get the noise of their grey replicated to RGB, then
    averaged back, as a monochrome rendering of a colour sensor would.
    """
    img = np.asarray(clean, dtype=np.float32)
    grey = img.ndim == 2 or img.shape[-1] == 1
    rgb = np.repeat(img.reshape(img.shape[:2] + (1,)), 3, axis=-1) if grey else img
    out = np.clip(rgb + isp.isp_noise(rgb, params, rng), 0.0, 1.0)
    if params.jpeg_quality is not None:
        out = jpeg_roundtrip(out, params.jpeg_quality)
    if grey:
        out = out.mean(axis=-1).reshape(img.shape)
    return out.astype(np.float32)


# Ranges of the mixed degradations (after Zhang et al. 2023, SCUNet's data synthesis;
# sigmas on the 0-255 scale).
MIX_STEPS = ("color_gaussian", "correlated_gaussian", "poisson", "jpeg")
MIX_PROBABILITY = 0.6  # each step is applied with this probability (at least one is)
MIX_SIGMA_RANGE = (1.0, 30.0)
MIX_CORRELATION_SCALE = (1.5, 3.0)  # noise drawn this much coarser, then resized up
MIX_POISSON_LOG10_PHOTONS = (2.0, 4.0)  # photons at white: 10**U(2, 4)
MIX_JPEG_RANGE = (30, 95)


def sample_mixed_params(rng: np.random.Generator) -> list[dict]:
    """A random subset (at least one) of :data:`MIX_STEPS` in random order, with parameters.

    - ``color_gaussian``: Gaussian noise with a random 3x3 channel covariance
      ``sigma^2 U^T D U`` (U a random rotation, D uniform in [0, 1]: from independent
      channels to fully shared grey noise);
    - ``correlated_gaussian``: Gaussian noise drawn on a grid 1.5-3x coarser and
      resized up (bicubic): blotchy, spatially correlated;
    - ``poisson``: shot noise with 10^U(2, 4) photons at white, on the grey
      (luminance) value half of the time;
    - ``jpeg``: a JPEG round-trip at quality U(30, 95), always last when drawn.
    """
    chosen = [name for name in MIX_STEPS if rng.random() < MIX_PROBABILITY]
    if not chosen:
        chosen = [MIX_STEPS[int(rng.integers(len(MIX_STEPS)))]]
    body = [n for n in chosen if n != "jpeg"]
    order = [body[i] for i in rng.permutation(len(body))] + (["jpeg"] if "jpeg" in chosen else [])
    steps = []
    for name in order:
        if name == "color_gaussian":
            rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
            cov = rotation.T @ np.diag(rng.uniform(0.0, 1.0, 3)) @ rotation
            cov /= max(np.trace(cov) / 3, 1e-6)  # mean channel variance 1
            sigma = float(rng.uniform(*MIX_SIGMA_RANGE))
            steps.append({"step": name, "sigma": sigma, "cov": cov.tolist()})
        elif name == "correlated_gaussian":
            sigma = float(rng.uniform(*MIX_SIGMA_RANGE))
            scale = float(rng.uniform(*MIX_CORRELATION_SCALE))
            steps.append({"step": name, "sigma": sigma, "scale": scale})
        elif name == "poisson":
            photons = 10 ** float(rng.uniform(*MIX_POISSON_LOG10_PHOTONS))
            steps.append({"step": name, "photons": photons, "grey": bool(rng.random() < 0.5)})
        else:
            quality = int(rng.integers(MIX_JPEG_RANGE[0], MIX_JPEG_RANGE[1] + 1))
            steps.append({"step": name, "quality": quality})
    return steps


def _mixed_step(img: np.ndarray, step: dict, rng: np.random.Generator) -> np.ndarray:
    channels = img.shape[-1]
    if step["step"] == "color_gaussian":
        cov = np.asarray(step["cov"])[:channels, :channels]
        chol = np.linalg.cholesky(cov + 1e-6 * np.eye(channels))
        white = rng.standard_normal(img.shape, dtype=np.float32)
        return img + (white @ chol.T.astype(np.float32)) * np.float32(step["sigma"] / 255.0)
    if step["step"] == "correlated_gaussian":
        h, w = img.shape[:2]
        small = (max(1, round(w / step["scale"])), max(1, round(h / step["scale"])))
        coarse = rng.standard_normal((small[1], small[0], channels), dtype=np.float32)
        up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(img.shape)
        up /= max(float(up.std()), 1e-6)
        return img + up * np.float32(step["sigma"] / 255.0)
    if step["step"] == "poisson":
        x = np.clip(img, 0.0, 1.0)
        photons = step["photons"]
        if step["grey"]:
            grey = x.mean(axis=-1, keepdims=True)
            return img + (rng.poisson(grey * photons) / photons - grey).astype(np.float32)
        return (rng.poisson(x * photons) / photons).astype(np.float32)
    return jpeg_roundtrip(np.clip(img, 0.0, 1.0), step["quality"])


def add_mixed_noise(clean: np.ndarray, steps: list[dict], rng: np.random.Generator):
    """Applies :func:`sample_mixed_params`'s steps in order; the result is clipped to [0, 1]."""
    img = np.asarray(clean, dtype=np.float32)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    for step in steps:
        img = _mixed_step(img, step, rng)
    out = np.clip(img, 0.0, 1.0).astype(np.float32)
    return out[..., 0] if squeeze else out
