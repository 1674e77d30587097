"""Residual statistics measure what they document, and ``denoise noise-stats`` reports them."""

import json
import math

import cv2
import numpy as np
import pytest

from denoise_core.noise_stats import LEVEL_EDGES, format_table, measure
from jobs import noise_stats as noise_stats_job

N_COLUMNS = 2 + (len(LEVEL_EDGES) - 1) + 2 + 3  # name, std, levels, 2 lags, 3 channel pairs


def _white(shape, sigma_255, seed):
    return np.random.default_rng(seed).standard_normal(shape) * (sigma_255 / 255)


def test_white_gaussian_noise():
    clean = np.full((96, 96, 3), 0.5)
    pairs = [(clean + _white(clean.shape, 10, seed), clean) for seed in range(2)]
    s = measure("white", pairs)
    assert s.name == "white" and s.pixels == 2 * 96 * 96 * 3
    assert s.std == pytest.approx(10, rel=0.03)
    assert set(s.autocorr) == {1, 2} and all(abs(v) < 0.05 for v in s.autocorr.values())
    assert set(s.cross_corr) == {"RG", "RB", "GB"}
    assert all(abs(v) < 0.05 for v in s.cross_corr.values())
    # Clean 0.5 lies in the 0.5-0.7 bin only; the other bins have no pixels.
    bin_of_half = int(np.digitize(0.5, LEVEL_EDGES)) - 1
    assert s.std_by_level[bin_of_half] == pytest.approx(10, rel=0.03)
    others = [v for i, v in enumerate(s.std_by_level) if i != bin_of_half]
    assert len(others) == len(LEVEL_EDGES) - 2 and all(math.isnan(v) for v in others)


def test_noise_shared_by_channels_is_fully_cross_correlated():
    clean = np.full((64, 64, 3), 0.4)
    shared = np.repeat(_white((64, 64, 1), 10, 0), 3, axis=-1)
    s = measure("shared", [(clean + shared, clean)])
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in s.cross_corr.values())
    opposite = shared * np.array([1.0, -1.0, 1.0])
    s = measure("opposite", [(clean + opposite, clean)])
    assert s.cross_corr["RG"] == pytest.approx(-1.0) and s.cross_corr["GB"] == pytest.approx(-1.0)
    assert s.cross_corr["RB"] == pytest.approx(1.0)


def test_smoothed_noise_has_the_filters_correlation():
    # White noise through the separable [1, 2, 1] / 4 filter along x and y (no borders):
    # correlation at 1 px is (2 + 2) / (1 + 4 + 1) = 2/3, at 2 px 1/6.
    w = _white((260, 260, 3), 20, 1)
    rows = (w[:-2] + 2 * w[1:-1] + w[2:]) / 4
    smooth = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    clean = np.full(smooth.shape, 0.5)
    s = measure("smooth", [(clean + smooth, clean)])
    assert s.autocorr[1] == pytest.approx(2 / 3, abs=0.02)
    assert s.autocorr[2] == pytest.approx(1 / 6, abs=0.02)
    assert all(abs(v) < 0.05 for v in s.cross_corr.values())
    # A 2-tap average along x only: 1/2 horizontally, 0 vertically, so 1/4 on average.
    w = _white((200, 201, 3), 20, 2)
    pair = (w[:, 1:] + w[:, :-1]) / 2
    s = measure("pair", [(pair + 0.5, np.full(pair.shape, 0.5))])
    assert s.autocorr[1] == pytest.approx(0.25, abs=0.02) and abs(s.autocorr[2]) < 0.03


def test_std_by_level_follows_the_clean_value():
    # One block per level bin, each with its own noise std; grey (HxW) images.
    centres = [(lo + min(hi, 1.0)) / 2 for lo, hi in zip(LEVEL_EDGES, LEVEL_EDGES[1:])]
    sigmas = [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert len(sigmas) == len(centres)
    clean = np.concatenate([np.full((64, 64), c) for c in centres], axis=1)
    noise = np.concatenate([_white((64, 64), s, i) for i, s in enumerate(sigmas)], axis=1)
    s = measure("levels", [(clean + noise, clean)])
    np.testing.assert_allclose(s.std_by_level, sigmas, rtol=0.05)
    assert s.std == pytest.approx(math.sqrt(np.mean(np.square(sigmas))), rel=0.03)
    assert s.cross_corr == {}  # one channel: no channel pairs
    # A bin with fewer than 100 pixels reports NaN instead of a noisy estimate.
    few = clean.copy()
    few[:, :64] = 0.5
    few[:1, :64] = centres[0]  # 64 pixels in the first bin
    assert math.isnan(measure("few", [(few + noise, few)]).std_by_level[0])


def test_pooling_and_offsets():
    clean = np.full((64, 64, 3), 0.5)
    quiet, loud = _white(clean.shape, 5, 0), _white(clean.shape, 15, 1)
    # Pooled over pixels, not averaged per image: sqrt((5^2 + 15^2) / 2).
    s = measure("pooled", [(clean + quiet, clean), (clean + loud, clean)])
    assert s.std == pytest.approx(math.sqrt((25 + 225) / 2), rel=0.03)
    # A global offset per image and channel (exposure mismatch) is not counted as noise.
    base = measure("base", [(clean + quiet, clean)])
    shifted = measure("shifted", [(clean + quiet + np.array([0.05, -0.02, 0.1]), clean)])
    assert shifted.std == pytest.approx(base.std, rel=1e-9)
    assert shifted.cross_corr == pytest.approx(base.cross_corr, abs=1e-9)


def test_bias_is_the_mean_residual_per_level():
    rng = np.random.default_rng(3)
    clean = np.concatenate([np.full((40, 40, 3), 0.05), np.full((40, 40, 3), 0.6)])
    noise = rng.normal(0, 4 / 255, clean.shape)
    noise[:40] += 3 / 255  # the shadows come out brighter, as clipped raw noise makes them
    stats = measure("biased", [(clean + noise, clean)])
    assert stats.mean_by_level[0] == pytest.approx(3.0, abs=0.3)
    assert stats.mean_by_level[4] == pytest.approx(0.0, abs=0.3)
    assert np.isnan(stats.mean_by_level[1])  # no pixels at that level
    # The other statistics still remove each image's mean: the std is the noise's.
    assert stats.std == pytest.approx(np.hypot(4, 1.5), rel=0.05)
    from denoise_core.noise_stats import format_bias_table

    row = format_bias_table([stats]).splitlines()[2]
    assert row.startswith("| biased | +3.") and "| - |" in row


def test_format_table_and_row():
    clean = np.full((32, 32, 3), 0.3)
    rgb = measure("rgb", [(clean + _white(clean.shape, 10, 0), clean)])
    grey = measure("grey", [(clean[..., 0] + _white((32, 32), 10, 1), clean[..., 0])])
    empty = measure("empty", [])  # nothing measured: every cell still there
    table = format_table([rgb, grey, empty])
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert all(line.count("|") == N_COLUMNS + 1 for line in lines), table
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["noise", "std", "std@0-0.1"] and header[-5:] == [
        "corr lag1",
        "corr lag2",
        "RG",
        "RB",
        "GB",
    ]
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in lines[2:]
    }
    assert cells["rgb"][1] == f"{rgb.std:.2f}" and "-" not in cells["rgb"][-3:]
    assert cells["grey"][-3:] == ["-", "-", "-"]  # no channel pairs in a grey image
    assert cells["empty"][1:] == ["0.00"] + ["-"] * 6 + ["0.000", "0.000", "-", "-", "-"]
    assert cells["rgb"][2:5] == ["-", "-", f"{rgb.std_by_level[2]:.2f}"]  # 0.3: third bin only
    row = rgb.row()
    assert row["name"] == "rgb" and row["pixels"] == 32 * 32 * 3
    assert set(row["autocorr"]) == {"1", "2"} and set(row["cross_corr"]) == {"RG", "RB", "GB"}
    assert row["std"] == round(rgb.std, 3)


def _write_pairs(folder, sigma_255=8, count=2):
    rng = np.random.default_rng(0)
    (folder / "noisy").mkdir(parents=True)
    (folder / "clean").mkdir()
    ramp = np.linspace(20, 230, 48)  # every level bin gets pixels
    clean = np.repeat(np.tile(ramp[None, :, None], (40, 1, 1)), 3, axis=-1)
    for i in range(count):
        noisy = np.clip(np.rint(clean + rng.normal(0, sigma_255, clean.shape)), 0, 255)
        assert cv2.imwrite(str(folder / "noisy" / f"im{i}.png"), noisy.astype(np.uint8))
        assert cv2.imwrite(str(folder / "clean" / f"im{i}.png"), np.rint(clean).astype(np.uint8))


def test_noise_stats_job(tmp_path, capsys):
    _write_pairs(tmp_path / "pairs")
    out = tmp_path / "ns"
    argv = ["--pairs", str(tmp_path / "pairs"), "--synthetic", "gaussian:10;isp"]
    assert noise_stats_job.main([*argv, "--match", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    table, _, bias = (tmp_path / "ns.md").read_text().partition("\n\nMean of noisy - clean")
    assert table.strip() in printed and "measured 2 pairs" in printed
    bias_lines = [line for line in bias.splitlines() if line.startswith("|")]
    assert len(bias_lines) == 2 + 3 and bias_lines[2].startswith("| real: pairs |")
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3 and all(line.count("|") == N_COLUMNS + 1 for line in lines)
    payload = json.loads((tmp_path / "ns.json").read_text())
    assert payload["levels"] == list(LEVEL_EDGES)
    rows = {r["name"]: r for r in payload["rows"]}
    assert list(rows) == ["real: pairs", "gaussian:10 on pairs", "isp on pairs"]
    assert all(r["pixels"] == 2 * 40 * 48 * 3 for r in rows.values())
    assert rows["real: pairs"]["std"] == pytest.approx(8, rel=0.1)
    assert abs(rows["real: pairs"]["autocorr"]["1"]) < 0.05
    assert rows["gaussian:10 on pairs"]["std"] == pytest.approx(10, rel=0.05)
    assert rows["isp on pairs"]["autocorr"]["1"] > 0.2  # the pipeline's correlated noise
    assert rows["isp on pairs"]["std"] == pytest.approx(8, rel=0.5)  # matched to the real level


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--synthetic", "gaussian:10;isp:bogus"], "isp:jpeg=LO-HI"),
        (["--synthetic", "mix:foo"], "mix"),
        (["--match", "0"], "--match"),
    ],
)
def test_noise_stats_job_rejects_bad_arguments(tmp_path, capsys, extra, message):
    _write_pairs(tmp_path / "pairs", count=1)
    argv = ["--pairs", str(tmp_path / "pairs"), "--output", str(tmp_path / "ns"), *extra]
    assert noise_stats_job.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert "measured" not in captured.out  # rejected before any image is read
    assert not (tmp_path / "ns.md").exists() and not (tmp_path / "ns.json").exists()
