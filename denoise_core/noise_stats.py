"""Statistics of noise (noisy minus clean) that tell real camera noise from synthetic.

Three properties separate a phone's sRGB noise from per-pixel Gaussian noise, and
each is measured here on the residual ``r = noisy - clean`` (images in [0, 1],
reported on the 0-255 scale):

- level dependence: the std of ``r`` per channel, in bins of the clean value of
  that channel (signal-dependent: SIDD's sRGB noise rises from the shadows to the
  mid-tones, white Gaussian noise is flat);
- spatial correlation: the correlation of ``r`` with itself shifted by 1 and 2 px
  (horizontal and vertical averaged, channels averaged); white noise has 0,
  demosaiced and smoothed noise clearly more;
- colour correlation: the correlation between the channels' residuals (R-G, R-B,
  G-B); a colour matrix mixes them, independent per-channel noise has 0;
- bias: the mean of ``r`` per level (every other statistic removes each image's
  mean first). Zero-mean noise has none; clipping of noise in the shadows and a
  phone that renders its noisy frame darker or tinted than the ground truth do, and
  a model trained on the wrong bias shifts levels and colours.

Statistics are pooled over all pixels of all images (sums, not per-image means),
so large images weigh by their size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NoiseStats", "LEVEL_EDGES", "measure", "format_bias_table", "format_table"]

LEVEL_EDGES = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0001)  # clean-value bins (shadows finer)
LAGS = (1, 2)
CHANNEL_PAIRS = ((0, 1), (0, 2), (1, 2))


@dataclass
class NoiseStats:
    """Pooled residual statistics; see the module docstring for each field."""

    name: str
    std: float = 0.0  # overall, 0-255 scale
    std_by_level: list[float] = field(default_factory=list)  # channel-averaged, per bin
    mean_by_level: list[float] = field(default_factory=list)  # bias per bin, 0-255 scale
    autocorr: dict[int, float] = field(default_factory=dict)  # lag -> correlation
    cross_corr: dict[str, float] = field(default_factory=dict)  # "RG" -> correlation
    pixels: int = 0

    def row(self) -> dict:
        return {
            "name": self.name,
            "std": round(self.std, 3),
            "std_by_level": [None if np.isnan(v) else round(v, 3) for v in self.std_by_level],
            "mean_by_level": [None if np.isnan(v) else round(v, 3) for v in self.mean_by_level],
            "autocorr": {str(k): round(v, 4) for k, v in self.autocorr.items()},
            "cross_corr": {k: round(v, 4) for k, v in self.cross_corr.items()},
            "pixels": self.pixels,
        }


class _Accumulator:
    def __init__(self) -> None:
        bins = len(LEVEL_EDGES) - 1
        self.level_sum = np.zeros(bins)
        self.level_sq = np.zeros(bins)
        self.level_n = np.zeros(bins)
        self.bias_sum = np.zeros(bins)  # residual sums before the per-image mean is removed
        self.lag = {k: np.zeros(3) for k in LAGS}  # sum r*r_shift, sum r^2 (both), n
        self.cross = np.zeros((len(CHANNEL_PAIRS), 3))
        self.total = np.zeros(3)  # sum, sum sq, n

    def add(self, noisy: np.ndarray, clean: np.ndarray) -> None:
        r = np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)
        if r.ndim == 2:
            r, clean = r[..., None], np.asarray(clean)[..., None]
        bins = np.digitize(clean, LEVEL_EDGES[1:-1])
        n_bins = len(LEVEL_EDGES) - 1
        self.bias_sum += np.bincount(bins.ravel(), r.ravel(), n_bins)
        r = r - r.mean(axis=(0, 1))  # a global offset (exposure mismatch) is not noise
        self.level_sum += np.bincount(bins.ravel(), r.ravel(), n_bins)
        self.level_sq += np.bincount(bins.ravel(), (r * r).ravel(), n_bins)
        self.level_n += np.bincount(bins.ravel(), minlength=n_bins)
        self.total += (r.sum(), (r * r).sum(), r.size)
        for k in LAGS:
            for a, b in ((r[:, k:], r[:, :-k]), (r[k:], r[:-k])):
                self.lag[k] += ((a * b).sum(), 0.5 * ((a * a).sum() + (b * b).sum()), a.size)
        if r.shape[-1] == 3:
            for i, (c1, c2) in enumerate(CHANNEL_PAIRS):
                x, y = r[..., c1], r[..., c2]
                self.cross[i] += ((x * y).sum(), np.sqrt((x * x).sum() * (y * y).sum()), 1)

    def result(self, name: str) -> NoiseStats:
        n = np.maximum(self.level_n, 1)
        var = self.level_sq / n - (self.level_sum / n) ** 2
        by_level = [
            float(np.sqrt(max(v, 0.0)) * 255) if c >= 100 else float("nan")
            for v, c in zip(var, self.level_n)
        ]
        mean_by_level = [
            float(b / c * 255) if c >= 100 else float("nan")
            for b, c in zip(self.bias_sum, self.level_n)
        ]
        total = self.total
        std = float(np.sqrt(max(total[1] / max(total[2], 1), 0.0)) * 255)
        autocorr = {k: float(v[0] / v[1]) if v[1] > 0 else 0.0 for k, v in self.lag.items()}
        cross = {}
        if self.cross[:, 2].any():
            for (c1, c2), (xy, norm, _) in zip(CHANNEL_PAIRS, self.cross):
                cross["RGB"[c1] + "RGB"[c2]] = float(xy / norm) if norm > 0 else 0.0
        return NoiseStats(name, std, by_level, mean_by_level, autocorr, cross, int(total[2]))


def measure(name: str, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> NoiseStats:
    """Pooled statistics of ``noisy - clean`` over (noisy, clean) float images in [0, 1]."""
    acc = _Accumulator()
    for noisy, clean in pairs:
        acc.add(noisy, clean)
    return acc.result(name)


def _level_header() -> list[str]:
    edges = LEVEL_EDGES
    return [f"std@{edges[i]:.2g}-{min(edges[i + 1], 1):.2g}" for i in range(len(edges) - 1)]


def format_table(rows: list[NoiseStats]) -> str:
    """A Markdown table, one row per measured set or synthetic mode."""
    header = ["noise", "std", *_level_header(), "corr lag1", "corr lag2", "RG", "RB", "GB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in rows:
        cells = [s.name, f"{s.std:.2f}"]
        cells += ["-" if np.isnan(v) else f"{v:.2f}" for v in s.std_by_level]
        cells += [f"{s.autocorr.get(k, 0.0):.3f}" for k in LAGS]
        cells += [
            f"{s.cross_corr[k]:.3f}" if k in s.cross_corr else "-" for k in ("RG", "RB", "GB")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_bias_table(rows: list[NoiseStats]) -> str:
    """A Markdown table of the mean residual per clean level (0-255 scale), one row each."""
    edges = LEVEL_EDGES
    levels = [f"mean@{edges[i]:.2g}-{min(edges[i + 1], 1):.2g}" for i in range(len(edges) - 1)]
    lines = ["| noise | " + " | ".join(levels) + " |", "|" + "---|" * (len(levels) + 1)]
    for s in rows:
        cells = ["-" if np.isnan(v) else f"{v:+.2f}" for v in s.mean_by_level]
        cells += ["-"] * (len(levels) - len(cells))
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
