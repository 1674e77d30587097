"""Throughput and memory of ``denoise run`` against the model's own speed, in one run.

Prints, all measured on this machine in this process:

- the CPU (``lscpu`` model name);
- the model's own throughput on in-memory tiles (``Denoiser.predict_batch`` on
  ``tile_batch × tile × tile × 3``, after a warm-up), and on whole in-memory images
  of the benchmark size (tiling included), both in MP/s;
- the full ``denoise run`` (Ray Data, actor pool, read/decode/denoise/encode/write)
  on local files and on moto's S3 for each image count, in MP/s end to end
  (start-up included) and steady (after the first results: Ray, actor start, model
  load and first trace left out), with the ratio steady / model tiles;
- the peak memory of the Ray processes of this benchmark (sum of the RSS of every
  process started under this one, sampled every 0.2 s; the RSS of the largest
  single process, the model actor, beside it), per image count, to show whether
  memory grows with the number of images.

CPU time is shared on small machines, so numbers are indicative; compare ratios
within one run, never bare MP/s across machines.

    python benchmarks/bench_run.py            # denoise run's defaults, 1 MP images
    python benchmarks/bench_run.py --size 512 --tile 512 --model untrained
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# --------------------------------------------------------------------------
# Memory of this process tree, from /proc (no psutil needed)
# --------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _process_name(pid: int) -> str:
    """A short name for a process: Ray's title (``ray::…``) or the program's name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    first = args[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(" ")[0][:60]
    if len(args) > 1 and args[1] == b"-c":
        return "python -c"
    for arg in args[:4]:  # python -m / python script: name it by the module or script
        text = arg.decode(errors="replace")
        if text.endswith(".py") or "ray/" in text or "ray." in text:
            return os.path.basename(text)[:60]
    return os.path.basename(first)[:60] or "?"


EXCLUDED: set[int] = set()  # process trees not to count (the S3 server)
SERVER_PIDS: list[int] = []  # the S3 server: its CPU is reported beside the pipeline's


def descendants(root: int) -> list[int]:
    kids = _children_map()
    stack, out = list(kids.get(root, [])), []
    while stack:
        pid = stack.pop()
        if pid in EXCLUDED:
            continue
        out.append(pid)
        stack.extend(kids.get(pid, []))
    return out


def tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS, largest single RSS) over the descendants of ``root`` (not root)."""
    sizes = [_rss_bytes(pid) for pid in descendants(root)]
    return sum(sizes), max(sizes, default=0)


class PeakMemory:
    """Samples the processes under this one in a thread: peak RSS (sum and largest
    process) and the CPU seconds they used while sampling (Ray's processes: raylet,
    workers, actors; the driver's own CPU is in ``driver_cpu``)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_total = self.peak_single = 0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        pids = descendants(os.getpid())
        sizes = [_rss_bytes(pid) for pid in pids]
        self.peak_total = max(self.peak_total, sum(sizes))
        self.peak_single = max(self.peak_single, max(sizes, default=0))
        for pid in pids:
            cpu = _cpu_seconds(pid)
            self._cpu_start.setdefault(pid, cpu if not self._started else 0.0)
            self._cpu_last[pid] = max(cpu, self._cpu_last.get(pid, 0.0))
            self._names[pid] = _process_name(pid)  # Ray retitles its workers as they take work

    def _loop(self) -> None:
        start = time.thread_time()
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
        self._sampler_cpu = time.thread_time() - start  # not the pipeline's

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_last[p] - self._cpu_start.get(p, 0.0) for p in self._cpu_last)

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds per process name (Ray's process titles), largest first."""
        out: dict[str, float] = {}
        for pid, last in self._cpu_last.items():
            name = self._names.get(pid, "?")
            out[name] = out.get(name, 0.0) + last - self._cpu_start.get(pid, 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def __enter__(self) -> PeakMemory:
        self._started = False
        self._sample()  # processes alive before the run count from here
        self._started = True
        self._driver_cpu = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.driver_cpu = time.process_time() - self._driver_cpu - self._sampler_cpu


# --------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------


def pick_model(name: str | None, work: Path) -> str:
    """The model to measure: a path, ``untrained``, or (None) the shipped default model."""
    if name == "untrained":
        return make_model(work / "model.keras")
    if name:
        return name
    from denoise_core.weights import default_model_path

    path = default_model_path()
    if path is None:
        raise SystemExit("this build ships no default model: pass --model PATH or untrained")
    return path


def make_model(path: Path) -> str:
    """The default architecture, untrained (speed does not depend on the weights)."""
    from denoise_core import models

    models.build_model(models.DEFAULT_MODEL).save(path)
    return str(path)


class ModelProbe:
    """The model alone, in this process: MP/s on in-memory tiles (``predict_batch`` on
    ``tile_batch × tile × tile × 3``) and on whole in-memory images (tiling included)."""

    def __init__(
        self,
        model_path: str,
        tile: int,
        overlap: int,
        tile_batch: int,
        size: int,
        precision: str = "fp32",
    ):
        from denoise_core.inference import Denoiser

        self.den = Denoiser.from_path(
            model_path, tile=tile, overlap=overlap, batch_size=tile_batch, precision=precision
        )
        self.batch = np.random.default_rng(0).random((tile_batch, tile, tile, 3), np.float32)
        self.image = np.random.default_rng(1).random((size, size, 3), np.float32)
        for _ in range(2):
            self.den.predict_batch(self.batch)
        self.den(self.image)

    def _rate(self, fn, pixels: int, seconds: float) -> float:
        """MP/s of ``fn`` over ``seconds``; CPU seconds per MP go to ``cpu_per_mp``."""
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while n == 0 or time.perf_counter() - start < seconds:
            fn()
            n += 1
        mp = n * pixels / 1e6
        self.cpu_per_mp = (time.process_time() - cpu) / mp
        return mp / (time.perf_counter() - start)

    def tiles(self, seconds: float) -> float:
        b = self.batch
        return self._rate(lambda: self.den.predict_batch(b), b.shape[0] * b.shape[1] ** 2, seconds)

    def images(self, seconds: float) -> float:
        img = self.image
        return self._rate(lambda: self.den(img), img.shape[0] * img.shape[1], seconds)


def write_images(folder: Path, count: int, size: int) -> None:
    import cv2

    rng = np.random.default_rng(count)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x), np.cos(5 * y), x * y], axis=-1) * 0.4 + 0.5
    for i in range(count):
        noisy = np.clip(base + rng.normal(0, 0.1, base.shape), 0, 1)
        path = folder / f"sub{i % 4}" / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.rint(noisy * 255).astype(np.uint8))


def run_job(src: str, dst: str, model: str, extra: list[str]) -> dict:
    import json

    from denoise_core import storage
    from jobs import run as run_job_module

    with contextlib.redirect_stderr(open(os.devnull, "w")):  # no progress bars in the table
        code = run_job_module.main([src, dst, "--model", model, "--no-report", *extra])
    if code != 0:
        raise RuntimeError(f"denoise run exited {code}")
    return json.loads(storage.read_bytes(storage.join(dst, "summary.json")))


@contextlib.contextmanager
def moto_s3():
    """moto's S3 server in its own process (its CPU and memory are S3's, not the
    pipeline's: they are left out of the Ray figures)."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from moto.server import main; main()",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    EXCLUDED.add(server.pid)
    SERVER_PIDS.append(server.pid)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:  # it answers: up
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield
    finally:
        server.terminate()
        server.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", default="20,200", help="image counts (comma-separated)")
    p.add_argument(
        "--size", type=int, default=1024, help="image side in pixels (default 1024: 1 MP)"
    )
    p.add_argument(
        "--model",
        default=None,
        help=".keras model (default: the shipped default model, what `denoise run` uses; "
        "'untrained' for a freshly built unet)",
    )
    p.add_argument("--tile", type=int, default=1024, help="tile side (default: denoise run's)")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (default, as denoise run: bf16 on CPUs with native bf16), fp32 or bf16",
    )
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--tile-batch", type=int, default=1, help="tiles per model call")
    p.add_argument("--model-seconds", type=float, default=10.0, help="timing per model probe")
    p.add_argument("--no-s3", action="store_true", help="local files only")
    p.add_argument(
        "--variants",
        default="",
        help="extra pipeline variants on the largest local count, e.g. "
        "'io=tasks,threads=0' (each: extra `denoise run` flags as name=value;...)",
    )
    p.add_argument(
        "--cpu-breakdown", action="store_true", help="print CPU seconds per process after each run"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary images and outputs")
    p.add_argument("--num-cpus", type=int, default=None, help="Ray logical CPUs (default: all)")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.images.split(",") if c]

    with moto_s3() if not args.no_s3 else contextlib.nullcontext():
        import ray
        import s3fs

        from denoise_core.inference import resolve_precision
        from jobs.common import init_ray

        work = Path(tempfile.mkdtemp(prefix="bench_run_"))
        model = pick_model(args.model, work)
        print(
            f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs), "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"model: {model}; tile {args.tile}, overlap {args.overlap}, "
            f"batch {args.tile_batch}, {resolve_precision(args.precision)} ({args.precision})"
        )
        probe = ModelProbe(
            model, args.tile, args.overlap, args.tile_batch, args.size, args.precision
        )
        own = {"tiles": probe.tiles(args.model_seconds), "images": probe.images(args.model_seconds)}
        print(
            f"model alone: {own['tiles']:.3f} MP/s on {args.tile}px tiles, "
            f"{own['images']:.3f} MP/s on whole {args.size}px images (in this process)"
        )
        init_ray(num_cpus=args.num_cpus)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        tiling = ["--tile", str(args.tile), "--overlap", str(args.overlap)]
        tiling += ["--tile-batch", str(args.tile_batch), "--precision", args.precision]
        rows = []
        model_cpu: list[float] = []

        def measure(where: str, count: int, src: str, dst: str, extra: list[str], label=""):
            # The CPU is shared: probe the model right before and after each run and
            # compare the pipeline with the mean of the two.
            before = probe.tiles(args.model_seconds / 2)
            cpu_before = probe.cpu_per_mp
            server_cpu = sum(_cpu_seconds(pid) for pid in SERVER_PIDS)
            with PeakMemory() as mem:
                summary = run_job(src, dst, model, tiling + extra)
            server_cpu = sum(_cpu_seconds(pid) for pid in SERVER_PIDS) - server_cpu
            after = probe.tiles(args.model_seconds / 2)
            ref = (before + after) / 2
            model_cpu.extend([cpu_before, probe.cpu_per_mp])
            steady = summary.get("steady_mp_per_s") or 0.0
            row = {
                "where": where + label,
                "images": count,
                "mp": summary["megapixels"],
                "e2e": summary["mp_per_s"],
                "steady": steady,
                "model": ref,
                "ratio": steady / ref,
                "rss": mem.peak_total / 2**20,
                "largest": mem.peak_single / 2**20,
                "cpu": mem.cpu_seconds + mem.driver_cpu,
            }
            rows.append(row)
            print(
                f"  {row['where']:<18} {count:>5} images: {row['e2e']:.3f} MP/s end to end "
                f"({summary['seconds']:.1f} s, start-up {summary['startup_seconds']:.1f} s), "
                f"{steady:.3f} MP/s steady; model {before:.3f} / {after:.3f} MP/s before / "
                f"after: steady = {row['ratio']:.0%} of the model; peak RSS {row['rss']:.0f} MiB "
                f"(largest process {row['largest']:.0f} MiB); {row['cpu']:.1f} CPU s"
                + (
                    f" (+ {server_cpu:.1f} CPU s in the S3 server on the same cores)"
                    if where == "s3"
                    else ""
                ),
                flush=True,
            )
            if args.cpu_breakdown:
                parts = {"driver": mem.driver_cpu, **mem.cpu_by_process()}
                print(
                    "    CPU s by process: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if v >= 0.05)
                    + (f", S3 server {server_cpu:.1f}" if where == "s3" else ""),
                    flush=True,
                )

        print("denoise run:")
        for count in counts:
            src = work / f"in{count}"
            write_images(src, count, args.size)
            measure("local", count, str(src), str(work / f"out{count}"), [])
            if not args.no_s3:
                fs = s3fs.S3FileSystem()
                bucket = f"bench-{count}"
                fs.mkdir(bucket)
                fs.put(str(src) + "/", f"{bucket}/in/", recursive=True)
                measure("s3", count, f"s3://{bucket}/in", f"s3://{bucket}/out", [])
        for variant in filter(None, args.variants.split(";")):
            extra = []
            for pair in variant.split(","):
                name, value = pair.split("=", 1)
                extra += [f"--{name}", value]
            count = max(counts)
            measure(
                "local",
                count,
                str(work / f"in{count}"),
                str(work / f"out{count}-{len(rows)}"),
                extra,
                label=f" [{variant}]",
            )

        print()
        print(f"cpu: {cpu_model()}; load average now {os.getloadavg()[0]:.1f}")
        print(
            f"{'where':<28} {'images':>6} {'MP':>7} {'MP/s e2e':>9} {'MP/s steady':>11} "
            f"{'model MP/s':>10} {'steady/model':>12} {'peak RSS MiB':>12} {'largest MiB':>11}"
        )
        for r in rows:
            print(
                f"{r['where']:<28} {r['images']:>6} {r['mp']:>7.2f} {r['e2e']:>9.3f} "
                f"{r['steady']:>11.3f} {r['model']:>10.3f} {r['ratio']:>12.0%} "
                f"{r['rss']:>12.0f} {r['largest']:>11.0f}"
            )
        print(
            f"model alone at the start: {own['tiles']:.3f} MP/s (tiles), "
            f"{own['images']:.3f} MP/s (whole images)"
        )
        # CPU seconds per MP are much less sensitive to other load than MP/s: the
        # marginal cost of the pipeline (largest minus smallest run, so start-up cancels)
        # against the model's own CPU seconds per MP.
        model_cpu_mp = float(np.median(model_cpu))
        print(f"model alone: {model_cpu_mp:.2f} CPU s per MP (median of the probes)")
        for where in ("local", "s3"):
            runs = sorted((r for r in rows if r["where"] == where), key=lambda r: r["images"])
            if len(runs) >= 2 and runs[-1]["mp"] > runs[0]["mp"]:
                lo, hi = runs[0], runs[-1]
                marginal = (hi["cpu"] - lo["cpu"]) / (hi["mp"] - lo["mp"])
                print(
                    f"{where}: {marginal:.2f} CPU s per MP marginal ({lo['images']} -> "
                    f"{hi['images']} images) = {model_cpu_mp / marginal:.0%} CPU efficiency "
                    "of the model alone"
                )
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
