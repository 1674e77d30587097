"""`denoise demo` end to end: photos -> pairs -> Parquet -> 2-worker training -> bulk run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from jobs import demo


def test_demo_runs_the_whole_pipeline_and_writes_a_report(ray_session, tmp_path):
    workdir = tmp_path / "demo"
    code = demo.main(["--workdir", str(workdir), "--steps", "20", "--minutes", "2"])
    assert code == 0
    report = workdir / "denoised" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000  # figures are embedded
    summary = json.loads((workdir / "denoised" / "summary.json").read_text())
    assert summary["count"] == len(demo.HOLDOUT_PHOTOS)
    assert summary["errors"] == 0
    metrics = pq.read_table(workdir / "denoised" / "metrics.parquet").to_pylist()
    assert sorted(r["key"] for r in metrics) == sorted(f"{n}.png" for n in demo.HOLDOUT_PHOTOS)
    card = json.loads((workdir / "run" / "model" / "model_card.json").read_text())
    assert card["training"]["workers"] == 2
    # A re-run into the same folder refuses instead of mixing two demos.
    assert demo.main(["--workdir", str(workdir)]) != 0


class _RayStarted(Exception):
    pass


def _refuse_ray(*args, **kwargs):
    raise _RayStarted


def test_overwrite_refuses_a_folder_the_demo_did_not_make(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "init_ray", _refuse_ray)
    mine = tmp_path / "my-photos"
    (mine / "2024").mkdir(parents=True)
    (mine / "2024" / "holiday.jpg").write_bytes(b"precious")
    assert demo.main(["--workdir", str(mine), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not made by denoise demo" in err[0], err
    assert (mine / "2024" / "holiday.jpg").read_bytes() == b"precious"
    assert not (mine / demo.MARKER).exists()


def test_overwrite_replaces_a_folder_an_earlier_demo_made(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "init_ray", _refuse_ray)
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / demo.MARKER).write_bytes(demo.MARKER_TEXT)
    (workdir / "run").mkdir()
    (workdir / "run" / "old.txt").write_text("from the last demo")
    with pytest.raises(_RayStarted):  # deleted, marked again, then on to Ray
        demo.main(["--workdir", str(workdir), "--overwrite"])
    assert sorted(p.name for p in workdir.iterdir()) == [demo.MARKER]
