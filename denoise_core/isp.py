"""A phone camera's pipeline, run backwards to raw and forwards again with sensor noise.

Real smartphone sRGB noise is not per-pixel independent: it starts as shot + read
noise on the raw Bayer mosaic, and the phone's pipeline then demosaics it (spatial
correlation over 2-3 px), amplifies red and blue by the white-balance gains, mixes
the channels through a colour-correction matrix (chroma blotches), lifts the
shadows with gamma and a tone curve (noise strongest relative to the signal in
the dark), often smooths or sharpens it, and may JPEG it. Brooks et al. 2019
("Unprocessing Images for Learned Raw Denoising", CVPR) invert each of those
steps to turn an sRGB photo into plausible raw data; this module does that, adds
the noise in raw, and runs the pipeline forward again.

The noise is rendered as ``process(raw + n) - process(raw)`` and added to the
clean sRGB image: whatever the inverse pipeline cannot undo exactly (clipped
out-of-gamut colours, demosaicing's loss of detail) cancels, so the training
target stays the untouched clean photo and only the noise is the camera's.

Parameter ranges, and where they come from:

- ``XYZ_TO_CAMS``: four cameras' XYZ -> camera matrices (the DNG ColorMatrix of
  the cameras Brooks et al. list); a random convex mix of them, times sRGB -> XYZ,
  rows normalised to sum 1, is the sensor's RGB -> camera matrix (their method).
- White balance: red gain U(1.9, 2.4), blue gain U(1.5, 1.9), overall brightness
  gain 1 / N(0.8, 0.1) (Brooks et al., fitted to the MIT-Adobe FiveK raws).
- Noise on raw values in [0, 1]: variance ``shot * x + read``, log(shot) uniform
  in [log 1e-4, log SHOT_MAX], log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)
  (Brooks et al.'s line through the noise-level functions of their cameras,
  ISO 100 to 6400; SIDD's phones lie on the same kind of log-linear line from
  ISO 50 to 10000, Abdelhamed et al. 2018 / Noise Flow 2019). SHOT_MAX is 0.05,
  above their 0.012: SIDD's dark, high-ISO crops need it (``denoise noise-stats``).
- Demosaicing: bilinear or edge-aware (OpenCV), equally likely: phones differ.
- The phone's own processing of the noise, fitted to SIDD's sRGB residuals with
  ``denoise noise-stats`` (real: lag-1 correlation 0.46, lag-2 0.07, channel
  correlations R-G 0.29, R-B 0.52, G-B 0.29; raw noise through the pipeline alone
  gives 0.58 / 0.15 / -0.38 / 0.04 / -0.45, the colour matrix's negative mixing):
  chroma noise reduction keeps U(0.1, 0.6) of the noise's chroma (every phone does
  it; what stays is luma-like grain, positively correlated across channels); a
  pixel-level component of U(0, 0.8) times the local noise std (weight 0.5 on a
  part common to the channels) lowers the spatial correlation to the measured level; then, with
  probability 0.25, a Gaussian blur of std U(0.3, 0.7) px (a stronger denoiser's
  blotches), else an unsharp mask of amount U(0, 0.4) (sharpening boosts grain).
- Tone: gamma 2.2 and the smoothstep tone curve ``3x^2 - 2x^3`` (Brooks et al.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["IspParams", "isp_noise", "process", "sample_isp_params", "unprocess"]

# sRGB (linear, D65) -> CIE XYZ, IEC 61966-2-1.
RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
# XYZ -> camera RGB of four cameras (DNG ColorMatrix), as listed by Brooks et al. 2019.
XYZ_TO_CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ]
)
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
BRIGHTNESS_MEAN, BRIGHTNESS_STD = 0.8, 0.1  # rgb gain = 1 / N(mean, std)
SHOT_MIN, SHOT_MAX = 1e-4, 5e-2
READ_SLOPE, READ_INTERCEPT, READ_STD = 2.18, 1.20, 0.26  # natural-log line, read is a variance
DEMOSAICS = ("bilinear", "edge-aware")
CHROMA_KEEP_RANGE = (0.1, 0.6)
PIXEL_NOISE_RANGE = (0.0, 0.8)
PIXEL_NOISE_SHARED = 0.5  # share of the pixel-level component common to the channels
BLUR_PROBABILITY, BLUR_SIGMA_RANGE = 0.25, (0.3, 0.7)
SHARPEN_RANGE = (0.0, 0.4)
LOCAL_STD_SIGMA = 2.0  # px: the window the pixel-level part's local noise std is taken over
SHARPEN_SIGMA = 1.0  # px: the unsharp mask's blur
MIN_BRIGHTNESS = 0.4  # the N(mean, std) brightness draw is floored here
GAMMA = 2.2
PEDESTAL = 1.0 / 16  # raw values below 0 survive the 16-bit demosaic input
_DEMOSAIC_CODES = {
    "bilinear": cv2.COLOR_BayerBG2RGB,  # the mosaic below is RGGB (OpenCV calls it BG)
    "edge-aware": cv2.COLOR_BayerBG2RGB_EA,
}


@dataclass(frozen=True)
class IspParams:
    """One image's camera: colour, gains, noise level and how the noise is processed."""

    rgb_to_cam: tuple[tuple[float, ...], ...]
    red_gain: float
    blue_gain: float
    brightness_gain: float
    shot: float
    read: float
    demosaic: str = "bilinear"
    chroma_keep: float = 1.0  # share of the noise's chroma left by chroma noise reduction
    pixel_noise: float = 0.0  # pixel-level component, relative to the local noise std
    blur_sigma: float = 0.0  # > 0: the phone's denoiser blurred the noise
    sharpen: float = 0.0  # > 0: unsharp-mask amount applied to the noise
    jpeg_quality: int | None = None


def rgb_to_cam_matrix(weights, xp=np):
    """sRGB -> camera matrix from convex ``weights`` of the four cameras (rows sum to 1).

    ``xp`` is numpy or ``jax.numpy``: the GPU trainer's twin draws cameras with this.
    """
    xyz_to_cam = xp.tensordot(weights / weights.sum(), xp.asarray(XYZ_TO_CAMS), axes=1)
    rgb_to_cam = xyz_to_cam @ xp.asarray(RGB_TO_XYZ)
    return rgb_to_cam / rgb_to_cam.sum(axis=1, keepdims=True)


def inverse_tone(srgb, xp=np):
    """sRGB in [0, 1] -> linear: inverse smoothstep tone curve, then gamma (Brooks et al.)."""
    x = xp.clip(srgb, 0.0, 1.0)
    x = 0.5 - xp.sin(xp.arcsin(1.0 - 2.0 * x) / 3.0)
    return xp.maximum(x, 1e-8) ** GAMMA


def tone(linear, xp=np):
    """Linear in [0, 1] -> sRGB: gamma, then the smoothstep tone curve ``3x^2 - 2x^3``."""
    x = xp.maximum(xp.clip(linear, 0.0, 1.0), 1e-8) ** (1.0 / GAMMA)
    return 3.0 * x**2 - 2.0 * x**3


def sample_isp_params(
    rng: np.random.Generator, jpeg_range: tuple[int, int] | None = None
) -> IspParams:
    """Draws one camera from the ranges in the module docstring."""
    rgb_to_cam = rgb_to_cam_matrix(rng.uniform(1e-8, 1.0, size=len(XYZ_TO_CAMS)))
    log_shot = rng.uniform(math.log(SHOT_MIN), math.log(SHOT_MAX))
    log_read = READ_SLOPE * log_shot + READ_INTERCEPT + rng.normal(0.0, READ_STD)
    blur = rng.random() < BLUR_PROBABILITY
    quality = None
    if jpeg_range is not None:
        quality = int(rng.integers(jpeg_range[0], jpeg_range[1] + 1))
    return IspParams(
        rgb_to_cam=tuple(tuple(float(v) for v in row) for row in rgb_to_cam),
        red_gain=float(rng.uniform(*RED_GAIN_RANGE)),
        blue_gain=float(rng.uniform(*BLUE_GAIN_RANGE)),
        brightness_gain=float(
            1.0 / max(MIN_BRIGHTNESS, rng.normal(BRIGHTNESS_MEAN, BRIGHTNESS_STD))
        ),
        shot=math.exp(log_shot),
        read=math.exp(log_read),
        demosaic=DEMOSAICS[int(rng.integers(len(DEMOSAICS)))],
        chroma_keep=float(rng.uniform(*CHROMA_KEEP_RANGE)),
        pixel_noise=float(rng.uniform(*PIXEL_NOISE_RANGE)),
        blur_sigma=float(rng.uniform(*BLUR_SIGMA_RANGE)) if blur else 0.0,
        sharpen=0.0 if blur else float(rng.uniform(*SHARPEN_RANGE)),
        jpeg_quality=quality,
    )


def _gains(p: IspParams) -> np.ndarray:
    return np.array([p.red_gain, 1.0, p.blue_gain]) * p.brightness_gain


def unprocess(srgb: np.ndarray, p: IspParams) -> np.ndarray:
    """sRGB HxWx3 in [0, 1] -> linear RGGB mosaic HxW (inverse tone, gamma, CCM, gains)."""
    x = inverse_tone(np.asarray(srgb, dtype=np.float64))
    x = x @ np.asarray(p.rgb_to_cam).T
    x = np.clip(x / _gains(p), 0.0, 1.0)
    mosaic = np.empty(x.shape[:2])
    mosaic[0::2, 0::2] = x[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = x[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = x[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = x[1::2, 1::2, 2]
    return mosaic


def process(mosaic: np.ndarray, p: IspParams) -> np.ndarray:
    """Linear RGGB mosaic -> sRGB HxWx3 in [0, 1] (gains, demosaic, CCM, gamma, tone).

    Values are clipped at the sensor's white (1) after the gains, as in Brooks et al.;
    below 0 they are kept through demosaicing on a pedestal (a raw file keeps them
    after black-level subtraction) and clipped only before gamma.
    """
    gains = _gains(p)
    gain_mosaic = np.empty_like(mosaic)
    gain_mosaic[0::2, 0::2], gain_mosaic[1::2, 1::2] = gains[0], gains[2]
    gain_mosaic[0::2, 1::2] = gain_mosaic[1::2, 0::2] = gains[1]
    scale = 1.0 + PEDESTAL
    codes = np.clip((np.minimum(mosaic * gain_mosaic, 1.0) + PEDESTAL) / scale, 0.0, 1.0)
    rgb = cv2.demosaicing(np.rint(codes * 65535.0).astype(np.uint16), _DEMOSAIC_CODES[p.demosaic])
    x = rgb.astype(np.float64) * (scale / 65535.0) - PEDESTAL
    return tone(x @ np.linalg.inv(np.asarray(p.rgb_to_cam)).T)


def _shape_noise(noise: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """The phone's own processing of its noise (fitted, see the module docstring)."""
    luma = noise.mean(axis=-1, keepdims=True)
    noise = luma + np.float32(p.chroma_keep) * (noise - luma)
    if p.pixel_noise > 0:
        local = np.sqrt(cv2.GaussianBlur(noise * noise, (0, 0), LOCAL_STD_SIGMA))
        shared = rng.standard_normal(noise.shape[:2] + (1,), dtype=np.float32)
        own = rng.standard_normal(noise.shape, dtype=np.float32)
        a = np.float32(PIXEL_NOISE_SHARED)
        mixed = a * shared + np.sqrt(np.float32(1) - a * a) * own
        noise = noise + np.float32(p.pixel_noise) * local * mixed
    if p.blur_sigma > 0:
        return cv2.GaussianBlur(noise, (0, 0), p.blur_sigma)
    if p.sharpen > 0:
        return noise + p.sharpen * (noise - cv2.GaussianBlur(noise, (0, 0), SHARPEN_SIGMA))
    return noise


def isp_noise(clean: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """The sRGB noise this camera adds to ``clean`` (HxWx3, [0, 1]): ``noisy - clean``.

    Images with an odd side are processed on a reflect-padded even canvas (the
    mosaic needs whole 2x2 cells) and cropped back.
    """
    h, w = clean.shape[:2]
    padded = np.pad(clean, ((0, h % 2), (0, w % 2), (0, 0)), mode="reflect")
    raw = unprocess(padded, p)
    variance = np.maximum(p.shot * raw + p.read, 0.0)
    noisy_raw = raw + rng.standard_normal(raw.shape) * np.sqrt(variance)
    noise = process(noisy_raw, p) - process(raw, p)
    return _shape_noise(noise.astype(np.float32), p, rng)[:h, :w]
