"""Tiny image sets in every layout ingest understands, with real SIDD naming.

Helpers, not tests. Every ``make_*`` function writes files under a folder and returns
what a correct ingest must produce from them: ``{source_key: (noisy, clean)}`` with the
arrays (RGB, HxWxC) exactly as stored, ``noisy`` None for clean-only images. Images are
written with OpenCV directly (own channel flip), not through ``denoise_core.codecs``, so
the tests do not check the codecs against themselves.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

H, W = 48, 64  # source image size (rows, columns)
PATCH = 16  # 16x16 patches with stride 16: 3 x 4 = 12 per image
PATCHES_PER_IMAGE = (H // PATCH) * (W // PATCH)

# instance _ scene _ phone _ ISO _ shutter _ illuminant _ brightness; scene 001 twice
# (two instances of one scene must never straddle train and val).
SIDD_SCENES = (
    "0001_001_S6_00100_00060_3200_L",
    "0002_001_GP_00800_00350_5500_N",
    "0003_002_IP_01600_01000_3200_H",
    "0004_003_N6_00400_00160_4400_L",
    "0005_004_G4_03200_00050_5500_N",
)
SMALL_ROOT = "SIDD_Small_sRGB_Only/Data"
MEDIUM_ROOT = "SIDD_Medium_Srgb/Data"
MAT_SHAPE = (3, 4, 32, 32, 3)  # images x blocks x H x W x 3

Expected = dict[str, tuple[np.ndarray | None, np.ndarray]]


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def random_image(rng: np.random.Generator, h: int = H, w: int = W, depth: int = 8) -> np.ndarray:
    dtype, top = (np.uint8, 256) if depth == 8 else (np.uint16, 65536)
    return rng.integers(0, top, size=(h, w, 3), dtype=np.int64).astype(dtype)


def noisy_of(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    top = np.iinfo(clean.dtype).max
    noise = rng.normal(0, top * 0.05, size=clean.shape)
    return np.clip(clean.astype(np.float64) + noise, 0, top).astype(clean.dtype)


def write_image(path: Path, rgb: np.ndarray) -> np.ndarray:
    """Write ``rgb`` (PNG lossless, JPEG lossy); return the pixels a decoder gets back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok, path
    path.write_bytes(buf.tobytes())
    if path.suffix.lower() in (".jpg", ".jpeg"):  # lossy: expect what the file decodes to
        decoded = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
        return np.ascontiguousarray(decoded[:, :, ::-1])
    return rgb


def _pair(root: Path, noisy_key: str, clean_key: str, rng, depth: int = 8, **size):
    clean = random_image(rng, depth=depth, **size)
    noisy = noisy_of(rng, clean)
    return write_image(root / noisy_key, noisy), write_image(root / clean_key, clean)


def make_sidd_small(root: Path, scenes: tuple[str, ...] = SIDD_SCENES) -> Expected:
    """``SIDD_Small_sRGB_Only/Data/<scene>/GT_SRGB_010.PNG`` + ``NOISY_SRGB_010.PNG``."""
    rng = rng_for("small")
    out: Expected = {}
    for scene in scenes:
        key = f"{SMALL_ROOT}/{scene}/NOISY_SRGB_010.PNG"
        out[key] = _pair(root, key, f"{SMALL_ROOT}/{scene}/GT_SRGB_010.PNG", rng)
    return out


def make_sidd_medium(root: Path, scenes: tuple[str, ...] = SIDD_SCENES[:3]) -> Expected:
    """``SIDD_Medium_Srgb/Data/<scene>/0001_GT_SRGB_010.PNG``, ``…_011`` and NOISY twins."""
    rng = rng_for("medium")
    out: Expected = {}
    for scene in scenes:
        for frame in ("010", "011"):
            key = f"{MEDIUM_ROOT}/{scene}/0001_NOISY_SRGB_{frame}.PNG"
            gt = f"{MEDIUM_ROOT}/{scene}/0001_GT_SRGB_{frame}.PNG"
            out[key] = _pair(root, key, gt, rng)
    return out


def make_sidd_zip(zip_path: Path, work: Path) -> Expected:
    """A zip of the Small layout (as the Kaggle mirror ships it)."""
    expected = make_sidd_small(work)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for dirpath, _, names in os.walk(work):
            for name in sorted(names):
                full = Path(dirpath) / name
                zf.write(full, full.relative_to(work).as_posix())
    return expected


def make_sidd_mat(root: Path, with_gt: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``ValidationNoisyBlocksSrgb.mat`` (+ ``ValidationGtBlocksSrgb.mat``); (noisy, gt)."""
    from scipy.io import savemat

    rng = rng_for("mat")
    gt = rng.integers(0, 256, size=MAT_SHAPE, dtype=np.int64).astype(np.uint8)
    noisy = noisy_of(rng, gt)
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    if with_gt:
        savemat(root / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": gt})
    return noisy, gt


def make_suffix_pairs(root: Path) -> Expected:
    """Suffix pairs: PolyU-style ``*_real.JPG``/``*_mean.JPG`` (two crops of one shot and
    another shot), 8-bit ``*_noisy.png``/``*_clean.png`` and 16-bit ``*_noisy.png``/``*_clean.png``.
    """
    rng = rng_for("suffix")
    out: Expected = {}
    for stem in (
        "Canon5D2_5_160_3200_chair_11",
        "Canon5D2_5_160_3200_chair_14",
        "Nikon800_1_100_1600_plug_3",
    ):
        out[f"{stem}_real.JPG"] = _pair(root, f"{stem}_real.JPG", f"{stem}_mean.JPG", rng)
    for stem in ("room_a", "room_b"):
        out[f"png/{stem}_noisy.png"] = _pair(
            root, f"png/{stem}_noisy.png", f"png/{stem}_clean.png", rng
        )
    out["deep/raw16_noisy.png"] = _pair(
        root, "deep/raw16_noisy.png", "deep/raw16_clean.png", rng, depth=16
    )
    return out


def make_folder_pairs(root: Path) -> Expected:
    """``noisy/`` + ``clean/`` folders with matching file names."""
    rng = rng_for("folders")
    return {
        f"noisy/{name}": _pair(root, f"noisy/{name}", f"clean/{name}", rng)
        for name in ("street.png", "desk.png", "garden.png")
    }


def make_clean_only(root: Path) -> Expected:
    """Clean photographs only (noise is synthesised at training time); one 16-bit."""
    rng = rng_for("clean")
    out: Expected = {}
    for name in ("beach.png", "forest.png", "city.png"):
        out[name] = (None, write_image(root / name, random_image(rng)))
    out["sub/deep16.png"] = (
        None,
        write_image(root / "sub/deep16.png", random_image(rng, depth=16)),
    )
    return out


def corrupt_bytes(path: Path) -> None:
    """Random bytes under an image name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# The bad scene folders of make_sidd_bad and the reason users must read for each.
BAD_SCENES = {
    "corrupt": ("0101_010_S6_00100_00060_3200_L", "not a decodable image"),
    "truncated": ("0102_011_GP_00100_00060_3200_N", "truncated PNG"),
    "no_gt": ("0103_012_IP_00100_00060_3200_H", "without ground truth"),
    "mismatch": ("0104_013_N6_00100_00060_3200_L", "size mismatch"),
}


def make_sidd_bad(root: Path) -> tuple[Expected, dict[str, str]]:
    """SIDD Small with two good scenes and one of each bad input.

    Returns (expected good pairs, {noisy key of each bad pair: reason substring}).
    """
    good = make_sidd_small(root, SIDD_SCENES[:3])
    rng = rng_for("bad")
    bad: dict[str, str] = {}
    for kind, (scene, reason) in BAD_SCENES.items():
        noisy_key = f"{SMALL_ROOT}/{scene}/NOISY_SRGB_010.PNG"
        gt_key = f"{SMALL_ROOT}/{scene}/GT_SRGB_010.PNG"
        if kind == "mismatch":
            clean = random_image(rng)
            write_image(root / gt_key, clean)
            write_image(root / noisy_key, random_image(rng, h=H, w=W - 8))
        else:
            _pair(root, noisy_key, gt_key, rng)
        if kind == "corrupt":
            corrupt_bytes(root / noisy_key)
        elif kind == "truncated":
            truncate(root / gt_key)
        elif kind == "no_gt":
            (root / gt_key).unlink()
        bad[noisy_key] = reason
    return good, bad


class RayStarted(AssertionError):
    """Raised where a test's command started Ray although it should have refused first."""


def forbid_ray_start(monkeypatch, *job_modules) -> None:
    """Make each job module's ``init_ray`` raise :class:`RayStarted`: a refusal must come
    before Ray starts, and the test fails if it does not."""

    def refuse(*args, **kwargs):
        raise RayStarted("Ray was started before the arguments were checked")

    for module in job_modules:
        monkeypatch.setattr(module, "init_ray", refuse)
