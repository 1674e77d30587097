"""Inference runtimes against OpenCV NLM, in one process on this CPU.

Prints, all measured here in this run:

- the CPU (``lscpu`` model name) and whether it has AVX2, AVX-512 BF16 and AMX;
- MP/s of the model (``Denoiser.predict_batch`` on one ``size``² tile, batch 1, after a
  warm-up) for each runtime × precision it offers (TensorFlow fp32 / bf16, ONNX
  Runtime fp32, OpenVINO fp32 / bf16 hint), beside OpenCV
  ``fastNlMeansDenoisingColored`` on the same image, as ratios to NLM;
- the seconds each runtime took to load (conversion included: ``--fresh-cache``
  makes every conversion happen in this run);
- PSNR of each on Kodak24 at sigma 25 (``--kodak`` images, the benchmark's fixed
  noise) and on the real SIDD sample crops, with the difference to TensorFlow fp32;
  NLM beside them (h = 0.6·sigma on Kodak24, the best single h for the SIDD set);
- the x``--ensemble`` self-ensemble's gain and cost on the fastest fp32 runtime.

CPU time is shared on small machines: compare ratios within one run, never bare MP/s
across machines.

    nice -n 5 python benchmarks/bench_runtimes.py
    python benchmarks/bench_runtimes.py --size 512 --seconds 5 --kodak 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
# (runtime, precision) pairs measured, when the runtime is installed.
# NLM strengths tried for the SIDD set's best single h (a shorter grid than the
# benchmark's 2-40: its best on these crops has been 15-21).
NLM_STRENGTHS = (8, 10, 12, 15, 18, 21, 25, 30)
CONFIGS = (
    ("tensorflow", "fp32"),
    ("tensorflow", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
)


def cpu_summary() -> tuple[str, dict[str, bool]]:
    """``lscpu``'s model name and the flags that decide bf16 speed."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)", {}
    name, flags = "unknown", set()
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            name = value.strip()
        elif key.strip() == "Flags":
            flags = set(value.split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return name, {f: f in flags for f in wanted}


def interleaved_rates(
    fns: dict[str, object], megapixels: float, seconds: float, min_rounds: int = 3
) -> dict[str, tuple[float, float]]:
    """(MP/s wall, MP per CPU-second) of each ``fn()``: one warm-up call each, then rounds
    that call every function once, until ``seconds`` have passed (at least
    ``min_rounds``); median per function. Interleaving spreads whatever else runs on the
    machine over every row alike; CPU seconds (this process, all threads) do not count
    time the CPU spent on other processes."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < seconds:
        for key, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - w)
            cpu[key].append(time.process_time() - c)
        rounds += 1
    return {
        k: (megapixels / float(np.median(wall[k])), megapixels / float(np.median(cpu[k])))
        for k in fns
    }


def bench_image(size: int) -> np.ndarray:
    """A ``size``² photo with sigma 25 noise: a Kodak24 image resized, fixed seed."""
    from denoise_core import benchmark

    clean = benchmark._read_rgb(str(DATA / "val" / "Kodak24" / "kodim01.png"))
    import cv2

    clean = cv2.resize(clean, (size, size), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    return (clean + rng.normal(0, 25 / 255, clean.shape)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="a .keras file (default: the packaged model)")
    p.add_argument("--size", type=int, default=1024, help="tile side for the speed rows")
    p.add_argument("--seconds", type=float, default=60.0, help="timing rounds (at least 3)")
    p.add_argument("--kodak", type=int, default=4, help="Kodak24 images at sigma 25")
    p.add_argument("--sidd", default=str(DATA / "real" / "SIDD" / "samples"))
    p.add_argument("--sidd-limit", type=int, default=None, help="first N SIDD pairs (all)")
    p.add_argument("--ensemble", type=int, default=8, help="self-ensemble measured (0: skip)")
    p.add_argument("--fresh-cache", action="store_true", help="convert in this run (temp cache)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    from jobs import quiet

    quiet.configure([])
    if args.fresh_cache:
        os.environ["DENOISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-runtimes-")

    from denoise_core import benchmark, metrics, weights
    from denoise_core.inference import Denoiser, load_model_any, resolve_runtime, runtime_available

    model_path = args.model or weights.default_model_path()
    model = load_model_any(model_path)
    name, flags = cpu_summary()
    print(f"CPU: {name}; {os.cpu_count()} logical CPUs")
    print("flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))
    print(f"model: {model_path} ({model.count_params():,} parameters)")
    print(f"auto runtime here: {resolve_runtime('auto')}")

    image = bench_image(args.size)
    mp = args.size * args.size / 1e6
    nlm_h = 0.6 * 25

    kodak = benchmark.clean_set(str(DATA / "val" / "Kodak24"), "gaussian:25", limit=args.kodak)
    sidd = benchmark.paired_set(args.sidd, limit=args.sidd_limit)
    sets = [(kodak.name, kodak), (f"SIDD samples ({len(sidd.images)})", sidd)]

    def psnr_on(fn, bench_set) -> float:
        return float(
            np.mean([metrics.psnr(fn(noisy), clean) for _, noisy, clean, _ in bench_set.images])
        )

    rows, denoisers = [], {}
    for runtime, precision in CONFIGS:
        if not runtime_available(runtime):
            rows.append({"runtime": runtime, "precision": precision, "skipped": "not installed"})
            continue
        t = time.perf_counter()
        den = Denoiser(model, tile=1024, runtime=runtime, precision=precision)
        rows.append({"runtime": runtime, "precision": precision})
        rows[-1]["load_s"] = time.perf_counter() - t
        denoisers[(runtime, precision)] = den
    batch = image[None]
    fns = {key: (lambda den=den: den.predict_batch(batch)) for key, den in denoisers.items()}
    fns[("nlm", "uint8")] = lambda: benchmark.nlm(image, nlm_h)
    rates = interleaved_rates(fns, mp, args.seconds)
    nlm_rate, nlm_cpu_rate = rates[("nlm", "uint8")]
    for row in rows:
        key = (row["runtime"], row["precision"])
        if key in denoisers:
            row["mp_per_s"], row["mp_per_cpu_s"] = rates[key]
            for label, bench_set in sets:
                row[label] = psnr_on(denoisers[key], bench_set)
            print(f"  measured {key[0]} {key[1]}: {row['mp_per_s']:.3f} MP/s", flush=True)

    nlm_row = {
        "runtime": "OpenCV NLM",
        "precision": "uint8",
        "mp_per_s": nlm_rate,
        "mp_per_cpu_s": nlm_cpu_rate,
    }
    nlm_row[sets[0][0]] = psnr_on(lambda x: benchmark.nlm(x, nlm_h), kodak)
    oracle = benchmark.BestStrengthNLM(strengths=NLM_STRENGTHS)
    best_h, outs = oracle.best([(n, c) for _, n, c, _ in sidd.images])
    nlm_row[sets[1][0]] = float(
        np.mean([metrics.psnr(o, c) for o, (_, _, c, _) in zip(outs, sidd.images)])
    )
    nlm_row["note"] = f"h {nlm_h:g} (Kodak), best h {best_h:g} (SIDD)"

    measured = [r for r in rows if "mp_per_s" in r]
    base = next(r for r in measured if r["runtime"] == "tensorflow" and r["precision"] == "fp32")
    ens_row = None
    if args.ensemble > 1:
        # The fastest row, averaged over the symmetries: the same converted model.
        fastest = max(measured, key=lambda r: r["mp_per_s"])
        ens = copy.copy(denoisers[(fastest["runtime"], fastest["precision"])])
        ens.ensemble = args.ensemble
        single = denoisers[(fastest["runtime"], fastest["precision"])]
        rates = interleaved_rates(
            {"x1": lambda: single.predict_batch(batch), "xk": lambda: ens.predict_batch(batch)},
            mp,
            seconds=0,
            min_rounds=1,
        )
        ens_row = {
            "runtime": f"{fastest['runtime']} x{args.ensemble} ensemble",
            "precision": fastest["precision"],
            "mp_per_s": fastest["mp_per_s"] * rates["xk"][0] / rates["x1"][0],
            "mp_per_cpu_s": fastest["mp_per_cpu_s"] * rates["xk"][1] / rates["x1"][1],
        }
        for label, bench_set in sets:
            ens_row[label] = psnr_on(ens, bench_set)
        ens_row["note"] = f"{rates['x1'][0] / rates['xk'][0]:.1f}x the time of x1; " + ", ".join(
            f"{label.split(' ')[0]} {ens_row[label] - fastest[label]:+.3f} dB" for label, _ in sets
        )

    print()
    print(f"Speed: {args.size}² tile, batch 1; NLM on the same image (h {nlm_h:g}, 7/21)")
    print("MP/s: wall clock, median of interleaved rounds; MP/cpu-s: per CPU-second of this")
    print("process (immune to other load). x NLM: the ratio to NLM of each.")
    head = (
        f"{'runtime':<30} {'prec':<5} {'load s':>7} {'MP/s':>7} {'x NLM':>6} "
        f"{'MP/cpu-s':>8} {'x NLM':>6}"
    )
    for label, _ in sets:
        head += f" {label[:22]:>23} {'Δ TF':>6}"
    print(head)
    for r in [*rows, *([ens_row] if ens_row else []), nlm_row]:
        if "skipped" in r:
            print(f"{r['runtime']:<30} {r['precision']:<5} ({r['skipped']})")
            continue
        load = f"{r['load_s']:7.1f}" if "load_s" in r else f"{'':>7}"
        line = (
            f"{r['runtime']:<30} {r['precision']:<5} {load} {r['mp_per_s']:7.3f} "
            f"{r['mp_per_s'] / nlm_rate:6.2f} {r['mp_per_cpu_s']:8.3f} "
            f"{r['mp_per_cpu_s'] / nlm_cpu_rate:6.2f}"
        )
        for label, _ in sets:
            delta = r[label] - base[label]
            line += f" {r[label]:23.2f} {delta:+6.3f}"
        print(line + (f"  {r['note']}" if "note" in r else ""))
    if args.json:
        payload = {
            "cpu": name,
            "flags": flags,
            "model": model_path,
            "size": args.size,
            "rows": [*rows, *([ens_row] if ens_row else []), nlm_row],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
