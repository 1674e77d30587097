"""``denoise train`` end to end: real Ray Train runs and real TensorFlow steps, no mocks.

Every run calls ``jobs.train.main`` in-process against the session's local Ray (see
``conftest.py``) on tiny data: smooth synthetic photographs (clean only, so noise is
synthesised), ingested once per module into 32x32 patches, locally and on moto's S3.
Models are tiny and runs are a handful of steps; each Ray Train run still costs
seconds of start-up, so the tests share data sets and do several checks per run.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import uuid
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import s3fs

from denoise_core import manifest, metrics, models, storage
from denoise_core.inference import Denoiser, evaluate_pairs
from denoise_core.training import MODEL_FILE, OPTIMIZER_FILE, STATE_FILE
from denoise_core.valset import load_val_pairs
from jobs import ingest as ingest_job
from jobs import train as train_job

pytestmark = pytest.mark.usefixtures("ray_session")

PATCH = 32
IMAGE = 96  # 32x32 patches at stride 16: 5 x 5 = 25 per image
PER_IMAGE = ((IMAGE - PATCH) // 16 + 1) ** 2
N_IMAGES, N_VAL = 16, 4  # --val-fraction 0.25: 4 images held out
NOISE = "gaussian:50"  # strong noise: a few steps of a tiny model already beat it clearly
TINY_UNET = {"widths": [8, 16]}


# ---------------------------------------------------------------- helpers


def write_smooth_images(root: Path, n: int, size: int, seed: int) -> None:
    """Smooth colour fields (bicubic upsampling of 4x4 noise): easy to denoise, unlike
    uniform random pixels, so a few training steps measurably beat the noisy input."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        assert cv2.imwrite(str(root / f"photo{i:02d}.png"), np.clip(img, 0, 255).astype(np.uint8))


def fresh_cache() -> None:
    """Ray workers write the run folder: drop this process's stale S3 listings."""
    s3fs.S3FileSystem.clear_instance_cache()


def new_bucket() -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    fresh_cache()
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"


def train(data: str, run: str, *args) -> int:
    """One ``denoise train`` with the shared small-data defaults (later args win)."""
    argv = [
        "--data", data, "--storage", run, "--patch", str(PATCH),
        "--noise", NOISE, "--val-noise", NOISE, "--val-limit", "2",
        "--warmup-steps", "0", "--model", "unet", "--model-args", json.dumps(TINY_UNET),
        "--patches-per-image", "1",  # row counts below are batch counts
        *map(str, args),
    ]  # fmt: skip
    code = train_job.main(argv)
    fresh_cache()
    return code


def read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri))


def checkpoints(run: str) -> dict[int, tuple[str, str]]:
    """{step: (attempt name, checkpoint URI)} of every finished checkpoint in the run."""
    fresh_cache()
    fs, root = storage.open_fs(storage.join(run, train_job.RAY_DIR))
    found: dict[int, tuple[str, str]] = {}
    for state in fs.glob(f"{root.rstrip('/')}/attempt-*/checkpoint_*/{STATE_FILE}"):
        ckpt = state.rsplit("/", 1)[0]
        attempt, name = ckpt.rsplit("/", 2)[-2:]
        step = int(name.split("_")[1])
        assert step not in found, f"step {step} checkpointed twice"
        found[step] = (attempt, storage.protocol_uri(fs, ckpt))
    return found


def attempts(run: str) -> list[str]:
    fresh_cache()
    fs, root = storage.open_fs(storage.join(run, train_job.RAY_DIR))
    return sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{root.rstrip('/')}/attempt-*"))


def load_keras(uri: str) -> keras.Model:
    """A ``.keras`` file from any storage, loaded the way users must load it."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        Path(local).write_bytes(storage.read_bytes(uri))
        return keras.models.load_model(local, safe_mode=True, compile=False)


def optimizer_arrays(ckpt: str) -> list[np.ndarray]:
    import io

    with np.load(io.BytesIO(storage.read_bytes(storage.join(ckpt, OPTIMIZER_FILE)))) as data:
        return [data[k] for k in sorted(data.files)]


def worker_log_count(text: str) -> int:
    """Lines holding ``text`` in this Ray session's worker stdout/stderr files (Ray moves
    the files of dead workers into ``logs/old/``)."""
    import ray

    logs = ray._private.worker._global_node.get_logs_dir_path()
    names = {
        os.path.basename(p)
        for pattern in ("worker-*.out", "worker-*.err", "old/worker-*.out", "old/worker-*.err")
        for p in glob.glob(os.path.join(logs, pattern))
    }
    count = 0
    for name in names:
        for path in (os.path.join(logs, name), os.path.join(logs, "old", name)):
            try:
                with open(path, errors="replace") as f:
                    count += sum(text in line for line in f)
                break
            except FileNotFoundError:  # moved to old/ meanwhile
                continue
    return count


def noisy_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(1, PATCH, PATCH, 3)).astype(np.float32)


def check_export(run: str, expected_name: str) -> tuple[dict, keras.Model]:
    """RUN/model holds model.keras (safe-mode loadable, = the best checkpoint's weights),
    a SavedModel that computes the same, and a model card; returns (card, model)."""
    import tensorflow as tf

    card = read_json(storage.join(run, "model", "model_card.json"))
    model = load_keras(storage.join(run, "model", MODEL_FILE))
    assert model.name == card["architecture"]["name"] == expected_name
    assert card["architecture"]["params"] == model.count_params() > 0
    best = load_keras(storage.join(card["best_checkpoint"], MODEL_FILE))
    for got, want in zip(model.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)

    with tempfile.TemporaryDirectory() as tmp:
        fresh_cache()
        fs, path = storage.open_fs(storage.join(run, "model", "saved_model"))
        assert fs.exists(f"{path}/saved_model.pb")
        fs.get(path.rstrip("/") + "/", tmp + "/saved", recursive=True)
        served = tf.saved_model.load(tmp + "/saved")
        x = noisy_image()
        np.testing.assert_allclose(
            np.asarray(served.serve(tf.constant(x))), np.asarray(model(x)), atol=1e-5
        )
    return card, model


# ---------------------------------------------------------------- data, once per module


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, ray_session, s3_server) -> dict[str, str]:
    """The same smooth photos ingested locally and to S3 (train 12 images, val 4), and
    ``exact``: 8 train rows, one global batch of 8."""
    base = tmp_path_factory.mktemp("train-data")
    write_smooth_images(base / "photos", N_IMAGES, IMAGE, seed=0)
    write_smooth_images(base / "tiny", 2, 2 * PATCH, seed=1)  # 2 x 4 patches
    write_smooth_images(base / "pairs" / "clean", 2, PATCH, seed=2)  # real-noise stand-in:
    rng = np.random.default_rng(3)  # mild noise, so its PSNR is far from the sigma-50 set's
    for path in sorted((base / "pairs" / "clean").iterdir()):
        img = cv2.imread(str(path)).astype(np.float32) + rng.normal(0, 5, (PATCH, PATCH, 3))
        (base / "pairs" / "noisy").mkdir(exist_ok=True)
        assert cv2.imwrite(
            str(base / "pairs" / "noisy" / path.name), np.clip(img, 0, 255).astype(np.uint8)
        )
    patch = ["--patch", str(PATCH)]
    split = ["--stride", "16", "--val-fraction", "0.25", "--seed", "0"]
    out = {
        "local": str(base / "ds"),
        "s3": f"{new_bucket()}/datasets/photos",
        "exact": str(base / "exact"),
        "pairs": str(base / "pairs-ds"),
    }
    assert ingest_job.main([str(base / "photos"), out["local"], *patch, *split]) == 0
    assert ingest_job.main([str(base / "photos"), out["s3"], *patch, *split]) == 0
    assert ingest_job.main([str(base / "tiny"), out["exact"], *patch, "--split", "train"]) == 0
    assert ingest_job.main([str(base / "pairs"), out["pairs"], *patch, "--split", "val"]) == 0
    fresh_cache()
    for name in ("local", "s3"):
        splits = manifest.read_manifest(out[name])["splits"]
        assert splits["train"]["rows"] == (N_IMAGES - N_VAL) * PER_IMAGE
        assert splits["val"]["rows"] == N_VAL * PER_IMAGE
    assert manifest.read_manifest(out["exact"])["splits"]["train"]["rows"] == 8
    return out


# ---------------------------------------------------------------- tests


def test_two_workers_learn_and_export_the_best_checkpoint(datasets, tmp_path):
    data, run = datasets["local"], str(tmp_path / "run")
    model_args = json.dumps({**TINY_UNET, "zero_init_last": True})
    code = train(
        data, run, "--model-args", model_args, "--workers", 2, "--batch-size", 8,
        "--steps", 30, "--val-every", 15, "--lr", 3e-3, "--schedule", "constant",
        "--val-limit", 8, "--seed", 1,
    )  # fmt: skip
    assert code == 0

    ckpts = checkpoints(run)
    assert sorted(ckpts) == [15, 30] and {a for a, _ in ckpts.values()} == {"attempt-001"}
    states = {step: read_json(storage.join(uri, STATE_FILE)) for step, (_, uri) in ckpts.items()}
    assert [states[s]["step"] for s in (15, 30)] == [15, 30]
    best_step = max(states, key=lambda s: states[s]["val_psnr"])
    best = states[best_step]
    # Learned to denoise: clearly better than the noisy input, and than merely clipping
    # it to [0, 1] (the untrained zero-init model's output, ~0.8 dB better at sigma 50).
    pairs = load_val_pairs(data, "val", 8, NOISE)
    clipped = float(np.mean([metrics.psnr(np.clip(n, 0, 1), c) for n, c in pairs]))
    assert best["val_images"] == 8
    assert best["val_psnr"] > max(best["val_noisy_psnr"], clipped) + 1.0, (best, clipped)

    card, model = check_export(run, "unet")
    assert card["best_checkpoint"] == ckpts[best_step][1]
    assert card["best"]["step"] == best_step
    assert card["best"]["val_psnr"] == pytest.approx(best["val_psnr"])
    assert card["steps"] == card["last"]["step"] == 30
    assert card["training"]["workers"] == 2 and card["training"]["batch_size"] == 8
    assert card["data"] == [
        {
            "uri": data,
            "weight": 1.0,
            "layout": "clean",
            "source": card["data"][0]["source"],
            "rows": {"train": (N_IMAGES - N_VAL) * PER_IMAGE, "val": N_VAL * PER_IMAGE},
        }
    ]
    assert card["validation"]["sets"] == [{"uri": data, "split": "val"}]
    assert (card["validation"]["limit"], card["validation"]["noise"]) == (8, NOISE)
    assert card["command"].startswith("denoise train ")
    assert f"--storage {run}" in card["command"] and "--steps 30" in card["command"]

    # The exported file alone reproduces the best checkpoint's validation numbers.
    again = evaluate_pairs(Denoiser(model), pairs)
    assert again["val_images"] == 8
    assert again["val_noisy_psnr"] == pytest.approx(best["val_noisy_psnr"], abs=1e-9)
    assert again["val_psnr"] == pytest.approx(best["val_psnr"], abs=1e-3)
    assert again["val_ssim"] == pytest.approx(best["val_ssim"], abs=1e-4)

    events = glob.glob(os.path.join(run, train_job.TB_DIR, "events.out.tfevents.*"))
    assert events, "no TensorBoard event file"


def test_two_workers_with_half_the_batch_take_the_same_first_step(datasets, tmp_path):
    """Global batch 8 on exactly 8 rows: 1 worker x 8 and 2 workers x 4 see the same
    samples, so one step must give the same gradient (Adam's moments) and weights."""
    init = str(tmp_path / "init.keras")
    models.build_model("unet", **TINY_UNET).save(init)  # BN-free; both runs start here
    common = [
        "--init-from", init, "--val", datasets["local"], "--batch-size", 8, "--steps", 1,
        "--val-every", 1, "--no-augment", "--seed", 0, "--schedule", "constant",
        "--lr", 1e-3,
    ]  # fmt: skip
    results = {}
    for workers in (1, 2):
        run = str(tmp_path / f"workers{workers}")
        assert train(datasets["exact"], run, "--workers", workers, *common) == 0
        ckpts = checkpoints(run)
        assert list(ckpts) == [1]
        ckpt = ckpts[1][1]
        results[workers] = (
            read_json(storage.join(ckpt, STATE_FILE)),
            load_keras(storage.join(ckpt, MODEL_FILE)).get_weights(),
            optimizer_arrays(ckpt),
        )
    (state1, weights1, opt1), (state2, weights2, opt2) = results[1], results[2]
    assert state1["step"] == state2["step"] == 1
    assert state2["loss"] == pytest.approx(state1["loss"], rel=1e-5)

    start = models.load_model(init).get_weights()
    moved = max(float(np.max(np.abs(w - w0))) for w, w0 in zip(weights1, start, strict=True))
    assert moved > 1e-4, "the step did not change the weights"
    for w1, w2 in zip(weights1, weights2, strict=True):
        np.testing.assert_allclose(w2, w1, rtol=1e-5, atol=1e-6)

    # Adam's first update is ~lr*sign(g), blind to the gradient's scale; its moments are
    # (1-b1)*g and (1-b2)*g^2, so they catch a wrongly scaled or partial gradient.
    assert len(opt1) == len(opt2)
    assert int(opt1[0]) == int(opt2[0]) == 1  # iterations
    for a1, a2 in zip(opt1, opt2, strict=True):
        scale = float(np.max(np.abs(a1))) if a1.size else 0.0
        np.testing.assert_allclose(a2, a1, rtol=1e-4, atol=1e-4 * scale + 1e-12)
    assert max(float(np.max(np.abs(a))) for a in opt1[2:]) > 0, "no gradient in the moments"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_resume_continues_and_a_used_run_is_refused(datasets, tmp_path, where):
    """Data and run folder both local, or both on S3."""
    data = datasets[where]
    run = str(tmp_path / "run") if where == "local" else f"{new_bucket()}/runs/resume"
    args = ["--batch-size", 4, "--val-every", 2, "--seed", 2]
    assert train(data, run, "--steps", 4, *args) == 0
    first = checkpoints(run)
    assert sorted(first) == [2, 4]

    # Same RUN again without --resume: refused, nothing written.
    assert train(data, run, "--steps", 8, *args) != 0
    assert attempts(run) == ["attempt-001"]

    # Resumed with other model arguments: the run continues with its own architecture.
    resumed_line = "resumed at step 4 from checkpoint"
    before = worker_log_count(resumed_line)
    other = ["--model-args", json.dumps({"widths": [4, 8]})]
    assert train(data, run, "--steps", 8, "--resume", *args, *other) == 0
    assert worker_log_count(resumed_line) - before == 1  # printed, and only once

    ckpts = checkpoints(run)
    assert {s: a for s, (a, _) in ckpts.items()} == {
        2: "attempt-001",
        4: "attempt-001",
        6: "attempt-002",
        8: "attempt-002",
    }
    last = ckpts[8][1]
    state = read_json(storage.join(last, STATE_FILE))
    assert state["step"] == state["total_steps"] == 8
    assert int(optimizer_arrays(last)[0]) == 8  # optimizer state carried over, not reset
    card, _ = check_export(run, "unet")
    assert card["steps"] == 8
    assert card["architecture"]["params"] == models.build_model("unet", **TINY_UNET).count_params()
    assert card["training"]["resumed_from"] == first[4][1]
    assert card["data"][0]["uri"] == data


def test_killed_worker_is_replaced_and_the_run_finishes(datasets, tmp_path):
    run = str(tmp_path / "run")
    hook_line = "[test hook] rank 1 exiting at step 3"
    resumed_line = "resumed at step 2 from checkpoint"
    counts = worker_log_count(hook_line), worker_log_count(resumed_line)
    code = train(
        datasets["local"], run, "--workers", 2, "--batch-size", 8, "--steps", 6,
        "--val-every", 2, "--fail-at-step", "3:1", "--seed", 3,
    )  # fmt: skip
    assert code == 0
    assert storage.exists(storage.join(run, train_job.FAIL_MARKER)), "the worker never died"
    assert worker_log_count(hook_line) - counts[0] == 1
    # The replacement group restarted from the step-2 checkpoint, not from scratch.
    assert worker_log_count(resumed_line) - counts[1] == 1

    ckpts = checkpoints(run)
    assert sorted(ckpts) == [2, 4, 6] and {a for a, _ in ckpts.values()} == {"attempt-001"}
    state = read_json(storage.join(ckpts[6][1], STATE_FILE))
    assert state["step"] == 6
    assert int(optimizer_arrays(ckpts[6][1])[0]) == 6
    card, _ = check_export(run, "unet")
    assert card["steps"] == 6


def test_bf16_warm_start_trains_and_validates_the_live_model_and_exports_float32(
    datasets, tmp_path
):
    """--init-from a float32 model with --precision bf16: the convolutions train in bf16
    (a saved model pins its layers' dtypes, so the policy must be re-applied), rank 0
    validates the model being trained (not a copy frozen at the start), and the export
    is float32 again so inference picks its own precision. Two patches per image, with
    the sample augmentations on (recorded in the card)."""
    init = str(tmp_path / "init.keras")
    models.build_model("unet", **TINY_UNET).save(init)
    run = str(tmp_path / "run")
    code = train(
        datasets["local"], run, "--init-from", init, "--precision", "bf16",
        "--patches-per-image", 2, "--batch-size", 8, "--steps", 6, "--val-every", 3,
        "--lr", 3e-3, "--schedule", "constant", "--clipnorm", 1.0,
        "--color-augment", "--scale-augment", 0.5, "--dead-leaves", 0.5,
    )  # fmt: skip
    assert code == 0
    ckpts = checkpoints(run)
    assert sorted(ckpts) == [3, 6]
    states = [read_json(storage.join(ckpts[s][1], STATE_FILE)) for s in (3, 6)]
    assert states[0]["val_psnr"] != states[1]["val_psnr"], "validated a frozen copy"
    trained = load_keras(storage.join(ckpts[6][1], MODEL_FILE))
    convs = [layer for layer in trained.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)

    card, model = check_export(run, "unet")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert card["training"]["precision"] == "bf16" and card["training"]["clipnorm"] == 1.0
    assert card["training"]["patches_per_image"] == 2
    assert card["training"]["scale_augment"] == 0.5 and card["training"]["dead_leaves"] == 0.5
    # Re-validating the float32 export reproduces the bf16 checkpoint's PSNR closely.
    best = card["best"]
    again = evaluate_pairs(Denoiser(model), load_val_pairs(datasets["local"], "val", 2, NOISE))
    assert again["val_psnr"] == pytest.approx(best["val_psnr"], abs=0.1)


def test_distilling_from_itself_at_weight_one_is_a_zero_loss_step(datasets, tmp_path, capsys):
    """--teacher reaches the workers' step: a student that starts as its own teacher has
    zero loss at --teacher-weight 1 and no gradient, so one step leaves it unchanged
    (without the teacher the same step moves it: see the two-worker test)."""
    init = str(tmp_path / "init.keras")
    models.build_model("unet", **TINY_UNET).save(init)
    run = str(tmp_path / "run")
    code = train(
        datasets["local"], run, "--init-from", init, "--teacher", init, "--teacher-weight", 1,
        "--batch-size", 4, "--steps", 1, "--val-every", 1, "--schedule", "constant",
    )  # fmt: skip
    assert code == 0
    assert f"distilling from {init} (weight 1)" in capsys.readouterr().out
    ckpt = checkpoints(run)[1][1]
    assert read_json(storage.join(ckpt, STATE_FILE))["loss"] == 0.0
    start = models.load_model(init).get_weights()
    for got, want in zip(load_keras(storage.join(ckpt, MODEL_FILE)).get_weights(), start):
        np.testing.assert_array_equal(got, want)
    card = read_json(storage.join(run, "model", "model_card.json"))
    assert card["training"]["teacher"] == init and card["training"]["teacher_weight"] == 1.0


@pytest.mark.parametrize(
    "name, model_args",
    [
        ("seed_cnn", {"filters": [8, 8]}),
        ("dncnn", {"depth": 3, "filters": 8}),
        ("unet_s2d", TINY_UNET),
    ],  # plain unet: every other test trains, exports and reloads it
)
def test_every_model_trains_exports_and_reloads(datasets, tmp_path, name, model_args):
    """...validating on two sets, clean photos (noised) and real-noise pairs: each set's
    PSNR is logged alone, the checkpoint is chosen by the mean over all their images,
    and each reproduces from the exported model."""
    run, local, pairs = str(tmp_path / "run"), datasets["local"], datasets["pairs"]
    code = train(
        local, run, "--model", name, "--model-args", json.dumps(model_args),
        "--batch-size", 4, "--steps", 1, "--val-every", 1, "--val", local, "--val", pairs,
    )  # fmt: skip
    assert code == 0
    ((_, ckpt),) = checkpoints(run).values()
    card, model = check_export(run, name)
    assert card["steps"] == 1
    fresh = models.build_model(name, **model_args)
    assert model.count_params() == fresh.count_params()
    x = noisy_image(1)
    y = np.asarray(model(x))
    assert y.shape == x.shape and np.all(np.isfinite(y))

    state = read_json(storage.join(ckpt, STATE_FILE))
    names = {
        os.path.basename(uri): f"val_psnr/{os.path.basename(uri)}#val" for uri in (local, pairs)
    }
    assert {k for k in state if k.startswith("val_psnr/")} == set(names.values())
    assert state["val_images"] == 4  # --val-limit 2 per set
    assert state["val_psnr"] == pytest.approx(np.mean([state[k] for k in names.values()]))
    assert card["validation"]["sets"] == [{"uri": u, "split": "val"} for u in (local, pairs)]
    for uri in (local, pairs):
        alone = evaluate_pairs(Denoiser(model), load_val_pairs(uri, "val", 2, NOISE))
        assert alone["val_psnr"] == pytest.approx(state[names[os.path.basename(uri)]], abs=1e-3)
    # other images, other noise: a mix-up of the two sets' numbers would show
    a, b = (state[names[os.path.basename(u)]] for u in (local, pairs))
    assert abs(a - b) > 0.1, (a, b)


def test_bad_arguments_are_refused_before_training(datasets, tmp_path):
    run = str(tmp_path / "run")
    # 8 rows cannot fill a batch of 16: refused instead of looping forever.
    assert train(datasets["exact"], run, "--val", datasets["local"], "--batch-size", 16) != 0
    assert train(datasets["local"], run, "--workers", 3, "--batch-size", 8) != 0
    assert train(datasets["exact"], run) != 0  # no val split and no --val
    assert train(datasets["local"], run, "--patches-per-image", 0) != 0
    assert train(datasets["local"], run, "--dead-leaves", 1.5) != 0
    assert train(datasets["local"], run, "--grow") != 0  # nothing to grow from
    assert train(datasets["local"], run, "--val", f"{datasets['local']}#test") != 0  # no such split
    assert not os.path.exists(os.path.join(run, train_job.RAY_DIR, "attempt-001"))
