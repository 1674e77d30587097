"""Shared test infrastructure: a moto S3 server, one Ray session, storage roots, data.

- ``s3_server`` (session): moto's ThreadedMotoServer on 127.0.0.1 at a free port, with
  the standard AWS variables set in ``os.environ`` so s3fs, pyarrow and Ray workers
  started afterwards all talk to it.
- ``s3_bucket`` (function): a fresh, uniquely named bucket, as ``s3://name``.
- ``ray_session`` (session): one local Ray for the whole run, started after the S3
  environment is in place (Ray workers inherit the driver's environment).
- ``storage_root`` (function, parametrized): a local folder and an ``s3://`` prefix, so
  every storage test runs against both.
- ``shared_data``: ``../shared/data`` beside the checkout, or a skip with the reason.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# tests/ helpers (fixtures.py) importable as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    # Never pick up a developer's real profile or credentials file.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def _clear_s3fs_cache() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_server():
    """Start moto's S3 on a free local port; yield the endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per S3 request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*_AWS_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(_AWS_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)
    _clear_s3fs_cache()
    try:
        yield endpoint
    finally:
        _clear_s3fs_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket for one test, as ``s3://name``."""
    import s3fs

    name = f"test-{uuid.uuid4().hex[:16]}"
    _clear_s3fs_cache()
    s3fs.S3FileSystem().mkdir(name)
    yield f"s3://{name}"
    _clear_s3fs_cache()


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One local Ray for the whole test session, started after the S3 env is set."""
    import ray

    from jobs.common import quiet_ray_data

    if ray.is_initialized():  # someone else's session in this process: start clean
        ray.shutdown()
    saved_address = os.environ.pop("RAY_ADDRESS", None)
    # address="local": never join a cluster someone started on this machine with `ray start`.
    # 4 logical CPUs on a 2-core machine keep Ray Data's tasks from starving each other.
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=512 * 2**20,
        log_to_driver=True,
        logging_level=logging.WARNING,
    )
    quiet_ray_data()
    # Ray Data logs every execution at DEBUG; keep failure reports readable.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved_address is not None:
            os.environ["RAY_ADDRESS"] = saved_address


@pytest.fixture(params=["local", "s3"])
def storage_root(request, tmp_path):
    """A local folder or a fresh ``s3://bucket/prefix``: storage tests run against both."""
    if request.param == "local":
        root = tmp_path / "storage"
        root.mkdir()
        yield str(root)
    else:
        bucket = request.getfixturevalue("s3_bucket")
        yield f"{bucket}/root-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real photographs); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared image data not found at {SHARED_DATA} (it lives beside the checkout "
            "as ../shared/data on development machines and CI, not in the repository)"
        )
    return SHARED_DATA
