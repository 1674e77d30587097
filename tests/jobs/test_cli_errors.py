"""Failures a user can act on come early, in one line, with exit status 2; Ctrl-C is one
line and status 130; a stale Ray record falls back to a local Ray; start-up is quiet.

In-process tests replace ``init_ray`` with a function that fails the test: every refusal
here must come before Ray starts. Two end-to-end tests run the ``denoise`` CLI in a
subprocess against a fresh local Ray (the packaged model, two tiny images).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import fixtures as fx
import numpy as np
import pytest

from denoise_core import manifest, model_file
from jobs import common, preflight, quiet
from jobs import run as run_job
from jobs import train as train_job

REPO = Path(__file__).resolve().parents[2]
DENOISE = str(Path(sys.executable).with_name("denoise"))
# Start-up lines that must not reach a user's screen without --verbose.
NOISE_MARKERS = (
    "core_worker.cc",  # ray#53727's constructor-arguments warning (driver and actors)
    "cuInit",
    "oneDNN",
    "absl::InitializeLog",
    "cuda drivers",
    "cpu_feature_guard",
    "Token authentication is enabled",
    "streaming_executor",
    "INFO:tensorflow",
    "UserWarning",  # e.g. Ray Data's actor pool larger than the blocks it is given
    "warnings.warn",
)


RayStarted = fx.RayStarted


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every refusal must come before Ray starts."""
    fx.forbid_ray_start(monkeypatch, train_job, run_job)


# A line Ray forwards from a worker or the GCS of the test session's own Ray cluster
# (started by earlier tests in this process; the job under test never starts Ray, see
# no_ray): "(pid=gcs_server) ...", "(raylet) ...", "(Actor pid=123) ...", maybe coloured.
_FORWARDED_BY_RAY = re.compile(r"^(\x1b\[\d+m)?\((pid=|raylet\)|[\w()]+ pid=)")


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.strip().splitlines() if not _FORWARDED_BY_RAY.match(ln)]
    assert len(err) == 1 and err[0].startswith("error: "), (captured.out, err)
    return err[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder


# ---------------------------------------------------------------- denoise train


TRAIN_REFUSALS = [
    (["--steps", "0"], "--steps must be positive"),
    (["--steps", "-5"], "--steps must be positive"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--patch", "-1"], "--patch must be positive"),
    (["--patches-per-image", "0"], "--patches-per-image must be positive"),
    (["--val-every", "0"], "--val-every must be positive"),
    (["--keep", "0"], "--keep must be positive"),
    (["--workers", "0"], "--workers must be positive"),
    (["--minutes", "0"], "--minutes must be positive"),
    (["--minutes", "nan"], "--minutes must be positive"),
    (["--lr", "-1"], "--lr must be a positive finite number"),
    (["--lr", "0"], "--lr must be a positive finite number"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--lr", "inf"], "--lr must be a positive finite number"),
    (["--warmup-steps", "-1"], "--warmup-steps must not be negative"),
    (["--gpus-per-worker", "-0.5"], "--gpus-per-worker must not be negative"),
    (["--teacher-weight", "0"], "--teacher-weight must be in (0, 1]"),
    (["--teacher-weight", "1.5"], "--teacher-weight must be in (0, 1]"),
    (["--teacher-weight", "nan"], "--teacher-weight must be in (0, 1]"),
]


@pytest.mark.parametrize(
    "extra,expected", TRAIN_REFUSALS, ids=[" ".join(a) for a, _ in TRAIN_REFUSALS]
)
def test_train_refuses_bad_numbers_before_ray(tmp_path, capsys, extra, expected):
    run = tmp_path / "run"
    argv = ["--data", str(tmp_path / "no-data"), "--storage", str(run), *extra]
    assert train_job.main(argv) == 2
    assert expected in one_error_line(capsys)
    assert not run.exists()


def fake_dataset(root: Path) -> str:
    """A manifest with train and val splits: enough for the driver's checks."""
    empty = {"rows": 8, "bytes": 0, "files": [], "scenes": 1}
    manifest.write_manifest(str(root), {"splits": {"train": empty, "val": empty}})
    return str(root)


def test_train_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    data = fake_dataset(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()  # an empty run folder: nothing to resume
    assert train_job.main(["--data", data, "--storage", str(run), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "--resume: no checkpoint under" in line and str(run) in line
    assert list(run.iterdir()) == []


def test_train_resume_if_any_starts_a_new_run(tmp_path):
    data = fake_dataset(tmp_path / "data")
    with pytest.raises(RayStarted):  # got past every check, to the point Ray starts
        train_job.main(["--data", data, "--storage", str(tmp_path / "run"), "--resume-if-any"])


@pytest.mark.parametrize("flag", ["--init-from", "--teacher"])
def test_train_refuses_a_missing_model_file_before_ray(tmp_path, capsys, flag):
    data = fake_dataset(tmp_path / "data")
    missing = tmp_path / "nowhere" / "model.keras"
    run = tmp_path / "run"
    assert train_job.main(["--data", data, "--storage", str(run), flag, str(missing)]) == 2
    assert f"{flag}: no model file at {missing}" in one_error_line(capsys)
    assert not run.exists()


def test_train_resume_and_resume_if_any_exclude_each_other(tmp_path):
    with pytest.raises(SystemExit) as exc:
        train_job.main(["--data", "d", "--storage", "s", "--resume", "--resume-if-any"])
    assert exc.value.code == 2


# ---------------------------------------------------------------- denoise run: places


def test_run_refuses_output_under_a_regular_file(tmp_path, capsys):
    src = write_images(tmp_path / "in")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert run_job.main([str(src), str(blocker / "out")]) == 2
    assert "lies under" in one_error_line(capsys)
    assert run_job.main([str(src), str(blocker)]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert blocker.read_text() == "mine"


def test_run_refuses_an_output_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    src = write_images(tmp_path / "in")
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)  # root writes all
    assert run_job.main([str(src), str(tmp_path / "out")]) == 2
    assert "is not writable" in one_error_line(capsys)


@pytest.fixture
def dead_s3(monkeypatch):
    """S3 settings pointing at a port nothing listens on."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return endpoint


@pytest.mark.parametrize("side", ["input", "output"])
def test_run_unreachable_s3_is_one_line_within_seconds(tmp_path, capsys, dead_s3, side):
    local = write_images(tmp_path / "in") if side == "output" else tmp_path / "out"
    argv = ["s3://bucket/in", str(local)] if side == "input" else [str(local), "s3://bucket/out"]
    start = time.time()
    assert run_job.main(argv) == 2
    line = one_error_line(capsys)
    assert f"cannot reach the S3 endpoint {dead_s3}" in line
    assert time.time() - start < 15


def test_ingest_and_train_unreachable_s3_is_one_line_within_seconds(
    tmp_path, capsys, monkeypatch, dead_s3
):
    from jobs import ingest as ingest_job

    fx.forbid_ray_start(monkeypatch, ingest_job)
    start = time.time()
    assert ingest_job.main(["s3://bucket/photos", str(tmp_path / "dst")]) == 2
    assert f"cannot reach the S3 endpoint {dead_s3}" in one_error_line(capsys)
    argv = ["--data", "s3://bucket/sidd@0.5", "--storage", str(tmp_path / "run")]
    assert train_job.main(argv) == 2
    assert f"cannot reach the S3 endpoint {dead_s3}" in one_error_line(capsys)
    assert time.time() - start < 30
    assert not (tmp_path / "dst").exists()


def test_storage_errors_become_one_line():
    from botocore.exceptions import ClientError, NoCredentialsError

    denied = ClientError(
        {"Error": {"Code": "InvalidAccessKeyId", "Message": "no"}}, "ListObjectsV2"
    )
    line = preflight.storage_error_line(denied, "s3://b/k")
    assert "S3 refused access to s3://b/k (InvalidAccessKeyId)" in line
    wrapped = PermissionError("Access Denied")
    wrapped.__cause__ = denied
    assert "InvalidAccessKeyId" in preflight.storage_error_line(wrapped)
    assert "no usable AWS credentials" in preflight.storage_error_line(NoCredentialsError())
    assert preflight.storage_error_line(ValueError("something else")) is None


# ---------------------------------------------------------------- denoise run: the model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    import keras

    root = tmp_path_factory.mktemp("models")
    built = {}
    x = keras.Input((None, None, 1))
    built["grey-in"] = keras.Model(x, keras.layers.Conv2D(3, 3, padding="same")(x))
    seq = [keras.Input((None, None, 3)), keras.layers.Conv2D(1, 3, padding="same")]
    built["grey-out"] = keras.Sequential([*seq, keras.layers.Activation("relu")])
    x = keras.Input((None, None, 3))
    built["lambda"] = keras.Model(x, keras.layers.Lambda(lambda t: t * 0.5, name="halve")(x))
    x = keras.Input((None, None, 3))
    y = keras.layers.Add(name="clean")([x, keras.layers.Conv2D(3, 3, padding="same")(x)])
    built["rgb"] = keras.Model(x, y)
    paths = {}
    for name, model in built.items():
        paths[name] = str(root / f"{name}.keras")
        model.save(paths[name])
    return paths


@pytest.mark.parametrize(
    "name,expected",
    [
        ("grey-in", "has 1-channel input"),
        ("grey-out", "has 1-channel output"),
        ("lambda", "has a Lambda layer (halve)"),
    ],
)
def test_run_refuses_a_model_it_cannot_use_before_ray(tmp_path, capsys, models, name, expected):
    src = write_images(tmp_path / "in")
    start = time.time()
    assert run_job.main([str(src), str(tmp_path / "out"), "--model", models[name]]) == 2
    assert expected in one_error_line(capsys)
    assert time.time() - start < 10
    assert not (tmp_path / "out").exists()


def test_model_config_of_usable_models(models):
    from denoise_core.weights import default_model_path

    for path in (models["rgb"], default_model_path()):
        with open(path, "rb") as fh:
            info = model_file.inspect_config(model_file.read_config(fh))
        assert (info.input_channels, info.output_channels, info.lambda_layers) == (3, 3, [])
        assert model_file.problem(info, path) is None
    unknown = model_file.inspect_config({})  # nothing said: nothing refused
    assert model_file.problem(unknown, "m.keras") is None


def test_run_with_a_usable_model_gets_to_ray(tmp_path, models):
    src = write_images(tmp_path / "in")
    with pytest.raises(RayStarted):
        run_job.main([str(src), str(tmp_path / "out"), "--model", models["rgb"]])


# ---------------------------------------------------------------- Ctrl-C


def test_keyboard_interrupt_is_one_line_and_status_130(capsys):
    def add_arguments(parser):
        parser.add_argument("--x", default=None)

    def run(args):
        raise KeyboardInterrupt

    assert common.job_main("run", "doc", add_arguments, run, []) == 130
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [
        "interrupted; outputs written so far are kept: rerun the same command to resume "
        "(images already written are skipped)"
    ]


# ---------------------------------------------------------------- stale Ray record


@pytest.fixture
def ray_record(tmp_path, monkeypatch):
    """``ray_current_cluster`` under a private RAY_TMPDIR (the real /tmp/ray is left
    alone), with ``ray.init`` recorded instead of run."""
    import ray

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray").mkdir()
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(common, "quiet_ray_data", lambda: None)
    return tmp_path / "ray" / "ray_current_cluster", calls


def test_stale_ray_record_starts_a_local_ray_with_one_warning(ray_record, capsys):
    record, calls = ray_record
    record.write_text(f"127.0.0.1:{closed_port()}")
    start = time.time()
    common.init_ray()
    assert time.time() - start < 3
    assert len(calls) == 1 and calls[0]["address"] == "local"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the Ray cluster recorded in")
    assert str(record) in err[0] and "does not answer" in err[0]
    env = calls[0]["runtime_env"]
    assert env["worker_process_setup_hook"] == quiet.SETUP_HOOK


def test_live_ray_record_is_joined_and_no_record_starts_local(ray_record, capsys):
    record, calls = ray_record
    common.init_ray()  # no record: ray.init decides (starts a local Ray)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        record.write_text(f"127.0.0.1:{server.getsockname()[1]}")
        common.init_ray()  # a live record: ray.init joins it as before
    assert [c.get("address") for c in calls] == [None, None]
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- quiet output


def test_native_stderr_filter_drops_noise_and_keeps_the_rest(capfd):
    with quiet.native_stderr_filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\n")
        os.write(2, b"I0000 00:00:1795736839.331587   14268 port.cc:153] oneDNN custom\n")
        os.write(2, b"E0000 00:00:1795737035.41 14268 cuda_platform.cc:52] failed call to cuInit\n")
        os.write(2, b"E0000 00:00:1795737035.41 14268 kernel.cc:12] a real error\n")
        os.write(2, b"plain text stays\n")
    assert capfd.readouterr().err.splitlines() == [
        "E0000 00:00:1795737035.41 14268 kernel.cc:12] a real error",
        "plain text stays",
    ]


def test_ray_datas_interrupted_listing_traceback_is_dropped_whole():
    """The traceback Ray Data's file listing leaves in training logs when an epoch's
    iteration stops early (11 lines in runs/ab-psnr.log) goes as one block, also when
    it arrives over several records of its process (as in runs/v12-a.log); our own
    lines around it stay, and a block that turns out to be something else is printed
    whole."""
    traceback = [
        "Exception in thread pool-3/completion-signaler:",
        "Traceback (most recent call last):",
        '  File ".../ray/data/_internal/dynamic_work_queue.py", line 180, in _signal_completion',
        "    pool.work_queue.put(SENTINEL)",
        '  File ".../ray/data/_internal/util.py", line 1082, in put',
        "    raise InterruptedError()",
        "InterruptedError",
    ]
    mismatch = (
        "[2026-11-27 17:54:15,844 E 12144 12203] core_worker.cc:4621: Mismatched ActorID: "
        "ignoring KillActor for previous actor 10cd, current actor ID: NIL_ID"
    )
    printed = []
    printer = quiet._without_noise(lambda data: printed.append(data["lines"]))
    printer({"pid": 1, "lines": ["step 500/3000", *traceback, mismatch, "step 1000/3000"]})
    printer({"pid": 2, "lines": traceback[:4]})
    printer({"pid": 3, "lines": ["step 1500/3000"]})  # another process meanwhile
    printer({"pid": 2, "lines": traceback[4:]})
    printer({"pid": 4, "lines": traceback[:3]})
    printer({"pid": 4, "lines": ["error: ours, not the listing's"]})
    assert printed == [
        ["step 500/3000", "step 1000/3000"],
        ["step 1500/3000"],
        [*traceback[:3], "error: ours, not the listing's"],
    ]


def test_forwarded_ray_internal_lines_are_dropped_and_the_rest_kept(ray_session, capsys):
    """A Ray task writes Ray-internal lines and its own line to stderr, and the raylet's
    worker-pool warning arrives as a GCS error message (as it did in every training
    log); the driver (the test session's real Ray, filtered as ``init_ray`` does)
    prints only our own lines, and (captured: no terminal) without colour codes."""
    import ray

    noise = [
        "[2026-11-27 05:43:34,528 E 8207 8244] core_worker.cc:2465: Actor with class name: "
        "'PreemptionWatcher' and ID: 'f45e' has constructor arguments in the object store "
        "and max_restarts > 0. If the arguments ...",
        "WARNING: 8 PYTHON worker processes have been started on node: c52 with address: "
        "192.0.2.2, which is 4x the maximum expected startup concurrency (2).",
    ]
    own = "error: a line of ours that must reach the user"

    def write_to_stderr(lines: list[str]) -> None:  # defined here: pickled by value
        for line in lines:
            print(line, file=sys.stderr, flush=True)

    quiet.filter_forwarded_logs()
    assert not quiet.filter_forwarded_logs()  # wrapped once, not twice
    capsys.readouterr()
    ray.get(ray.remote(write_to_stderr).remote([*noise, own]))
    deadline = time.time() + 20
    err = ""
    while own not in err and time.time() < deadline:
        time.sleep(0.2)
        err += capsys.readouterr().err
    assert own in err
    assert "core_worker.cc" not in err and "PYTHON worker processes" not in err, err
    assert "pid=" in err and "\x1b[" not in err, err  # prefix kept, no colour codes in a log

    # The raylet's own warnings travel as GCS error messages to every driver (another
    # path to the terminal, its own thread): published the way the raylet does.
    from ray._private.utils import publish_error_to_driver

    gcs = ray._private.worker.global_worker.gcs_client
    for line in (noise[1], own):
        publish_error_to_driver("worker_pool_large", line, gcs)
    out = ""
    deadline = time.time() + 20
    while own not in out and time.time() < deadline:
        time.sleep(0.2)
        out += capsys.readouterr().out
    assert own in out
    assert "PYTHON worker processes" not in out, out


_NATIVE_WRITER = """
import os, sys, time
from jobs import quiet
stop = quiet.filter_native_stderr([])
line = (b"[2026-11-27 06:43:45,098 E 30485 30485] core_worker.cc:2465: Actor with class name:"
        b" 'MapWorker(MapBatches(FusedStage))' and ID: 'e03' has constructor arguments in the"
        b" object store and max_restarts > 0. If the arguments ... for more details.\\n")
os.write(2, b"\\rdenoise:   0%|          | 0/11 [00:00<?, ?img/s]")
time.sleep(0.3)
os.write(2, line[:70])  # a glog line in two writes: held until it ends
time.sleep(0.3)
os.write(2, line[70:])
os.write(2, b"E0000 00:00:1795737035.41 14268 kernel.cc:12] a real error\\n")
print("from Python", file=sys.stderr)
os.write(2, b"\\rdenoise: 100%|##########| 11/11 [00:59<00:00]")
stop()
os.write(2, b"\\nafter the filter\\n")
"""


def test_native_stderr_filter_for_life_drops_ray_s_warning_and_passes_the_rest():
    proc = subprocess.run(
        [sys.executable, "-c", _NATIVE_WRITER],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENV},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode() == (
        "\rdenoise:   0%|          | 0/11 [00:00<?, ?img/s]"
        "E0000 00:00:1795737035.41 14268 kernel.cc:12] a real error\n"
        "from Python\n"
        "\rdenoise: 100%|##########| 11/11 [00:59<00:00]"
        "\nafter the filter\n"
    )


def test_runtime_env_leaves_what_a_job_submitter_set(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    submitted = {"runtime_env": {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}, "working_dir": "."}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(submitted))
    env = quiet.runtime_env()
    assert "TF_CPP_MIN_LOG_LEVEL" not in env["env_vars"]  # Ray refuses a key set twice
    assert env["env_vars"]["GRPC_VERBOSITY"] == "ERROR"
    assert env["worker_process_setup_hook"] == quiet.SETUP_HOOK
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    assert quiet.runtime_env()["env_vars"] == {quiet.VERBOSE_ENV: "1"}


def cli_env(ray_tmp: str) -> dict[str, str]:
    # A user's shell, not this test process's: importing JAX (when installed) sets
    # TF_CPP_MIN_LOG_LEVEL=1 here, and the CLI never overrides a value it inherits.
    dropped = {"RAY_ADDRESS", quiet.VERBOSE_ENV, *quiet.QUIET_ENV}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["RAY_TMPDIR"] = ray_tmp  # a private Ray temp dir: its own current-cluster record
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_small_run_is_quiet_and_survives_a_stale_ray_record(tmp_path, ray_tmp):
    src = write_images(tmp_path / "in")
    out = tmp_path / "out"
    os.makedirs(os.path.join(ray_tmp, "ray"))
    with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
        f.write(f"127.0.0.1:{closed_port()}")
    start = time.time()
    proc = subprocess.run(
        [DENOISE, "run", str(src), str(out)],
        cwd=REPO,
        env=cli_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.time() - start
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    lines = text.splitlines()
    assert any("does not answer; starting a local Ray instead" in ln for ln in lines), text
    assert not [ln for ln in lines if any(m in ln for m in NOISE_MARKERS)], text
    assert len(lines) <= 8, text
    assert sorted(p.name for p in out.glob("img*.png")) == ["img0.png", "img1.png"]
    assert seconds < 240


@pytest.mark.slow
def test_null_model_run_on_fewer_blocks_than_cpus_is_quiet(tmp_path, ray_tmp):
    """The null model's default pool is one actor per CPU; with fewer blocks of work than
    that, the pool is cut to the blocks (Ray Data otherwise warns about the actors it
    cannot feed)."""
    src = write_images(tmp_path / "in")
    proc = subprocess.run(
        [DENOISE, "run", str(src), str(tmp_path / "out"), "--model", "identity"],
        cwd=REPO,
        env=cli_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert not [ln for ln in text.splitlines() if any(m in ln for m in NOISE_MARKERS)], text
    assert sorted(p.name for p in (tmp_path / "out").glob("img*.png")) == ["img0.png", "img1.png"]


@pytest.mark.slow
def test_a_ctrl_c_that_a_library_swallowed_still_stops_the_run(capsys):
    """CI once saw a Ctrl-C during Ray's start-up lost and the run finish (exit 0):
    the run's result loop (jobs.run._interruptible) checks raise_if_interrupted."""
    from jobs import common

    checked = []

    def run(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # what the library did
        for i in range(3):
            checked.append(i)
            common.raise_if_interrupted()
        return 0

    assert common.run_guarded("run", run, None) == 130
    assert checked == [0]
    assert "interrupted; outputs written so far are kept" in capsys.readouterr().err
    assert common.run_guarded("run", lambda args: 0, None) == 0  # the next run starts clean


@pytest.mark.slow
def test_ctrl_c_during_training_prints_one_line_and_exits_130(tmp_path, ray_tmp):
    """During fit Ray Train swaps in its own Ctrl-C handler, which aborts the run and
    left the driver to exit 1 with nothing printed; now it is the same one line and
    status 130 as everywhere else, and the run folder stays for --resume."""
    src = write_images(tmp_path / "in", n=4)
    data, run = tmp_path / "data", tmp_path / "run"
    ingest = subprocess.run(
        [DENOISE, "ingest", str(src), str(data), "--val-fraction", "0.5"],
        cwd=REPO, env=cli_env(ray_tmp), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    argv = [DENOISE, "train", "--data", str(data), "--model-args", '{"widths": [4, 8]}']
    argv += ["--steps", "100000", "--batch-size", "2", "--patch", "32", "--storage", str(run)]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=cli_env(ray_tmp), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        seen = []
        while not (seen and seen[-1].startswith("train: ")):  # printed just before fit
            line = proc.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        time.sleep(10)  # the controller started, Ray Train's handler in place
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted; outputs written so far are kept: rerun with --resume" in rest, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert (run / "ray").is_dir()


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, ray_tmp):
    src = write_images(tmp_path / "in")
    proc = subprocess.Popen(
        [DENOISE, "run", str(src), str(tmp_path / "out")],
        cwd=REPO,
        env=cli_env(ray_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = proc.stdout.readline()  # "run: 2 images ...": planned, Ray about to start
    assert first.startswith("run:"), first
    time.sleep(5)  # Ray starting or the model actor loading
    proc.send_signal(signal.SIGINT)
    start = time.time()
    try:
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.time() - start < 30
    assert proc.returncode == 130, rest
    assert "interrupted; outputs written so far are kept" in rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
