"""The split path (decode → denoise → finish stages), settings and the core's run sequence.

The stages are plain callables, so most of this runs without Ray: the split chain must
give exactly the fused processor's outputs and rows on the mixed set of test_run.py
(every depth, channel layout and bad input), resumed and ``--skip-below`` images
included, with the same known affine "denoiser". Then the same through Ray Data with
``denoise run --pipeline split`` against ``--pipeline fused``, once with the null model
and once with a small Keras U-Net.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from test_run import BAD, EXIF_KEY, GOOD, fake_denoise, make_mixed, noisy_of, smooth, write

from denoise_core import bulk
from denoise_core.bulk import denoisers, runner, split
from denoise_core.bulk.rows import WORK_FIELDS, batch_to_rows, plain
from jobs import run as run_job


def settings_for(src: Path, out: Path, ref: Path | None = None, **kw) -> bulk.RunSettings:
    p = argparse.ArgumentParser()
    run_job.add_arguments(p)
    argv = [str(src), str(out), "--model", "identity"]
    if ref:
        argv += ["--reference", str(ref)]
    for name, value in kw.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return bulk.build_settings(p.parse_args(argv))


def columns(rows: list[dict], fields) -> dict[str, list]:
    return {k: [r.get(k, "") for r in rows] for k in fields}


def split_chain(s: bulk.RunSettings, rows: list[dict], existing, fn=fake_denoise) -> list[dict]:
    """The three split stages called as Ray Data would, one image per call."""
    decode, finish = split.DecodeStage(s, existing), split.FinishStage(s, existing)
    model = split.DenoiseStage(s, denoise_fn=fn)
    results = []
    for row in rows:
        batch = decode(columns([row], WORK_FIELDS))
        results += batch_to_rows(finish(model(batch)))
    return results


def fused(s: bulk.RunSettings, rows: list[dict], existing, fn=fake_denoise) -> list[dict]:
    proc = bulk.BulkProcessor(
        fn,
        s.output,
        existing=existing,
        skip_below=s.skip_below,
        strength=s.strength,
        metrics=s.metrics,
    )
    try:
        return [{k: plain(v) for k, v in r.items()} for r in proc.process(rows)]
    finally:
        proc.close()


def comparable(rows: list[dict]) -> dict[str, dict]:
    return {r["key"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def outputs_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    return make_mixed(tmp_path_factory.mktemp("mixed"))


def test_split_stages_give_the_fused_outputs_and_rows(mixed, tmp_path):
    src, ref = mixed
    got = {}
    for name, chain in (("fused", fused), ("split", split_chain)):
        s = settings_for(src, tmp_path / name, ref, metrics="fast")
        plan = bulk.plan_run(s.input, s.output, reference=s.reference)
        got[name] = comparable(chain(s, [asdict(it) for it in plan.items], []))
    assert got["split"] == got["fused"]
    assert {k for k, r in got["split"].items() if r["error"]} == set(BAD)
    assert all(not got["split"][k]["error"] for k in [*GOOD, EXIF_KEY])
    assert outputs_of(tmp_path / "split") == outputs_of(tmp_path / "fused")
    assert len(outputs_of(tmp_path / "split")) == len(GOOD) + 1


def test_split_resume_and_skip_below_match_fused(tmp_path):
    src = tmp_path / "in"
    write(src / "noisy.png", noisy_of(smooth(40, 50, seed=1), sigma=0.1))
    write(src / "clean.png", smooth(40, 50, seed=2))
    write(src / "done.png", noisy_of(smooth(30, 30, seed=3)))
    got = {}
    for name, chain in (("fused", fused), ("split", split_chain)):
        out = tmp_path / name
        write(out / "done.png", smooth(30, 30, seed=3))  # an earlier run's output
        s = settings_for(src, out, skip_below=3)
        plan = bulk.plan_run(s.input, s.output)
        existing = sorted(plan.existing)
        got[name] = comparable(chain(s, [asdict(it) for it in plan.items], existing))
    assert got["split"] == got["fused"]
    reasons = {k: r["skipped_reason"] for k, r in got["split"].items()}
    assert reasons["done.png"] == bulk.SKIPPED_EXISTING
    assert reasons["clean.png"].startswith(bulk.CLEAN_REASON_PREFIX)
    assert reasons["noisy.png"] == ""
    assert (tmp_path / "split" / "clean.png").read_bytes() == (src / "clean.png").read_bytes()
    assert outputs_of(tmp_path / "split") == outputs_of(tmp_path / "fused")


def test_settings_are_built_once_checked_and_frozen(tmp_path):
    s = settings_for("in", tmp_path / "out", format="PNG")
    assert s.input == os.path.abspath("in") and s.format == ".png"
    assert s.model == "identity"  # a null model is a name, not a path
    assert settings_for("in", tmp_path / "out", model="identity:400").model == "identity:400"
    with pytest.raises(bulk.RunRefused, match="identity:R needs R > 0"):
        settings_for("in", tmp_path / "out", model="identity:0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tile = 3  # type: ignore[misc]
    for bad, message in [
        ({"data_cpus": 0}, "--data-cpus must be positive"),
        ({"tile_batch": 0}, "--tile-batch must be positive"),
        ({"overlap": 2000}, "--overlap must be in [0, --tile)"),
    ]:
        with pytest.raises(bulk.RunRefused, match=re.escape(message)):
            settings_for("in", tmp_path / "out", **bad)
    with pytest.raises(bulk.RunRefused, match="must differ from INPUT"):
        settings_for(tmp_path, tmp_path)
    assert bulk.choose_pipeline(s)[0] == "fused"
    assert bulk.choose_pipeline(dataclasses.replace(s, gpus=0.5))[0] == "split"
    assert bulk.choose_pipeline(dataclasses.replace(s, pipeline="split")) == (
        "split",
        "--pipeline split",
    )


def local_execute(prepared: runner.Prepared) -> runner.Execution:
    """The split stages in this process, without Ray: what the core needs of an executor."""
    s = prepared.settings
    rows = [asdict(it) for it in prepared.plan.items]
    return runner.Execution(
        iter(split_chain(s, rows, prepared.existing, denoisers.identity)), {"pipeline": "local"}
    )


def test_the_core_runs_a_whole_run_without_ray(mixed, tmp_path, capsys):
    src, ref = mixed
    s = settings_for(src, tmp_path / "out", ref)
    assert runner.run(s, local_execute) == 0
    assert "run: 13 images" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / bulk.SUMMARY_NAME).read_text())
    assert summary["count"] == len(GOOD) + 1 and summary["errors"] == len(BAD)
    assert summary["pipeline"] == "local" and summary["model"] == "identity"
    metrics = pq.read_table(tmp_path / "out" / bulk.METRICS_NAME).to_pylist()
    changed = {r["key"]: r["change_rms"] for r in metrics if r["change_rms"] > 0}
    assert list(changed) == [EXIF_KEY], changed  # null model: only JPEG's re-encoding shows
    assert (tmp_path / "out" / bulk.REPORT_NAME).exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(bulk.RunRefused, match="no images found") as info:
        runner.run(settings_for(tmp_path / "empty", tmp_path / "o2"), local_execute)
    assert info.value.code == 1
    strict = dataclasses.replace(s, output=str(tmp_path / "o3"), strict=True)
    with pytest.raises(bulk.RunRefused, match="images failed"):
        runner.run(strict, local_execute)


def test_fixed_shape_gives_the_denoiser_s_result_with_one_call_shape(small_unet):
    """The GPU path's fixed shapes (``Denoiser(fixed_shape=True)``, what
    ``load_denoiser`` builds on GPU actors), run on the CPU: every model call has exactly
    the batch size and one tile shape, and the result is the plain tiled one."""
    from denoise_core.inference import Denoiser

    options = {"tile": 32, "overlap": 8, "batch_size": 4, "fit_tiles": False}
    plain = Denoiser.from_path(small_unet, **options)
    den = Denoiser.from_path(small_unet, **options, fixed_shape=True)
    model_call = den._run
    shapes = []
    den._run = lambda b: (shapes.append(b.shape), model_call(b))[1]
    rng = np.random.default_rng(1)
    for shape in ((50, 70, 3), (20, 24, 3)):  # 3x2 tiles (a short last batch), and one
        image = rng.random(shape, np.float32)
        np.testing.assert_allclose(den(image), plain(image), atol=1e-5)
    assert set(shapes) == {(4, 32, 32, 3)}
    assert Denoiser.from_path(small_unet, tile=32, fixed_shape=True).fit_tiles is False


def test_stand_in_accelerator_returns_its_input_after_sleeping():
    import time

    fn = denoisers.null_model("identity:2")  # 2 MP/s
    image = np.zeros((1000, 500, 3), np.float32)  # 0.5 MP: 0.25 s
    start = time.perf_counter()
    assert fn(image) is image
    assert 0.24 <= time.perf_counter() - start < 1.0
    with pytest.raises(ValueError):
        denoisers.null_model("identity:fast")


def test_runtime_and_ensemble_reach_the_denoiser(small_unet, tmp_path):
    s = settings_for("in", tmp_path / "out", model=small_unet, ensemble=2)
    assert (s.runtime, s.ensemble) == ("tensorflow", 2)  # tensorflow is the default
    two, one = (denoisers.load_denoiser(dataclasses.replace(s, ensemble=k)) for k in (2, 1))
    assert (two.runtime, two.ensemble, one.ensemble) == ("tensorflow", 2, 1)
    image = np.random.default_rng(2).random((40, 56, 3), np.float32)
    assert not np.allclose(two(image), one(image), atol=1e-4)  # an untrained U-Net is
    # not mirror-symmetric: averaging it with its mirrored prediction changes the result
    with pytest.raises(SystemExit):  # argparse: only 1, 2, 4, 8
        settings_for("in", tmp_path / "out", ensemble=3)


# --------------------------------------------------------------------------
# Through Ray Data
# --------------------------------------------------------------------------


def run_cli(*args) -> int:
    return run_job.main([str(a) for a in args])


def table(folder: Path, name: str) -> dict[str, dict]:
    rows = pq.read_table(folder / name).to_pylist()
    return {r["key"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory) -> str:
    from denoise_core import models

    path = tmp_path_factory.mktemp("model") / "unet.keras"
    models.build_model("unet", widths=[8, 16]).save(path)
    return str(path)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("model", ["identity", "unet"])
def test_split_run_matches_fused_run(mixed, small_unet, tmp_path, model):
    src, ref = mixed
    model_path = small_unet if model == "unet" else "identity"
    outs = {}
    for pipeline in ("fused", "split"):
        out = tmp_path / pipeline
        argv = [src, out, "--model", model_path, "--reference", ref, "--tile", 32, "--overlap", 16]
        argv += ["--ensemble", 2] if model == "unet" else []
        assert run_cli(*argv, "--pipeline", pipeline, "--data-cpus", 2) == 0
        outs[pipeline] = out
    summary = json.loads((outs["split"] / bulk.SUMMARY_NAME).read_text())
    assert summary["pipeline"] == "split" and summary["data_cpus"] == 2
    fused_summary = json.loads((outs["fused"] / bulk.SUMMARY_NAME).read_text())
    # the fused null model runs one actor per CPU, a model one actor per node
    cpus = int(ray.cluster_resources()["CPU"]) if model == "identity" else 1
    assert fused_summary["concurrency"] == cpus
    assert summary["ensemble"] == (2 if model == "unet" else 1)
    assert table(outs["split"], bulk.ERRORS_NAME) == table(outs["fused"], bulk.ERRORS_NAME)
    fused_rows, split_rows = (table(outs[p], bulk.METRICS_NAME) for p in ("fused", "split"))
    assert sorted(split_rows) == sorted(fused_rows) == sorted([*GOOD, EXIF_KEY])
    if model == "identity":
        assert split_rows == fused_rows
        names = [*GOOD, EXIF_KEY]
        assert all(
            (outs["split"] / k).read_bytes() == (outs["fused"] / k).read_bytes() for k in names
        )
    else:  # the same model and tiles in another process: the same pixels
        for key, row in split_rows.items():
            assert row["psnr"] == pytest.approx(fused_rows[key]["psnr"], abs=0.05), key
