"""`denoise demo` end to end: photos -> pairs -> Parquet -> 2-worker training -> bulk run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

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
