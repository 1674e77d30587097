"""``denoise promote RUN_URI``: ship a run's exported model as the packaged default.

Copies ``RUN/model/model.keras`` to ``denoise_core/weights/default.keras`` and
appends the run to the lineage in ``default_model_card.json`` (command, steps,
wall time, data, validation metrics, and a benchmark table when given), so the
next session can warm-start from it with ``denoise train --init-from``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from denoise_core import storage, weights
from jobs.common import job_main

MAX_BYTES = 20 * 2**20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_URI", help="a run folder written by denoise train")
    p.add_argument("--benchmark", default=None, help="RESULT.json written by denoise benchmark")
    p.add_argument("--note", default="", help="free text recorded with this lineage entry")


def run(args: argparse.Namespace) -> int:
    run_uri = storage.absolute(args.run)
    model_bytes = storage.read_bytes(storage.join(run_uri, "model", "model.keras"))
    if len(model_bytes) > MAX_BYTES:
        print(f"error: model is {len(model_bytes) / 2**20:.1f} MiB, over the 20 MiB limit")
        return 2
    run_card = json.loads(storage.read_bytes(storage.join(run_uri, "model", "model_card.json")))
    folder = Path(weights.__file__).parent
    card_path = folder / weights.DEFAULT_CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {"lineage": []}
    entry = {
        "run": os.path.basename(run_uri.rstrip("/")),
        "command": run_card.get("command"),
        "steps": run_card.get("steps"),
        "wall_time_s": run_card.get("wall_time_s"),
        "data": run_card.get("data"),
        "validation": run_card.get("validation"),
        "best": run_card.get("best"),
        "init_from": run_card.get("training", {}).get("init_from"),
        "hardware": run_card.get("hardware"),
        "git_commit": run_card.get("git_commit"),
        "note": args.note,
    }
    if args.benchmark:
        entry["benchmark"] = json.loads(storage.read_bytes(storage.absolute(args.benchmark)))
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
