"""PSNR against ``--strength``: how much of the model's output a user keeps.

Each image is denoised once by the model; every strength then goes through
``denoise_core.bulk.pixels.denoise_array``, the function ``denoise run --strength``
calls, so the blend and the rounding are the product's own. Inputs are 8-bit as in a
user's photo (the Gaussian set's noisy float image is clipped and rounded first).

    python benchmarks/bench_strength.py --model denoise_core/weights/default.keras \
        --pairs ../shared/data/real/SIDD/samples --clean ../shared/data/val/Kodak24

Prints one Markdown table: mean PSNR (dB) per set and strength.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs import quiet  # noqa: E402

quiet.configure([])  # before TensorFlow is imported: no start-up noise in the table

from denoise_core import benchmark, metrics  # noqa: E402
from denoise_core.bulk.pixels import denoise_array  # noqa: E402
from denoise_core.inference import Denoiser  # noqa: E402

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def sweep(denoiser: Denoiser, bench_set: benchmark.BenchSet) -> list[float]:
    """Mean PSNR over the set at each of :data:`STRENGTHS`."""
    psnr = np.zeros((len(bench_set.images), len(STRENGTHS)))
    for i, (_, noisy, clean, _) in enumerate(bench_set.images):
        noisy8 = to_uint8(noisy)
        denoised = denoiser(metrics.to_float01(noisy8))
        for j, strength in enumerate(STRENGTHS):
            out = denoise_array(lambda _x, d=denoised: d, noisy8, strength)
            psnr[i, j] = metrics.psnr(metrics.to_float01(out), clean)
    return psnr.mean(axis=0).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="denoise_core/weights/default.keras")
    parser.add_argument("--pairs", action="append", default=[], help="real noisy/clean pairs")
    parser.add_argument("--clean", action="append", default=[], help="clean set, Gaussian noise")
    parser.add_argument("--sigma", type=int, default=15, help="Gaussian sigma for --clean sets")
    parser.add_argument("--limit", type=int, default=None, help="images per set")
    args = parser.parse_args()
    sets = [benchmark.paired_set(uri, limit=args.limit) for uri in args.pairs]
    sets += [benchmark.clean_set(uri, f"gaussian:{args.sigma}", args.limit) for uri in args.clean]
    denoiser = Denoiser.from_path(args.model, precision="auto")
    print("| set | " + " | ".join(f"strength {s:g}" for s in STRENGTHS) + " |")
    print("|---" * (len(STRENGTHS) + 1) + "|")
    for bench_set in sets:
        row = sweep(denoiser, bench_set)
        print(f"| {bench_set.name} | " + " | ".join(f"{v:.2f}" for v in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
