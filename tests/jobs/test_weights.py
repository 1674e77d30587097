"""The packaged default model: present, loads safely, denoises, and its card is consistent."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import skimage.data

from denoise_core import metrics, models, noise, weights
from denoise_core.inference import Denoiser


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
    # Every stage was trained by one of the project's trainers: `denoise train` (Ray Train,
    # TensorFlow) or, on a lent GPU without TensorFlow, jobs/train_jax.py (until 2026-11-27
    # cluster/jax_gpu_train.py: the lineage keeps the commands as they were run).
    trainers = (
        "denoise train",
        "KERAS_BACKEND=jax python -m jobs.train_jax",
        "KERAS_BACKEND=jax python cluster/jax_gpu_train.py",
    )
    for entry in card["lineage"]:
        assert entry["command"].startswith(trainers), entry["command"]
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
