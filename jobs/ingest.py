"""``denoise ingest SRC DST``: image sets to Parquet shards, decoded in parallel by Ray Data.

Run as ``python -m jobs.ingest SRC DST …`` under ``ray job submit`` or through the
``denoise`` CLI. The driver only lists files and plans work units; every decode,
crop and PNG encode happens in Ray Data tasks that write their own shard files.
The manifest is written last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import ray
from tqdm import tqdm

from denoise_core import layouts, manifest, shards, storage
from denoise_core.ingest import CropSpec, plan_units, process_unit
from denoise_core.layouts import Item
from denoise_core.shards import DEFAULT_ROW_GROUP_BYTES, DEFAULT_TARGET_FILE_BYTES
from jobs import preflight
from jobs.common import fail, init_ray, job_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src", metavar="SRC", help="folder, s3:// prefix, or .zip (e.g. the Kaggle SIDD zip)"
    )
    p.add_argument(
        "dst", metavar="DST", help="output folder or s3:// prefix for the Parquet shards"
    )
    p.add_argument(
        "--layout",
        choices=layouts.LAYOUTS,
        default="auto",
        help="input layout; 'auto' detects SIDD folders, SIDD .mat blocks, "
        "noisy/clean pairs (by suffix or folder) and clean-only folders",
    )
    p.add_argument(
        "--patch", type=int, default=None, help="crop N×N patches (default: whole images)"
    )
    p.add_argument("--stride", type=int, default=None, help="patch step (default: --patch)")
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="fraction of scenes held out as val"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the scene split")
    p.add_argument(
        "--split",
        default=None,
        metavar="NAME",
        help="put every item in split NAME instead of a train/val scene split "
        "(e.g. --split val for a validation-only set such as Kodak24)",
    )
    p.add_argument(
        "--scene-pattern",
        default=layouts.DEFAULT_SCENE_PATTERN,
        help="regex with a 'scene' group, applied to file stems of non-SIDD sets; images of "
        "one scene never straddle train and val (default strips a trailing _<number>)",
    )
    p.add_argument(
        "--target-file-mb",
        type=float,
        default=DEFAULT_TARGET_FILE_BYTES / 2**20,
        help="close a shard file once it holds this many MiB (default %(default)s)",
    )
    p.add_argument(
        "--row-group-mb",
        type=float,
        default=DEFAULT_ROW_GROUP_BYTES / 2**20,
        help="flush a Parquet row group every this many MiB (default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any input was rejected")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")


def _ingest_unit(row: dict[str, Any], *, root: str, crop: dict, file_bytes: int, rg_bytes: int):
    items = [Item(**it) for it in json.loads(row["items"])]
    result = process_unit(items, root, row["unit_id"], CropSpec(**crop), file_bytes, rg_bytes)
    return {"unit_id": row["unit_id"], "result": json.dumps(result.to_dict())}


# What ingest writes under DST, and so all --overwrite may delete: the manifest and the
# error table (or their temporaries from an interrupted write) and <split>/part-*.parquet.
_OWNED_RE = re.compile(
    rf"(?:{re.escape(manifest.MANIFEST_NAME)}|{re.escape(manifest.ERRORS_NAME)})"
    r"(?:\.tmp-[0-9a-f]{32})?|[^/]+/part-\d+-\d+\.parquet"
)


def _check_places(src: str, dst: str) -> str | None:
    """Why DST may not be used with SRC (resolved, so links and ``..`` cannot hide it), or
    None. DST is emptied and filled by ingest, so it must be apart from the source."""
    relation = storage.path_relation(dst, src)
    if relation is None:
        return None
    where = {"same": "is SRC itself", "contains": "contains SRC", "inside": "lies inside SRC"}
    return f"DST {dst} {where[relation]} ({src}); choose a DST outside SRC (nothing was changed)"


def _prepare_destination(dst: str, overwrite: bool) -> None:
    """Make DST ready; with --overwrite delete an earlier ingest's files there, and refuse
    (deleting nothing) when DST holds anything else: it may be the user's."""
    fs, path = storage.open_fs(dst)
    if fs.exists(path) and not fs.isdir(path):
        raise FileExistsError(f"DST {dst} is a file, not a folder")
    if storage.is_nonempty_dir(dst):
        if not overwrite:
            raise FileExistsError(f"{dst} is not empty; pass --overwrite to replace it")
        fs.invalidate_cache()  # Ray workers may have written there: list it afresh
        found = {storage.relative_key(dst, p): p for p in sorted(fs.find(path))}
        foreign = [key for key in found if not _OWNED_RE.fullmatch(key)]
        if foreign:
            raise FileExistsError(
                f"DST {dst} holds files ingest did not write (e.g. {foreign[0]}); "
                "--overwrite only replaces an earlier ingest: move them or choose another DST"
            )
        # The manifest goes first: an interrupted overwrite leaves no finished-looking set.
        if manifest.MANIFEST_NAME in found:
            fs.rm(found.pop(manifest.MANIFEST_NAME))
        if found:
            fs.rm(list(found.values()))
        if not storage.is_remote_fs(fs):  # split folders left empty
            for folder in {key.split("/")[0] for key in found if "/" in key}:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(path, folder))
    storage.makedirs(dst)


def _write_errors(dst: str, errors: list[dict[str, str]]) -> None:
    data = shards.table_bytes(shards.errors_table(errors))
    storage.write_bytes_atomic(storage.join(dst, manifest.ERRORS_NAME), data)


def _memory_per_task(items: list[Item]) -> int:
    """Reserve room for the largest decoded pair plus its patches (PNG is ~2-3× compressed)."""
    largest = max((it.size_bytes for it in items), default=0)
    return int(min(8 * largest + 256 * 2**20, 8 * 2**30))


def run(args: argparse.Namespace) -> int:
    start = time.time()
    args.src, args.dst = storage.absolute(args.src), storage.absolute(args.dst)
    problem = _check_places(args.src, args.dst) or preflight.check_remote_reachable(
        [args.src, args.dst]
    )
    if problem:
        return fail(problem)
    if args.patch is not None and args.patch <= 0:
        return fail("--patch must be positive")
    if args.stride is not None and args.patch is None:
        return fail("--stride needs --patch")
    try:
        listing = layouts.list_source(args.src)
        layout, items, rejected = layouts.collect_items(listing, args.layout, args.scene_pattern)
        if args.split:
            for it in items:
                it.split = args.split
        else:
            layouts.assign_splits(items, args.val_fraction, args.seed)
        _prepare_destination(args.dst, args.overwrite)
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError) as exc:
        return fail(str(exc))
    errors = [{"key": r.key, "reason": r.reason} for r in rejected]
    crop = CropSpec(args.patch, args.stride)
    file_bytes = int(args.target_file_mb * 2**20)
    units = plan_units(items, target_bytes=file_bytes)
    print(f"ingest: {len(items)} items ({layout}) from {args.src} in {len(units)} tasks")

    files: list[dict[str, Any]] = []
    n_items = n_rows = 0
    if units:
        init_ray(args.address)
        unit_rows = [
            {"unit_id": i, "items": json.dumps([asdict(it) for it in unit])}
            for i, unit in enumerate(units)
        ]
        ds = ray.data.from_items(unit_rows, override_num_blocks=len(unit_rows)).map(
            _ingest_unit,
            fn_kwargs={
                "root": args.dst,
                "crop": asdict(crop),
                "file_bytes": file_bytes,
                "rg_bytes": int(args.row_group_mb * 2**20),
            },
            num_cpus=1,
            memory=_memory_per_task(items),
        )
        with tqdm(total=len(units), desc="ingest", unit="task") as bar:
            for row in ds.iter_rows():
                result = json.loads(row["result"])
                files.extend(result["files"])
                errors.extend(result["errors"])
                n_items += result["items"]
                n_rows += result["rows"]
                bar.set_postfix(rows=n_rows, errors=len(errors))
                bar.update(1)

    _write_errors(args.dst, errors)
    splits: dict[str, dict[str, Any]] = {}
    for f in sorted(files, key=lambda f: f["path"]):
        s = splits.setdefault(f["split"], {"rows": 0, "bytes": 0, "files": []})
        s["rows"] += f["rows"]
        s["bytes"] += f["bytes"]
        s["files"].append({"path": f["path"], "rows": f["rows"], "bytes": f["bytes"]})
    total_bytes = sum(s["bytes"] for s in splits.values())
    seconds = time.time() - start
    scenes = {split: sorted({it.scene for it in items if it.split == split}) for split in splits}
    if n_rows:  # an empty data set gets no manifest: it must never look finished
        manifest.write_manifest(
            args.dst,
            {
                "layout": layout,
                "source": args.src,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "patch": args.patch,
                "stride": args.stride or args.patch,
                "val_fraction": args.val_fraction,
                "seed": args.seed,
                "paired": layout != "clean",
                "items": n_items,
                "rows": n_rows,
                "bytes": total_bytes,
                "errors": len(errors),
                "seconds": round(seconds, 2),
                "splits": {k: {**v, "scenes": len(scenes.get(k, []))} for k, v in splits.items()},
            },
        )
    split_text = ", ".join(f"{k} {v['rows']}" for k, v in sorted(splits.items()))
    print(
        f"ingest: {n_items} {'pairs' if layout != 'clean' else 'images'} -> {n_rows} rows "
        f"({split_text or 'none'}), {total_bytes / 1e6:.1f} MB, {len(errors)} errors, "
        f"{seconds:.1f} s -> {args.dst}"
    )
    for err in errors[:10]:
        print(f"  skipped {err['key']}: {err['reason']}")
    if len(errors) > 10:
        print(f"  … {len(errors) - 10} more in {storage.join(args.dst, manifest.ERRORS_NAME)}")
    if n_rows == 0:
        return fail(f"nothing was ingested (no {manifest.MANIFEST_NAME} written)", 1)
    if args.strict and errors:
        return fail(f"{len(errors)} inputs rejected (--strict)", 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
