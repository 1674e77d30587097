"""Quiet start-up: library noise off in the driver and in every Ray worker; ``--verbose`` on.

TensorFlow, CUDA stubs, gRPC, Ray Data and Ray Train print dozens of start-up lines per
process (oneDNN and CUDA notices, absl's "All log messages before absl::InitializeLog()",
coordination-service INFO, "execution finished" lines), so the lines that matter drown.
Environment variables cover most of it, but TensorFlow logs a few lines from static
initialisers while it is imported, before it reads ``TF_CPP_MIN_LOG_LEVEL``
(tensorflow#100442): that import runs with the native stderr captured, and every captured
line that is not known start-up noise is written back, so no error is lost.

The driver calls :func:`configure` before anything imports TensorFlow; workers get the
same environment and :func:`setup_worker` through the job's runtime environment
(:func:`runtime_env`), under ``ray job submit`` too.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

VERBOSE_ENV = "DENOISE_VERBOSE"
SETUP_HOOK = "jobs.quiet.setup_worker"
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ INFO/WARNING/ERROR (cuInit, CPU features)
    "GRPC_VERBOSITY": "ERROR",  # gRPC inside TensorFlow's coordination service
    "RAY_DATA_LOG_LEVEL": "WARNING",  # Ray Data's per-execution INFO lines
}
# Loggers that speak at INFO/WARNING about things users cannot act on.
QUIET_LOGGERS = {
    "tensorflow": logging.ERROR,  # "Using MirroredStrategy", "... eagerly has overhead"
    "absl": logging.ERROR,
    "ray.data._internal.progress": logging.ERROR,  # "Progress bars disabled" (we draw ours)
    # "Token authentication is enabled for this Ray cluster" on every local start
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
# Native stderr lines written while TensorFlow is imported that are start-up noise:
# absl INFO/WARNING lines ("I0000 00:00:17.. port.cc:153] oneDNN custom operations are
# on", "cudart_stub.cc:31] Could not find cuda drivers") and known harmless errors.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\]"
    r"|E\d{4} [\d:. ]+\d+ \S+:\d+\] (failed call to cuInit|Unable to register cu"
    r"|computation placer already registered)"
    r"|To enable the following instructions:)"
)


def is_verbose() -> bool:
    """Whether this process (and the workers it starts) should show library noise."""
    return os.environ.get(VERBOSE_ENV) == "1"


def configure(argv: list[str] | None = None) -> bool:
    """Set up quiet (or ``--verbose``) output for this process; returns verbose.

    Called first thing by the CLI and every job's ``main``, before TensorFlow is
    imported. Values the user set in the environment are never overridden. Verbose
    sticks for the whole process (``denoise demo`` calls the other jobs' ``main``).
    """
    args = sys.argv[1:] if argv is None else argv
    if "--verbose" in args:
        os.environ[VERBOSE_ENV] = "1"
    if is_verbose():
        return True
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_loggers()
    quiet_tensorflow_import()
    return False


def quiet_loggers() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
    try:  # Ray's own deprecations, wherever the warning points
        from ray.util.annotations import RayDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=RayDeprecationWarning)


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook``: quiet loggers and TensorFlow's import."""
    _name_own_cluster()
    if not is_verbose():
        quiet_loggers()
        _quiet_file_loggers()
        quiet_tensorflow_import()


def _name_own_cluster() -> None:
    """Ray Train's placement-group cleaner finds its cluster through the state API, which
    without RAY_ADDRESS searches the machine and dies with a 26-line "Found multiple
    active Ray instances" traceback when another Ray runs there: workers name theirs."""
    if os.environ.get("RAY_ADDRESS"):
        return
    try:
        import ray

        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    except Exception:  # not connected (never in a Ray worker): leave it to Ray
        pass


def _quiet_file_loggers() -> None:
    """Ray Train logs "Reporting training result N: ..." (twice per validation) on a
    logger named by its source file, outside ``ray.train``'s log level."""
    try:
        import ray
    except ImportError:
        return
    root = os.path.dirname(ray.__file__)
    for rel in ("train/v2/_internal/execution/context.py", "train/collective/collectives.py"):
        logging.getLogger(os.path.join(root, *rel.split("/"))).setLevel(logging.WARNING)


def worker_env() -> dict[str, str]:
    """Environment variables every Ray worker of the job gets (quiet or verbose)."""
    if is_verbose():
        return {VERBOSE_ENV: "1"}
    return {key: os.environ.get(key, value) for key, value in QUIET_ENV.items()}


def runtime_env() -> dict:
    """The job's runtime environment: :func:`worker_env` and :func:`setup_worker`.

    Under ``ray job submit`` Ray merges it with the submitted runtime environment and
    refuses any key set in both, so what the submitter set is left out here (theirs wins).
    """
    submitted: dict = {}
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if raw:
        try:
            submitted = json.loads(raw).get("runtime_env") or {}
        except (ValueError, AttributeError):
            submitted = {}
    theirs = submitted.get("env_vars") or {}
    env = {k: v for k, v in worker_env().items() if k not in theirs}
    out: dict = {"env_vars": env} if env else {}
    if "worker_process_setup_hook" not in submitted:
        out["worker_process_setup_hook"] = SETUP_HOOK
    return out


def train_log_level() -> str:
    """Ray Train's own log level (``RunConfig(logging_config=...)``): its INFO lines
    (worker groups, every checkpoint and report) only with ``--verbose``."""
    return "INFO" if is_verbose() else "WARNING"


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


# Ray's warning, on every training and run, that an actor (Ray Train's controllers, Ray
# Data's map workers) has constructor arguments in the object store and max_restarts > 0
# (ray#53727): about Ray's internals, with nothing a user can do. Written by the driver's
# own core worker (native stderr) and by actors (forwarded to the driver).
_CONSTRUCTOR_ARGS = (
    r"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the "
    r"object store and max_restarts > 0"
)
# Lines other Ray processes write that reach the driver through Ray's log forwarding,
# about Ray's own internals, with nothing a user can do:
_FORWARDED_NOISE = re.compile(
    rf"({_CONSTRUCTOR_ARGS}"
    # the raylet on 2-core machines, where Ray Data and Train start more workers
    r"|WARNING: \d+ PYTHON worker processes have been started on node"
    # the GCS and core workers when a finished job's actors are cleaned up
    r"|gcs_actor_\w+\.cc:\d+: Failed to kill actor .*Socket closed"
    r"|core_worker\.cc:\d+: Mismatched ActorID: ignoring KillActor for previous actor)"
)
# The same warning from the driver's own core worker, a whole glog line (it may follow a
# progress bar's unfinished line, so it is cut out, not the line around it).
_NATIVE_NOISE = re.compile(
    rb"\[\d{4}-\d\d-\d\d [\d:,.]+ [EWI] \d+ \d+\] " + _CONSTRUCTOR_ARGS.encode() + rb"[^\n]*\n"
)
_END_MARK = b"\0denoise: end of filtered stderr\0"
# Where a glog line starts that has not ended yet: held until its newline.
_NATIVE_LINE_START = re.compile(rb"\[\d{4}-\d\d-\d\d [\d:,.]+ [EWI] \d+ \d+\] ")
_RAY_PRINT_HANDLER = "ray_print_logs"  # ray._private.worker's name for its printer
# A traceback Ray Data's file listing prints when its iteration is stopped early (its
# completion-signaler thread lets InterruptedError escape; harmless, ray#64388's
# review): from its first line to the exception's name, dropped as one block.
_INTERRUPTED_LISTING = (
    re.compile(r"Exception in thread pool-\d+/completion-signaler:"),
    re.compile(r"\s*InterruptedError\s*"),
)


def is_forwarded_noise(line: str) -> bool:
    return bool(_FORWARDED_NOISE.search(line))


def filter_forwarded_logs() -> bool:
    """Drop the forwarded Ray-internal lines (:data:`_FORWARDED_NOISE`) in the driver;
    every other line a worker, actor or raylet writes is printed as before. Wraps the
    printer that ``ray.init(log_to_driver=True)`` registers with Ray's dispatcher of
    forwarded lines (a private API: where it is missing, nothing changes and False is
    returned). Nothing is filtered with ``--verbose``.

    Off a terminal (a log file, ``nohup``, a ``ray job submit`` job's log) the
    ``(RayTrainWorker pid=...)`` prefixes come without colour codes, which Ray writes
    unasked even into files (``RAY_COLOR_PREFIX=0``; a value the user set stays)."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if is_verbose():
        return False
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    with dispatcher._lock:
        handlers = list(dispatcher.handlers)
    printers = [h for name, h in handlers if name == _RAY_PRINT_HANDLER]
    if len(printers) != 1 or getattr(printers[0], "_denoise_filtered", False):
        return False
    dispatcher.remove_handler(_RAY_PRINT_HANDLER)
    dispatcher.add_handler(_RAY_PRINT_HANDLER, _without_noise(printers[0]))
    _filter_error_messages()
    return True


def _without_noise(printer: Callable[..., None]) -> Callable[..., None]:
    """``printer`` (called with Ray's ``{"lines": [...], "pid": ...}`` record) minus the
    forwarded noise lines; a record left with none is not printed."""
    listing = _InterruptedListing()

    def filtered(data: dict, *args: Any, **kwargs: Any) -> None:
        lines = listing.drop(data.get("pid"), list(data.get("lines", ())))
        lines = [ln for ln in lines if not is_forwarded_noise(ln)]
        if lines:
            printer({**data, "lines": lines}, *args, **kwargs)

    filtered._denoise_filtered = True  # type: ignore[attr-defined]
    return filtered


class _InterruptedListing:
    """Drops each whole :data:`_INTERRUPTED_LISTING` traceback. Python writes it line by
    line, so it may arrive over several records of one process: its lines are held per
    process until the exception's name ends it (dropped), and given back with the first
    line that is no traceback line (only a complete match is known to be that one)."""

    _TRACEBACK_LINE = re.compile(r"Traceback \(most recent call last\):|  .*")

    def __init__(self) -> None:
        self._held: dict[Any, list[str]] = {}

    def drop(self, source: Any, lines: list[str]) -> list[str]:
        start_pattern, end_pattern = _INTERRUPTED_LISTING
        kept, held = [], self._held.pop(source, None)
        for line in lines:
            if held is None:
                if start_pattern.search(line):
                    held = [line]
                else:
                    kept.append(line)
            elif end_pattern.fullmatch(line):
                held = None  # the whole traceback: dropped
            elif self._TRACEBACK_LINE.fullmatch(line):
                held.append(line)
            else:  # not that traceback after all: every line is printed
                kept.extend([*held, line])
                held = None
        if held is not None:
            self._held[source] = held
        return kept


def _filter_error_messages() -> None:
    """The raylet's warnings (its worker-pool one among them) reach the driver as GCS
    error messages, which Ray's listener thread prints with
    ``ray._private.worker.print_to_stdstream``, looked up at each call, past the
    dispatcher: that name is wrapped with the same filter."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is not None and not getattr(original, "_denoise_filtered", False):
        ray_worker.print_to_stdstream = _without_noise(original)


@contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Capture file descriptor 2 (where C++ libraries log) and write back every line that
    is not start-up noise once the block ends. Anything else that writes to stderr in
    the meantime comes out late, never lost."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                ln
                for ln in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not is_noise(ln)
            ]
            if kept:
                os.write(2, "".join(kept).encode())


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tensorflow`` the normal way, then runs its import in
    :func:`native_stderr_filtered`; removes itself after the first use."""

    def __init__(self) -> None:
        self._loader = None

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        with native_stderr_filtered():
            self._loader.exec_module(module)


def quiet_tensorflow_import() -> None:
    """Filter TensorFlow's import-time stderr lines in this process (once, lazily:
    processes that never import TensorFlow pay nothing)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


class _LiveStderrFilter:
    """File descriptor 2 of this process through a pipe; a thread writes everything on
    to the real stderr at once except :data:`_NATIVE_NOISE` lines. Unfinished lines
    (progress bars) pass at once; only an unfinished glog line is held for its end."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.read_fd = read_fd
        self.pending = b""
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                data = self.pending + chunk
                if _END_MARK in data:  # stop(): everything before the mark is out
                    before, _, after = data.partition(_END_MARK)
                    self._emit(before, final=True)
                    self.done.set()
                    data = after
                self._emit(data)

    def _emit(self, data: bytes, final: bool = False) -> None:
        cut = data.rfind(b"\n") + 1
        out, rest = _NATIVE_NOISE.sub(b"", data[:cut]), data[cut:]
        start = None if final else _NATIVE_LINE_START.search(rest)
        hold = start.start() if start else len(rest)
        out, self.pending = out + rest[:hold], rest[hold:]
        while out:
            try:
                out = out[os.write(self.saved, out) :]
            except OSError:
                return

    def stop(self) -> None:
        """Everything written so far out, then the real stderr back on fd 2 (what Ray's
        processes started from here write to the pipe later still passes the filter)."""
        try:
            sys.stderr.flush()
            os.write(2, _END_MARK)
            self.done.wait(timeout=5.0)
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, 2)


def filter_native_stderr(argv: list[str] | None = None) -> Callable[[], None]:
    """For a process's life (the ``denoise`` program, ``python -m jobs.NAME``): drop
    the driver's own Ray-internal native lines (:data:`_NATIVE_NOISE`) from stderr.
    Returns the function that ends it (call it before the process exits). Nothing is
    filtered with ``--verbose`` or where fd 2 cannot be piped."""
    if is_verbose() or "--verbose" in (sys.argv[1:] if argv is None else argv):
        return lambda: None
    try:
        live = _LiveStderrFilter()
    except (OSError, ValueError):
        return lambda: None
    return live.stop
