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
