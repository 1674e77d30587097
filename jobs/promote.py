"""``denoise promote RUN_URI``: ship a run's exported model as the packaged default.

Copies ``RUN/model/model.keras`` to ``denoise_core/weights/default.keras`` and
appends the run to the lineage in ``default_model_card.json`` (command, steps,
wall time, data, validation metrics, and a benchmark table when given), so the
next session can warm-start from it with ``denoise train --init-from``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from denoise_core import run_folder, storage, weights
from jobs.common import job_main

MAX_BYTES = 20 * 2**20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        metavar="RUN_URI",
        help="a run folder written by denoise train or the GPU trainer (jobs/train_jax.py)",
    )
    p.add_argument(
        "--benchmark",
        action="append",
        default=[],
        help="RESULT.json written by denoise benchmark (repeat to merge several runs' results)",
    )
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="WHICH",
        help="what to ship: 'best' (default; the run's export, best by validation PSNR), "
        "'last' (the newest checkpoint, e.g. the end of the LR schedule) or a step number",
    )
    p.add_argument("--note", default="", help="free text recorded with this lineage entry")
    p.add_argument(
        "--to",
        default=None,
        metavar="DIR",
        help="weights folder to write (default: the package's denoise_core/weights)",
    )


def merge_benchmarks(payloads: list[dict]) -> dict:
    """Several ``denoise benchmark`` JSONs as one: results concatenated, seconds summed."""
    merged = dict(payloads[0])
    merged["results"] = [r for p in payloads for r in p.get("results", [])]
    merged["seconds"] = round(sum(p.get("seconds", 0) for p in payloads), 1)
    return merged


def run(args: argparse.Namespace) -> int:
    run_uri = storage.absolute(args.run)
    try:
        model_bytes = storage.read_bytes(run_folder.exported_model_uri(run_uri))
    except FileNotFoundError:
        print(f"error: {run_uri} has no exported model (model/model.keras); did the run finish?")
        return 2
    promoted = None
    if args.checkpoint != "best":
        if args.checkpoint != "last" and not args.checkpoint.isdigit():
            print(f"error: --checkpoint must be best, last or a step, got {args.checkpoint!r}")
            return 2
        found = run_folder.find_checkpoint(run_uri, args.checkpoint)
        if found is None:
            print(
                f"error: {run_uri} has no checkpoint {args.checkpoint!r} under "
                f"{' or '.join(run_folder.TRAINER_DIRS)}/"
            )
            return 2
        folder_uri, state = found
        model_bytes = storage.read_bytes(storage.join(folder_uri, run_folder.MODEL_FILE))
        promoted = {k: state.get(k) for k in ("step", "val_psnr", "val_ssim", "loss")}
    if len(model_bytes) > MAX_BYTES:
        print(f"error: model is {len(model_bytes) / 2**20:.1f} MiB, over the 20 MiB limit")
        return 2
    run_card = run_folder.read_card(run_uri)
    folder = Path(args.to) if args.to else Path(weights.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    card_path = folder / weights.DEFAULT_CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {"lineage": []}
    entry = run_folder.lineage_entry(run_uri, run_card, args.note)
    if promoted is not None:  # shipped a checkpoint, not the run's best-by-validation export
        entry["promoted_checkpoint"] = promoted
    if args.benchmark:
        entry["benchmark"] = merge_benchmarks(
            [json.loads(storage.read_bytes(storage.absolute(b))) for b in args.benchmark]
        )
    card.update(
        {
            "architecture": run_card.get("architecture"),
            "training": run_card.get("training"),
            "current": entry,
        }
    )
    card["lineage"].append(entry)
    storage.write_bytes_atomic(str(folder / weights.DEFAULT_MODEL_FILE), model_bytes)
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    target = folder / weights.DEFAULT_MODEL_FILE
    print(f"promoted {run_uri} -> {target} (lineage entry {len(card['lineage'])})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("promote", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
