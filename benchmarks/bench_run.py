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
import math
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


# --------------------------------------------------------------------------
# Pipeline ceiling (--ceiling): null model, fused against split, data CPUs
# --------------------------------------------------------------------------


def write_jpeg_set(folder: Path, ref_folder: Path, count: int, width: int, height: int) -> None:
    """Photo-like noisy JPEGs (q95) and their clean PNG references, ``count`` of each."""
    import cv2

    rng = np.random.default_rng(width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= height
    x /= width
    clean = np.stack([np.sin(9 * x) * 0.3, np.cos(7 * y) * 0.3, (x - y) * 0.3], -1) + 0.5
    clean = np.rint(np.clip(clean, 0, 1) * 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    ref_folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise = rng.normal(0, 12, clean.shape).astype(np.float32)
        noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(ref_folder / f"img{i:04d}.png"), clean, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def metric_cost(size: tuple[int, int]) -> dict[str, float]:
    """CPU seconds per MP of scoring one image against its reference (two comparisons per
    image in a run: output and input), for scikit-image and both fast_metrics modes."""
    from denoise_core import fast_metrics, metrics

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    mp = size[0] * size[1] / 1e6
    out = {}
    for name, fn in (
        ("scikit-image", lambda: metrics.image_metrics(a, b)),
        ("exact (float64)", lambda: fast_metrics.image_metrics(a, b, np.float64)),
        ("fast (float32)", lambda: fast_metrics.image_metrics(a, b, np.float32)),
    ):
        best = math.inf
        for _ in range(3):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        out[name] = best / mp
    return out


def ceiling(args) -> int:
    """Null-model and stand-in runs on JPEG inputs; with and without references."""
    import ray

    from jobs import quiet
    from jobs.common import quiet_ray_data

    work = Path(tempfile.mkdtemp(prefix="bench_ceiling_"))
    sizes = {"1 MP": (1024, 1024), "12 MP": (4000, 3000)}
    counts = dict(zip(sizes, (int(c) for c in args.ceiling_images.split(",")), strict=True))
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs), load {os.getloadavg()[0]:.1f}")
    for name, (w, h) in sizes.items():
        write_jpeg_set(work / name / "in", work / name / "ref", counts[name], w, h)
    rows: list[tuple[str, str, float, float, float, float]] = []

    def measure(label: str, name: str, extra: list[str], data_cpus: int) -> None:
        src = str(work / name / "in")
        dst = str(work / f"out-{len(rows)}")
        ray.shutdown()  # a fresh local Ray with this many CPUs (never another cluster)
        ray.init(
            address="local",
            num_cpus=data_cpus,
            logging_level=logging.WARNING,
            runtime_env=quiet.runtime_env(),
        )
        quiet_ray_data()
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        with contextlib.redirect_stderr(open(os.devnull, "w")), PeakMemory() as mem:
            code = run_job_main([src, dst, "--no-report", "--format", "jpg", *extra])
        if code != 0:
            raise RuntimeError(f"denoise run exited {code}: {label}")
        import json

        from denoise_core import storage

        summary = json.loads(storage.read_bytes(storage.join(dst, "summary.json")))
        steady = summary.get("steady_mp_per_s") or 0.0
        # CPU time is what a shared machine cannot hide: MP per CPU second of every
        # process of the run (Ray's workers, start-up included, and the driver).
        cpu = mem.cpu_seconds + mem.driver_cpu
        per_cpu = summary["megapixels"] / cpu if cpu > 0 else 0.0
        rows.append((label, name, summary["mp_per_s"], steady, per_cpu, mem.peak_total / 2**20))
        print(
            f"  {label:<44} {name:>6}: {steady:7.2f} MP/s steady, "
            f"{summary['mp_per_s']:6.2f} end to end ({summary['seconds']:.0f} s), "
            f"{per_cpu:5.2f} MP per CPU s, peak RSS {mem.peak_total / 2**20:.0f} MiB",
            flush=True,
        )
        shutil.rmtree(dst, ignore_errors=True)

    data_cpu_counts = [int(c) for c in args.data_cpus.split(",")]
    print("null model (--model identity), JPEG in and out:")
    for name in sizes:
        for d in data_cpu_counts:
            fused = ["--model", "identity", "--pipeline", "fused", "--concurrency", str(d)]
            measure(f"fused, {d} actor(s) x 1 CPU", name, fused, d)
            split = ["--model", "identity", "--pipeline", "split", "--data-cpus", str(d)]
            split += ["--cpus-per-actor", "0", "--concurrency", "1"]
            measure(f"split, {d} data CPU(s)", name, split, d)
    print("stand-in accelerator (--model identity:400: sleeps MP/400 s, no CPU), split:")
    for d in data_cpu_counts:
        split = ["--model", "identity:400", "--pipeline", "split", "--data-cpus", str(d)]
        split += ["--cpus-per-actor", "0", "--concurrency", "1"]
        measure(f"split, {d} data CPU(s)", "12 MP", split, d)
    print("metrics: CPU s per MP of one comparison (a run with references makes two):")
    for name, cost in metric_cost((1024, 1024)).items():
        print(f"  {name:<16} {cost:.3f} CPU s/MP ({1 / cost:.1f} MP/s)")
    if args.reference_model:
        name = None if args.reference_model == "default" else args.reference_model
        model = pick_model(name, work)
        print(f"with and without --reference ({model}, fused, 1 MP JPEGs):")
        ref = str(work / "1 MP" / "ref")
        base = ["--model", model, "--pipeline", "fused"]
        cpus = max(data_cpu_counts)
        measure("no reference", "1 MP", base, cpus)
        measure("--reference, --metrics exact", "1 MP", [*base, "--reference", ref], cpus)
        measure(
            "--reference, --metrics fast",
            "1 MP",
            [*base, "--reference", ref, "--metrics", "fast"],
            cpus,
        )
    ray.shutdown()
    print(f"\ncpu: {cpu_model()}; load average now {os.getloadavg()[0]:.1f}")
    print(
        f"{'run':<44} {'images':>6} {'MP/s steady':>11} {'MP/s e2e':>9} "
        f"{'MP/CPU-s':>8} {'peak RSS MiB':>12}"
    )
    for label, name, e2e, steady, per_cpu, rss in rows:
        print(f"{label:<44} {name:>6} {steady:>11.2f} {e2e:>9.2f} {per_cpu:>8.2f} {rss:>12.0f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def run_job_main(argv: list[str]) -> int:
    from jobs import run as run_job_module

    return run_job_module.main(argv)


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
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="measure the pipeline instead: --model identity fused against split on 1 MP "
        "and 12 MP JPEGs per data-CPU count, the identity:400 accelerator stand-in, metric "
        "costs, and (with --reference-model) a model with and without --reference",
    )
    p.add_argument("--ceiling-images", default="40,6", help="--ceiling: 1 MP and 12 MP images")
    p.add_argument("--data-cpus", default="1,2", help="--ceiling: Ray CPU counts to compare")
    p.add_argument(
        "--reference-model",
        default=None,
        help="--ceiling: also time this model ('default': the packaged one) with and "
        "without --reference",
    )
    args = p.parse_args(argv)
    if args.ceiling:
        return ceiling(args)
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
