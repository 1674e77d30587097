"""The ``ingest`` and ``train`` command lines the docs give work as written.

Every ``denoise ingest`` / ``denoise train`` / ``python -m jobs.ingest|train`` line in
README.md and cluster/README.md, and the KubeRay RayJob's entrypoint, is parsed with the
job's own argument parser and the trainer's own :class:`TrainConfig`; then each ingest
command runs for real (its options as written, a small photo folder as SRC, its DST
moved into a moto bucket or a scratch folder) and every training command's ``--data``
and ``--val`` are resolved by :func:`jobs.train.resolve_datasets` against what those
ingests wrote. A doc that trains from ``s3://my-bucket/sidd/train`` (a split, not the
ingested folder) fails here the way it failed for users: "no _manifest.json".
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from denoise_core import storage
from denoise_core.train_config import TrainConfig
from jobs import ingest as ingest_job
from jobs import train as train_job

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", REPO / "cluster" / "README.md")
RAYJOBS = (REPO / "cluster" / "kuberay" / "rayjob-train.yaml",)
COMMAND = re.compile(r"(?:denoise (ingest|train)|python -m jobs\.(ingest|train))(?=\s)(.*)")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, job, argv) of every ingest/train line in the docs' bash blocks and RayJobs."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                m = COMMAND.search(line.split(" #")[0])
                if m:
                    job = m.group(1) or m.group(2)
                    found.append((str(doc.relative_to(REPO)), job, shlex.split(m.group(3))))
    for manifest in RAYJOBS:
        entrypoint = yaml.safe_load(manifest.read_text())["spec"]["entrypoint"]
        m = COMMAND.search(" ".join(entrypoint.split()))
        assert m, f"{manifest.name}: no jobs.train entrypoint"
        found.append((manifest.name, m.group(2), shlex.split(m.group(3))))
    return found


def parse(job: str, argv: list[str]) -> argparse.Namespace:
    module = {"ingest": ingest_job, "train": train_job}[job]
    parser = argparse.ArgumentParser(prog=f"denoise {job}")
    module.add_arguments(parser)
    return parser.parse_args(argv)


class Places:
    """Where a documented URI lands in the test: ``s3://BUCKET/key`` in a moto bucket
    (one prefix per documented bucket name), relative paths in a scratch folder."""

    def __init__(self, bucket: str, scratch: Path) -> None:
        self.bucket, self.scratch = bucket, scratch

    def __call__(self, uri: str) -> str:
        if uri.startswith("s3://"):
            name, _, key = uri[len("s3://") :].partition("/")
            return storage.join(self.bucket, name, key)
        return str(self.scratch / uri)


def _photos(folder: Path, n: int = 10, size: int = 256) -> str:
    """Small smooth photos, each its own scene (so a default val fraction takes some)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size))
        cv2.imwrite(str(folder / f"scene{i:02d}.png"), img)
    return str(folder)


def test_the_docs_name_ingest_and_train_in_every_place():
    where = {(w, job) for w, job, _ in documented_commands()}
    assert {("README.md", "ingest"), ("README.md", "train")} <= where
    assert {("cluster/README.md", "ingest"), ("cluster/README.md", "train")} <= where
    assert ("rayjob-train.yaml", "train") in where


def test_documented_commands_parse_and_train_from_what_ingest_wrote(
    ray_session, s3_bucket, tmp_path
):
    commands = documented_commands()
    places = Places(s3_bucket, tmp_path / "cwd")
    photos = _photos(tmp_path / "photos")
    ingested = 0
    for where, job, argv in commands:
        args = parse(job, argv)
        if job == "ingest":
            # The command's own options; SRC is ours (the docs name downloads), DST theirs.
            dst = places(args.dst)
            assert ingest_job.main([photos, dst, *argv[2:]]) == 0, (where, argv)
            ingested += 1
    assert ingested >= 3, "README's ingest lines and cluster/README.md's"

    resolved = 0
    for where, job, argv in commands:
        if job != "train":
            continue
        args = parse(job, argv)
        if any("…" in a for a in argv):  # a placeholder the prose explains ("--data …")
            continue
        args.data = [places(d) for d in args.data]
        args.val = [places(v) for v in args.val] if args.val else None
        args.storage = places(args.storage)
        args.init_from = None  # a model file, not a data set
        config = TrainConfig.from_args(args)  # every documented number passes the checks
        manifests, problem = train_job.resolve_datasets(config)
        assert problem is None, f"{where}: {shlex.join(argv)}: {problem}"
        assert all(m["splits"]["train"]["rows"] > 0 for m in manifests.values())
        resolved += 1
    assert resolved >= 4, "README (2), cluster/README.md and the RayJob train from ingested sets"


def test_a_split_folder_is_refused_as_a_data_set(ray_session, s3_bucket, tmp_path):
    """What the docs used to say (--data s3://my-bucket/sidd/train): one clear line."""
    dst = f"{s3_bucket}/sidd"
    assert ingest_job.main([_photos(tmp_path / "photos"), dst, "--patch", "256"]) == 0
    config = TrainConfig.from_args(
        parse("train", ["--data", f"{dst}/train", "--storage", str(tmp_path / "run")])
    )
    _, problem = train_job.resolve_datasets(config)
    assert problem and "_manifest.json" in problem


COMMANDS = documented_commands()


@pytest.mark.parametrize(
    "where, job, argv", COMMANDS, ids=[f"{w}:{j}:{i}" for i, (w, j, _) in enumerate(COMMANDS)]
)
def test_each_documented_command_parses(where, job, argv):
    args = parse(job, argv)
    if job == "train" and not any("…" in a for a in argv):
        TrainConfig.from_args(args)
