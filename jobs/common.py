"""What every Ray job shares: connecting to Ray, quiet progress, clean exits."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster when there is one, else start a local Ray.

    Under ``ray job submit`` ``RAY_ADDRESS`` is set and we join that cluster. A test
    session that already called ``ray.init`` is reused as it is.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"log_to_driver": True, "configure_logging": True, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Our own progress bar and summary line replace Ray Data's per-operator bars."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def job_main(
    name: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m jobs.NAME`` (what ``ray job submit`` runs): the job's own parser, then
    its ``run``. ``args.argv`` keeps the arguments for records such as a model card."""
    parser = argparse.ArgumentParser(
        prog=f"denoise {name}", description=(doc or "").strip().split("\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)
