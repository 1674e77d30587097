"""``denoise promote RUN_URI [--tier default|fast]``: ship a run's model as a packaged tier.

Copies ``RUN/model/model.keras`` (or a chosen checkpoint) to
``denoise_core/weights/<tier>.keras`` and appends the run to the lineage in
``<tier>_model_card.json`` (architecture and FLOPs per megapixel measured on the
shipped model, command, steps, wall time, data, validation metrics, and a benchmark
table when given), so the next session can warm-start from it with ``denoise train
--init-from`` and users pick it with ``--model <tier>``. The first promotion of a
tier starts its lineage.

The ``fast`` tier is refused when it costs more than a quarter of the FLOPs per
megapixel of the ``default`` model beside it (issue 19's bound).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from denoise_core import run_folder, storage, weights
from jobs.common import job_main

MAX_BYTES = 20 * 2**20
# The fast tier's budget: at most this share of the default model's FLOPs per megapixel.
FAST_FLOPS_SHARE = 0.25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        metavar="RUN_URI",
        help="a run folder written by denoise train or the GPU trainer (jobs/train_jax.py)",
    )
    p.add_argument(
        "--tier",
        default="default",
        choices=weights.TIERS,
        help="which packaged model to replace: default (the quality model, `denoise run` "
        "without --model) or fast (`--model fast`, at most a quarter of the default's "
        "FLOPs per megapixel); each has its own card and lineage (default %(default)s)",
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


def architecture(model_bytes: bytes) -> dict:
    """The shipped model's name, parameters and FLOPs per megapixel
    (:func:`denoise_core.models.model_info`); loading it also proves it loads with
    ``safe_mode=True``."""
    from denoise_core import models

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, run_folder.MODEL_FILE)
        with open(path, "wb") as f:
            f.write(model_bytes)
        model = models.load_model(path)
        return {"name": model.name, **models.model_info(model)}


def fast_budget_problem(arch: dict, folder: Path) -> tuple[str | None, dict]:
    """Why a fast-tier model may not ship beside ``folder``'s default model (None: it may),
    and the comparison recorded in the card. Without a default model beside it there is
    nothing to compare with."""
    default_card = folder / weights.DEFAULT_CARD_FILE
    default_flops = None
    if default_card.exists():
        default_flops = (json.loads(default_card.read_text()).get("architecture") or {}).get(
            "flops_per_megapixel"
        )
    if not default_flops and (folder / weights.DEFAULT_MODEL_FILE).exists():
        default_flops = architecture((folder / weights.DEFAULT_MODEL_FILE).read_bytes())[
            "flops_per_megapixel"
        ]
    if not default_flops:
        return None, {}
    share = arch["flops_per_megapixel"] / default_flops
    compared = {"default_flops_per_megapixel": default_flops, "flops_share_of_default": share}
    if share > FAST_FLOPS_SHARE:
        return (
            f"a fast-tier model may cost at most {FAST_FLOPS_SHARE:g}x the default's FLOPs per "
            f"megapixel; {arch['name']} costs {arch['flops_per_megapixel'] / 1e9:.1f} GFLOP/MP, "
            f"{share:.2f}x the default's {default_flops / 1e9:.1f}"
        ), compared
    return None, compared


def run(args: argparse.Namespace) -> int:
    tier = args.tier
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
    arch = architecture(model_bytes)
    if tier == "fast":
        message, compared = fast_budget_problem(arch, folder)
        if message:
            print(f"error: {message}")
            return 2
        arch = {**arch, **compared}
    folder.mkdir(parents=True, exist_ok=True)
    card_path = folder / weights.CARD_FILES[tier]
    card = json.loads(card_path.read_text()) if card_path.exists() else {"lineage": []}
    entry = run_folder.lineage_entry(run_uri, run_card, args.note)
    entry["architecture"] = arch
    if promoted is not None:  # shipped a checkpoint, not the run's best-by-validation export
        entry["promoted_checkpoint"] = promoted
    if args.benchmark:
        entry["benchmark"] = merge_benchmarks(
            [json.loads(storage.read_bytes(storage.absolute(b))) for b in args.benchmark]
        )
    card.update({"architecture": arch, "training": run_card.get("training"), "current": entry})
    card["lineage"].append(entry)
    target = folder / weights.MODEL_FILES[tier]
    storage.write_bytes_atomic(str(target), model_bytes)
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    print(
        f"promoted {run_uri} -> {target} ({tier} tier, {arch['name']}, "
        f"{arch['flops_per_megapixel'] / 1e9:.1f} GFLOP/MP; lineage entry {len(card['lineage'])})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("promote", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
