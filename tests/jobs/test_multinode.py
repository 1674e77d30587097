"""A real two-node Ray cluster on this machine, jobs submitted with token auth, S3 only.

Each node is its own ``ray start … --block`` process, as on real machines: the head
(GCS, dashboard, job server) and a second raylet that joins it with
``ray start --address``. Token authentication is on, with a token made for this
test and handed to the nodes as ``RAY_AUTH_TOKEN`` (``~/.ray/auth_token`` is left
alone). moto's S3 server is the only storage the jobs share: the photos are uploaded
to a bucket, every job reads and writes ``s3://`` URIs, and each job's code reaches
the cluster as a ``working_dir`` package through the Job Submission API.

The chain users run: ingest -> train with 2 workers on different nodes
(``--placement STRICT_SPREAD``) -> bulk denoise with the exported model. Each job
must reach SUCCEEDED and leave its outputs in S3; a request without the token is
refused. The nodes are stopped with SIGTERM (their ``--block`` process then stops
every Ray process it started), never with ``ray stop``, which would also stop the
test session's own Ray.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import s3fs

REPO = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")
N_PHOTOS, SIZE = 8, 96
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# The job's code travels as a package: leave out what is large and not code.
EXCLUDES = [".venv", ".git", "runs", "demo-output", "__pycache__", "*.pyc", ".ruff_cache"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class LocalCluster:
    """A head and one worker node, each a ``ray start --block`` child process."""

    def __init__(self, root: Path, env: dict[str, str], token: str) -> None:
        self.root, self.env, self.token = root, env, token
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the child)
        common = [
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--object-store-memory=200000000",
            "--dashboard-agent-listen-port=0",
            "--disable-usage-stats",
        ]
        proc = subprocess.Popen(
            [str(RAY_BIN), "start", *args, *common],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)

    def start(self) -> None:
        self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.root / 'head'}",
            ],
        )
        self._wait(lambda: http_get(f"{self.dashboard}/api/version", self.token)[0] == 200, "head")
        self._start(
            "worker",
            [f"--address=127.0.0.1:{self.gcs_port}", "--include-log-monitor=false"],
        )
        self._wait(lambda: len(self.alive_nodes()) == 2, "second node")

    def alive_nodes(self) -> list[str]:
        status, body = http_get(f"{self.dashboard}/nodes?view=summary", self.token)
        if status != 200:
            return []
        summary = json.loads(body).get("data", {}).get("summary", [])
        return [n["raylet"]["nodeId"] for n in summary if n["raylet"].get("state") == "ALIVE"]

    def _wait(self, ready, what: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"ray start exited ({proc.returncode}): {self.logs()}")
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        raise TimeoutError(f"{what} not up after {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the worker first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def cluster(s3_server):
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    # Short root: Ray's unix socket paths live under the temp dir (107-byte limit).
    root = Path(tempfile.mkdtemp(prefix="rmn-", dir="/tmp"))
    local = LocalCluster(root, env, token)
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def photos_bucket(s3_server) -> tuple[str, list[str]]:
    """Noisy/clean photo pairs (``noisy/`` + ``clean/``) uploaded to a fresh bucket."""
    fs = s3fs.S3FileSystem()
    bucket = f"s3://multinode-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("noisy", "clean"):
            os.makedirs(os.path.join(tmp, sub))
        names = []
        for i in range(N_PHOTOS):
            small = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
            clean = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
            noisy = clean + rng.normal(0, 40, clean.shape)
            name = f"shot{i:02d}.png"
            for sub, img in (("clean", clean), ("noisy", noisy)):
                ok = cv2.imwrite(
                    os.path.join(tmp, sub, name), np.clip(img, 0, 255).astype(np.uint8)
                )
                assert ok
            names.append(name)
        fs.put(tmp + "/", f"{bucket}/photos/", recursive=True)
    s3fs.S3FileSystem.clear_instance_cache()
    return bucket, names


def submit(cluster: LocalCluster, module: str, args: list[str], timeout: float = 600) -> str:
    """Submit ``python -m jobs.MODULE ARGS`` with the token; wait; return its logs."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(
        cluster.dashboard, headers={"Authorization": f"Bearer {cluster.token}"}
    )
    s3_env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    entrypoint = shlex.join([sys.executable, "-m", f"jobs.{module}", *args])
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": s3_env},
    )
    deadline = time.time() + timeout
    status = client.get_job_status(job_id)
    while str(status) not in TERMINAL and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert str(status) == "SUCCEEDED", f"{module}: {status}\n{logs[-6000:]}"
    return logs


def test_request_without_token_is_refused(cluster):
    status, _ = http_get(f"{cluster.dashboard}/api/jobs/")
    assert status in (401, 403)
    status, _ = http_get(f"{cluster.dashboard}/api/jobs/", token="0" * 64)
    assert status in (401, 403)
    assert http_get(f"{cluster.dashboard}/api/jobs/", cluster.token)[0] == 200


def test_ingest_train_run_on_two_nodes(cluster, photos_bucket):
    bucket, names = photos_bucket
    fs = s3fs.S3FileSystem()
    dataset, run, out = f"{bucket}/dataset", f"{bucket}/run", f"{bucket}/denoised"

    submit(cluster, "ingest", [f"{bucket}/photos", dataset, "--patch", "32", "--stride", "32",
                               "--val-fraction", "0.25", "--seed", "0"])  # fmt: skip
    fs.invalidate_cache()
    manifest = json.loads(fs.cat(f"{dataset}/_manifest.json"))
    assert set(manifest["splits"]) == {"train", "val"}

    logs = submit(cluster, "train", [
        "--data", dataset, "--storage", run, "--workers", "2", "--cpus-per-worker", "1",
        "--placement", "STRICT_SPREAD", "--model", "unet", "--model-args",
        json.dumps({"widths": [8, 16]}), "--patch", "32", "--batch-size", "8",
        "--steps", "4", "--val-every", "2", "--val-limit", "2", "--seed", "0",
    ])  # fmt: skip
    placed = dict(re.findall(r"worker (\d)/2 on node ([0-9a-f]+)", logs))
    assert set(placed) == {"0", "1"}, logs[-4000:]
    assert placed["0"] != placed["1"], "both workers ran on one node"
    assert set(placed.values()) <= set(cluster.alive_nodes())
    fs.invalidate_cache()
    card = json.loads(fs.cat(f"{run}/model/model_card.json"))
    assert card["steps"] == 4 and card["training"]["workers"] == 2
    assert fs.exists(f"{run}/model/model.keras")

    submit(cluster, "run", [f"{bucket}/photos", out, "--model", f"{run}/model/model.keras"])
    fs.invalidate_cache()
    for name in names:
        assert fs.exists(f"{out}/noisy/{name}"), f"no output for noisy/{name}"
    with fs.open(f"{out}/metrics.parquet", "rb") as f:
        metrics = pq.read_table(f).to_pylist()
    assert len(metrics) == N_PHOTOS
    assert all(m["psnr"] > 0 and m["input_psnr"] > 0 for m in metrics)
    assert fs.exists(f"{out}/report.html") and fs.exists(f"{out}/summary.json")
