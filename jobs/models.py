"""``denoise models``: the registered architectures, their size and cost per megapixel."""

from __future__ import annotations

import argparse
import json

from jobs.common import job_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-args",
        default="{}",
        help="JSON keyword arguments applied to every builder that accepts them",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import inspect

    from denoise_core import models

    extra = json.loads(args.model_args)
    rows = []
    for name in models.MODEL_NAMES:
        builder = models._REGISTRY[name]
        accepted = inspect.signature(builder).parameters
        kwargs = {k: v for k, v in extra.items() if k in accepted or "kwargs" in accepted}
        info = models.model_info(models.build_model(name, **kwargs))
        rows.append({"model": name, **info, "default": name == models.DEFAULT_MODEL})
    rows += _packaged_model_rows(models)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<13} {'params':>12} {'GFLOPs/MP':>10} {'size multiple':>14}")
    for r in rows:
        mark = "  (default architecture)" if r["default"] else ""
        if r.get("packaged"):
            mark = f"  (packaged {r['tier']} tier: {TIER_USE[r['tier']]})"
        print(
            f"{r['model']:<13} {r['params']:>12,} {r['flops_per_megapixel'] / 1e9:>10.1f} "
            f"{r['size_multiple']:>14}{mark}"
        )
    return 0


# Row names of the packaged tiers ("packaged" for the default, as before the fast tier).
TIER_ROWS = {"default": "packaged", "fast": "packaged-fast"}
TIER_USE = {"default": "`denoise run` without --model", "fast": "--model fast"}


def _packaged_model_rows(models) -> list[dict]:
    """The models shipped in the package (one per tier it has), measured like the
    builders' defaults."""
    from denoise_core import weights

    rows = []
    for tier in weights.TIERS:
        path = weights.packaged_model_path(tier)
        if path:
            info = models.model_info(models.load_model(path))
            rows.append(
                {"model": TIER_ROWS[tier], **info, "default": False, "packaged": True, "tier": tier}
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    return job_main("models", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
