"""``denoise run``: planning, per-image processing, and the Ray job end to end.

The Ray-free half (:mod:`denoise_core.bulk`) is tested with a fake, exactly known
"denoiser" (a fixed affine map), so outputs can be checked pixel for pixel. The job
runs in-process against the session's local Ray with a tiny U-Net fitted for 30
steps here (module fixture). Images are tiny (at most ~100 px); tiles are 32 px so
odd sizes cross tile seams and some images are smaller than one tile. Images and
expected metrics are computed with OpenCV / scikit-image directly, not through
``denoise_core.codecs`` / ``denoise_core.metrics``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import fixtures as fx
import numpy as np
import pyarrow.parquet as pq
import pytest
import s3fs
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from denoise_core import bulk, codecs, greyscale, storage
from jobs import ingest as ingest_job
from jobs import run as run_job

TILE = ["--tile", "32", "--overlap", "16"]

# --------------------------------------------------------------------------
# Images, written with OpenCV / Pillow directly
# --------------------------------------------------------------------------


def smooth(h: int, w: int, channels: int = 3, depth: int = 8, seed: int = 0) -> np.ndarray:
    """A smooth colour image (something a denoiser can learn to keep)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w, 1)
    planes = [
        0.5 + 0.4 * np.sin(6 * x + rng.uniform(0, 6)),
        0.5 + 0.4 * np.cos(5 * y + rng.uniform(0, 6)),
        0.3 + 0.4 * x * y,
    ]
    img = np.stack(planes[:channels] if channels != 1 else planes[:1], axis=-1)
    top = 255 if depth == 8 else 65535
    return np.rint(img * top).astype(np.uint8 if depth == 8 else np.uint16)


def noisy_of(clean: np.ndarray, sigma: float = 0.08, seed: int = 1) -> np.ndarray:
    top = np.iinfo(clean.dtype).max
    noise = np.random.default_rng(seed).normal(0, sigma * top, clean.shape)
    return np.clip(clean.astype(np.float64) + noise, 0, top).astype(clean.dtype)


def write(path: Path, img: np.ndarray) -> None:
    """RGB / RGBA / grey (HxWx1) to disk through OpenCV's own channel order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img
    if img.shape[2] == 3:
        arr = img[:, :, ::-1]
    elif img.shape[2] == 4:
        arr = img[:, :, [2, 1, 0, 3]]
    else:
        arr = img[:, :, 0]
    ok, buf = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(arr))
    assert ok, path
    path.write_bytes(buf.tobytes())


def read(path_or_bytes) -> np.ndarray:
    """Back to RGB / RGBA / HxWx1, as stored (no EXIF)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert arr is not None
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.shape[2] == 3:
        return arr[:, :, ::-1]
    return arr[:, :, [2, 1, 0, 3]]


def write_exif_jpeg(path: Path, rgb: np.ndarray, orientation: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif)


def f01(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / np.iinfo(img.dtype).max


def sk_metrics(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """scikit-image's PSNR / MSE / SSIM on RGB (or grey) in [0, 1], float64."""
    a, b = f01(out[..., :3]), f01(ref[..., :3])
    return {
        "psnr": peak_signal_noise_ratio(b, a, data_range=1.0),
        "mse": mean_squared_error(b, a),
        "ssim": structural_similarity(b, a, data_range=1.0, channel_axis=-1),
    }


def fake_denoise(x: np.ndarray) -> np.ndarray:
    """An exactly known stand-in for the model: float RGB [0, 1] -> float RGB [0, 1]."""
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[2] == 3
    return np.clip(x * 0.9 + 0.05, 0, 1)


def model_rgb(color: np.ndarray) -> np.ndarray:
    """The float RGB the model is given for a colour or grey (HxWx1) image: grey goes
    in with independent noise per channel around it (tested in test_greyscale.py)."""
    f = (color.astype(np.float64) / np.iinfo(color.dtype).max).astype(np.float32)
    return greyscale.model_input(f[..., 0]) if color.shape[2] == 1 else f


def expected_fake(img: np.ndarray) -> np.ndarray:
    """What denoise_array must produce from ``img`` with :func:`fake_denoise`."""
    top = np.iinfo(img.dtype).max
    color = img[..., :3] if img.shape[2] == 4 else img
    out = fake_denoise(model_rgb(color))
    if color.shape[2] == 1:
        out = out.mean(axis=2, keepdims=True)
    res = np.rint(out * top).astype(img.dtype)
    return np.concatenate([res, img[..., 3:]], axis=2) if img.shape[2] == 4 else res


# The mixed folder: every format, depth and channel layout, odd sizes and sizes below a
# tile, an EXIF-rotated JPEG, and one of each bad input. key -> (stored image, reference
# key). References live under a parallel folder; some under another extension.
GOOD = {
    "rgb/odd.png": ((75, 53, 3, 8), "rgb/odd.png"),
    "rgb/small.png": ((20, 14, 3, 8), "rgb/small.png"),
    "deep/d16.png": ((40, 36, 3, 16), "deep/d16.png"),
    "deep/g16.tif": ((33, 47, 1, 16), "deep/g16.tif"),
    "gray/g.png": ((33, 47, 1, 8), "gray/g.png"),
    "alpha/rgba.png": ((30, 40, 4, 8), "alpha/rgba.png"),
    "misc/x.bmp": ((24, 30, 3, 8), "misc/x.png"),
    "misc/y.WEBP": ((26, 34, 3, 8), "misc/y.png"),
}
EXIF_KEY, EXIF_STORED = "photo.JPG", (32, 48)  # stored 48 wide x 32 high, orientation 6
BAD = {
    "bad/empty.png": "empty file",
    "bad/trunc.png": "truncated PNG",
    "bad/notimage.jpg": "not a decodable image",
    "bad/mismatch.png": "reference size mismatch",
}


def make_mixed(root: Path) -> tuple[Path, Path]:
    """INPUT and REFERENCE folders of the mixed set; returns (input, reference)."""
    src, ref = root / "in", root / "ref"
    for i, (key, ((h, w, c, depth), ref_key)) in enumerate(GOOD.items()):
        color = smooth(h, w, min(c, 3), depth, seed=i)
        clean = color
        if c == 4:
            alpha = np.linspace(0, 255, h * w).reshape(h, w, 1).astype(np.uint8)
            clean = np.concatenate([color, alpha], axis=2)
        noisy = noisy_of(clean, seed=100 + i)
        if c == 4:
            noisy[..., 3] = clean[..., 3]
        write(src / key, noisy)
        write(ref / ref_key, clean)
    clean = smooth(*EXIF_STORED, seed=50)
    write_exif_jpeg(src / EXIF_KEY, noisy_of(clean, seed=51), orientation=6)
    write(ref / "photo.png", np.ascontiguousarray(np.rot90(clean, k=-1)))  # upright
    (src / "bad").mkdir(parents=True)
    (src / "bad/empty.png").write_bytes(b"")
    write(src / "bad/trunc.png", smooth(20, 20))
    data = (src / "bad/trunc.png").read_bytes()
    (src / "bad/trunc.png").write_bytes(data[: len(data) // 2])
    fx.corrupt_bytes(src / "bad/notimage.jpg")
    write(src / "bad/mismatch.png", smooth(20, 20))
    write(ref / "bad/mismatch.png", smooth(20, 22))
    (src / "notes.txt").write_text("not an image")
    return src, ref


def upright(key: str, src: Path) -> np.ndarray:
    """The input as the pipeline must see it (EXIF orientation applied)."""
    if key == EXIF_KEY:
        from PIL import Image, ImageOps

        with Image.open(src / key) as im:
            return np.asarray(ImageOps.exif_transpose(im))
    return read(src / key)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A U-Net (widths 8, 16) fitted for 30 steps on smooth noisy/clean crops."""
    import keras

    from denoise_core import models

    keras.utils.set_random_seed(0)
    clean = np.stack([f01(smooth(32, 32, seed=s)) for s in range(16)]).astype(np.float32)
    noisy = np.stack([f01(noisy_of(smooth(32, 32, seed=s), seed=s)) for s in range(16)])
    model = models.build_model("unet", widths=[8, 16])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(noisy.astype(np.float32), clean, batch_size=8, epochs=15, verbose=0)  # 30 steps
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    return make_mixed(tmp_path_factory.mktemp("mixed"))


def run(*args) -> int:
    return run_job.main([str(a) for a in args])


def read_outputs(out: str) -> tuple[dict, dict[str, dict], dict[str, str]]:
    """(summary, metrics rows by key, errors by key) of a finished run."""
    s3fs.S3FileSystem.clear_instance_cache()  # written by Ray workers

    def table(name):
        fs, path = storage.open_fs(storage.join(out, name))
        with fs.open(path, "rb") as fh:
            return pq.read_table(fh)

    metrics = {r["key"]: r for r in table(bulk.METRICS_NAME).to_pylist()}
    errors = {r["key"]: r["reason"] for r in table(bulk.ERRORS_NAME).to_pylist()}
    summary = json.loads(storage.read_bytes(storage.join(out, bulk.SUMMARY_NAME)))
    return summary, metrics, errors


def report_images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"base64,([A-Za-z0-9+/=]+)", html)]


# --------------------------------------------------------------------------
# Planning (no Ray)
# --------------------------------------------------------------------------


def test_match_references_by_key_then_extension():
    refs = {"a/x.png": "R1", "a/y.PNG": "R2", "b/z.tif": "R3", "b/z.png": "R4"}
    got = bulk.match_references(["a/x.png", "a/y.jpg", "b/z.jpg", "c/none.png"], refs)
    assert got == {"a/x.png": "R1", "a/y.jpg": "R2", "b/z.jpg": "R4"}


def test_plan_sidd_layout_denoises_noisy_and_uses_gt(tmp_path):
    src = tmp_path / "sidd"
    expected = fx.make_sidd_small(src, fx.SIDD_SCENES[:3])
    (src / "README.txt").write_text("x")
    plan = bulk.plan_run(str(src), str(tmp_path / "out"))
    assert plan.layout == "sidd"
    assert [it.key for it in plan.items] == sorted(expected)
    for it in plan.items:
        assert it.reference.endswith(it.key.replace("NOISY_SRGB", "GT_SRGB"))
        meta = json.loads(it.meta)
        scene = fx.SIDD_SCENES[[s in it.key for s in fx.SIDD_SCENES].index(True)]
        assert meta["phone"] == scene.split("_")[2] and meta["iso"] == int(scene.split("_")[3])
    assert plan.ignored == 1 + len(expected)  # README + the ground-truth images


def test_run_says_which_other_files_it_left_alone(tmp_path, capsys):
    """A photo folder with RAW files or GIFs beside its JPEGs: the run names what it
    does not read (a count per extension, hidden files not counted) before it starts."""
    src = tmp_path / "photos"
    write(src / "a.jpg", smooth(20, 20))
    (src / "raw").mkdir()
    for name in ("IMG_1.DNG", "IMG_2.dng", "notes.txt", "Makefile", ".DS_Store"):
        (src / "raw" / name).write_bytes(b"x")
    plan = bulk.plan_run(str(src), str(tmp_path / "out"))
    assert [it.key for it in plan.items] == ["a.jpg"]
    assert plan.other_files == {".dng": 2, ".txt": 1, "no extension": 1}
    settings = bulk.RunSettings(input=str(src), output=str(tmp_path / "out"), model="identity")
    bulk.runner.prepare(settings, lambda exc: None)
    assert "4 other files left alone (2 .dng, 1 .txt, 1 no extension)" in capsys.readouterr().out


def test_plan_folder_pairs_and_layout_none(tmp_path):
    src = tmp_path / "src"
    fx.make_folder_pairs(src)
    plan = bulk.plan_run(str(src), str(tmp_path / "out"))
    names = ("desk.png", "garden.png", "street.png")
    assert [it.key for it in plan.items] == [f"noisy/{n}" for n in names]
    assert all(it.reference.endswith(it.key.replace("noisy/", "clean/")) for it in plan.items)
    every = bulk.plan_run(str(src), str(tmp_path / "out"), layout="none")
    assert len(every.items) == 6 and not any(it.reference for it in every.items)


def test_plan_skips_output_inside_input_and_formats(tmp_path):
    src = tmp_path / "src"
    write(src / "a.JPG", smooth(8, 8))
    write(src / "out/a.png", smooth(8, 8))  # a previous run's output inside INPUT
    plan = bulk.plan_run(str(src), str(src / "out"), fmt=bulk.normalize_format("PNG"))
    assert [(it.key, it.output_key) for it in plan.items] == [("a.JPG", "a.png")]
    assert plan.existing == {"a.png"} and plan.to_skip(overwrite=False) == 1
    with pytest.raises(ValueError, match="unsupported --format"):
        bulk.normalize_format("gif")


# --------------------------------------------------------------------------
# Per-image processing with a known fake denoiser (no Ray)
# --------------------------------------------------------------------------


def process(src: Path, out: Path, ref: Path | None = None, **kwargs) -> dict[str, dict]:
    plan = bulk.plan_run(str(src), str(out), reference=str(ref) if ref else None)
    calls = kwargs.pop("calls", None)

    def fn(x):
        if calls is not None:
            calls.append(x.shape)
        return fake_denoise(x)

    proc = bulk.BulkProcessor(fn, str(out), existing=plan.existing, **kwargs)
    try:
        results = proc.process([asdict(it) for it in plan.items])
    finally:
        proc.close()
    return {r["key"]: r for r in results}


@pytest.mark.parametrize("threads", [0, 2])
def test_depth_channels_alpha_and_exif_round_trip(mixed, tmp_path, threads):
    src, ref = mixed
    results = process(src, tmp_path / "out", ref, threads=threads)
    for key in [*GOOD, EXIF_KEY]:
        assert results[key]["error"] == "", (key, results[key]["error"])
        inp = upright(key, src)
        out = read(tmp_path / "out" / key)
        assert out.dtype == inp.dtype and out.shape == inp.shape, key
        if key == EXIF_KEY:
            assert out.shape[:2] == EXIF_STORED[::-1]  # written upright
            continue  # lossy: checked by metrics below
        np.testing.assert_array_equal(out, expected_fake(inp), err_msg=key)
        if inp.shape[2] == 4:
            np.testing.assert_array_equal(out[..., 3], inp[..., 3])  # alpha untouched
        assert results[key]["bit_depth"] == (16 if inp.dtype == np.uint16 else 8)
        assert results[key]["channels"] == inp.shape[2]


def test_bad_inputs_become_errors_and_the_rest_is_denoised(mixed, tmp_path):
    src, ref = mixed
    results = process(src, tmp_path / "out", ref)
    for key, reason in BAD.items():
        assert reason in results[key]["error"], (key, results[key]["error"])
        assert not (tmp_path / "out" / key).exists()
    assert "notes.txt" not in results
    assert all(results[k]["error"] == "" for k in [*GOOD, EXIF_KEY])


def test_metrics_equal_scikit_image(mixed, tmp_path):
    src, ref = mixed
    results = process(src, tmp_path / "out", ref)
    for key, (_, ref_key) in [*GOOD.items(), (EXIF_KEY, (None, "photo.png"))]:
        out, noisy, clean = read(tmp_path / "out" / key), upright(key, src), read(ref / ref_key)
        want, want_in = sk_metrics(out, clean), sk_metrics(noisy, clean)
        for name in ("psnr", "mse", "ssim"):
            assert results[key][name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), key
            got_in = results[key][f"input_{name}"]
            assert got_in == pytest.approx(want_in[name], rel=1e-9, abs=1e-12), key


LAYOUTS = [(3, 8), (1, 8), (4, 8), (3, 16)]  # (channels, bit depth)


def layout_image(channels: int, depth: int) -> np.ndarray:
    img = noisy_of(smooth(29, 41, min(channels, 3), depth, seed=channels))
    if channels == 4:
        alpha = np.linspace(0, 255, 29 * 41).reshape(29, 41, 1).astype(np.uint8)
        img = np.concatenate([img, alpha], axis=2)
    return img


@pytest.mark.parametrize(("channels", "depth"), LAYOUTS)
def test_strength_zero_is_the_input_one_is_the_model_half_is_the_midpoint(channels, depth):
    img = layout_image(channels, depth)
    calls = []

    def fn(x):
        calls.append(x.shape)
        return fake_denoise(x)

    full = bulk.denoise_array(fn, img, strength=1.0)
    np.testing.assert_array_equal(full, bulk.denoise_array(fake_denoise, img))  # the default
    np.testing.assert_array_equal(full, expected_fake(img))  # what it was before --strength
    calls.clear()
    untouched = bulk.denoise_array(fn, img, strength=0.0)
    np.testing.assert_array_equal(untouched, img)
    assert untouched is not img and calls == []  # the model is not even run
    half = bulk.denoise_array(fake_denoise, img, strength=0.5).astype(np.float64)
    midpoint = (full.astype(np.float64) + img) / 2  # blended in float, then rounded once
    assert np.abs(half - midpoint).max() <= 1.0
    if channels == 4:
        np.testing.assert_array_equal(half[..., 3], img[..., 3])
    quarter = bulk.denoise_array(fake_denoise, img, strength=0.25).astype(np.float64)
    assert np.abs(quarter - (full * 0.25 + img * 0.75)).max() <= 1.0


@pytest.mark.parametrize("strength", [-0.01, 1.01, float("nan")])
def test_strength_outside_zero_to_one_is_refused(strength):
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        bulk.denoise_array(fake_denoise, layout_image(3, 8), strength=strength)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        bulk.BulkProcessor(fake_denoise, "unused", strength=strength)


def test_tiny_images_are_written_once_and_scored_not_errors(tmp_path):
    """A 3×7 image with a reference: written, SSIM with a 3×3 window, not an error; under
    3 px: written, SSIM empty (NaN) (issue 17.7)."""
    src, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    for name, (h, w) in {"tiny.png": (3, 7), "sliver.png": (2, 5)}.items():
        clean = smooth(h, w, seed=h)
        write(ref / name, clean)
        write(src / name, noisy_of(clean))
    before = {p.name: p.read_bytes() for p in [*src.iterdir(), *ref.iterdir()]}
    results = process(src, out, ref)
    assert {k: r["error"] for k, r in results.items()} == {"tiny.png": "", "sliver.png": ""}
    tiny = read(out / "tiny.png")
    want = structural_similarity(
        f01(read(ref / "tiny.png")), f01(tiny), data_range=1.0, channel_axis=-1, win_size=3
    )
    assert results["tiny.png"]["ssim"] == pytest.approx(want, rel=1e-9)
    assert np.isnan(results["sliver.png"]["ssim"]) and np.isfinite(results["sliver.png"]["psnr"])
    assert read(out / "sliver.png").shape == (2, 5, 3)
    records = bulk.metrics_records(results.values())
    assert sorted(r["key"] for r in records) == ["sliver.png", "tiny.png"]
    assert {p.name: p.read_bytes() for p in [*src.iterdir(), *ref.iterdir()]} == before


def make_huge_beside_small(root: Path, side: int) -> tuple[Path, Path]:
    """INPUT with ``huge.png``, one grey colour of side x side (OpenCV's RLE PNG: 425 KB
    for 20000 px, written in about 3 s), beside three small noisy images, and their
    REFERENCE folder."""
    src, ref = root / "in", root / "ref"
    src.mkdir(parents=True)
    huge = np.full((side, side), 77, np.uint8)
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        9,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]
    ok, buf = cv2.imencode(".png", huge, params)
    assert ok
    del huge
    (src / "huge.png").write_bytes(buf.tobytes())
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        clean = smooth(30 + i, 40, seed=i)
        write(ref / name, clean)
        write(src / name, noisy_of(clean, seed=10 + i))
    return src, ref


def test_images_above_max_megapixels_are_errors_and_the_rest_is_denoised(tmp_path):
    """Issue 17.3 with a lowered limit: a 2000x2000 one-colour PNG over 1 MP is refused
    from its header with the reason users read; the small images beside it are denoised
    and scored as usual."""
    src, ref = make_huge_beside_small(tmp_path, 2000)
    out = tmp_path / "out"
    results = process(src, out, ref, max_megapixels=1)
    assert results["huge.png"]["error"] == (
        "2000x2000 = 4 MP (4 MB decoded) exceeds --max-megapixels 1"
    )
    assert not (out / "huge.png").exists()
    for name in ("a.png", "b.png", "c.png"):
        assert results[name]["error"] == ""
        got, clean = read(out / name), read(ref / name)
        np.testing.assert_array_equal(got, expected_fake(read(src / name)))
        assert results[name]["psnr"] == pytest.approx(sk_metrics(got, clean)["psnr"], rel=1e-9)
    assert process(src, tmp_path / "out2", ref, max_megapixels=4)["huge.png"]["error"] == ""


_PEAK_SCRIPT = """
import json, resource, sys
from dataclasses import asdict
import numpy as np
from denoise_core import bulk
src, ref, out = sys.argv[1:4]
plan = bulk.plan_run(src, out, reference=ref)
proc = bulk.BulkProcessor(lambda x: np.clip(x * 0.9 + 0.05, 0, 1), out)
results = proc.process([asdict(it) for it in plan.items])
proc.close()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak_mb, "errors": {r["key"]: r["error"] for r in results}}))
"""


def _peak_run(src: Path, ref: Path, out: Path) -> dict:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(src), str(ref), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_huge_one_colour_png_is_refused_without_decoding(tmp_path):
    """Issue 17.3 at full size: a 20000x20000 PNG of one colour (425 KB, 400 MB decoded,
    many GB as model input) under the default limit of 100 MP. The process's peak memory
    (getrusage, in a fresh interpreter) stays within 60 MB of the same run without it."""
    src, ref = make_huge_beside_small(tmp_path, 20000)
    assert (src / "huge.png").stat().st_size < 5_000_000
    alone = tmp_path / "small_only"
    alone.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (alone / name).write_bytes((src / name).read_bytes())
    with_huge = _peak_run(src, ref, tmp_path / "out")
    without = _peak_run(alone, ref, tmp_path / "out_small")
    assert with_huge["errors"] == {
        "huge.png": "20000x20000 = 400 MP (400 MB decoded) exceeds --max-megapixels 100",
        "a.png": "",
        "b.png": "",
        "c.png": "",
    }
    assert with_huge["peak_mb"] < without["peak_mb"] + 60, (with_huge, without)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_resume_skips_existing_outputs_and_overwrite_redoes_them(mixed, tmp_path):
    src, ref = mixed
    out = tmp_path / "out"
    first = process(src, out, ref)
    stamp = {k: (out / k).stat().st_mtime_ns for k in GOOD}
    (out / "rgb/odd.png").unlink()
    calls: list = []
    again = process(src, out, ref, calls=calls)
    assert len(calls) == 1  # only the deleted image went through the model again
    assert not again["rgb/odd.png"]["skipped"] and again["gray/g.png"]["skipped"]
    for key in GOOD:
        if key != "rgb/odd.png":
            assert (out / key).stat().st_mtime_ns == stamp[key]
        for name in ("psnr", "mse", "ssim", "input_psnr"):
            assert again[key][name] == pytest.approx(first[key][name], rel=1e-12)
    assert again["rgb/odd.png"]["psnr"] == pytest.approx(first["rgb/odd.png"]["psnr"])
    calls.clear()
    plan = bulk.plan_run(str(src), str(out), reference=str(ref))
    proc = bulk.BulkProcessor(
        lambda x: calls.append(1) or fake_denoise(x),
        str(out),
        existing=plan.existing,
        overwrite=True,
    )
    redone = {r["key"]: r for r in proc.process([asdict(it) for it in plan.items])}
    assert len(calls) == len(GOOD) + 1 and not any(r["skipped"] for r in redone.values())


def test_summary_groups_and_report_without_reference(tmp_path):
    from denoise_core import report

    src = tmp_path / "sidd"
    fx.make_sidd_small(src, fx.SIDD_SCENES[:3])
    plan = bulk.plan_run(str(src), str(tmp_path / "out"))
    proc = bulk.BulkProcessor(fake_denoise, str(tmp_path / "out"))
    records = bulk.metrics_records(proc.process([asdict(it) for it in plan.items]))
    summary = bulk.summarize(records, [], seconds=2.0)
    assert summary["count"] == 3 and set(summary["groups"]) == {"phone", "iso", "brightness"}
    assert summary["groups"]["phone"]["S6"]["count"] == 1
    gains = [r["psnr_gain"] for r in records]
    assert summary["psnr_gain_mean"] == pytest.approx(np.mean(gains))
    # No ground truth: before/after crops only, no PSNR figures.
    for r in records:
        for name in ("psnr", "mse", "ssim", "input_psnr", "psnr_gain"):
            r[name] = None
    item_by_key = {it.key: it for it in plan.items}
    samples = []
    for label, rec in bulk.pick_samples(records):
        noisy, denoised, _ = bulk.load_sample(rec, plan, str(tmp_path / "out"), item_by_key)
        samples.append((label, rec, noisy, denoised, None))
    assert [s[0] for s in samples] == ["most changed", "median change", "least changed"]
    html = report.render_html(bulk.summarize(records, [], seconds=1.0), records, [], samples)
    # The noise histograms need no reference: they and the crops are the figures.
    assert "<h2>Crops</h2>" in html and len(report_images(html)) == 2
    assert "Noise (estimated without reference)" in html
    # the crops' table: the no-reference figures where PSNR would stand
    assert "<th>noise in</th><th>noise out</th><th>change RMS</th>" in html
    assert "<th>PSNR</th>" not in html


def test_skip_below_copies_clean_inputs_unchanged_and_records_why(tmp_path):
    """``skip_below``: inputs whose estimated noise is below it are copied through byte
    for byte (EXIF orientation and all) and never reach the model; the others are
    denoised. Every image gets input and output noise estimates on the 0-255 scale."""
    from denoise_core import codecs

    src, out = tmp_path / "in", tmp_path / "out"
    write(src / "clean.png", smooth(64, 80))
    write_exif_jpeg(src / "clean_turned.jpg", smooth(48, 64, seed=2), orientation=6)
    write(src / "noisy.png", noisy_of(smooth(64, 80, seed=3), sigma=0.08))  # 20.4 / 255
    calls: list = []
    results = process(src, out, calls=calls, skip_below=3.0)
    assert calls == [(64, 80, 3)]  # only the noisy image went through the model
    for key in ("clean.png", "clean_turned.jpg"):
        r = results[key]
        assert (out / key).read_bytes() == (src / key).read_bytes()
        assert r["skipped"] and r["noise_sigma_in"] < 3.0
        assert (
            r["skipped_reason"].startswith("input noise")
            and "--skip-below 3" in r["skipped_reason"]
        )
        assert r["noise_sigma_out"] == r["noise_sigma_in"] and r["change_rms"] == 0.0
    noisy = results["noisy.png"]
    assert not noisy["skipped"] and noisy["skipped_reason"] == ""
    assert noisy["noise_sigma_in"] == pytest.approx(0.08 * 255, rel=0.1)
    # fake_denoise scales the image, and so its noise, by 0.9.
    assert noisy["noise_sigma_out"] == pytest.approx(0.9 * noisy["noise_sigma_in"], rel=0.03)
    records = bulk.metrics_records(results.values())
    table = bulk.metrics_table(records)
    assert table.column("skipped_reason").to_pylist()[2] is None  # sorted: noisy.png last
    summary = bulk.summarize(records, [], seconds=1.0, extra={"skip_below": 3.0})
    assert (summary["denoised"], summary["skipped_clean"], summary["skipped_existing"]) == (1, 2, 0)
    assert summary["noise_removed_mean"] == pytest.approx(
        noisy["noise_sigma_in"] - noisy["noise_sigma_out"]
    )
    assert "2 below --skip-below copied unchanged" in bulk.summary_line(summary)
    # Resumed: every output exists; the turned JPEG copy is read upright like its input.
    again = process(src, out, calls=calls, skip_below=3.0)
    assert len(calls) == 1 and not any(r["error"] for r in again.values())
    assert {r["skipped_reason"] for r in again.values()} == {bulk.SKIPPED_EXISTING}
    # Another output format: the input's pixels, re-encoded (upright, lossless PNG).
    plan = bulk.plan_run(str(src), str(tmp_path / "png"), fmt=".png")
    proc = bulk.BulkProcessor(fake_denoise, str(tmp_path / "png"), threads=0, skip_below=3.0)
    by_key = {r["key"]: r for r in proc.process([asdict(it) for it in plan.items])}
    assert by_key["clean_turned.jpg"]["skipped"]
    upright = codecs.decode_image((src / "clean_turned.jpg").read_bytes())
    np.testing.assert_array_equal(read(tmp_path / "png" / "clean_turned.png"), upright)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_skip_below_must_be_a_sigma_of_zero_or_more(value):
    with pytest.raises(ValueError, match="skip_below"):
        bulk.BulkProcessor(fake_denoise, "unused", skip_below=value)


# --------------------------------------------------------------------------
# Tiling inside the job equals whole-image inference (no Ray)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Argument and model errors (no Ray)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "inf"])
def test_strength_outside_zero_to_one_is_one_line_before_ray(value, tmp_path, monkeypatch, capsys):
    fx.forbid_ray_start(monkeypatch, run_job)
    assert run(tmp_path, tmp_path / "out", "--strength", value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --strength must be in [0, 1]"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "int8"], "--precision int8 runs in OpenVINO only: add --runtime openvino"),
        (["--precision", "int8", "--runtime", "auto"], "int8 runs in OpenVINO only"),
        (["--precision", "bf16", "--runtime", "onnxruntime"], "computes in fp32 only, not bf16"),
    ],
)
def test_precision_the_runtime_lacks_is_one_line_before_ray(
    extra, message, tmp_path, monkeypatch, capsys
):
    fx.forbid_ray_start(monkeypatch, run_job)
    assert run(tmp_path, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_skip_below_negative_is_one_line_before_ray(value, tmp_path, monkeypatch, capsys):
    fx.forbid_ray_start(monkeypatch, run_job)
    assert run(tmp_path, tmp_path / "out", "--skip-below", value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --skip-below must be a noise sigma"), err
    assert not (tmp_path / "out").exists()


def test_missing_packaged_model_says_pass_model(mixed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_job, "default_model", lambda: None)
    assert run(mixed[0], tmp_path / "out") == 2
    assert "pass --model" in capsys.readouterr().err
    bad = tmp_path / "m.keras"
    bad.write_bytes(b"not a zip")
    assert run(mixed[0], tmp_path / "out", "--model", bad) == 2
    assert "not a Keras .keras file" in capsys.readouterr().err
    assert run(mixed[0], mixed[0], "--model", bad) == 2
    assert "OUTPUT must differ" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# The Ray job end to end
# --------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
def test_local_run_end_to_end(mixed, tiny_model, tmp_path, capsys):
    from denoise_core import models, tiling

    src, ref = mixed
    out = tmp_path / "out"
    assert run(src, out, "--model", tiny_model, "--reference", ref, *TILE) == 0
    printed = capsys.readouterr().out
    assert re.search(
        r"run: 9 images, [\d.]+ MP in [\d.]+ s, [\d.]+ MP/s, 4 errors, "
        r"mean PSNR gain [+-][\d.]+ dB",
        printed,
    ), printed

    summary, metrics, errors = read_outputs(str(out))
    good = [*GOOD, EXIF_KEY]
    assert sorted(metrics) == sorted(good)
    assert set(errors) == set(BAD) and all(BAD[k] in errors[k] for k in BAD)
    model = models.load_model(tiny_model)

    def predict(b):
        return model(b, training=False).numpy()

    for key, (_, ref_key) in [*GOOD.items(), (EXIF_KEY, (None, "photo.png"))]:
        inp, outp, clean = upright(key, src), read(out / key), read(ref / ref_key)
        assert outp.dtype == inp.dtype and outp.shape == inp.shape, key
        if inp.shape[2] == 4:
            np.testing.assert_array_equal(outp[..., 3], inp[..., 3])
        row = metrics[key]
        want, want_in = sk_metrics(outp, clean), sk_metrics(inp, clean)
        for name in ("psnr", "mse", "ssim"):
            assert row[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), key
            assert row[f"input_{name}"] == pytest.approx(want_in[name], rel=1e-9, abs=1e-12)
        assert row["psnr_gain"] == pytest.approx(want["psnr"] - want_in["psnr"])
        assert (row["height"], row["width"]) == inp.shape[:2] and not row["skipped"]
        if key == EXIF_KEY or key.endswith(".WEBP"):
            continue
        # Tiled in the actor vs whole-image inference here: within 2 levels (5e-3 on [0, 1]
        # plus rounding); tiles are fitted to the image, padded only to the size multiple.
        top = np.iinfo(inp.dtype).max
        rgb = model_rgb(inp[..., :3] if inp.shape[2] == 4 else inp)
        whole = np.clip(tiling.denoise_whole(predict, rgb, 2), 0, 1)
        whole = whole.mean(axis=2, keepdims=True) if inp.shape[2] == 1 else whole
        diff = np.abs(outp[..., : whole.shape[2]].astype(np.float64) - whole * top)
        assert diff.max() <= 0.005 * top + 1, key

    assert summary["count"] == 9 and summary["errors"] == 4
    assert summary["psnr_mean"] == pytest.approx(np.mean([metrics[k]["psnr"] for k in good]))
    assert summary["psnr_gain_mean"] == pytest.approx(
        np.mean([metrics[k]["psnr_gain"] for k in good])
    )
    for name in (
        "mse_mean",
        "ssim_mean",
        "psnr_median",
        "input_psnr_mean",
        "megapixels",
        "mp_per_s",
        "seconds",
    ):
        assert summary[name] is not None, name
    html = (out / bulk.REPORT_NAME).read_text()
    figures = report_images(html)
    assert len(figures) == 4  # noise histograms, PSNR histogram, gain per folder, crops
    assert all(f.startswith(b"\x89PNG") for f in figures)
    for label in ("best", "median", "worst", "bad/empty.png"):
        assert label in html


@pytest.mark.usefixtures("ray_session")
def test_run_job_records_images_over_max_megapixels(tiny_model, tmp_path, capsys):
    """``--max-megapixels`` reaches the actors: the 4 MP image is in errors.parquet with
    the reason, the three small ones in metrics.parquet, and the run succeeds."""
    src, ref = make_huge_beside_small(tmp_path, 2000)
    out = tmp_path / "out"
    code = run(src, out, "--model", tiny_model, "--reference", ref, "--max-megapixels", "1")
    assert code == 0
    reason = "2000x2000 = 4 MP (4 MB decoded) exceeds --max-megapixels 1"
    assert f"error huge.png: {reason}" in capsys.readouterr().out
    summary, metrics, errors = read_outputs(str(out))
    assert errors == {"huge.png": reason}
    assert sorted(metrics) == ["a.png", "b.png", "c.png"]
    for name, row in metrics.items():
        want = sk_metrics(read(out / name), read(ref / name))
        assert row["psnr"] == pytest.approx(want["psnr"], rel=1e-9)
    assert summary["count"] == 3 and summary["errors"] == 1
    assert not (out / "huge.png").exists()


@pytest.mark.parametrize("value", ["0", "-5", "nan", "lots"])
def test_max_megapixels_must_be_positive(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run(tmp_path, tmp_path / "out", "--max-megapixels", value)
    assert info.value.code == 2
    assert "--max-megapixels: must be a positive number" in capsys.readouterr().err


@pytest.mark.usefixtures("ray_session")
def test_s3_run_with_suffix_pairs(tiny_model, s3_bucket, tmp_path):
    local = tmp_path / "pairs"
    for i, stem in enumerate(("room_a", "sub/room_b", "sub/deep/room_c")):
        clean = smooth(37 + 9 * i, 45, depth=16 if i == 2 else 8, seed=i)
        write(local / f"{stem}_clean.png", clean)
        write(local / f"{stem}_noisy.png", noisy_of(clean, seed=i))
    fx.corrupt_bytes(local / "zz_noisy.png")
    src, out = f"{s3_bucket}/in", f"{s3_bucket}/results/run1"
    fs = s3fs.S3FileSystem()
    fs.put(str(local) + "/", src.removeprefix("s3://") + "/", recursive=True)

    assert run(src, out, "--model", tiny_model, *TILE) == 0
    summary, metrics, errors = read_outputs(out)
    keys = ["room_a_noisy.png", "sub/deep/room_c_noisy.png", "sub/room_b_noisy.png"]
    assert sorted(metrics) == keys and list(errors) == ["zz_noisy.png"]
    for key in keys:
        outp = read(storage.read_bytes(f"{out}/{key}"))
        clean = read(local / key.replace("_noisy", "_clean"))
        assert outp.shape == clean.shape and outp.dtype == clean.dtype
        assert metrics[key]["psnr"] == pytest.approx(sk_metrics(outp, clean)["psnr"], rel=1e-9)
        assert metrics[key]["reference"].endswith(key.replace("_noisy", "_clean"))
    assert summary["reference_source"] == "pairs layout" and summary["with_reference"] == 3
    listed = {p.split("/run1/", 1)[1] for p in fs.find(out.removeprefix("s3://"))}
    assert listed == {*keys, *bulk.RUN_FILES}  # nothing else, no temporary objects
    assert len(report_images(storage.read_bytes(f"{out}/report.html").decode())) == 4


@pytest.mark.usefixtures("ray_session")
def test_interrupt_and_resume(tiny_model, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    keys = [f"img{i}.png" for i in range(5)]
    for i, key in enumerate(keys):
        write(src / key, noisy_of(smooth(30 + i, 41, seed=i), seed=i))
    (src / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)

    # "Interrupted": only the first two images got done, a third left a partial write.
    assert run(src, out, "--model", tiny_model, *TILE, "--limit", 2) == 0
    assert sorted(p.name for p in out.glob("img*")) == keys[:2]
    (out / f"img2.png.tmp-{'0' * 32}").write_bytes(b"partial")
    stamps = {k: (out / k).stat().st_mtime_ns for k in keys[:2]}
    time.sleep(0.01)

    assert run(src, out, "--model", tiny_model, *TILE, "--strict") == 1  # the corrupt file
    assert "1 images failed (--strict)" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == sorted([*keys, *bulk.RUN_FILES])  # one output each
    assert {k: (out / k).stat().st_mtime_ns for k in keys[:2]} == stamps  # not redone
    summary, metrics, errors = read_outputs(str(out))
    assert sorted(metrics) == keys and list(errors) == ["zz_corrupt.png"]
    assert [metrics[k]["skipped"] for k in keys] == [True, True, False, False, False]
    assert summary["count"] == 5 and summary["skipped"] == 2 and summary["denoised"] == 3
    assert all(metrics[k]["psnr"] is None for k in keys)  # no reference: no metrics
    assert all(metrics[k]["change_rms"] > 0 for k in keys)


@pytest.mark.usefixtures("ray_session")
def test_ingested_dataset_as_input(tiny_model, tmp_path):
    src, data, out = tmp_path / "sidd", tmp_path / "data", tmp_path / "out"
    expected = fx.make_sidd_small(src, fx.SIDD_SCENES[:4])
    assert ingest_job.main([str(src), str(data), "--val-fraction", "0.5"]) == 0
    assert run(data, out, "--model", tiny_model, *TILE) == 0
    summary, metrics, errors = read_outputs(str(out))
    assert sorted(metrics) == sorted(expected) and not errors
    for key, (noisy, clean) in expected.items():
        row = metrics[key]
        assert row["output_key"] == key + ".png" and (out / (key + ".png")).is_file()
        outp = read(out / (key + ".png"))
        assert row["psnr"] == pytest.approx(sk_metrics(outp, clean)["psnr"], rel=1e-9)
        assert row["input_psnr"] == pytest.approx(sk_metrics(noisy, clean)["psnr"], rel=1e-9)
        scene = key.split("/")[-2]
        assert row["phone"] == scene.split("_")[2] and row["iso"] == int(scene.split("_")[3])
    assert set(summary["groups"]) == {"phone", "iso", "brightness"}
    html = (out / bulk.REPORT_NAME).read_text()
    assert len(report_images(html)) == 4 and "By phone" in html


def test_report_figures_are_pngs_of_the_right_kind():
    """The comparison figure has one row per sample and three panels with references."""
    from denoise_core import report

    rec = {"key": "k", "psnr": 30.0, "input_psnr": 25.0, "ssim": 0.9, "height": 8, "width": 8}
    img = smooth(8, 8)
    png = report.comparison_figure([("best", rec, img, img, img), ("worst", rec, img, img, None)])
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        w, h = im.size
    assert w > h  # 3 panels wide, 2 rows high


@pytest.mark.usefixtures("ray_session")
def test_run_strength_and_metadata_reach_the_actors(tiny_model, tmp_path):
    """``--strength 0`` through the actors gives the input back exactly, summary.json
    records it, and a phone-style JPEG keeps its capture date, GPS and ICC profile."""
    from PIL import Image, ImageCms

    src, out = tmp_path / "in", tmp_path / "out"
    plain = noisy_of(smooth(30, 44))
    write(src / "a.png", plain)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2021:05:06 07:08:09"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.5)})
    Image.fromarray(noisy_of(smooth(32, 48, seed=3))).save(
        src / "photo.jpg", "JPEG", quality=95, exif=exif, icc_profile=icc
    )
    assert run(src, out, "--model", tiny_model, "--strength", "0", "--layout", "none", *TILE) == 0
    summary, metrics, errors = read_outputs(str(out))
    assert summary["strength"] == 0.0 and not errors and sorted(metrics) == ["a.png", "photo.jpg"]
    np.testing.assert_array_equal(read(out / "a.png"), plain)
    with Image.open(out / "photo.jpg") as im:
        got = im.getexif()
        assert im.size == (32, 48) and got.get(0x0112) == 1  # pixels upright, orientation 1
        assert got.get_ifd(0x8769).get(0x9003) == "2021:05:06 07:08:09"
        assert dict(got.get_ifd(0x8825)) == {1: "N", 2: (52.0, 31.0, 12.5)}
        assert im.info.get("icc_profile") == icc


@pytest.mark.usefixtures("ray_session")
def test_run_skip_below_through_the_actors(tiny_model, tmp_path):
    """``--skip-below`` reaches the actors: the clean image is copied byte for byte, the
    noisy one denoised; metrics, summary and the no-reference report say so."""
    src, out = tmp_path / "in", tmp_path / "out"
    write(src / "clean.png", smooth(48, 64))
    write(src / "noisy.png", noisy_of(smooth(48, 64, seed=4)))
    assert run(src, out, "--model", tiny_model, "--skip-below", "3", "--layout", "none", *TILE) == 0
    summary, metrics, errors = read_outputs(str(out))
    assert not errors and summary["skip_below"] == 3.0
    assert (summary["denoised"], summary["skipped_clean"]) == (1, 1)
    assert (out / "clean.png").read_bytes() == (src / "clean.png").read_bytes()
    assert metrics["clean.png"]["skipped_reason"].startswith("input noise")
    assert metrics["noisy.png"]["skipped_reason"] is None
    assert metrics["noisy.png"]["noise_sigma_in"] > 10 > metrics["clean.png"]["noise_sigma_in"]
    assert summary["noise_sigma_in_mean"] is not None
    html = (out / bulk.REPORT_NAME).read_text()
    assert "Noise (estimated without reference)" in html and "noise below --skip-below" in html


@pytest.mark.usefixtures("ray_session")
def test_run_job_denoises_a_ten_bit_heic_into_a_ten_bit_heic(tiny_model, tmp_path):
    """``--format keep`` (the default) through Ray: an iPhone-like 10-bit HEIC, turned by
    its container, comes out a 10-bit HEIC, upright once, its EXIF date kept."""
    import pillow_heif
    from PIL import Image

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stored = noisy_of(smooth(40, 56, depth=16, seed=3), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2021:05:06 07:08:09"
    with open(src / "IMG_0001.HEIC", "wb") as fh:
        pillow_heif.encode(
            "RGB;16", (56, 40), stored.tobytes(), fh, quality=95, exif=exif.tobytes()
        )
    assert run(src, out, "--model", tiny_model, *TILE) == 0
    summary, metrics, errors = read_outputs(str(out))
    assert not errors and metrics["IMG_0001.HEIC"]["bit_depth"] == 16
    data = (out / "IMG_0001.HEIC").read_bytes()
    heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
    assert heif.info["bit_depth"] == 10
    decoded = codecs.decode_image(data)
    assert decoded.shape == (56, 40, 3) and decoded.dtype == np.uint16  # upright, once
    loaded = Image.Exif()
    loaded.load(heif.info["exif"])
    assert loaded.get_ifd(0x8769)[0x9003] == "2021:05:06 07:08:09"
    assert summary["format"] is None and summary["heic_quality"] == codecs.DEFAULT_HEIC_QUALITY
