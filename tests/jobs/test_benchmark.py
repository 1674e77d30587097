"""``denoise benchmark`` on tiny real photographs: the published Gaussian protocol, every
method in one run, the Markdown/JSON outputs and the worst-image gain table."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import skimage.data

from jobs import benchmark as benchmark_job


@pytest.fixture
def photos(tmp_path):
    """Two 64x64 crops of scikit-image photographs, as PNG files."""
    folder = tmp_path / "clean"
    folder.mkdir()
    for i, img in enumerate((skimage.data.astronaut(), skimage.data.coffee())):
        crop = np.ascontiguousarray(img[100:164, 100:164, ::-1])  # RGB -> BGR for OpenCV
        assert cv2.imwrite(str(folder / f"img{i}.png"), crop)
    return folder


def test_benchmark_gaussian_protocol_and_outputs(photos, tmp_path, capsys):
    out = tmp_path / "result"
    argv = ["--clean", str(photos), "--noise", "gaussian:25", "--methods", "noisy,nlm,cbm3d,models",
            "--precision", "fp32", "--output", str(out)]  # fmt: skip
    assert benchmark_job.main(argv) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "result.json").read_text())["results"]}
    assert set(rows) == {"noisy", "nlm", "cbm3d", "default"}
    # Unclipped float Gaussian noise: PSNR of the noisy input is 20*log10(255/25) on average.
    assert rows["noisy"]["psnr"] == pytest.approx(20 * math.log10(255 / 25), abs=0.3)
    for method in ("nlm", "cbm3d", "default"):
        assert rows[method]["images"] == 2
        assert rows[method]["psnr"] > rows["noisy"]["psnr"] + 3, method
        assert rows[method]["mp_per_s"] > 0
        assert len(rows[method]["psnr_per_image"]) == 2
    table = (tmp_path / "result.md").read_text()
    assert "| clean gaussian:25 |" in table
    assert "Worst per-image PSNR gain over the noisy input" in table
    worst = min(np.subtract(rows["cbm3d"]["psnr_per_image"], rows["noisy"]["psnr_per_image"]))
    assert f"{worst:+.2f}" in table


def test_benchmark_needs_a_set(capsys):
    assert benchmark_job.main(["--methods", "noisy"]) == 2
    assert "give at least one --clean or --pairs set" in capsys.readouterr().out


@pytest.fixture
def real_pairs(tmp_path):
    """Two noisy/clean pairs with spatially correlated noise (blurred), as a paired folder."""
    root = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for sub in ("noisy", "clean"):
        (root / sub).mkdir(parents=True)
    for i, img in enumerate((skimage.data.astronaut(), skimage.data.coffee())):
        clean = img[100:164, 100:180].astype(np.float32)
        noise = cv2.GaussianBlur(rng.normal(0, 40, clean.shape).astype(np.float32), (0, 0), 0.8)
        noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(root / "noisy" / f"p{i}.png"), noisy[..., ::-1])
        assert cv2.imwrite(str(root / "clean" / f"p{i}.png"), img[100:164, 100:180, ::-1])
    return root


def test_best_strength_nlm_is_the_best_of_its_grid(real_pairs):
    from denoise_core import benchmark

    bench_set = benchmark.paired_set(str(real_pairs))
    images = [(n, c) for _, n, c, _ in bench_set.images]
    oracle = benchmark.BestStrengthNLM(strengths=(3, 10, 30))
    h, outputs = oracle.best(images)

    def mean_psnr(outs):
        return np.mean([benchmark.metrics.psnr(o, c) for o, (_, c) in zip(outs, images)])

    chosen = mean_psnr(outputs)
    for other in (3, 10, 30):
        assert chosen >= mean_psnr([benchmark.nlm(n, other) for n, _ in images]) - 1e-9
    assert h in (3, 10, 30)


def test_benchmark_real_pairs_table_and_report(real_pairs, tmp_path, capsys):
    out = tmp_path / "real"
    argv = ["--pairs", str(real_pairs), "--methods", "noisy,nlm,nlm-best", "--output", str(out),
            "--clean", str(real_pairs / "clean"), "--noise", "gaussian:15"]  # fmt: skip
    assert benchmark_job.main(argv) == 0
    results = json.loads((tmp_path / "real.json").read_text())["results"]
    by = {(r["set"], r["method"]): r for r in results}
    # The oracle runs on the real-noise set only, and says which strength it chose.
    assert ("pairs", "nlm-best") in by
    assert not any(m == "nlm-best" and s != "pairs" for s, m in by)
    assert by[("pairs", "nlm-best")]["note"].startswith("h=")
    assert by[("pairs", "nlm-best")]["psnr"] >= by[("pairs", "nlm")]["psnr"] - 0.05
    assert "Oracle choices: nlm-best on pairs: h=" in (tmp_path / "real.md").read_text()
    page = (tmp_path / "real.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # one crops figure: the real set's
    assert "pairs: centre crops" in page


def test_benchmark_refuses_unknown_methods(photos, capsys):
    assert benchmark_job.main(["--clean", str(photos), "--methods", "noisy,bm4d"]) == 2
    assert "unknown --methods bm4d" in capsys.readouterr().err
