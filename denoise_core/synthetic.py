"""Synthetic clean images for training: the dead-leaves model.

A dead-leaves image is a stack of opaque shapes with sizes drawn from a power law
(scale invariance) and colours drawn uniformly from the RGB cube. It has the
edge and occlusion statistics of photographs but none of a small photo set's
limits: every hue at full saturation, sharp edges at every scale and
orientation, no JPEG blocks or sensor noise in the target. Denoisers trained on
such images come close to ones trained on photographs (Achddou, Gousseau and
Ladjal, "Synthetic images as a regularity prior for image restoration neural
networks", 2021); mixed into CBSD432 (481x321 JPEGs of muted colours) they
widen exactly what the McMaster set (saturated colours, sharp edges) asks for.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["dead_leaves"]

_SUPERSAMPLE = 2  # render at 2x and area-average down: anti-aliased, sub-pixel edges
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel centres and radii


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, alpha: float) -> np.ndarray:
    """``n`` samples of a density proportional to ``r**-alpha`` on [lo, hi] (inverse CDF)."""
    e = 1.0 - alpha
    u = rng.random(n)
    return (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)


def dead_leaves(
    size: int,
    rng: np.random.Generator,
    leaves: int | None = None,
    radius: tuple[float, float] = (1.0, 0.5),
    alpha: float = 3.0,
    max_blur: float = 0.8,
) -> np.ndarray:
    """A ``size`` x ``size`` x 3 float32 dead-leaves image in [0, 1].

    ``radius``: smallest radius in pixels, largest as a fraction of ``size``;
    ``alpha``: power-law exponent (3 gives scale invariance); ``leaves``: shapes
    drawn (default enough to cover the canvas many times over); ``max_blur``: a
    random Gaussian blur of up to this sigma (pixels), as a lens would leave.
    Shapes are disks and rotated rectangles; each later shape covers earlier ones.
    """
    if size < 4:
        raise ValueError(f"dead_leaves needs size >= 4, got {size}")
    big = size * _SUPERSAMPLE
    leaves = leaves if leaves is not None else 20 * size
    r_lo = radius[0] * _SUPERSAMPLE
    r_hi = max(r_lo, radius[1] * big)
    radii = _power_law(rng, leaves, r_lo, r_hi, alpha)
    centres = rng.uniform(-0.1 * big, 1.1 * big, (leaves, 2))
    colours = rng.random((leaves, 3)) * 255.0
    rect = rng.random(leaves) < 0.3
    angles = rng.uniform(0.0, 180.0, leaves)
    aspect = rng.uniform(0.3, 1.0, leaves)

    canvas = np.empty((big, big, 3), np.uint8)
    canvas[:] = (rng.random(3) * 255.0).astype(np.uint8)
    scale = 1 << _SHIFT
    for r, (cx, cy), colour, is_rect, angle, a in zip(
        radii, centres, colours, rect, angles, aspect, strict=True
    ):
        colour = tuple(float(c) for c in colour)
        if is_rect:
            box = cv2.boxPoints(((cx, cy), (2 * r, 2 * r * a), angle))
            cv2.fillConvexPoly(
                canvas, np.round(box * scale).astype(np.int32), colour, cv2.LINE_AA, _SHIFT
            )
        else:
            centre = (int(round(cx * scale)), int(round(cy * scale)))
            cv2.circle(canvas, centre, int(round(r * scale)), colour, -1, cv2.LINE_AA, _SHIFT)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    blur = float(rng.uniform(0.0, max_blur))
    if blur > 0.1:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    return np.clip(img / 255.0, 0.0, 1.0)
