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


def test_image_listing_rules_are_one_for_every_listing(tmp_path):
    """Hidden files and folders (macOS ``._`` forks, ``.thumbnails``, a zip's
    ``__MACOSX``) are never inputs, in any listing; hidden folders above the listed
    root do not count."""
    root = tmp_path / ".cache" / "photos"
    for key in ("a.JPG", "sub/b.png", "._a.JPG", ".thumbnails/c.png", "__MACOSX/d.png", "e.txt"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x")
    found = [uri.split("/photos/", 1)[1] for uri in storage.walk_images(str(root))]
    assert found == ["a.JPG", "sub/b.png"]
    assert [k for k in ("x.HEIC", "x.heic.txt", ".x.png") if storage.is_input_image(k)] == [
        "x.HEIC"
    ]
