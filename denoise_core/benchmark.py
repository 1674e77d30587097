"""Comparing denoisers on the same images in one run: the noisy input, classical
methods (OpenCV non-local means, CBM3D) and our models.

Protocol for synthetic Gaussian noise, as in the published tables (DnCNN, FFDNet,
DRUNet): clean image in [0, 255], N(0, sigma²) added in floating point without
clipping or rounding, fixed seed per image, PSNR on RGB over the whole image with
peak 255 (here: [0, 1] with peak 1, the same number), SSIM from scikit-image.
Methods that need 8-bit input (OpenCV NLM) get the noisy image clipped and
rounded; that is their handicap, stated here, not hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from . import codecs, layouts, manifest, metrics, noise, storage
from .noise_estimate import wavelet_mad_sigma as estimate_sigma  # scikit-image convention

Method = Callable[[np.ndarray, float | None], np.ndarray]


@dataclass
class BenchSet:
    """Named (noisy, clean, known sigma or None) triples, float32 in [0, 1] (noisy unclipped)."""

    name: str
    images: list[tuple[str, np.ndarray, np.ndarray, float | None]]


@dataclass
class MethodResult:
    method: str
    bench_set: str
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0
    crops: list[np.ndarray] = field(default_factory=list)  # real-noise sets: for the report
    note: str = ""  # e.g. the strength an oracle method chose

    def row(self) -> dict:
        return {
            "method": self.method,
            "set": self.bench_set,
            "images": len(self.psnr),
            "psnr": float(np.mean(self.psnr)) if self.psnr else None,
            "ssim": float(np.mean(self.ssim)) if self.ssim else None,
            "psnr_min": float(np.min(self.psnr)) if self.psnr else None,
            "psnr_per_image": [round(float(v), 4) for v in self.psnr],
            "seconds": round(self.seconds, 2),
            "mp_per_s": self.megapixels / self.seconds if self.seconds > 0 else None,
            **({"note": self.note} if self.note else {}),
        }


def _read_rgb(uri: str) -> np.ndarray:
    return metrics.to_float01(codecs.to_rgb(codecs.decode_image(storage.read_bytes(uri))))


def clean_set(uri: str, spec: str, limit: int | None = None, seed: int = 0) -> BenchSet:
    """Clean images under ``uri`` with noise ``spec`` (one sigma, or camera), fixed seeds."""
    images = sorted(storage.walk_images(uri))[:limit]
    parsed = noise.parse_noise_spec(spec)
    out = []
    for i, path in enumerate(images):
        clean = _read_rgb(path)
        rng = np.random.default_rng([seed, i])
        params = noise.sample_noise_params(parsed, rng)
        noisy = noise.apply_noise(clean, params, rng)
        sigma = params.get("sigma") if params["kind"] == "gaussian" else None
        out.append((storage.relative_key(uri, path), noisy, clean, sigma))
    name = f"{storage.open_fs(uri)[1].rstrip('/').rsplit('/', 1)[-1]} {spec}"
    return BenchSet(name, out)


def paired_set(uri: str, split: str | None = None, limit: int | None = None) -> BenchSet:
    """Real noisy/clean pairs: an ingested data set (``split``) or a folder in a paired layout."""
    base = storage.open_fs(uri)[1].rstrip("/").rsplit("/", 1)[-1]
    if storage.exists(manifest.manifest_uri(uri)):
        from .valset import load_val_pairs

        split = split or "val"
        pairs = load_val_pairs(uri, split, limit)
        return BenchSet(
            f"{base}[{split}]", [(str(i), n, c, None) for i, (n, c) in enumerate(pairs)]
        )
    _, items, _ = layouts.collect_items(layouts.list_source(uri))
    items = [it for it in items if it.noisy][:limit]
    out = [(it.key, _read_rgb(it.noisy), _read_rgb(it.clean), None) for it in items]
    return BenchSet(base, out)


def nlm(noisy: np.ndarray, h: float) -> np.ndarray:
    """OpenCV fastNlMeansDenoisingColored at strength ``h`` (luma and chroma), 7/21 windows."""
    import cv2

    u8 = np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def nlm_method(h_per_sigma: float = 0.6) -> Method:
    """OpenCV NLM, strength from the known or estimated sigma."""

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        sigma = sigma / 255.0 if sigma is not None else estimate_sigma(noisy)
        return nlm(noisy, max(1.0, h_per_sigma * sigma * 255.0))

    return run


NLM_STRENGTHS = (2, 3, 4, 6, 8, 10, 12, 15, 18, 21, 25, 30, 35, 40)


@dataclass(frozen=True)
class BestStrengthNLM:
    """An oracle: NLM at the one strength ``h`` that gives the set its best mean PSNR.

    It looks at the ground truth to choose, so it is an upper bound for any NLM
    setting a user could pick for the whole set, not a method; measured on real-noise
    sets, where the estimated-sigma rule of :func:`nlm_method` misjudges correlated
    noise. Reported with the chosen ``h``.
    """

    strengths: tuple[float, ...] = NLM_STRENGTHS

    def best(self, images: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[np.ndarray]]:
        best_h, best_psnr, best_out = None, -np.inf, []
        for h in self.strengths:
            outs = [nlm(noisy, h) for noisy, _ in images]
            mean = float(np.mean([metrics.psnr(o, c) for o, (_, c) in zip(outs, images)]))
            if mean > best_psnr:
                best_h, best_psnr, best_out = h, mean, outs
        return float(best_h), best_out


def cbm3d_method() -> Method:
    """CBM3D (``bm3d`` package) with the known sigma, or an estimate for real noise."""
    import bm3d

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        s = sigma / 255.0 if sigma is not None else estimate_sigma(noisy)
        return np.asarray(bm3d.bm3d_rgb(noisy, s), dtype=np.float32)

    return run


def model_method(
    path: str,
    tile: int = 512,
    precision: str = "auto",
    runtime: str = "tensorflow",
    ensemble: int = 1,
) -> Method:
    """A model through :class:`~denoise_core.inference.Denoiser` in ``runtime`` at
    ``precision``, averaged over ``ensemble`` flips/turns."""
    from .inference import Denoiser

    denoiser = Denoiser.from_path(
        path, tile=tile, precision=precision, runtime=runtime, ensemble=ensemble
    )

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        return denoiser(noisy)

    return run


def run_benchmark(
    sets: Iterable[BenchSet],
    methods: dict[str, Method | BestStrengthNLM],
    progress: Callable | None = None,
) -> list[MethodResult]:
    """Every method on every image of every set; metrics on [0, 1] RGB, peak 1.

    Oracle methods (:class:`BestStrengthNLM`) run on real-noise sets only (every image's
    sigma unknown). On those sets each method's centre crop of every image is kept for
    the report.
    """
    results = []
    for bench_set in sets:
        real = all(sigma is None for *_, sigma in bench_set.images)
        for name, method in methods.items():
            if isinstance(method, BestStrengthNLM) and not real:
                continue
            res = MethodResult(name, bench_set.name)
            outputs: list[np.ndarray] | None = None
            if isinstance(method, BestStrengthNLM):
                t0 = time.perf_counter()
                h, outputs = method.best([(n, c) for _, n, c, _ in bench_set.images])
                res.seconds = (time.perf_counter() - t0) / len(method.strengths)
                res.note = f"h={h:g}"
            for i, (_key, noisy, clean, sigma) in enumerate(bench_set.images):
                t0 = time.perf_counter()
                if outputs is not None:
                    out = outputs[i]
                else:
                    out = noisy if name == "noisy" else method(noisy, sigma)
                    res.seconds += time.perf_counter() - t0 if name != "noisy" else 0.0
                res.megapixels += clean.shape[0] * clean.shape[1] / 1e6
                res.psnr.append(metrics.psnr(out, clean))
                res.ssim.append(metrics.ssim(np.clip(out, 0, 1), clean))
                if real:
                    res.crops.append(np.clip(out[report_crop(out.shape)], 0, 1))
            results.append(res)
            if progress:
                progress(res)
    return results


def report_crop(shape: tuple[int, ...], size: int = 192) -> tuple[slice, slice]:
    """The centre crop the benchmark report shows of each real-noise image."""
    h, w = shape[:2]
    ch, cw = min(size, h), min(size, w)
    return slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw)


def markdown_table(results: list[MethodResult]) -> str:
    """Sets as rows, methods as columns: 'PSNR / SSIM' per cell, MP/s in a second table."""
    sets = list(dict.fromkeys(r.bench_set for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    cell = {(r.bench_set, r.method): r.row() for r in results}
    notes = [f"{r.method} on {r.bench_set}: {r.note}" for r in results if r.note]
    lines = ["| set | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for s in sets:
        vals = []
        for m in methods:
            row = cell.get((s, m))
            vals.append(f"{row['psnr']:.2f} / {row['ssim']:.4f}" if row and row["psnr"] else "")
        lines.append(f"| {s} | " + " | ".join(vals) + " |")
    lines += ["", "| set | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for s in sets:
        vals = []
        for m in methods:
            row = cell.get((s, m))
            mps = row["mp_per_s"] if row else None
            vals.append("-" if m == "noisy" else (f"{mps:.3f} MP/s" if mps else ""))
        lines.append(f"| {s} | " + " | ".join(vals) + " |")
    if "noisy" in methods and len(methods) > 1:
        # "Never worse than the noisy input on any image": the worst per-image gain.
        others = [m for m in methods if m != "noisy"]
        lines += ["", "Worst per-image PSNR gain over the noisy input (dB):", ""]
        lines += ["| set | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
        for s in sets:
            base = cell.get((s, "noisy"))
            vals = []
            for m in others:
                row = cell.get((s, m))
                if not (row and base and row["psnr_per_image"]):
                    vals.append("")
                    continue
                gains = np.subtract(row["psnr_per_image"], base["psnr_per_image"])
                vals.append(f"{gains.min():+.2f}")
            lines.append(f"| {s} | " + " | ".join(vals) + " |")
    if notes:
        lines += ["", "Oracle choices: " + "; ".join(notes) + "."]
    return "\n".join(lines)
