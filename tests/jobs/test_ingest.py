"""``denoise ingest`` end to end: real files in, Parquet shards out, through one Ray session.

Every ingest runs ``jobs.ingest.main`` in-process against the session's local Ray, on
tiny fixtures (64x48 images, 16x16 patches) from ``tests/fixtures.py``; S3 is moto's
server from ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fixtures as fx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from denoise_core import codecs, manifest, storage
from denoise_core.shards import SCHEMA
from jobs import ingest as ingest_job

REPO_ROOT = Path(__file__).resolve().parents[2]
PATCH_ARGS = ["--patch", str(fx.PATCH), "--stride", str(fx.PATCH)]

pytestmark = pytest.mark.usefixtures("ray_session")


# ---------------------------------------------------------------- helpers


def ingest(src, dst, *args) -> int:
    return ingest_job.main([str(src), str(dst), *map(str, args)])


def fresh_cache() -> None:
    """Shards are written by Ray workers: drop this process's S3 listings of them."""
    s3fs.S3FileSystem.clear_instance_cache()


def read_dataset(dst: str) -> tuple[dict, pa.Table]:
    """The manifest and every row of the files it lists, checking the counts on the way."""
    fresh_cache()
    info = manifest.read_manifest(dst)
    tables = []
    for split, entry in info["splits"].items():
        split_rows = 0
        for f, uri in zip(entry["files"], manifest.split_files(dst, split, info), strict=True):
            fs, path = storage.open_fs(uri)
            with fs.open(path, "rb") as fh:
                table = pq.read_table(fh)
            assert table.schema.equals(SCHEMA), uri
            assert table.num_rows == f["rows"], f"{uri}: manifest says {f['rows']} rows"
            assert fs.size(path) == f["bytes"], uri
            assert set(table.column("split").to_pylist()) == {split}
            split_rows += table.num_rows
            tables.append(table)
        assert split_rows == entry["rows"]
        assert sum(f["bytes"] for f in entry["files"]) == entry["bytes"]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    assert table.num_rows == info["rows"]
    assert len(set(table.column("source_key").to_pylist())) == info["items"]
    keys = table.column("key").to_pylist()
    assert len(keys) == len(set(keys)), "duplicate row keys"
    # No stray shards: every Parquet file under DST is listed (or is errors.parquet).
    fs, root = storage.open_fs(dst)
    on_disk = {p[len(root.rstrip("/")) + 1 :] for p in fs.find(root) if p.endswith(".parquet")}
    listed = {f["path"] for e in info["splits"].values() for f in e["files"]}
    assert on_disk == listed | {manifest.ERRORS_NAME}
    return info, table.sort_by("key").combine_chunks()


def read_errors(dst: str) -> dict[str, str]:
    fresh_cache()
    table = pq.read_table(
        pa.BufferReader(storage.read_bytes(storage.join(dst, manifest.ERRORS_NAME)))
    )
    assert table.column_names == ["key", "reason"]
    rows = table.to_pylist()
    assert len({r["key"] for r in rows}) == len(rows)
    return {r["key"]: r["reason"] for r in rows}


def check_pixels(table: pa.Table, expected: fx.Expected, patch: int | None = fx.PATCH) -> None:
    """Every row decodes to exactly its crop of the source, and every crop is there."""
    seen: dict[str, set[tuple[int, int]]] = {k: set() for k in expected}
    for row in table.to_pylist():
        noisy_src, clean_src = expected[row["source_key"]]
        y, x, h, w = row["y"], row["x"], row["height"], row["width"]
        assert 0 <= y and y + h <= clean_src.shape[0] and 0 <= x and x + w <= clean_src.shape[1]
        clean = codecs.decode_image(row["clean"])
        assert clean.dtype == clean_src.dtype and clean.shape == (h, w, 3)
        np.testing.assert_array_equal(clean, clean_src[y : y + h, x : x + w], err_msg=row["key"])
        if noisy_src is None:
            assert row["noisy"] is None
        else:
            noisy = codecs.decode_image(row["noisy"])
            assert noisy.dtype == noisy_src.dtype
            np.testing.assert_array_equal(
                noisy, noisy_src[y : y + h, x : x + w], err_msg=row["key"]
            )
        assert row["bit_depth"] == (16 if clean_src.dtype == np.uint16 else 8)
        assert row["channels"] == 3
        seen[row["source_key"]].add((y, x))
    for key, (_, clean_src) in expected.items():
        rows, cols = clean_src.shape[:2]
        if patch is None:
            grid = {(0, 0)}
        else:
            grid = {
                (y, x)
                for y in range(0, rows - patch + 1, patch)
                for x in range(0, cols - patch + 1, patch)
            }
        assert seen[key] == grid, key


def sidd_meta(scene_folder: str) -> dict:
    inst, scene, phone, iso, shutter, temp, bright = scene_folder.split("_")
    return {
        "scene_instance": inst,
        "scene": scene,
        "phone": phone,
        "iso": int(iso),
        "shutter": int(shutter),
        "illuminant": int(temp),
        "brightness": bright,
    }


def check_sidd_metadata(table: pa.Table, layout: str = "sidd") -> None:
    for row in table.to_pylist():
        folder = row["source_key"].split("/")[-2]
        assert {k: row[k] for k in sidd_meta(folder)} == sidd_meta(folder), row["key"]
        assert row["layout"] == layout
        assert row["image_index"] is None and row["block_index"] is None


def check_scene_split(table: pa.Table) -> None:
    by_split: dict[str, set[str]] = {}
    for split, scene in zip(
        table.column("split").to_pylist(), table.column("scene").to_pylist(), strict=True
    ):
        by_split.setdefault(split, set()).add(scene)
    assert set(by_split) == {"train", "val"}
    assert not by_split["train"] & by_split["val"]


def snapshot(uri: str) -> dict[str, bytes]:
    fresh_cache()
    fs, root = storage.open_fs(uri)
    return {p: fs.cat_file(p) for p in sorted(fs.find(root))}


def new_bucket() -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    fresh_cache()
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"


# ---------------------------------------------------------------- SIDD Small, local and S3

SPLIT_ARGS = ["--val-fraction", "0.25", "--seed", "3"]


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory, ray_session, s3_server):
    """SIDD Small ingested once to a local folder and once to S3 (same arguments)."""
    base = tmp_path_factory.mktemp("small")
    expected = fx.make_sidd_small(base / "src")
    dsts = {"local": str(base / "dst"), "s3": f"{new_bucket()}/datasets/small"}
    codes = {
        name: ingest(base / "src", dst, *PATCH_ARGS, *SPLIT_ARGS) for name, dst in dsts.items()
    }
    return {"src": base / "src", "expected": expected, "dst": dsts, "codes": codes}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_sidd_small_ingest(small_sets, where):
    dst = small_sets["dst"][where]
    assert small_sets["codes"][where] == 0
    info, table = read_dataset(dst)
    expected = small_sets["expected"]
    assert info["layout"] == "sidd" and info["paired"] is True
    assert info["items"] == len(expected) == 5
    assert info["rows"] == table.num_rows == 5 * fx.PATCHES_PER_IMAGE
    assert info["errors"] == 0 and read_errors(dst) == {}
    assert (info["patch"], info["stride"], info["seed"]) == (fx.PATCH, fx.PATCH, 3)
    check_pixels(table, expected)
    check_sidd_metadata(table)
    check_scene_split(table)
    # four scenes (001 twice), a quarter held out: one scene in val
    assert info["splits"]["val"]["scenes"] == 1 and info["splits"]["train"]["scenes"] == 3


def test_local_and_s3_ingests_are_equal(small_sets):
    _, local = read_dataset(small_sets["dst"]["local"])
    _, remote = read_dataset(small_sets["dst"]["s3"])
    assert local.num_rows > 0
    assert local.equals(remote)


def test_zip_src_gives_the_same_rows(small_sets, tmp_path):
    fx.make_sidd_zip(tmp_path / "SIDD_Small_sRGB_Only.zip", tmp_path / "work")
    assert (
        ingest(tmp_path / "SIDD_Small_sRGB_Only.zip", tmp_path / "dst", *PATCH_ARGS, *SPLIT_ARGS)
        == 0
    )
    info, table = read_dataset(str(tmp_path / "dst"))
    _, folder = read_dataset(small_sets["dst"]["local"])
    assert info["layout"] == "sidd"
    assert table.equals(folder)


def test_src_on_s3(small_sets, s3_bucket, tmp_path):
    fresh_cache()
    fs = s3fs.S3FileSystem()
    fs.put(str(small_sets["src"]) + "/", f"{s3_bucket}/raw/", recursive=True)
    # a sibling prefix sharing the name's start must not leak into the listing
    decoy = f"{fx.SMALL_ROOT}/0009_009_S6_00100_00060_3200_L"
    fs.pipe(f"{s3_bucket}/raw2/{decoy}/GT_SRGB_010.PNG", b"decoy")
    fs.pipe(f"{s3_bucket}/raw2/{decoy}/NOISY_SRGB_010.PNG", b"decoy")
    assert ingest(f"{s3_bucket}/raw", tmp_path / "dst", *PATCH_ARGS, *SPLIT_ARGS) == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    _, folder = read_dataset(small_sets["dst"]["local"])
    assert info["source"] == f"{s3_bucket}/raw"
    assert table.equals(folder)


def test_zip_on_s3_src(small_sets, s3_bucket, tmp_path):
    fx.make_sidd_zip(tmp_path / "kaggle.zip", tmp_path / "work")
    fresh_cache()
    s3fs.S3FileSystem().put(str(tmp_path / "kaggle.zip"), f"{s3_bucket}/in/kaggle.zip")
    assert ingest(f"{s3_bucket}/in/kaggle.zip", tmp_path / "dst", *PATCH_ARGS, *SPLIT_ARGS) == 0
    _, table = read_dataset(str(tmp_path / "dst"))
    _, folder = read_dataset(small_sets["dst"]["local"])
    assert table.equals(folder)


def test_relative_paths_are_the_callers(tmp_path, monkeypatch):
    """Ray workers run in their own working directory: relative SRC/DST must still mean
    the caller's folders (a relative zip SRC and a relative DST)."""
    expected = fx.make_sidd_zip(tmp_path / "kaggle.zip", tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    assert ingest("kaggle.zip", "out/ds", *PATCH_ARGS) == 0
    info, table = read_dataset(str(tmp_path / "out" / "ds"))
    assert info["errors"] == 0
    check_pixels(table, expected)


def test_small_shards_roll_over(tmp_path):
    """Tiny file and row-group limits: many files and row groups, counts still exact."""
    expected = fx.make_sidd_small(tmp_path / "src")
    args = ["--target-file-mb", "0.008", "--row-group-mb", "0.003", *PATCH_ARGS, *SPLIT_ARGS]
    assert ingest(tmp_path / "src", tmp_path / "dst", *args) == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    files = [f for e in info["splits"].values() for f in e["files"]]
    assert len(files) > len(expected)  # more than one file per source pair
    first = pq.ParquetFile(tmp_path / "dst" / files[0]["path"])
    assert first.num_row_groups > 1
    check_pixels(table, expected)


# ---------------------------------------------------------------- other layouts


def test_sidd_medium_ingest(tmp_path):
    expected = fx.make_sidd_medium(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS, "--val-fraction", "0.4") == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    assert info["layout"] == "sidd" and info["items"] == 6
    check_pixels(table, expected)
    check_sidd_metadata(table)
    check_scene_split(table)
    frames = {k.rsplit("_", 1)[-1] for k in table.column("source_key").to_pylist()}
    assert frames == {"010.PNG", "011.PNG"}


def test_mat_blocks_land_in_val_blocks(tmp_path):
    noisy, gt = fx.make_sidd_mat(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS) == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    n_img, n_blk, bh, bw, _ = fx.MAT_SHAPE
    per_block = (bh // fx.PATCH) * (bw // fx.PATCH)
    assert info["layout"] == "sidd-mat"
    assert set(info["splits"]) == {"val_blocks"}
    assert info["rows"] == n_img * n_blk * per_block
    seen = set()
    for row in table.to_pylist():
        i, b = row["image_index"], row["block_index"]
        y, x, h, w = row["y"], row["x"], row["height"], row["width"]
        assert row["split"] == "val_blocks" and row["layout"] == "sidd-mat"
        np.testing.assert_array_equal(
            codecs.decode_image(row["noisy"]), noisy[i, b, y : y + h, x : x + w]
        )
        np.testing.assert_array_equal(
            codecs.decode_image(row["clean"]), gt[i, b, y : y + h, x : x + w]
        )
        seen.add((i, b, y, x))
    assert len(seen) == table.num_rows
    assert {(i, b) for i, b, _, _ in seen} == {(i, b) for i in range(n_img) for b in range(n_blk)}


def test_suffix_pairs_jpeg_png_and_16_bit(tmp_path):
    expected = fx.make_suffix_pairs(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS, "--val-fraction", "0.3") == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    assert info["layout"] == "pairs" and info["items"] == len(expected) == 6
    assert info["errors"] == 0
    check_pixels(table, expected)
    check_scene_split(table)
    deep = [r for r in table.to_pylist() if r["source_key"] == "deep/raw16_noisy.png"]
    assert len(deep) == fx.PATCHES_PER_IMAGE
    for row in deep:  # stored at 16 bits, not squeezed to 8
        assert row["bit_depth"] == 16
        assert codecs.decode_image(row["clean"]).dtype == np.uint16
        assert row["clean"][24] == 16  # PNG IHDR bit depth byte
    rows = table.to_pylist()
    assert all(r[c] is None for r in rows for c in ("phone", "iso", "scene_instance"))
    scenes = {r["source_key"]: r["scene"] for r in rows}
    assert scenes["Canon5D2_5_160_3200_chair_11_real.JPG"] == "Canon5D2_5_160_3200_chair"
    assert scenes["Canon5D2_5_160_3200_chair_14_real.JPG"] == "Canon5D2_5_160_3200_chair"


def test_folder_pairs_whole_images(tmp_path):
    expected = fx.make_folder_pairs(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", "--layout", "pairs") == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    assert info["layout"] == "pairs" and info["patch"] is None
    assert table.num_rows == 3
    assert set(table.column("height").to_pylist()) == {fx.H}
    assert set(table.column("width").to_pylist()) == {fx.W}
    check_pixels(table, expected, patch=None)


def test_clean_only_ingest(tmp_path):
    expected = fx.make_clean_only(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS, "--val-fraction", "0") == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    assert info["layout"] == "clean" and info["paired"] is False
    assert set(info["splits"]) == {"train"}
    assert table.column("noisy").null_count == table.num_rows
    check_pixels(table, expected)
    depths = {r["source_key"]: r["bit_depth"] for r in table.to_pylist()}
    assert depths["sub/deep16.png"] == 16 and depths["beach.png"] == 8


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_are_recorded_and_the_rest_ingested(storage_root, tmp_path):
    good, bad = fx.make_sidd_bad(tmp_path / "src")
    dst = storage.join(storage_root, "ds")
    assert ingest(tmp_path / "src", dst, *PATCH_ARGS) == 0
    info, table = read_dataset(dst)
    errors = read_errors(dst)
    assert set(errors) == set(bad)
    for key, reason in bad.items():
        assert reason in errors[key], (key, errors[key])
    assert info["errors"] == len(bad)
    assert set(table.column("source_key").to_pylist()) == set(good)
    check_pixels(table, good)


def test_strict_fails_on_bad_inputs(tmp_path):
    fx.make_sidd_bad(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS, "--strict") != 0
    assert len(read_errors(str(tmp_path / "dst"))) == len(fx.BAD_SCENES)


def test_nothing_ingested_is_an_error(tmp_path):
    fx.corrupt_bytes(tmp_path / "src" / "a.png")
    fx.corrupt_bytes(tmp_path / "src" / "b.png")
    assert ingest(tmp_path / "src", tmp_path / "dst") != 0
    errors = read_errors(str(tmp_path / "dst"))
    assert set(errors) == {"a.png", "b.png"}
    assert all("not a decodable image" in r for r in errors.values())
    assert not (tmp_path / "dst" / manifest.MANIFEST_NAME).exists()

    (tmp_path / "empty").mkdir()
    assert ingest(tmp_path / "empty", tmp_path / "dst2") != 0
    assert not (tmp_path / "dst2" / manifest.MANIFEST_NAME).exists()


def test_mat_with_wrong_keys_leaves_no_finished_dataset(tmp_path, capsys):
    """Nothing ingested: no _manifest.json may mark the empty set finished (issue 17.7)."""
    from scipy.io import savemat

    src = tmp_path / "src"
    noisy, gt = fx.make_sidd_mat(src)
    savemat(src / "ValidationNoisyBlocksSrgb.mat", {"noisy": noisy})  # wrong array names
    savemat(src / "ValidationGtBlocksSrgb.mat", {"gt": gt})
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert ingest(src, tmp_path / "dst") == 1
    assert "nothing was ingested" in capsys.readouterr().err
    assert not (tmp_path / "dst" / manifest.MANIFEST_NAME).exists()
    with pytest.raises(manifest.DatasetNotReadyError):
        manifest.read_manifest(str(tmp_path / "dst"))
    assert any("has no array named" in r for r in read_errors(str(tmp_path / "dst")).values())
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_image_smaller_than_patch_is_an_error(tmp_path):
    fx.make_folder_pairs(tmp_path / "src")
    assert ingest(tmp_path / "src", tmp_path / "dst", "--patch", "64") != 0
    errors = read_errors(str(tmp_path / "dst"))
    assert len(errors) == 3 and all("smaller than --patch" in r for r in errors.values())


@pytest.mark.parametrize(
    "args",
    [["--stride", "8"], ["--patch", "0"], ["--val-fraction", "1.0"], ["--layout", "sidd-mat"]],
)
def test_bad_arguments_fail_before_writing(tmp_path, args):
    fx.make_folder_pairs(tmp_path / "src")
    code = ingest(tmp_path / "src", tmp_path / "dst", *args)
    assert code != 0
    if args[0] != "--layout":  # refused before touching DST
        assert not (tmp_path / "dst").exists()


def test_missing_src_fails(tmp_path, capsys):
    assert ingest(tmp_path / "nope", tmp_path / "dst") != 0
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- re-runs


def test_nonempty_dst_refused_unless_overwrite(storage_root, tmp_path):
    fx.make_folder_pairs(tmp_path / "src")
    dst = storage.join(storage_root, "ds")
    assert ingest(tmp_path / "src", dst) == 0
    before = snapshot(dst)
    assert any(p.endswith(manifest.MANIFEST_NAME) for p in before)

    assert ingest(tmp_path / "src", dst, *PATCH_ARGS) != 0
    assert snapshot(dst) == before  # existing data untouched

    # A shard of an earlier, interrupted ingest (not in its manifest): ingest's own, removed.
    storage.write_bytes_atomic(storage.join(dst, "train", "part-99999-000.parquet"), b"junk")
    assert ingest(tmp_path / "src", dst, *PATCH_ARGS, "--overwrite") == 0
    info, table = read_dataset(dst)  # also: no stray or old shard left behind
    assert info["patch"] == fx.PATCH
    assert table.num_rows == 3 * fx.PATCHES_PER_IMAGE


def test_overwrite_bucket_root_keeps_the_bucket(s3_bucket, tmp_path):
    fx.make_folder_pairs(tmp_path / "src")
    assert ingest(tmp_path / "src", s3_bucket) == 0
    assert ingest(tmp_path / "src", s3_bucket, *PATCH_ARGS) != 0
    assert ingest(tmp_path / "src", s3_bucket, *PATCH_ARGS, "--overwrite") == 0
    info, table = read_dataset(s3_bucket)
    assert info["patch"] == fx.PATCH and table.num_rows == 3 * fx.PATCHES_PER_IMAGE


def test_nonempty_local_dst_with_unrelated_file_refused(tmp_path):
    fx.make_folder_pairs(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "notes.txt").write_text("mine")
    assert ingest(tmp_path / "src", tmp_path / "dst") != 0
    assert os.listdir(tmp_path / "dst") == ["notes.txt"]


# ---------------------------------------------------------------- real data and CLI


def test_polyu_real_pairs(shared_data, tmp_path):
    src = shared_data / "real" / "PolyU"
    if not src.is_dir():
        pytest.skip(f"PolyU pairs not found at {src}")
    assert ingest(src, tmp_path / "dst", "--patch", "128", "--stride", "128") == 0
    info, table = read_dataset(str(tmp_path / "dst"))
    assert info["layout"] == "pairs"
    assert info["items"] == 100
    assert info["rows"] == table.num_rows == 1600
    assert info["errors"] == 0 and read_errors(str(tmp_path / "dst")) == {}
    check_scene_split(table)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["source_key"].endswith("_real.JPG")
    noisy_src = codecs.decode_image((src / row["source_key"]).read_bytes())
    clean_src = codecs.decode_image(
        (src / row["source_key"].replace("_real", "_mean")).read_bytes()
    )
    y, x = row["y"], row["x"]
    np.testing.assert_array_equal(
        codecs.decode_image(row["noisy"]), noisy_src[y : y + 128, x : x + 128]
    )
    np.testing.assert_array_equal(
        codecs.decode_image(row["clean"]), clean_src[y : y + 128, x : x + 128]
    )


def test_module_help_exits_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--patch" in proc.stdout and "SRC" in proc.stdout and "--overwrite" in proc.stdout


def test_manifest_is_json_with_schema_version(small_sets):
    raw = storage.read_bytes(manifest.manifest_uri(small_sets["dst"]["local"]))
    data = json.loads(raw)
    assert data["schema_version"] == manifest.SCHEMA_VERSION
    assert data["source"] == str(small_sets["src"])


def test_image_over_the_megapixel_limit_is_recorded_not_decoded(tmp_path):
    """Issue 17.3 for ingest (codecs' limit, DEFAULT_MAX_MEGAPIXELS): a PNG whose header
    says 30000x30000 is refused from the header, so its pixel data (absent here) is never
    read; the other images are ingested."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    expected = fx.make_clean_only(tmp_path / "src")
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    (tmp_path / "src" / "huge.png").write_bytes(png)
    assert ingest(tmp_path / "src", tmp_path / "dst", *PATCH_ARGS, "--val-fraction", "0") == 0
    errors = read_errors(str(tmp_path / "dst"))
    assert errors == {
        "huge.png": "30000x30000 = 900 MP (2.7 GB decoded) exceeds the limit of 100 MP"
    }
    _, table = read_dataset(str(tmp_path / "dst"))
    assert set(table.column("source_key").to_pylist()) == set(expected)
