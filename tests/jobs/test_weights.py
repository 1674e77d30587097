"""The packaged models: the default tier present, loads safely, denoises, and its card is
consistent; the fast tier the same once a build ships it, within a quarter of the default's
FLOPs per megapixel; the tier names (``default``, ``fast``) accepted by every job that
takes a model path, and a clear error for a tier this build lacks."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data

from denoise_core import metrics, models, noise, weights
from denoise_core.inference import Denoiser

# Every stage was trained by one of the project's trainers: `denoise train` (Ray Train,
# TensorFlow) or, on a lent GPU without TensorFlow, jobs/train_jax.py (until 2026-11-27
# cluster/jax_gpu_train.py: the lineage keeps the commands as they were run).
TRAINERS = (
    "denoise train",
    "KERAS_BACKEND=jax python -m jobs.train_jax",
    "KERAS_BACKEND=jax python cluster/jax_gpu_train.py",
)


def test_packaged_model_loads_safely_and_removes_gaussian_noise():
    path = weights.default_model_path()
    assert path is not None, "denoise_core/weights/default.keras is missing"
    model = keras.models.load_model(path, safe_mode=True)
    clean = skimage.data.astronaut()[128:320, 160:352].astype(np.float32) / 255.0
    noisy = noise.add_gaussian(clean, 25, np.random.default_rng(0))
    denoised = Denoiser(model, tile=128)(noisy)
    assert denoised.shape == clean.shape
    assert metrics.psnr(denoised, clean) > metrics.psnr(noisy, clean) + 6.0


def test_model_card_matches_the_shipped_weights():
    folder = Path(weights.__file__).parent
    card = json.loads((folder / weights.DEFAULT_CARD_FILE).read_text())
    model = models.load_model(weights.default_model_path())
    assert card["architecture"]["params"] == model.count_params()
    assert card["lineage"], "the card records how the weights were trained"
    for entry in card["lineage"]:
        assert entry["command"].startswith(TRAINERS), entry["command"]
        assert entry["steps"] > 0 and entry["best"]["val_psnr"] > entry["best"]["val_noisy_psnr"]
    assert any(e["command"].startswith("denoise train") for e in card["lineage"])


def test_denoise_models_lists_every_architecture_and_the_packaged_model(capsys):
    from jobs import models as models_job

    assert models_job.main(["--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(models.MODEL_NAMES) < set(rows)
    packaged = models.model_info(models.load_model(weights.default_model_path()))
    assert rows["packaged"]["params"] == packaged["params"]
    assert rows["packaged"]["flops_per_megapixel"] == packaged["flops_per_megapixel"]
    assert rows[models.DEFAULT_MODEL]["default"] and rows["packaged"]["packaged"]
    if weights.fast_model_path():
        fast = models.model_info(models.load_model(weights.fast_model_path()))
        assert rows["packaged-fast"]["flops_per_megapixel"] == fast["flops_per_megapixel"]
        assert rows["packaged-fast"]["tier"] == "fast"


# --------------------------------------------------------------------------------------
# The fast tier (skipped until a build ships denoise_core/weights/fast.keras)
# --------------------------------------------------------------------------------------

needs_fast = pytest.mark.skipif(
    weights.fast_model_path() is None, reason="this build ships no fast model yet"
)


@needs_fast
def test_fast_model_card_matches_its_weights_and_the_flops_budget():
    card = json.loads(Path(weights.packaged_card_path("fast")).read_text())
    default_card = json.loads(Path(weights.packaged_card_path("default")).read_text())
    assert set(card) == set(default_card)  # the same structure, its own lineage
    info = models.model_info(models.load_model(weights.fast_model_path()))
    assert card["architecture"]["params"] == info["params"]
    assert card["architecture"]["flops_per_megapixel"] == info["flops_per_megapixel"]
    default_info = models.model_info(models.load_model(weights.default_model_path()))
    assert info["flops_per_megapixel"] <= 0.25 * default_info["flops_per_megapixel"]
    assert card["lineage"] and card["current"] == card["lineage"][-1]
    for entry in card["lineage"]:
        assert entry["command"].startswith(TRAINERS), entry["command"]
        assert entry["steps"] > 0 and entry["architecture"]["flops_per_megapixel"] > 0


@needs_fast
def test_fast_model_removes_gaussian_noise():
    clean = skimage.data.astronaut()[128:320, 160:352].astype(np.float32) / 255.0
    noisy = noise.add_gaussian(clean, 25, np.random.default_rng(0))
    denoised = Denoiser.from_path(weights.resolve_model("fast"), tile=128)(noisy)
    assert metrics.psnr(denoised, clean) > metrics.psnr(noisy, clean) + 5.0


# --------------------------------------------------------------------------------------
# Tier names where a model path is accepted
# --------------------------------------------------------------------------------------


def test_tier_names_resolve_to_the_packaged_files_and_paths_pass_through():
    assert weights.resolve_model("default") == weights.default_model_path()
    if weights.fast_model_path():
        assert weights.resolve_model("fast") == weights.fast_model_path()
    for given in (None, "./fast", "fast.keras", "s3://b/fast", "identity", "identity:5"):
        assert weights.resolve_model(given) == given
    with pytest.raises(ValueError, match="unknown model tier 'tiny'"):
        weights.packaged_model_path("tiny")


@pytest.fixture
def no_fast_model(monkeypatch):
    """A build without the fast tier (whatever this checkout ships)."""
    monkeypatch.setitem(weights.MODEL_FILES, "fast", "no-such-fast.keras")


@pytest.fixture
def tiny_fast_model(monkeypatch, tmp_path) -> str:
    """A build whose fast tier is a tiny untrained U-Net behind the space-to-depth stem."""
    path = tmp_path / "fast.keras"
    models.build_model("unet_s2d", widths=(4, 8), blocks_per_level=1).save(path)
    real = weights.packaged_model_path
    monkeypatch.setattr(
        weights,
        "packaged_model_path",
        lambda tier="default": str(path) if tier == "fast" else real(tier),
    )
    return str(path)


def test_a_tier_this_build_lacks_is_a_clear_error(no_fast_model):
    assert weights.fast_model_path() is None
    with pytest.raises(weights.NoPackagedModel) as err:
        weights.resolve_model("fast")
    message = str(err.value)
    assert "ships no fast model" in message and "no-such-fast.keras is missing" in message
    assert "denoise promote RUN --tier fast" in message and "a .keras path" in message


@pytest.mark.parametrize(
    "job, argv",
    [
        ("run", ["IN", "OUT", "--model", "fast"]),
        ("benchmark", ["--clean", "C", "--model", "fast"]),
        ("benchmark", ["--clean", "C", "--model", "mine=fast"]),
        ("export", ["fast", "OUT.onnx", "--format", "onnx"]),
        ("train", ["--data", "D", "--storage", "R", "--init-from", "fast"]),
    ],
)
def test_every_job_refuses_a_missing_tier_in_one_line(no_fast_model, tmp_path, capsys, job, argv):
    import importlib

    argv = [str(tmp_path / a) if a.isupper() or a.endswith(".onnx") else a for a in argv]
    assert importlib.import_module(f"jobs.{job}").main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model 'fast': this build ships no fast model"), err
    assert not any((tmp_path / name).exists() for name in ("OUT", "OUT.onnx", "R"))


def test_run_and_train_receive_the_fast_tier_as_its_path(tiny_fast_model, monkeypatch, tmp_path):
    import argparse

    from denoise_core import bulk
    from denoise_core.train_config import ConfigError
    from jobs import run as run_job
    from jobs import train as train_job

    parser = argparse.ArgumentParser()
    run_job.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--model", "fast"])
    assert bulk.build_settings(args).model == tiny_fast_model
    assert args.model == "fast"  # the arguments are read, never rewritten

    seen = {}

    def stop_config(cfg):
        seen["train"] = cfg.init_from
        raise ConfigError("init_from", "stopped by the test")

    monkeypatch.setattr(train_job, "_absolute", stop_config)
    argv = ["--data", str(tmp_path / "d"), "--storage", str(tmp_path / "r"), "--init-from", "fast"]
    assert train_job.main(argv) == 2
    assert seen == {"train": tiny_fast_model}


def test_export_and_benchmark_take_the_fast_tier(tiny_fast_model, tmp_path, capsys):
    import cv2

    from jobs import benchmark as benchmark_job
    from jobs import export as export_job

    out = tmp_path / "fast_saved_model"
    assert export_job.main(["fast", str(out), "--format", "saved_model"]) == 0
    assert (out / "saved_model.pb").exists() and f"wrote {out}" in capsys.readouterr().out

    clean = tmp_path / "clean"
    clean.mkdir()
    cv2.imwrite(str(clean / "a.png"), skimage.data.astronaut()[:64, :64, ::-1])
    argv = ["--clean", str(clean), "--noise", "gaussian:25", "--methods", "noisy,models",
            "--model", "fast", "--model", "also=fast", "--precision", "fp32"]  # fmt: skip
    assert benchmark_job.main(argv) == 0
    table = capsys.readouterr().out
    assert "| fast " in table and "| also " in table, table
