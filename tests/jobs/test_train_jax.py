"""jobs/train_jax.py, the lent-GPU trainer (Keras on JAX): skipped where JAX is absent.

The project's own environment has TensorFlow; these run where JAX is installed
(``pip install jax optax``; ``KERAS_BACKEND=jax``, as on the lent GPU machines) and
keep the device sampling in step with the core it twins: the sample pipeline of
:mod:`denoise_core.patches`, the noise of :mod:`denoise_core.noise` and
:mod:`denoise_core.isp` (statistics measured by :mod:`denoise_core.noise_stats`),
the schedule of :func:`denoise_core.training.make_schedule`, and the run folder
``denoise promote`` reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax optax)")
pytest.importorskip("optax", reason="optax is not installed (pip install optax)")
if os.environ.get("KERAS_BACKEND") != "jax":
    pytest.skip("needs KERAS_BACKEND=jax (set before keras is imported)", allow_module_level=True)

import jax.numpy as jnp  # noqa: E402

from denoise_core import isp, noise, noise_stats, run_folder, training  # noqa: E402
from denoise_core.patches import fitting_saturation  # noqa: E402
from jobs import train_jax as jt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


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


def _pair_set(folder: Path, n: int, size: tuple[int, int], offset: int) -> None:
    """``n`` pairs in the ``*_noisy`` / ``*_clean`` layout whose noise is ``+offset``."""
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        clean = np.random.default_rng(i).integers(0, 200, (*size, 3), dtype=np.uint8)
        Image.fromarray(clean).save(folder / f"{i}_clean.png")
        Image.fromarray(clean + np.uint8(offset)).save(folder / f"{i}_noisy.png")


def test_val_pairs_are_whole_pairs_cropped_to_the_unet_stride(tmp_path):
    _pair_set(tmp_path / "held", 2, (42, 52), 30)
    pairs = jt.load_val_pairs(str(tmp_path / "held"))
    assert len(pairs) == 2
    for noisy, clean in pairs:
        assert noisy.shape == clean.shape == (40, 48, 3) and noisy.dtype == np.float32
        np.testing.assert_allclose(noisy - clean, 30 / 255, atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no noisy/clean pairs"):
        jt.load_val_pairs(str(tmp_path / "empty"))


def test_pair_sets_mix_by_their_weights_not_their_sizes(tmp_path):
    _pair_set(tmp_path / "big", 6, (40, 44), 20)
    _pair_set(tmp_path / "small", 2, (48, 40), 40)
    noisy, clean, row_p, sources = jt.load_pair_sources(
        [(str(tmp_path / "big"), 1.0), (str(tmp_path / "small"), 3.0)]
    )
    assert noisy.shape == clean.shape == (8, 40, 40, 3)  # cropped to the smallest
    assert [(s["rows"], s["share"]) for s in sources] == [(6, 0.25), (2, 0.75)]
    np.testing.assert_allclose(row_p, [0.25 / 6] * 6 + [0.75 / 2] * 2, rtol=1e-6)
    image = np.zeros((1, 40, 40, 3), np.uint8)
    make = jax.jit(jt.make_batch_fn(image, noisy, clean, 64, 60, 16, False, pair_p=row_p))
    offsets = []
    for seed in range(10):
        n, c = (np.asarray(a) for a in make(jax.random.PRNGKey(seed)))
        offsets += list(np.round((n[4:] - c[4:]).mean(axis=(1, 2, 3)) * 255))
    assert set(offsets) == {20.0, 40.0}
    assert offsets.count(40.0) / len(offsets) == pytest.approx(0.75, abs=0.06)  # 600 draws


def test_default_noise_mix_is_planned_on_device_and_host_in_the_core_shares():
    device, host, n_host = jt.plan_rows(noise.DEFAULT_TRAINING_NOISE, 140)
    # isp;isp:jpeg=70-95;mix;gaussian:0-55;gaussian:0-55;gaussian:5-30;camera: 20 rows each.
    assert [(s.kind, n) for s, n in device] == [
        ("isp", 20), ("gaussian", 20), ("gaussian", 20), ("gaussian", 20), ("camera", 20)
    ]  # fmt: skip
    assert host == "isp:jpeg=70-95;mix" and n_host == 40


def test_schedule_is_the_cores_cosine_to_one_percent():
    import keras

    schedule = training.make_schedule("cosine", 1e-3, 200, 20)
    for step in (0, 1, 10, 19, 20, 21, 100, 150, 199, 200, 250):
        keras_lr = float(keras.ops.convert_to_numpy(schedule(step)))
        assert training.cosine_lr(step, 200, 1e-3, 20) == pytest.approx(keras_lr, rel=1e-4)
    # The GPU trainer's wall-clock form: fractions of the budget, same curve and floor.
    assert training.cosine_lr(1.0, 1.0, 5e-4, 0.03) == pytest.approx(5e-4 * training.COSINE_FLOOR)
    assert training.cosine_lr(0.03, 1.0, 5e-4, 0.03) == pytest.approx(5e-4)


def _test_images(n: int = 400, size: int = 64) -> list[np.ndarray]:
    """Random crops of skimage's photos (flat areas and texture at every level): many small
    crops, because each gets its own camera draw and pooled statistics need many draws
    (48 draws of the core against another 48 differed by 0.16 in channel correlation)."""
    import skimage.data

    rng = np.random.default_rng(0)
    photos = [
        getattr(skimage.data, name)().astype(np.float32) / 255.0
        for name in ("astronaut", "coffee", "chelsea", "rocket")
    ]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        y = int(rng.integers(0, img.shape[0] - size))
        x = int(rng.integers(0, img.shape[1] - size))
        out.append(img[y : y + size, x : x + size])
    return out


def test_isp_pipeline_twin_matches_the_core_without_noise():
    """The deterministic part: unprocess to the same mosaic, process back to the same sRGB
    (interior; OpenCV's bilinear demosaic treats borders its own way)."""
    clean = _test_images(1, 128)[0]
    params = isp.sample_isp_params(np.random.default_rng(3))
    params = isp.IspParams(**{**params.__dict__, "demosaic": "bilinear"})
    p = {
        "rgb_to_cam": jnp.asarray(params.rgb_to_cam, jnp.float32),
        "gains": jnp.asarray(
            [params.red_gain, 1.0, params.blue_gain], jnp.float32
        ) * params.brightness_gain,
    }  # fmt: skip
    core_raw = isp.unprocess(clean, params)
    twin_raw = np.asarray(jt.unprocess_twin(jnp.asarray(clean), p))
    np.testing.assert_allclose(twin_raw, core_raw, atol=2e-4)
    core = isp.process(core_raw, params)[2:-2, 2:-2]
    twin = np.asarray(jt.process_twin(jnp.asarray(core_raw, jnp.float32), p))[2:-2, 2:-2]
    assert np.abs(twin - core).max() < 3e-3


# Twin against core: noise statistics on the same 400 clean crops (0-255 scale). Two
# seeds of the core differ by up to 0.9 in std and 0.02 in correlations here; the
# tolerances add the known gap (the twin demosaics bilinearly only, the core also
# edge-aware; camera shot noise is Gaussian on the device).
PARITY = {"std": 0.12, "std_by_level": 0.2, "lag1": 0.05, "channel": 0.08}


@pytest.mark.parametrize("kind", ["isp", "camera", "gaussian:0-55"])
def test_noise_twin_statistics_match_the_core(kind, capsys):
    cleans = _test_images()
    spec = noise.parse_noise_spec(kind)
    core = noise_stats.measure(
        "core",
        ((noise.synthesize(c, spec, np.random.default_rng(i)), c) for i, c in enumerate(cleans)),
    )
    twin = jax.jit(jax.vmap(lambda k, c: jt.DEVICE_TWINS[spec.kind](k, c, spec)))
    noisy = np.asarray(twin(jax.random.split(jax.random.PRNGKey(0), len(cleans)), np.stack(cleans)))
    ours = noise_stats.measure("twin", zip(noisy, cleans))
    with capsys.disabled():
        print(f"\n{kind}:\n{noise_stats.format_table([core, ours])}")
    assert ours.std == pytest.approx(core.std, rel=PARITY["std"])
    for level, (a, b) in enumerate(zip(ours.std_by_level, core.std_by_level)):
        assert a == pytest.approx(b, rel=PARITY["std_by_level"]), f"level bin {level}"
    for lag in (1, 2):
        assert ours.autocorr[lag] == pytest.approx(core.autocorr[lag], abs=PARITY["lag1"]), lag
    for pair, value in core.cross_corr.items():
        assert ours.cross_corr[pair] == pytest.approx(value, abs=PARITY["channel"]), pair


def test_trainer_imports_neither_ray_nor_tensorflow():
    code = (
        "import sys, jobs.train_jax; "
        "bad = [m for m in ('ray', 'tensorflow') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_distillation_loss_mixes_the_clean_and_teacher_targets():
    """The JAX step's loss is denoise train's: (1 - w) L1(clean) + w L1(teacher output)."""
    import keras

    from denoise_core import models

    keras.utils.set_random_seed(0)
    student = models.build_model("unet", widths=(4, 8), blocks_per_level=1)
    keras.utils.set_random_seed(1)
    teacher = models.build_model("unet", widths=(4, 8), blocks_per_level=1)
    rng = np.random.default_rng(0)
    clean = rng.random((2, 16, 16, 3), dtype=np.float32)
    noisy = clean + np.float32(0.2) * rng.standard_normal(clean.shape).astype(np.float32)
    values = [[v.value for v in m.trainable_variables] for m in (student, teacher)]
    fixed = [[v.value for v in m.non_trainable_variables] for m in (student, teacher)]
    pred, target = np.asarray(student(noisy)), np.asarray(teacher(noisy))
    weight = 0.25
    expected = (1 - weight) * np.abs(pred - clean).mean() + weight * np.abs(pred - target).mean()
    loss_fn = jt.make_loss_fn(student, teacher, weight)
    loss, _ = loss_fn(values[0], fixed[0], noisy, clean, (values[1], fixed[1]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    plain, _ = jt.make_loss_fn(student)(values[0], fixed[0], noisy, clean, ((), ()))
    assert float(plain) == pytest.approx(float(np.abs(pred - clean).mean()), rel=1e-5)


def test_psnr_loss_is_the_batch_mean_of_each_patchs_negative_psnr():
    """--loss psnr in the JAX step is denoise train's: minus each patch's PSNR, averaged."""
    import keras

    from denoise_core import metrics, models

    keras.utils.set_random_seed(0)
    student = models.build_model("unet", widths=(4, 8), blocks_per_level=1)
    rng = np.random.default_rng(0)
    clean = rng.random((2, 16, 16, 3), dtype=np.float32)
    noisy = clean + np.float32(0.1) * rng.standard_normal(clean.shape).astype(np.float32)
    values = [v.value for v in student.trainable_variables]
    fixed = [v.value for v in student.non_trainable_variables]
    pred = np.asarray(student(noisy))
    expected = -np.mean([metrics.psnr(pred[i], clean[i]) for i in range(2)])
    loss, _ = jt.make_loss_fn(student, loss="psnr")(values, fixed, noisy, clean, ((), ()))
    assert float(loss) == pytest.approx(float(expected), abs=1e-3)


def test_short_run_writes_a_run_folder_promote_accepts(tmp_path):
    from PIL import Image

    from denoise_core import models
    from jobs import promote

    for folder, n in (("clean", 3), ("val", 1)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            img = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / folder / f"{i}.png")
    out = tmp_path / "run"
    args = ["--model", "unet_s2d", "--model-args", json.dumps({"widths": [4, 8], "res_blocks": 1})]
    args += ["--clean", str(tmp_path / "clean"), "--val", str(tmp_path / "val")]
    args += ["--minutes", "0.05", "--batch", "6", "--patch", "16", "--out", str(out)]
    args += ["--host-workers", "1"]  # the default mix: isp:jpeg and mix come from the host
    _pair_set(tmp_path / "polyu", 3, (40, 40), 20)
    _pair_set(tmp_path / "sidd", 1, (40, 40), 30)
    args += [
        "--pairs",
        str(tmp_path / "polyu") + "@0.6",
        "--pairs",
        str(tmp_path / "sidd") + "@0.4",
    ]
    _pair_set(tmp_path / "held", 2, (40, 44), 25)
    args += ["--val-pairs", str(tmp_path / "held")]
    teacher = tmp_path / "teacher.keras"
    models.build_model("unet", widths=(4, 8)).save(teacher)
    args += ["--teacher", str(teacher), "--teacher-weight", "0.3"]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train_jax", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["steps"] > 0 and card["architecture"]["name"] == "unet_s2d"
    assert (out / "model" / "model.keras").stat().st_size > 0
    assert card["command"].startswith("KERAS_BACKEND=jax python -m jobs.train_jax ")
    assert card["training"]["noise_on_host"]["rows"] == 2  # 6 rows over 6 specs: 2 need JPEG
    assert card["training"]["teacher"] == str(teacher)
    assert card["training"]["teacher_weight"] == 0.3
    pairs = [(d["source"], d["rows"]["train"], d["weight"]) for d in card["data"][1:]]
    share = 1 / 6  # --pairs-share 0.2 of a batch of 6: one pair row
    assert pairs == [
        (str(tmp_path / "polyu"), 3, pytest.approx(0.6 * share, abs=1e-3)),
        (str(tmp_path / "sidd"), 1, pytest.approx(0.4 * share, abs=1e-3)),
    ]
    states = run_folder.checkpoint_states(str(out))
    assert states and all("/jax/attempt-001/checkpoint_" in uri for uri, _ in states)
    assert card["validation"]["pairs_count"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # The held-out pairs join the mean the export is chosen by, and are logged alone.
    assert all(
        np.isfinite(r["val_pairs_psnr"]) and r["val_pairs_psnr"] != r["val_psnr"] for r in log
    )

    weights = tmp_path / "weights"
    assert promote.main([str(out), "--to", str(weights), "--checkpoint", "last"]) == 0
    lineage = json.loads((weights / "default_model_card.json").read_text())["lineage"]
    assert lineage[-1]["command"] == card["command"]
    assert lineage[-1]["promoted_checkpoint"]["step"] == card["last"]["step"]


def test_non_finite_validation_stops_before_training(tmp_path):
    """A model whose validation output is NaN (as XLA:CPU's bf16 pass of the fast tier
    was) stops with NONFINITE_EXIT and one error line, before any checkpoint (the lent
    GPU script reruns in fp32 on that status)."""
    from PIL import Image

    from denoise_core import models

    for folder in ("clean", "val"):
        (tmp_path / folder).mkdir()
        img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / folder / "0.png")
    broken = models.build_model("unet", widths=(4, 8), blocks_per_level=1)
    head = broken.get_layer("head")
    head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])
    broken.save(tmp_path / "nan.keras")
    out = tmp_path / "run"
    args = ["--init-from", str(tmp_path / "nan.keras"), "--clean", str(tmp_path / "clean")]
    args += ["--val", str(tmp_path / "val"), "--noise", "gaussian:0-50", "--minutes", "0.05"]
    args += ["--batch", "2", "--patch", "16", "--precision", "fp32", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train_jax", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        timeout=600,
    )
    assert proc.returncode == jt.NONFINITE_EXIT, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not finite in fp32" in proc.stderr and "--precision fp32" in proc.stderr
    assert not list(out.rglob("checkpoint_*"))
