"""Storage layer on moto's S3: whole-object reads and writes cost one request each."""

from __future__ import annotations

import collections
import logging
import re
import uuid
import zipfile

import pytest

from denoise_core import storage


class _RequestCounter(logging.Handler):
    """Counts the S3 server's requests by HTTP method (werkzeug logs one line each)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r'"(GET|PUT|HEAD|POST|DELETE) ', record.getMessage())
        if found:
            self.counts[found.group(1)] += 1


@pytest.fixture
def s3_requests(s3_server):
    logger = logging.getLogger("werkzeug")
    level = logger.level
    counter = _RequestCounter()
    logger.setLevel(logging.INFO)
    logger.addHandler(counter)
    try:
        yield counter.counts
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)


def test_s3_reads_and_writes_take_one_request_per_object(s3_bucket, s3_requests):
    payloads = {f"{s3_bucket}/out/sub/{i}.png": bytes([i]) * (1000 + i) for i in range(5)}
    for uri, data in payloads.items():
        storage.write_bytes_atomic(uri, data)
    writes = dict(s3_requests)
    s3_requests.clear()
    for uri, data in payloads.items():
        assert storage.read_bytes(uri) == data
    assert dict(s3_requests) == {"GET": 5}  # no HEAD before each GET
    assert writes["PUT"] == 5 and writes.get("HEAD", 0) <= 1  # one parent check, not five


def test_s3_write_still_creates_a_missing_bucket(s3_server):
    uri = f"s3://new-{uuid.uuid4().hex[:12]}/a/b.bin"
    storage.write_bytes_atomic(uri, b"payload")
    assert storage.read_bytes(uri) == b"payload"


def test_read_bytes_reads_zip_members_and_local_files(tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Data/x.png", b"inside")
    assert storage.read_bytes(f"zip://Data/x.png::{archive}") == b"inside"
    storage.write_bytes_atomic(str(tmp_path / "d" / "f.bin"), b"local")
    assert storage.read_bytes(str(tmp_path / "d" / "f.bin")) == b"local"
