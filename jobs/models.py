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
    packaged = _packaged_model_row(models)
    if packaged:
        rows.append(packaged)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<10} {'params':>12} {'GFLOPs/MP':>10} {'size multiple':>14}")
    for r in rows:
        mark = "  (default architecture)" if r["default"] else ""
        mark = "  (packaged model: `denoise run` without --model)" if r.get("packaged") else mark
        print(
            f"{r['model']:<10} {r['params']:>12,} {r['flops_per_megapixel'] / 1e9:>10.1f} "
            f"{r['size_multiple']:>14}{mark}"
        )
    return 0


def _packaged_model_row(models) -> dict | None:
    """The model shipped in the package, measured like the builders' defaults."""
    from denoise_core.weights import default_model_path

    path = default_model_path()
    if not path:
        return None
    model = models.load_model(path)
    return {"model": "packaged", **models.model_info(model), "default": False, "packaged": True}


def main(argv: list[str] | None = None) -> int:
    return job_main("models", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
