"""``report.html`` of a ``denoise run``: one self-contained file (figures embedded as
base64 PNG), readable from a bucket or a laptop alike.

Contents: the summary table, histograms of the estimated noise of the inputs and of
the noise removed (no reference needed), a PSNR histogram (denoised against noisy input),
the PSNR gain per group (SIDD phone / ISO / brightness, or folder), and
side-by-side noisy / denoised / ground-truth crops of the best, median and
worst images, like the original notebook's figure. Without ground truth the
crops show before / after for the images the model changed most, median and least.
Matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import to_float01

Sample = tuple[str, dict[str, Any], np.ndarray, np.ndarray, np.ndarray | None]
CROP = 256


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _finite(values) -> np.ndarray:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def psnr_histogram(records: Sequence[dict[str, Any]]) -> bytes | None:
    """Histogram of per-image PSNR, denoised and noisy input overlaid; None without data."""
    out = _finite(r["psnr"] for r in records)
    inp = _finite(r["input_psnr"] for r in records)
    if out.size == 0:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    lo = float(min(out.min(), inp.min() if inp.size else out.min()))
    hi = float(max(out.max(), inp.max() if inp.size else out.max()))
    bins = np.linspace(lo - 0.5, hi + 0.5, min(40, max(8, out.size)) + 1)
    style = {"bins": bins, "alpha": 0.5, "edgecolor": "black", "linewidth": 0.6}
    if inp.size:
        ax.hist(inp, label=f"noisy input (mean {inp.mean():.2f} dB)", **style)
    ax.hist(out, label=f"denoised (mean {out.mean():.2f} dB)", **style)
    ax.set_xlabel("PSNR (dB, peak 1)")
    ax.set_ylabel("images")
    ax.legend()
    ax.set_title("Per-image PSNR against the reference")
    return _png(fig)


def noise_histogram(
    records: Sequence[dict[str, Any]], skip_below: float | None = None
) -> bytes | None:
    """Two histograms of the no-reference noise estimates (0-255 scale): the inputs' noise
    (outputs' overlaid, ``--skip-below`` marked), and the noise removed, input minus
    output, of the images denoised now. None without estimates."""
    from matplotlib.ticker import MaxNLocator

    inp = _finite(r.get("noise_sigma_in") for r in records)
    if inp.size == 0:
        return None
    out = _finite(r.get("noise_sigma_out") for r in records)
    removed = _finite(
        r["noise_sigma_in"] - r["noise_sigma_out"]
        for r in records
        if not r.get("skipped")
        and r.get("noise_sigma_in") is not None
        and r.get("noise_sigma_out") is not None
    )
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    hi = float(max(inp.max(), out.max() if out.size else 0.0))
    bins = np.linspace(0.0, max(hi, 1.0) * 1.05, min(40, max(8, inp.size)) + 1)
    style = {"bins": bins, "alpha": 0.5, "edgecolor": "black", "linewidth": 0.6}
    left.hist(inp, label=f"input (mean {inp.mean():.2f})", color="tab:red", **style)
    if out.size:
        left.hist(out, label=f"output (mean {out.mean():.2f})", color="tab:blue", **style)
    if skip_below is not None:
        left.axvline(skip_below, color="black", linestyle="--", linewidth=1)
        left.text(
            skip_below,
            0.97,
            " --skip-below",
            transform=left.get_xaxis_transform(),
            va="top",
            fontsize=8,
        )
    left.set_xlabel("estimated noise sigma (0-255)")
    left.set_ylabel("images")
    left.set_title("Noise of the inputs and outputs")
    left.legend()
    if removed.size:
        lo, top = float(min(removed.min(), 0.0)), float(max(removed.max(), 0.0))
        rbins = np.linspace(lo - 0.5, top + 0.5, min(40, max(8, removed.size)) + 1)
        right.hist(
            removed, bins=rbins, color="tab:green", edgecolor="black", linewidth=0.6, alpha=0.7
        )
        right.axvline(0, color="black", linewidth=0.8)
        right.set_title(f"Noise removed, input - output (mean {removed.mean():.2f})")
    else:
        right.text(0.5, 0.5, "no image denoised in this run", ha="center", va="center")
        right.set_title("Noise removed, input - output")
    right.set_xlabel("sigma removed (0-255)")
    right.set_ylabel("images")
    for ax in (left, right):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _png(fig)


def gain_by_group(summary: dict[str, Any]) -> bytes | None:
    """Bar chart of the mean PSNR gain per value of each group column."""
    groups = {
        col: {v: g["psnr_gain_mean"] for v, g in values.items() if g["psnr_gain_mean"] is not None}
        for col, values in summary.get("groups", {}).items()
    }
    groups = {c: v for c, v in groups.items() if v}
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 1, 3.4), squeeze=False)
    for ax, (col, values) in zip(axes[0], groups.items(), strict=True):
        names = list(values)
        ax.bar(range(len(names)), [values[n] for n in names], color="tab:green")
        ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 4 else 0, ha="right")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"PSNR gain by {col}")
        ax.set_ylabel("dB")
    fig.tight_layout()
    return _png(fig)


def _crop_box(h: int, w: int, size: int = CROP) -> tuple[slice, slice]:
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return slice(y, y + ch), slice(x, x + cw)


def _show(ax, image: np.ndarray, box, title: str) -> None:
    img = to_float01(image[box], np.float32)
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _db(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"PSNR {value:.2f} dB" if math.isfinite(value) else "PSNR inf"


def comparison_figure(samples: Sequence[Sample]) -> bytes | None:
    """One row per sample: noisy / denoised / ground-truth centre crops (full resolution)."""
    if not samples:
        return None
    has_ref = any(s[4] is not None for s in samples)
    cols = 3 if has_ref else 2
    plt = _plt()
    fig, axes = plt.subplots(
        len(samples), cols, figsize=(3.3 * cols, 3.5 * len(samples)), squeeze=False
    )
    for row_axes, (label, rec, noisy, output, ref) in zip(axes, samples, strict=True):
        box = _crop_box(*noisy.shape[:2])
        _show(row_axes[0], noisy, box, f"noisy  {_db(rec.get('input_psnr'))}")
        _show(row_axes[1], output, box, f"denoised  {_db(rec.get('psnr'))}")
        if has_ref:
            if ref is not None:
                _show(row_axes[2], ref, box, "ground truth")
            else:
                row_axes[2].axis("off")
        row_axes[0].set_ylabel(f"{label}\n{_short(rec['key'])}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _short(key: str, n: int = 40) -> str:
    return key if len(key) <= n else "…" + key[-(n - 1) :]


def _img_tag(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):  # counts by kind: {".dng": 2} -> "2 .dng"
        return html.escape(", ".join(f"{n} {kind}" for kind, n in value.items()))
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return html.escape(str(value))


_SUMMARY_ROWS = (
    ("images with output", "count"),
    ("denoised now", "denoised"),
    ("skipped (output existed)", "skipped_existing"),
    ("copied unchanged (noise below --skip-below)", "skipped_clean"),
    ("errors", "errors"),
    ("other files left alone (not images)", "other_files"),
    ("with reference", "with_reference"),
    ("PSNR mean (dB)", "psnr_mean"),
    ("PSNR median (dB)", "psnr_median"),
    ("input PSNR mean (dB)", "input_psnr_mean"),
    ("PSNR gain mean (dB)", "psnr_gain_mean"),
    ("SSIM mean", "ssim_mean"),
    ("input SSIM mean", "input_ssim_mean"),
    ("MSE mean", "mse_mean"),
    ("input MSE mean", "input_mse_mean"),
    ("change RMS mean", "change_rms_mean"),
    ("input noise sigma mean (estimated, 0-255)", "noise_sigma_in_mean"),
    ("input noise sigma median", "noise_sigma_in_median"),
    ("output noise sigma mean", "noise_sigma_out_mean"),
    ("noise removed mean (input - output, denoised now)", "noise_removed_mean"),
    ("--skip-below (noise sigma)", "skip_below"),
    ("megapixels denoised", "megapixels"),
    ("seconds", "seconds"),
    ("MP/s", "mp_per_s"),
    ("model", "model"),
    ("input", "input"),
    ("reference", "reference_source"),
    ("tile / overlap", "tiling"),
)

# Rows that only mean something when some image had ground truth: a run without
# references leaves them out instead of showing a column of dashes.
_REFERENCE_KEYS = frozenset(
    ["psnr_mean", "psnr_median", "input_psnr_mean", "psnr_gain_mean"]
    + ["ssim_mean", "input_ssim_mean", "mse_mean", "input_mse_mean"]
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
figure { margin: 1em 0; }
img { max-width: 100%; }
.note { color: #666; font-size: 0.9em; }
"""


def render_html(
    summary: dict[str, Any],
    records: Sequence[dict[str, Any]],
    errors: Sequence[dict[str, str]],
    samples: Sequence[Sample],
    title: str = "denoise run",
    max_errors: int = 50,
) -> str:
    """The whole report as one HTML string with embedded figures."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2><table>",
    ]
    referenced = bool(summary.get("with_reference"))
    for label, key in _SUMMARY_ROWS:
        if key in summary and summary[key] != {} and (referenced or key not in _REFERENCE_KEYS):
            parts.append(f"<tr><th>{label}</th><td>{_fmt(summary[key])}</td></tr>")
    parts.append("</table>")
    if referenced:
        parts.append(
            "<p class='note'>Metrics on RGB (alpha ignored) in [0, 1], float64: MSE, PSNR with "
            "peak 1, SSIM from scikit-image (7×7 window). Gain = PSNR of the output minus PSNR "
            "of the noisy input.</p>"
        )
    else:
        parts.append(
            "<p class='note'>No image had a reference (ground truth): PSNR, SSIM and MSE "
            "rows are left out; the noise estimates below describe the run.</p>"
        )
    noise = noise_histogram(records, summary.get("skip_below"))
    if noise:
        parts.append("<h2>Noise (estimated without reference)</h2>")
        parts.append(
            "<p class='note'>Noise sigma on the 0-255 scale, estimated from each image alone "
            "(finest diagonal wavelet detail in the image's weakest-texture blocks, per "
            "colour channel, averaged). On photos with synthetic Gaussian noise of sigma "
            "5 to 50 it is within 10%. It sees fine-scale noise only: an over-smoothed "
            "output reads low, and so do camera JPEGs whose in-camera noise reduction left "
            "coarse grain. Removed = input minus output, over the images denoised in this "
            "run.</p>"
        )
        parts.append(_img_tag(noise, "noise histograms"))
    hist = psnr_histogram(records)
    gains = gain_by_group(summary)
    if hist or gains:
        parts.append("<h2>PSNR</h2>")
        parts.append(_img_tag(hist, "PSNR histogram"))
        parts.append(_img_tag(gains, "PSNR gain per group"))
    elif not any(r.get("psnr") is not None for r in records):
        parts.append("<p class='note'>No ground truth: no PSNR figures.</p>")
    group_columns = (
        (("PSNR", "psnr_mean"), ("input PSNR", "input_psnr_mean"))
        + (("gain", "psnr_gain_mean"), ("SSIM", "ssim_mean"))
        if summary.get("with_reference")
        else (("noise in", "noise_sigma_in_mean"), ("noise out", "noise_sigma_out_mean"))
    )
    for col, values in summary.get("groups", {}).items():
        parts.append(f"<h3>By {html.escape(col)}</h3><table><tr><th>{html.escape(col)}</th>")
        parts.append(
            "<th>images</th>" + "".join(f"<th>{title}</th>" for title, _ in group_columns) + "</tr>"
        )
        for value, g in values.items():
            parts.append(
                f"<tr><td>{html.escape(value)}</td><td>{g['count']}</td>"
                + "".join(f"<td>{_fmt(g.get(field))}</td>" for _, field in group_columns)
                + "</tr>"
            )
        parts.append("</table>")
    if samples:
        with_reference = any(s[4] is not None for s in samples)
        heading = "Crops: noisy / denoised / ground truth" if with_reference else "Crops"
        # Without ground truth the no-reference figures stand where PSNR would.
        columns = (
            (("PSNR", "psnr"), ("input PSNR", "input_psnr"), ("SSIM", "ssim"))
            if with_reference
            else (
                ("noise in", "noise_sigma_in"),
                ("noise out", "noise_sigma_out"),
                ("change RMS", "change_rms"),
            )
        )
        parts.append(
            f"<h2>{heading}</h2><p class='note'>Centre crops at full resolution "
            f"(up to {CROP}×{CROP}).</p><table><tr><th></th><th>key</th>"
            + "".join(f"<th>{title}</th>" for title, _ in columns)
            + "<th>size</th></tr>"
        )
        for label, rec, *_ in samples:
            parts.append(
                f"<tr><td>{html.escape(label)}</td><td>{html.escape(rec['key'])}</td>"
                + "".join(f"<td>{_fmt(rec.get(field))}</td>" for _, field in columns)
                + f"<td>{rec['width']}×{rec['height']}</td></tr>"
            )
        parts.append("</table>")
        parts.append(_img_tag(comparison_figure(samples), "comparison crops"))
    if errors:
        parts.append(f"<h2>Errors ({len(errors)})</h2><table><tr><th>key</th><th>reason</th></tr>")
        for e in list(errors)[:max_errors]:
            parts.append(
                f"<tr><td>{html.escape(e['key'])}</td><td>{html.escape(e['reason'])}</td></tr>"
            )
        parts.append("</table>")
        if len(errors) > max_errors:
            parts.append(f"<p class='note'>… {len(errors) - max_errors} more in errors.parquet</p>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def benchmark_crops_figure(
    keys: Sequence[str],
    columns: Sequence[tuple[str, Sequence[np.ndarray], Sequence[float]]],
    clean: Sequence[np.ndarray],
) -> bytes | None:
    """One row per image of a real-noise set: each method's crop (PSNR in the title),
    then the ground truth; the same centre crop in every column."""
    if not keys:
        return None
    plt = _plt()
    cols = len(columns) + 1
    fig, axes = plt.subplots(len(keys), cols, figsize=(2.4 * cols, 2.6 * len(keys)), squeeze=False)
    for i, row_axes in enumerate(axes):
        full = (slice(None), slice(None))
        for ax, (name, crops, psnrs) in zip(row_axes, columns):
            _show(ax, crops[i], full, f"{name} {psnrs[i]:.2f}")
        _show(row_axes[-1], clean[i], full, "ground truth")
        row_axes[0].set_ylabel(_short(keys[i], 24), fontsize=8)
    fig.tight_layout()
    return _png(fig)


def benchmark_html(title: str, table_markdown: str, figures: Sequence[tuple[str, bytes]]) -> str:
    """``denoise benchmark``'s report: its Markdown tables as HTML tables (the same text
    as RESULT.md, rendered by markdown-it-py with raw HTML off) and each real set's crops."""
    from markdown_it import MarkdownIt

    tables = MarkdownIt("commonmark", {"html": False}).enable("table").render(table_markdown)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        tables,
    ]
    for name, png in figures:
        parts.append(f"<h2>{html.escape(name)}: centre crops, PSNR in dB</h2>")
        parts.append(_img_tag(png, f"{name} crops"))
    parts.append("</body></html>")
    return "\n".join(parts)
