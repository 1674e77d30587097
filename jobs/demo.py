"""``denoise demo``: the whole pipeline on the embedded default in a few minutes.

1. Writes a small paired set from colour photographs that ship inside
   scikit-image, with camera-like synthetic noise (shot + read noise in linear
   light), holding two photographs out.
2. Ingests the pairs to Parquet (Ray Data).
3. Trains a small U-Net for a short time with 2 Ray Train workers.
4. Bulk-denoises the held-out noisy photographs with it, with their clean
   twins as reference, and prints where the report is.

No cluster needed: a local Ray starts by itself (or joins RAY_ADDRESS).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from denoise_core import bundled_photos, codecs, noise, storage
from jobs.common import fail, init_ray, job_main

# scikit-image's bundled colour photographs (no download): five to train, two held out.
TRAIN_PHOTOS = bundled_photos.PHOTOS[:5]
HOLDOUT_PHOTOS = bundled_photos.PHOTOS[5:]
DEMO_CAMERA = noise.CameraParams(shot=2e-3, read=1e-2, gains=(1.6, 1.0, 1.4))
# Written first into every demo folder: the only folders --overwrite may delete.
MARKER = ".denoise-demo"
MARKER_TEXT = b"made by `denoise demo`; `denoise demo --overwrite` may delete this folder\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="demo-output", help="where every stage writes")
    p.add_argument("--steps", type=int, default=300, help="training steps (default %(default)s)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time cap")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo's outputs")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")


def _noisy_twin(clean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = DEMO_CAMERA
    noisy = noise.add_camera_noise(clean.astype(np.float32) / 255.0, rng, c.shot, c.read, c.gains)
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


def write_photo_pairs(root: str) -> dict[str, str]:
    """``root/pairs/<name>_{noisy,clean}.png`` and ``root/holdout/{noisy,clean}/<name>.png``."""
    paths = {"pairs": storage.join(root, "pairs"), "holdout": storage.join(root, "holdout")}
    for i, name in enumerate(TRAIN_PHOTOS + HOLDOUT_PHOTOS):
        clean = bundled_photos.photo(name)
        noisy = _noisy_twin(clean, seed=i)
        if name in TRAIN_PHOTOS:
            targets = {
                storage.join(paths["pairs"], f"{name}_clean.png"): clean,
                storage.join(paths["pairs"], f"{name}_noisy.png"): noisy,
            }
        else:
            targets = {
                storage.join(paths["holdout"], "clean", f"{name}.png"): clean,
                storage.join(paths["holdout"], "noisy", f"{name}.png"): noisy,
            }
        for uri, image in targets.items():
            storage.write_bytes_atomic(uri, codecs.encode_png(image))
    return paths


def run(args: argparse.Namespace) -> int:
    from jobs import ingest, train
    from jobs import run as run_job

    start = time.time()
    root = storage.absolute(args.workdir)
    if storage.is_nonempty_dir(root):
        if not args.overwrite:
            return fail(f"{root} is not empty; pass --overwrite to redo the demo")
        if not storage.exists(storage.join(root, MARKER)):
            # --overwrite deletes a folder only if an earlier demo made it: never a user's.
            return fail(
                f"{root} is not empty and was not made by denoise demo (no {MARKER} in it); "
                "--overwrite only replaces an earlier demo's folder: choose another --workdir"
            )
        storage.remove_tree(root)
    storage.write_bytes_atomic(storage.join(root, MARKER), MARKER_TEXT)
    init_ray(args.address)
    print(f"[1/4] writing noisy/clean photo pairs under {root}")
    paths = write_photo_pairs(root)
    data = storage.join(root, "data")
    print("[2/4] ingest -> Parquet shards")
    code = ingest.main(
        [paths["pairs"], data, "--patch", "96", "--stride", "64", "--val-fraction", "0.2"]
    )
    if code:
        return code
    run_dir = storage.join(root, "run")
    print(f"[3/4] train a small U-Net with {args.workers} workers")
    code = train.main(
        [
            "--data", data,
            "--storage", run_dir,
            "--model", "unet",
            "--model-args", '{"widths": [16, 32, 64]}',
            "--workers", str(args.workers),
            "--steps", str(args.steps),
            "--minutes", str(args.minutes),
            "--val-every", "50",
            "--val-limit", "8",
            "--batch-size", "8",
            "--patch", "64",
            "--warmup-steps", "20",
            "--lr", "2e-3",
            "--noise", "gaussian:0-55;camera",  # the demo's photos carry camera noise
        ]
    )  # fmt: skip
    if code:
        return code
    output = storage.join(root, "denoised")
    print("[4/4] bulk-denoise the held-out photographs")
    code = run_job.main(
        [
            storage.join(paths["holdout"], "noisy"),
            output,
            "--model", storage.join(run_dir, "model", "model.keras"),
            "--reference", storage.join(paths["holdout"], "clean"),
        ]
    )  # fmt: skip
    if code:
        return code
    report = storage.join(output, "report.html")
    print(f"demo finished in {time.time() - start:.0f} s; report: {report}")
    return 0 if os.path.exists(report) or storage.exists(report) else 1


def main(argv: list[str] | None = None) -> int:
    return job_main("demo", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
