"""What every Ray job shares: connecting to Ray, quiet progress, clean exits."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

import ray

from jobs import quiet

# What to do after Ctrl-C, per job; the rest get the generic line.
RESUME_HINTS = {
    "run": "rerun the same command to resume (images already written are skipped)",
    "train": "rerun with --resume to continue from the newest checkpoint",
    "ingest": "rerun with --overwrite to ingest again",
    "demo": "rerun with --overwrite to start the demo again",
}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster when there is one, else start a local Ray.

    Under ``ray job submit`` ``RAY_ADDRESS`` is set and we join that cluster. A test
    session that already called ``ray.init`` is reused as it is. A record of a local
    head that died (``ray_current_cluster`` naming a dead address) would make
    ``ray.init`` retry that address for minutes: then a local Ray starts instead.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {
        "log_to_driver": True,
        "configure_logging": True,
        "logging_level": logging.WARNING,
        "runtime_env": quiet.runtime_env(),
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        recorded, alive = recorded_cluster()
        if recorded and not alive:
            print(
                f"warning: the Ray cluster recorded in {recorded_cluster_file()} "
                f"({recorded}) does not answer; starting a local Ray instead (`ray stop` "
                "removes the stale record)",
                file=sys.stderr,
            )
        if recorded and not alive:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    quiet.filter_forwarded_logs()
    quiet_ray_data()


def recorded_cluster_file() -> str:
    """Where ``ray start`` records the cluster that ``ray.init()`` joins by default."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(None)


def recorded_cluster(timeout: float = 1.0) -> tuple[str | None, bool]:
    """(address recorded by ``ray start``, whether its GCS accepts a TCP connection
    within ``timeout`` seconds); (None, False) when there is no record."""
    try:
        with open(recorded_cluster_file()) as f:
            recorded = f.read().strip()
    except (OSError, ImportError):
        return None, False
    if not recorded:
        return None, False
    host, _, port = recorded.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return recorded, True
    except (OSError, ValueError):
        return recorded, False


def quiet_ray_data() -> None:
    """Our own progress bar and summary line replace Ray Data's per-operator bars."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the start-up output of TensorFlow, CUDA, gRPC and Ray (hidden by default)",
    )


def interrupted(name: str) -> int:
    """One line instead of a KeyboardInterrupt traceback; exit status 130 as shells do."""
    hint = RESUME_HINTS.get(name, "rerun the same command to resume")
    print(f"\ninterrupted; outputs written so far are kept: {hint}", file=sys.stderr)
    return 130


_CTRL_C = threading.Event()  # set by a Ctrl-C during run_guarded


def _on_ctrl_c(signum, frame) -> None:
    _CTRL_C.set()
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came: library code that caught the first
    one (a Ctrl-C during Ray's start-up was once lost so, and the run went on to
    the end) cannot keep a long loop running."""
    if _CTRL_C.is_set():
        raise KeyboardInterrupt


def run_guarded(name: str, run: Callable[[argparse.Namespace], int], args) -> int:
    """``run(args)`` with Ctrl-C turned into :func:`interrupted`; the Ctrl-C is also
    remembered for :func:`raise_if_interrupted` until ``run`` returns."""
    _CTRL_C.clear()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_ctrl_c) if main else None
    try:
        return run(args)
    except KeyboardInterrupt:
        return interrupted(name)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def job_main(
    name: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m jobs.NAME`` (what ``ray job submit`` runs): the job's own parser, then
    its ``run``. ``args.argv`` keeps the arguments for records such as a model card."""
    try:
        quiet.configure(argv)
        parser = argparse.ArgumentParser(
            prog=f"denoise {name}", description=(doc or "").strip().split("\n")[0]
        )
        add_arguments(parser)
        add_verbose(parser)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return interrupted(name)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # The process's own command line (python -m jobs.NAME): its stderr filtered for life.
    stop_filter = quiet.filter_native_stderr() if argv is None else (lambda: None)
    try:
        return run_guarded(name, run, args)
    finally:
        stop_filter()
