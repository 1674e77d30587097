"""cluster/jax_gpu_train.py, the lent-GPU trainer (Keras on JAX): skipped where JAX is absent.

The project's own environment has TensorFlow, not JAX, so CI skips these; they run
where JAX is installed (``KERAS_BACKEND=jax``, as on the lent GPU machines) and keep
the script's sample pipeline in step with :mod:`denoise_core.patches`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
if os.environ.get("KERAS_BACKEND") != "jax":
    pytest.skip("needs KERAS_BACKEND=jax (set before keras is imported)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cluster"))
import jax_gpu_train as jt  # noqa: E402

from denoise_core.patches import fitting_saturation  # noqa: E402


def test_fitting_saturation_matches_numpy():
    rng = np.random.default_rng(0)
    for base in ([0.85, 0.8, 0.1], [0.5, 0.45, 0.4], [0.2, 0.6, 0.9]):
        patch = np.clip(np.float32(base) + rng.uniform(-0.05, 0.05, (16, 16, 3)), 0, 1)
        patch = patch.astype(np.float32)
        grey = patch.mean(axis=-1, keepdims=True)
        ours = float(jt._fitting_saturation(patch, grey))
        assert ours == pytest.approx(fitting_saturation(patch, grey), rel=1e-3)


def test_batches_hold_aligned_real_pairs_and_noisy_synthetic_rows():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    pair_clean = rng.integers(0, 200, (3, 40, 40, 3), dtype=np.uint8)
    pair_noisy = pair_clean + np.uint8(20)  # a known noise: survives crops and flips
    make = jax.jit(jt.make_batch_fn(clean, pair_noisy, pair_clean, 8, 2, 16, True, "fit"))
    noisy, ref = (np.asarray(a) for a in make(jax.random.PRNGKey(0)))
    assert noisy.shape == ref.shape == (8, 16, 16, 3)
    assert 0.0 <= ref.min() and ref.max() <= 1.0
    np.testing.assert_allclose(noisy[6:] - ref[6:], 20 / 255, atol=1e-6)
    assert np.abs(noisy[:6] - ref[:6]).mean() > 0  # synthetic noise was added


def test_short_run_writes_a_model_and_card(tmp_path):
    from PIL import Image

    for folder, n in (("clean", 3), ("val", 1)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            img = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / folder / f"{i}.png")
    out = tmp_path / "run"
    args = ["--model-args", json.dumps({"widths": [4, 8], "res_blocks": 1})]
    args += ["--clean", str(tmp_path / "clean"), "--val", str(tmp_path / "val")]
    args += ["--minutes", "0.05", "--batch", "4", "--patch", "16", "--out", str(out)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cluster" / "jax_gpu_train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["steps"] > 0 and card["architecture"]["name"] == "unet"
    assert (out / "model" / "model.keras").stat().st_size > 0
