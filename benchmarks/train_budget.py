"""Quality per training minute: each model trained for the same wall-clock budget.

For every ``--models`` entry this runs ``denoise train`` from scratch on one data
set (default CBSD432 with Gaussian sigma 25) for ``--minutes`` with one worker,
then a short run with two workers to measure patches/s, and finally scores the
exported model on every image of the validation set (Kodak24, sigma 25, the
fixed-seed noise of ``denoise train``'s validation). Prints the CPU model name, a
Markdown table and writes ``OUT/results.json``.

Throughput on a shared 2-core machine depends on what else runs: run it on a
quiet machine and compare rows of one run, not bare numbers across machines.

    python benchmarks/train_budget.py --data runs/data/cbsd432 \\
        --val runs/data/kodak24 --out runs/budget
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Validation cadence per model, so each run validates a handful of times.
VAL_EVERY = {"seed_cnn": 150, "dncnn": 25, "unet": 100, "unet_s2d": 200}
PROGRESS = re.compile(r"step (\d+)/\d+\s+loss ([\d.]+)\s+val PSNR ([\d.]+) dB.*?([\d.]+) patches/s")


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else "?"


def train(model: str, workers: int, minutes: float, args: argparse.Namespace) -> dict:
    """One ``denoise train`` run; returns its progress lines and wall time."""
    run_dir = Path(args.out) / f"{model}-w{workers}"
    val_every = max(5, VAL_EVERY.get(model, 100) // (1 if workers == 1 else 3))
    cmd = [
        sys.executable, "-m", "jobs.train",
        "--data", args.data, "--val", args.val, "--val-split", args.val_split,
        "--val-limit", str(args.val_limit), "--val-noise", args.noise, "--noise", args.noise,
        "--model", model, "--workers", str(workers), "--steps", "1000000",
        "--schedule", "constant", "--lr", str(args.lr), "--loss", args.loss,
        "--batch-size", str(args.batch_size), "--patch", str(args.patch),
        "--minutes", str(minutes), "--val-every", str(val_every),
        "--storage", str(run_dir), "--seed", "0",
    ]  # fmt: skip
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - started
    log = proc.stdout + proc.stderr
    (Path(args.out) / f"{model}-w{workers}.log").write_text(log)
    if proc.returncode:
        raise SystemExit(f"{model}, {workers} workers: rc {proc.returncode}\n{log[-3000:]}")
    points = [
        {"step": int(s), "loss": float(lo), "val_psnr": float(p), "patches_per_s": float(r)}
        for s, lo, p, r in PROGRESS.findall(log)
    ]
    return {"run": str(run_dir), "wall_s": wall, "points": points, "command": " ".join(cmd[1:])}


def score(run_dir: str, args: argparse.Namespace) -> dict:
    """The exported model on every image of the validation split."""
    from denoise_core.inference import Denoiser, evaluate_pairs
    from denoise_core.valset import load_val_pairs

    pairs = load_val_pairs(args.val, split=args.val_split, noise_spec=args.noise)
    return evaluate_pairs(Denoiser.from_path(f"{run_dir}/model/model.keras"), pairs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="runs/data/cbsd432")
    p.add_argument("--val", default="runs/data/kodak24")
    p.add_argument("--val-split", default="val")
    p.add_argument("--val-limit", type=int, default=6, help="images per progress validation")
    p.add_argument("--noise", default="gaussian:25")
    p.add_argument("--models", default="seed_cnn,dncnn,unet")
    p.add_argument("--minutes", type=float, default=10.0, help="budget of the 1-worker run")
    p.add_argument("--minutes-2w", type=float, default=2.5, help="budget of the 2-worker run")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="mse")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--out", default="runs/budget")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    print(f"CPU: {cpu_model()}", flush=True)
    results = []
    for model in args.models.split(","):
        one = train(model, 1, args.minutes, args)
        final = score(one["run"], args)
        two = train(model, 2, args.minutes_2w, args) if args.minutes_2w > 0 else None
        row = {
            "model": model,
            "steps": one["points"][-1]["step"] if one["points"] else 0,
            "wall_s": one["wall_s"],
            "patches_per_s_1w": _steady_rate(one),
            "patches_per_s_2w": _steady_rate(two) if two else None,
            "curve": [(pt["step"], pt["val_psnr"]) for pt in one["points"]],
            **final,
            "command": one["command"],
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\n{args.minutes:g}-minute runs, {args.noise}, all of {args.val} ({cpu_model()})\n")
    print("| model | steps | patches/s 1 worker | patches/s 2 workers | val PSNR | SSIM | noisy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        two = f"{r['patches_per_s_2w']:.1f}" if r["patches_per_s_2w"] else "-"
        print(
            f"| {r['model']} | {r['steps']} | {r['patches_per_s_1w']:.1f} | {two} | "
            f"{r['val_psnr']:.2f} | {r['val_ssim']:.4f} | {r['val_noisy_psnr']:.2f} |"
        )


def _steady_rate(run: dict) -> float:
    """Mean patches/s over the progress windows after the first (which holds start-up)."""
    rates = [pt["patches_per_s"] for pt in run["points"]]
    rates = rates[1:] or rates
    return sum(rates) / len(rates) if rates else 0.0


if __name__ == "__main__":
    main()
