"""Validation images from an ingested data set: whole images, fixed noise.

Validation must be comparable across steps, runs and sessions, so clean-only
sets get noise from a fixed seed per image (the published Gaussian protocol:
float noise, no clipping), and paired sets use their real noisy twin.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from . import codecs, manifest, metrics, noise, storage


def val_set_names(sets: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
    """How logs and metrics name validation sets (URI, split): each data set's folder and
    split, or the whole URI where two folders share a name."""
    names = [f"{uri.rstrip('/').rsplit('/', 1)[-1]}#{split}" for uri, split in sets]
    if len(set(names)) < len(names):
        names = [f"{uri}#{split}" for uri, split in sets]
    return names


def load_val_pairs(
    root: str,
    split: str = "val",
    limit: int | None = None,
    noise_spec: str = "gaussian:25",
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``limit`` (noisy, clean) float32 pairs of ``split``, in key order."""
    rows: list[dict] = []
    for uri in manifest.split_files(root, split):
        fs, path = storage.open_fs(uri)
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["key", "noisy", "clean"])
        rows.extend(table.to_pylist())
    rows.sort(key=lambda r: r["key"])
    if limit:
        rows = rows[:limit]
    spec = noise.parse_noise_spec(noise_spec)
    pairs = []
    for i, row in enumerate(rows):
        clean = metrics.to_float01(codecs.to_rgb(codecs.decode_image(row["clean"])))
        if row["noisy"]:
            noisy = metrics.to_float01(codecs.to_rgb(codecs.decode_image(row["noisy"])))
            pairs.append((noisy.astype(np.float32), clean.astype(np.float32)))
        else:
            pairs.append(val_pair(clean, spec, seed, i))
    return pairs


def val_pair(
    clean: np.ndarray, noise_spec: str | noise.NoiseSpec, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 for the ``index``-th clean validation image: its noise is
    fixed by (``seed``, ``index``) alone, so both trainers validate on the same inputs."""
    clean = np.asarray(clean, np.float32)
    noisy = noise.synthesize(clean, noise_spec, np.random.default_rng([seed, index]))
    return noisy.astype(np.float32), clean
