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
        }


def _read_rgb(uri: str) -> np.ndarray:
    return metrics.to_float01(codecs.to_rgb(codecs.decode_image(storage.read_bytes(uri))))


def clean_set(uri: str, spec: str, limit: int | None = None, seed: int = 0) -> BenchSet:
    """Clean images under ``uri`` with noise ``spec`` (one sigma, or camera), fixed seeds."""
    images = sorted(storage.walk_files(uri, storage.IMAGE_EXTENSIONS))[:limit]
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


def estimate_sigma(noisy: np.ndarray) -> float:
    """Noise std on the [0, 1] scale (wavelet MAD estimator from scikit-image)."""
    from skimage.restoration import estimate_sigma as _estimate

    return float(_estimate(np.clip(noisy, 0, 1), channel_axis=-1, average_sigmas=True))


def nlm_method(h_per_sigma: float = 0.6) -> Method:
    """OpenCV fastNlMeansDenoisingColored, strength from the known or estimated sigma."""
    import cv2

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        sigma = sigma / 255.0 if sigma is not None else estimate_sigma(noisy)
        h = max(1.0, h_per_sigma * sigma * 255.0)
        u8 = np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)
        bgr = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
        out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)
        return cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    return run


def cbm3d_method() -> Method:
    """CBM3D (``bm3d`` package) with the known sigma, or an estimate for real noise."""
    import bm3d

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        s = sigma / 255.0 if sigma is not None else estimate_sigma(noisy)
        return np.asarray(bm3d.bm3d_rgb(noisy, s), dtype=np.float32)

    return run


def model_method(path: str, tile: int = 512, precision: str = "auto") -> Method:
    from .inference import Denoiser

    denoiser = Denoiser.from_path(path, tile=tile, precision=precision)

    def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
        return denoiser(noisy)

    return run


def run_benchmark(
    sets: Iterable[BenchSet], methods: dict[str, Method], progress: Callable | None = None
) -> list[MethodResult]:
    """Every method on every image of every set; metrics on [0, 1] RGB, peak 1."""
    results = []
    for bench_set in sets:
        for name, method in methods.items():
            res = MethodResult(name, bench_set.name)
            for _key, noisy, clean, sigma in bench_set.images:
                t0 = time.perf_counter()
                out = noisy if name == "noisy" else method(noisy, sigma)
                res.seconds += time.perf_counter() - t0 if name != "noisy" else 0.0
                res.megapixels += clean.shape[0] * clean.shape[1] / 1e6
                res.psnr.append(metrics.psnr(out, clean))
                res.ssim.append(metrics.ssim(np.clip(out, 0, 1), clean))
            results.append(res)
            if progress:
                progress(res)
    return results


def markdown_table(results: list[MethodResult]) -> str:
    """Sets as rows, methods as columns: 'PSNR / SSIM' per cell, MP/s in a second table."""
    sets = list(dict.fromkeys(r.bench_set for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    cell = {(r.bench_set, r.method): r.row() for r in results}
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
    return "\n".join(lines)
