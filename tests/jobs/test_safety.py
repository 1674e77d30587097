"""Nothing a user owns is deleted or overwritten by ``denoise ingest`` or ``denoise run``.

Destinations are compared with the sources once resolved (symbolic links, ``..``,
doubled or trailing slashes, S3 prefixes) and refused with one line and exit code 2
before anything is deleted and before Ray starts (``init_ray`` is replaced by a
function that fails the test). Every test checks the sources afterwards, byte for byte.
No Ray here: every case is refused, or checked, in the driver.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import fixtures as fx
import pytest
import s3fs

from denoise_core import bulk, manifest, storage
from jobs import ingest as ingest_job
from jobs import run as run_job

# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """A refusal must come before Ray starts."""
    fx.forbid_ray_start(monkeypatch, ingest_job, run_job)


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (links not followed) and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def s3_tree(uri: str) -> dict[str, bytes]:
    s3fs.S3FileSystem.clear_instance_cache()
    fs, root = storage.open_fs(uri)
    return {p: fs.cat_file(p) for p in sorted(fs.find(root))}


def upload(folder: Path, uri: str) -> None:
    for key, data in tree(folder).items():
        storage.write_bytes_atomic(storage.join(uri, *key.split("/")), data)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def photos(tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    fx.make_folder_pairs(src)
    return src


def fake_model(tmp_path: Path) -> str:
    """Enough of a .keras file to pass the driver's model check (never loaded here)."""
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
    return str(path)


# ---------------------------------------------------------------- the path-relation helper


def test_path_relation_local_resolves_links_and_dots(tmp_path):
    src = photos(tmp_path)
    (tmp_path / "to_src").symlink_to(src)
    (tmp_path / "to_top").symlink_to(tmp_path)
    rel = storage.path_relation
    assert rel(str(src), str(src)) == "same"
    assert rel(f"{src}/", str(src)) == "same"
    assert rel(f"{src}/noisy/..", str(src)) == "same"
    assert rel(str(tmp_path / "to_src"), str(src)) == "same"
    assert rel(str(tmp_path), str(src)) == "contains"
    assert rel(str(tmp_path / "to_top"), str(src)) == "contains"
    assert rel(str(tmp_path / "to_src" / "new" / "deeper"), str(src)) == "inside"
    assert rel(str(tmp_path / "photos2"), str(src)) is None  # a prefix of the name only
    assert rel(str(tmp_path / "elsewhere"), str(src)) is None
    assert rel(str(tmp_path), f"zip://a.png::{tmp_path / 'set.zip'}") == "contains"
    assert storage.relative_location(str(tmp_path / "to_src"), str(src / "out" / "x")) == "out/x"
    assert tree(src)  # the helper only looks


def test_path_relation_s3_normalises_bucket_and_prefix(s3_bucket, tmp_path):
    b = s3_bucket
    upload(photos(tmp_path), f"{b}/photos")
    before = s3_tree(b)
    rel = storage.path_relation
    assert rel(f"{b}/photos/", f"{b}/photos") == "same"
    assert rel(f"{b}//photos/./", f"{b}/photos") == "same"
    assert rel(f"{b}/x/../photos", f"{b}/photos") == "same"
    assert rel(b, f"{b}/photos") == "contains"
    assert rel(f"{b}/", f"{b}/photos/noisy") == "contains"
    assert rel(f"{b}/photos/out", f"{b}/photos") == "inside"
    assert rel(f"{b}/photos2", f"{b}/photos") is None
    assert rel(f"{b}-other/photos", f"{b}/photos") is None
    assert rel(str(tmp_path / "photos"), f"{b}/photos") is None  # local vs S3
    assert storage.relative_location(f"{b}/photos/", f"{b}//photos/out/") == "out"
    assert s3_tree(b) == before


# ---------------------------------------------------------------- ingest


def _ingest(src, dst, *args) -> int:
    return ingest_job.main([str(src), str(dst), *args])


# DST built from (tmp_path, SRC): every one of these would delete or mix into the source.
INGEST_DSTS = {
    "same": lambda t, s: s,
    "same-dotdot": lambda t, s: f"{s}/noisy/..",
    "parent": lambda t, s: t,
    "inside": lambda t, s: s / "shards",
    "link-to-src": lambda t, s: _link(t / "link", s),
    "link-to-parent": lambda t, s: _link(t / "link", t),
}


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("case", list(INGEST_DSTS))
def test_ingest_refuses_dst_at_src(tmp_path, capsys, case, overwrite):
    src = photos(tmp_path)
    before = tree(src)
    dst = INGEST_DSTS[case](tmp_path, src)
    assert _ingest(src, dst, *(["--overwrite"] if overwrite else [])) == 2
    assert "SRC" in one_error_line(capsys)
    assert tree(src) == before
    assert not (src / "shards").exists()


def test_ingest_refuses_src_reached_through_a_link(tmp_path, capsys):
    src = photos(tmp_path)
    before = tree(src)
    link = _link(tmp_path / "link", src)
    assert _ingest(link, src, "--overwrite") == 2
    assert "is SRC itself" in one_error_line(capsys)
    assert tree(src) == before


@pytest.mark.parametrize("dst", ["", "/", "/photos/", "//photos", "/photos/./", "/x/../photos"])
def test_ingest_refuses_dst_at_src_on_s3(s3_bucket, tmp_path, capsys, dst):
    upload(photos(tmp_path), f"{s3_bucket}/photos")
    before = s3_tree(s3_bucket)
    assert _ingest(f"{s3_bucket}/photos", s3_bucket + dst, "--overwrite") == 2
    assert "SRC" in one_error_line(capsys)
    assert s3_tree(s3_bucket) == before


def _earlier_ingest(dst: str) -> None:
    """What an earlier ingest leaves under DST (made by hand: no Ray here)."""
    storage.write_bytes_atomic(manifest.manifest_uri(dst), b"{}")
    storage.write_bytes_atomic(storage.join(dst, manifest.ERRORS_NAME), b"errors")
    for rel in ("train/part-00000-000.parquet", "val/part-00001-000.parquet"):
        storage.write_bytes_atomic(storage.join(dst, *rel.split("/")), b"shard")


@pytest.mark.parametrize("foreign", ["notes.txt", "train/holiday.png", "train/stray.parquet"])
def test_ingest_overwrite_refuses_files_it_did_not_write(storage_root, tmp_path, capsys, foreign):
    src = photos(tmp_path)
    before_src = tree(src)
    dst = storage.join(storage_root, "ds")
    _earlier_ingest(dst)
    storage.write_bytes_atomic(storage.join(dst, *foreign.split("/")), b"the user's")
    before = s3_tree(dst) if storage.is_remote(dst) else tree(Path(dst))
    assert _ingest(src, dst, "--overwrite") == 2
    message = one_error_line(capsys)
    assert foreign in message and "did not write" in message
    assert (s3_tree(dst) if storage.is_remote(dst) else tree(Path(dst))) == before
    assert tree(src) == before_src


def test_ingest_overwrite_deletes_only_an_earlier_ingest(storage_root, tmp_path):
    src = photos(tmp_path)
    before_src = tree(src)
    dst = storage.join(storage_root, "ds")
    _earlier_ingest(dst)
    storage.write_bytes_atomic(storage.join(dst, "_manifest.json.tmp-" + "0" * 32), b"{")
    ingest_job._prepare_destination(dst, overwrite=True)
    s3fs.S3FileSystem.clear_instance_cache()
    fs, path = storage.open_fs(dst)
    assert fs.find(path) == []
    if not storage.is_remote(dst):
        assert os.listdir(dst) == []  # the emptied split folders went too
    assert tree(src) == before_src


def test_ingest_overwrite_refuses_a_file_as_dst(tmp_path, capsys):
    src = photos(tmp_path)
    before = tree(src)
    (tmp_path / "thesis.pdf").write_bytes(b"years of work")
    assert _ingest(src, tmp_path / "thesis.pdf", "--overwrite") == 2
    assert "is a file" in one_error_line(capsys)
    assert (tmp_path / "thesis.pdf").read_bytes() == b"years of work"
    assert tree(src) == before


# ---------------------------------------------------------------- run


def _run(src, out, *args) -> int:
    return run_job.main([str(src), str(out), *map(str, args)])


RUN_OUTPUTS = {
    "link-to-input": lambda t, s: _link(t / "link", s),
    "dotdot": lambda t, s: f"{s}/noisy/..",
    "parent": lambda t, s: t,
    "link-to-parent": lambda t, s: _link(t / "link", t),
}


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("case", list(RUN_OUTPUTS))
def test_run_refuses_output_at_input(tmp_path, capsys, case, overwrite):
    src = photos(tmp_path)
    before = tree(src)
    out = RUN_OUTPUTS[case](tmp_path, src)
    args = ["--model", fake_model(tmp_path), *(["--overwrite"] if overwrite else [])]
    assert _run(src, out, *args) == 2
    assert "OUTPUT must differ from INPUT" in one_error_line(capsys)
    assert tree(src) == before


def test_run_refuses_output_at_the_reference(tmp_path, capsys):
    src = photos(tmp_path)
    before = tree(src)
    out = _link(tmp_path / "link", src / "clean")
    args = ["--reference", src / "clean", "--model", fake_model(tmp_path), "--overwrite"]
    assert _run(src / "noisy", out, *args) == 2
    assert "OUTPUT must differ from --reference" in one_error_line(capsys)
    assert tree(src) == before


@pytest.mark.parametrize("out", ["/in/", "//in", "/in/./", "", "/"])
def test_run_refuses_output_at_input_on_s3(s3_bucket, tmp_path, capsys, out):
    upload(photos(tmp_path), f"{s3_bucket}/in")
    before = s3_tree(s3_bucket)
    args = ["--model", fake_model(tmp_path), "--overwrite"]
    assert _run(f"{s3_bucket}/in", s3_bucket + out, *args) == 2
    assert "OUTPUT must differ from INPUT" in one_error_line(capsys)
    assert s3_tree(s3_bucket) == before


def test_run_output_inside_input_through_a_link_is_left_out(tmp_path):
    """OUTPUT inside INPUT stays supported; reached through a link it is still left out
    of the listing, so earlier outputs are never taken for inputs (and overwritten)."""
    src = photos(tmp_path)
    fx.write_image(src / "out" / "noisy" / "desk.png", fx.random_image(fx.rng_for("o")))
    before = tree(src)
    out = _link(tmp_path / "link", src / "out")
    plan = bulk.plan_run(str(src), str(out), layout="none")
    assert sorted(it.key for it in plan.items) == sorted(
        k for k in before if not k.startswith("out/")
    )
    assert plan.existing == {"noisy/desk.png"}
    assert bulk.overwritten_input(plan, str(out)) is None
    assert tree(src) == before


def test_run_refuses_a_link_inside_output_into_input(tmp_path, capsys):
    """OUTPUT/noisy -> INPUT/noisy: the output of noisy/x.png is INPUT's noisy/x.png."""
    src = photos(tmp_path)
    before = tree(src)
    (tmp_path / "out").mkdir()
    _link(tmp_path / "out" / "noisy", src / "noisy")
    args = ["--model", fake_model(tmp_path), "--layout", "none"]
    for extra in ([], ["--overwrite"]):
        assert _run(src, tmp_path / "out", *args, *extra) == 2
        assert "would replace the input" in one_error_line(capsys)
    assert tree(src) == before
