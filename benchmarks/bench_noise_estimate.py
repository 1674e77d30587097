"""Accuracy and CPU cost of the no-reference noise estimate against its sample size.

``denoise run`` estimates every input's noise and every output's (``noise_sigma_in``,
``noise_sigma_out``, ``--skip-below``) with
:func:`denoise_core.noise_estimate.estimate_sigma`, which measures large images in
``ESTIMATE_TILES`` crops of 256x256. This script enlarges clean photos (bicubic) to
each size, adds Gaussian noise of known sigma (rounded to 8 bits, clipped), and prints
estimate / true sigma over the photos and CPU ms per image for each crop count:

    python benchmarks/bench_noise_estimate.py --clean ../shared/data/val/Kodak24

Sigma 0 rows give the clean photos' own reading (0-255 scale), not a ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from denoise_core import codecs, noise_estimate, storage  # noqa: E402


def enlarged(uris: list[str], megapixels: float) -> list[np.ndarray]:
    images = []
    for uri in uris:
        image = codecs.decode_image(storage.read_bytes(uri))
        scale = (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
        images.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    return images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", required=True, help="folder of clean photos")
    parser.add_argument("--megapixels", default="1,5", help="sizes to enlarge to (MP)")
    parser.add_argument("--sigmas", default="0,3,5,15", help="Gaussian sigmas (0-255)")
    parser.add_argument("--tiles", default="4,9,36", help="crop counts to compare")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    uris = list(storage.walk_images(args.clean))
    rng = np.random.default_rng(args.seed)
    print("| MP | sigma | crops | estimate / true: min | median | max | CPU ms per image |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mp in (float(v) for v in args.megapixels.split(",")):
        photos = enlarged(uris, mp)
        for sigma in (float(v) for v in args.sigmas.split(",")):
            noisy = [
                np.clip(np.rint(p + rng.normal(0.0, sigma, p.shape)), 0, 255).astype(np.uint8)
                for p in photos
            ]
            for tiles in (int(v) for v in args.tiles.split(",")):
                start = time.process_time()
                estimates = 255.0 * np.array(
                    [noise_estimate.estimate_sigma(n, tiles=tiles) for n in noisy]
                )
                ms = (time.process_time() - start) / len(noisy) * 1e3
                ratio = estimates / sigma if sigma else estimates
                print(
                    f"| {mp:g} | {sigma:g} | {tiles} | {ratio.min():.3f} | "
                    f"{np.median(ratio):.3f} | {ratio.max():.3f} | {ms:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
