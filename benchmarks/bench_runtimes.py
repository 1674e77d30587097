"""Model tiers x inference runtimes x precisions against OpenCV NLM, in one process.

Prints, all measured here in this run:

- the CPU (``lscpu`` model name) and whether it has AVX2, AVX-512, AVX-512 VNNI,
  AVX-512 BF16 and AMX;
- each model tier (``default``: the packaged quality model; ``fast``: the packaged fast
  tier, at most a quarter of the default's FLOPs per megapixel) with its parameters and
  GFLOP per megapixel;
- MP/s of each tier x runtime x precision (``Denoiser.predict_batch`` on one ``size``²
  tile, batch 1, after a warm-up): TensorFlow fp32 / bf16, ONNX Runtime fp32, OpenVINO
  fp32 / bf16 hint, and int8 (below), beside OpenCV ``fastNlMeansDenoisingColored`` on
  the same image, wall clock and per CPU-second of this process, as ratios to NLM;
- the seconds each row took to load (conversion and quantisation included:
  ``--fresh-cache`` makes every runtime conversion happen in this run);
- PSNR of each row on Kodak24 at sigma 25 (``--kodak`` images, the benchmark's fixed
  noise) and on the real SIDD sample crops, with the difference to the same tier's
  TensorFlow fp32 (a runtime's or int8's PSNR cost); NLM beside them (h = 0.6·sigma on
  Kodak24, the best single h for the SIDD set);
- the x``--ensemble`` self-ensemble's gain and cost on each tier's fastest row;
- the ceiling each tier's GFLOP/MP sets here (``roofline.py``: the peak GFLOP per
  CPU-second of large fp32 / bf16 / int8 kernels), with each precision's best row as a
  share of it (``--roofline-only``: that table alone).

int8, two quantisers: OpenVINO int8 is the product's ``--precision int8``
(:mod:`denoise_core.quantize`: NNCF on the OpenVINO IR, calibrated on scikit-image's
bundled photographs with the training noise mix); ONNX Runtime int8 is each tier's
float32 ONNX export quantised by ONNX Runtime's post-training static quantisation
(``onnxruntime.quantization.quantize_static``: QDQ, per-channel int8 weights, uint8
activations, 99.99th-percentile calibration; the last convolution and the residual
output stay float32) on ``--calibration`` 256² crops of CBSD432 (training images, never
the SIDD samples or Kodak24) with Gaussian noise of sigma 0-50.

``--fp32-only`` drops the bf16 rows (every float row computes in fp32, int8 rows in int8
with float32 elsewhere), as on a CPU without native bf16. Run on a CPU that has AVX-512
BF16 or AMX, it only approximates an AVX2-only CPU: the fp32 and int8 kernels here still
use AVX-512 (and VNNI), and cores, caches and clocks differ. ``--cap-isa avx2`` narrows
the gap for TensorFlow (oneDNN: ``ONEDNN_MAX_CPU_ISA``), OpenVINO's oneDNN kernels (not
its own) and OpenCV's dispatched code (``OPENCV_CPU_DISABLE``); ONNX Runtime's MLAS
kernels cannot be capped. Still an approximation: say so wherever its ratios are quoted.

CPU time is shared on small machines: compare ratios within one run, never bare MP/s
across machines.

    nice -n 5 python benchmarks/bench_runtimes.py
    python benchmarks/bench_runtimes.py --fp32-only --cap-isa avx2
    python benchmarks/bench_runtimes.py --quick --fast RUN/ray/attempt-001/checkpoint_N/model.keras
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
# NLM strengths tried for the SIDD set's best single h (a shorter grid than the
# benchmark's 2-40: its best on these crops has been 15-25).
NLM_STRENGTHS = (8, 10, 12, 15, 18, 21, 25, 30)
# (runtime, precision) pairs measured per tier, when the runtime is installed.
CONFIGS = (
    ("tensorflow", "fp32"),
    ("tensorflow", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),  # the product's --precision int8 (denoise_core.quantize, NNCF)
)
# Sigma per calibration crop, in this order: the first few already span the range
# (two crops at sigma 0 and 5 clipped the default model's activations: -7.8 dB).
CALIBRATION_SIGMAS = (50, 25, 0, 35, 15, 5)
CALIBRATION_CROP = 256
# Environment that caps the vector ISA at AVX2 where a library lets it (read at load).
CAP_ISA_ENV = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENCV_CPU_DISABLE": "AVX512-SKX"},
}
QUICK = {"size": 256, "seconds": 0.0, "kodak": 1, "sidd_limit": 2, "ensemble": 0,
         "calibration": 4}  # fmt: skip
DEFAULTS = {"size": 1024, "seconds": 60.0, "kodak": 4, "sidd_limit": None, "ensemble": 8,
            "calibration": 8}  # fmt: skip


def cpu_summary() -> tuple[str, dict[str, bool]]:
    """``lscpu``'s model name and the flags that decide bf16 and int8 speed."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)", {}
    name, flags = "unknown", set()
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            name = value.strip()
        elif key.strip() == "Flags":
            flags = set(value.split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return name, {f: f in flags for f in wanted}


def interleaved_rates(
    fns: dict, megapixels: float, seconds: float, min_rounds: int = 3
) -> dict[object, tuple[float, float]]:
    """(MP/s wall, MP per CPU-second) of each ``fn()``: one warm-up call each, then rounds
    that call every function once, until ``seconds`` have passed (at least
    ``min_rounds``); median per function. Interleaving spreads whatever else runs on the
    machine over every row alike; CPU seconds (this process, all threads) do not count
    time the CPU spent on other processes."""
    for fn in fns.values():
        fn()
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < seconds:
        for key, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - w)
            cpu[key].append(time.process_time() - c)
        rounds += 1
    return {
        k: (megapixels / float(np.median(wall[k])), megapixels / float(np.median(cpu[k])))
        for k in fns
    }


def bench_image(size: int) -> np.ndarray:
    """A ``size``² photo with sigma 25 noise: a Kodak24 image resized, fixed seed."""
    import cv2

    from denoise_core import benchmark

    clean = benchmark._read_rgb(str(DATA / "val" / "Kodak24" / "kodim01.png"))
    clean = cv2.resize(clean, (size, size), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    return (clean + rng.normal(0, 25 / 255, clean.shape)).astype(np.float32)


# --------------------------------------------------------------------------------------
# int8: ONNX Runtime post-training static quantisation of the float32 ONNX export
# --------------------------------------------------------------------------------------


def calibration_crops(count: int, multiple: int) -> list[np.ndarray]:
    """``count`` noisy 256² crops of CBSD432 training images (sigma cycling 0-50, fixed
    seed): the activations quantisation ranges are read from. Never validation data."""
    from denoise_core import benchmark, storage

    files = sorted(storage.walk_images(str(DATA / "train" / "CBSD432")))
    rng = np.random.default_rng(19)
    side = CALIBRATION_CROP - CALIBRATION_CROP % multiple
    crops = []
    for i, path in enumerate(files[:: max(1, len(files) // max(count, 1))][:count]):
        img = benchmark._read_rgb(path)
        y = int(rng.integers(0, img.shape[0] - side + 1))
        x = int(rng.integers(0, img.shape[1] - side + 1))
        crop = img[y : y + side, x : x + side]
        sigma = CALIBRATION_SIGMAS[i % len(CALIBRATION_SIGMAS)]
        crops.append((crop + rng.normal(0, sigma / 255, crop.shape)).astype(np.float32)[None])
    return crops


def quantize_int8(
    fp32_model,
    crops: list[np.ndarray],
    folder: str,
    method: str = "Percentile",
    percentile: float = 99.99,
    float_first: int = 0,
    float_last: int = 1,
) -> str:
    """The model exported to ONNX and quantised to int8 (QDQ) in ``folder``; returns its path.
    The first ``float_first`` convolutions and everything from the ``float_last``-th last
    one on (by default the last convolution and the residual output) stay float32;
    ``method``: ONNX Runtime's calibration (Percentile, MinMax, Entropy)."""
    import contextlib
    import io
    import logging

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from denoise_core import export

    src = os.path.join(folder, "model.onnx")
    if not os.path.exists(src):
        export.export_model(fp32_model, src, "onnx")
    graph = onnx.load(src).graph
    input_name = graph.input[0].name
    convs = [i for i, n in enumerate(graph.node) if n.op_type == "Conv"]
    keep_float = [n.name for n in graph.node[convs[-float_last] :]]
    keep_float += [graph.node[i].name for i in convs[:float_first]]

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(crops)

        def get_next(self):
            crop = next(self.items, None)
            return None if crop is None else {input_name: crop}

    out = os.path.join(
        folder, f"model.int8-{method}-{percentile}-{float_first}-{float_last}-{len(crops)}.onnx"
    )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice on every call
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator's progress prints
            quantize_static(
                src,
                out,
                Crops(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                nodes_to_exclude=keep_float,
                extra_options={"CalibPercentile": percentile} if method == "Percentile" else {},
            )
    finally:
        root.setLevel(level)
    return out


class Int8FileDenoiser:
    """A quantised model file (ONNX QDQ or OpenVINO IR) in ONNX Runtime or OpenVINO (the
    sessions ``Denoiser`` uses; in OpenVINO what is not int8 computes in float32), tiled
    like ``Denoiser`` (same tile, overlap, batch and thread rule), float32 in and out."""

    def __init__(self, path: str, runtime: str, multiple: int, tile: int, threads: int) -> None:
        from denoise_core.inference import OnnxRuntimeSession, OpenVinoSession

        self.multiple, self.tile, self.overlap, self.batch_size = multiple, tile, 32, 4
        if runtime == "onnxruntime":
            self._run = OnnxRuntimeSession(path, threads)
        else:
            self._run = OpenVinoSession(path, threads, "fp32")

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(batch, dtype=np.float32)))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from denoise_core import tiling

        out = tiling.denoise_tiled(
            self.predict_batch,
            image,
            tile=self.tile,
            overlap=self.overlap,
            multiple=self.multiple,
            batch_size=self.batch_size,
            fit=True,
        )
        return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------
# The ceiling the CPU's arithmetic sets (benchmarks/roofline.py)
# --------------------------------------------------------------------------------------


def measure_ceilings(
    precisions: list[str],
    tier_gflops: dict[str, float],
    nlm_mp_per_cpu_s: float,
    seconds: float,
    measured: dict[tuple[str, str], float] | None = None,
) -> list[str]:
    """The peak GFLOP per CPU-second of each precision here, and the ceiling table it
    gives each tier (Markdown lines, a heading first)."""
    from denoise_core.inference import runtime_threads

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import roofline

    found = roofline.kernels(precisions, runtime_threads())
    calls = interleaved_rates({k: fn for k, (fn, _) in found.items()}, 1.0, seconds)
    rates = {k: calls[k][1] * found[k][1] for k in found}
    lines = [
        "Ceilings: the best GFLOP per CPU-second of large kernels here (" + ", ".join(
            f"{k} {v:.0f}" for k, v in rates.items()) + "), divided by each tier's GFLOP/MP:",
        "the most MP per CPU-second any runtime could reach (benchmarks/roofline.py).",
        "",
    ]  # fmt: skip
    return lines + roofline.ceiling_table(
        roofline.peaks(rates), tier_gflops, nlm_mp_per_cpu_s, measured
    )


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default=None, help="the default tier: a .keras file (default: packaged)"
    )
    p.add_argument(
        "--fast",
        default=None,
        help="the fast tier: a .keras file (default: the packaged fast model; without "
        "one the tier is left out with a note)",
    )
    p.add_argument("--tiers", default="default,fast", help="tiers to measure (%(default)s)")
    p.add_argument("--size", type=int, default=None, help="tile side for the speed rows (1024)")
    p.add_argument("--seconds", type=float, default=None, help="timing rounds (60; at least 3)")
    p.add_argument("--kodak", type=int, default=None, help="Kodak24 images at sigma 25 (4)")
    p.add_argument("--sidd", default=str(DATA / "real" / "SIDD" / "samples"))
    p.add_argument("--sidd-limit", type=int, default=None, help="first N SIDD pairs (all)")
    p.add_argument("--ensemble", type=int, default=None, help="self-ensemble (8; 0: skip)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="leave int8 out")
    p.add_argument("--calibration", type=int, default=None, help="int8 calibration crops (8)")
    p.add_argument(
        "--fp32-only",
        action="store_true",
        help="no bf16 rows: fp32 (and int8) only, as on a CPU without native bf16 (on this "
        "CPU an approximation of one; see --cap-isa)",
    )
    p.add_argument(
        "--cap-isa",
        choices=sorted(CAP_ISA_ENV),
        default=None,
        help="cap TensorFlow's and OpenVINO's oneDNN kernels and OpenCV's dispatch at this "
        "ISA (ONNX Runtime cannot be capped); set before those libraries load",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a functional check, not a measurement: 256² tile, 3 rounds, 1 Kodak image, "
        "2 SIDD pairs, no ensemble, 4 calibration crops (explicit options still win)",
    )
    p.add_argument("--fresh-cache", action="store_true", help="convert in this run (temp cache)")
    p.add_argument(
        "--no-roofline",
        dest="roofline",
        action="store_false",
        help="leave out the ceiling table (benchmarks/roofline.py: the arithmetic peak here "
        "and what it allows each tier, as x NLM)",
    )
    p.add_argument(
        "--roofline-only",
        action="store_true",
        help="only NLM and the ceiling table: no model rows, no PSNR (a minute)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cap_isa:
        loaded = [m for m in ("tensorflow", "openvino", "cv2") if m in sys.modules]
        if loaded:
            print(f"warning: --cap-isa set after {', '.join(loaded)} loaded: not applied there")
        os.environ.update(CAP_ISA_ENV[args.cap_isa])

    from jobs import quiet

    quiet.configure([])
    if args.fresh_cache:
        os.environ["DENOISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-runtimes-")

    from denoise_core import benchmark, metrics, models, weights
    from denoise_core.inference import (
        Denoiser,
        load_model_any,
        resolve_runtime,
        runtime_available,
        runtime_threads,
    )

    paths = {"default": args.model or weights.default_model_path(), "fast": args.fast}
    if args.fast is None:
        paths["fast"] = weights.fast_model_path()
    wanted = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = set(wanted) - set(weights.TIERS)
    if unknown:
        print(f"error: unknown --tiers {', '.join(sorted(unknown))}; choose from default, fast")
        return 2
    tier_notes = {}
    tiers = {}
    for tier in wanted:
        if paths[tier] is None:
            tier_notes[tier] = f"left out: this build ships no {tier} model (pass --{tier} PATH)"
            if tier == "default":
                tier_notes[tier] = "left out: this build ships no default model (pass --model)"
            continue
        model = load_model_any(paths[tier])
        tiers[tier] = {"path": paths[tier], "model": model, "info": models.model_info(model)}
    if not tiers:
        print("error: no model to measure; " + "; ".join(tier_notes.values()))
        return 2

    name, flags = cpu_summary()
    print(f"CPU: {name}; {os.cpu_count()} logical CPUs")
    print("flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))
    import cv2

    print(f"OpenCV dispatch (? = disabled): {cv2.getCPUFeaturesLine()}")
    for tier, t in tiers.items():
        i = t["info"]
        print(
            f"{tier} tier: {t['path']} ({i['name']}, {i['params']:,} parameters, "
            f"{i['flops_per_megapixel'] / 1e9:.1f} GFLOP/MP)"
        )
    for tier, note in tier_notes.items():
        print(f"{tier} tier: {note}")
    print(f"auto runtime here: {resolve_runtime('auto')}")
    if args.fp32_only:
        print(
            "--fp32-only: no bf16 rows, as on a CPU without native bf16. On this CPU an "
            "APPROXIMATION of an AVX2-only one: fp32/int8 kernels here "
            + (
                f"are capped at {args.cap_isa.upper()} in TensorFlow, OpenVINO's oneDNN "
                "and OpenCV only (not ONNX Runtime, not OpenVINO's own kernels)"
                if args.cap_isa
                else "still use AVX-512" + (" and VNNI" if flags.get("avx512_vnni") else "")
            )
            + "; cores, caches and clocks differ too."
        )
    elif args.cap_isa:
        print(f"--cap-isa {args.cap_isa}: TensorFlow, OpenVINO's oneDNN and OpenCV capped")
    if args.quick:
        print("--quick: a functional check; these timings and PSNRs are not measurements")

    image = bench_image(args.size)
    mp = args.size * args.size / 1e6
    nlm_h = 0.6 * 25
    precisions = ["fp32", "int8"] if args.fp32_only else ["fp32", "bf16", "int8"]
    tier_gflops = {k: t["info"]["flops_per_megapixel"] / 1e9 for k, t in tiers.items()}
    if args.roofline_only:
        nlm_cpu_rate = interleaved_rates(
            {"nlm": lambda: benchmark.nlm(image, nlm_h)}, mp, args.seconds / 3
        )["nlm"][1]
        table = measure_ceilings(precisions, tier_gflops, nlm_cpu_rate, args.seconds / 3)
        print("\n".join(table))
        if args.json:
            Path(args.json).write_text(json.dumps({"cpu": name, "flags": flags,
                                                   "ceilings": table}, indent=2))  # fmt: skip
        return 0
    kodak = benchmark.clean_set(str(DATA / "val" / "Kodak24"), "gaussian:25", limit=args.kodak)
    sidd = benchmark.paired_set(args.sidd, limit=args.sidd_limit)
    sets = [
        (f"Kodak24 σ25 ({len(kodak.images)})", kodak),
        (f"SIDD samples ({len(sidd.images)})", sidd),
    ]

    def psnr_on(fn, bench_set) -> float:
        return float(
            np.mean([metrics.psnr(fn(noisy), clean) for _, noisy, clean, _ in bench_set.images])
        )

    configs = [
        c
        for c in CONFIGS
        if not (args.fp32_only and c[1] == "bf16") and (args.int8 or c[1] != "int8")
    ]
    threads = runtime_threads()
    rows, denoisers = [], {}
    work = tempfile.mkdtemp(prefix="bench-runtimes-int8-")
    for tier, t in tiers.items():
        for runtime, precision in configs:
            row = {"tier": tier, "runtime": runtime, "precision": precision}
            rows.append(row)
            if not runtime_available(runtime, precision):
                row["skipped"] = "not installed"
                continue
            start = time.perf_counter()
            denoisers[(tier, runtime, precision)] = Denoiser(
                t["model"], tile=1024, runtime=runtime, precision=precision
            )
            row["load_s"] = time.perf_counter() - start
            if precision == "int8":
                row["note"] = "NNCF (denoise_core.quantize: denoise run --precision int8)"
        if not args.int8:
            continue
        if not runtime_available("onnxruntime"):  # ONNX Runtime quantises and runs it
            rows.append({"tier": tier, "runtime": "onnxruntime", "precision": "int8",
                         "skipped": "needs onnxruntime, onnx, tf2onnx"})  # fmt: skip
            continue
        start = time.perf_counter()
        multiple = models.model_size_multiple(t["model"])
        folder = os.path.join(work, tier)
        os.makedirs(folder)
        fp32 = models.with_precision(t["model"], "fp32")
        int8_path = quantize_int8(fp32, calibration_crops(args.calibration, multiple), folder)
        denoisers[(tier, "onnxruntime", "int8")] = Int8FileDenoiser(
            int8_path, "onnxruntime", multiple, 1024, threads
        )
        load_s = time.perf_counter() - start
        rows.append({"tier": tier, "runtime": "onnxruntime", "precision": "int8",
                     "load_s": load_s, "note": f"ORT QDQ, quantised on {args.calibration} "
                                               "CBSD432 crops"})  # fmt: skip

    batch = image[None]
    fns = {key: (lambda den=den: den.predict_batch(batch)) for key, den in denoisers.items()}
    fns[("-", "nlm", "uint8")] = lambda: benchmark.nlm(image, nlm_h)
    rates = interleaved_rates(fns, mp, args.seconds)
    nlm_rate, nlm_cpu_rate = rates[("-", "nlm", "uint8")]
    for row in rows:
        key = (row["tier"], row["runtime"], row["precision"])
        if key in denoisers:
            row["mp_per_s"], row["mp_per_cpu_s"] = rates[key]
            for label, bench_set in sets:
                row[label] = psnr_on(denoisers[key], bench_set)
            print(f"  measured {' '.join(key)}: {row['mp_per_s']:.3f} MP/s", flush=True)

    nlm_row = {
        "tier": "-",
        "runtime": "OpenCV NLM",
        "precision": "uint8",
        "mp_per_s": nlm_rate,
        "mp_per_cpu_s": nlm_cpu_rate,
    }
    nlm_row[sets[0][0]] = psnr_on(lambda x: benchmark.nlm(x, nlm_h), kodak)
    oracle = benchmark.BestStrengthNLM(strengths=NLM_STRENGTHS)
    best_h, outs = oracle.best([(n, c) for _, n, c, _ in sidd.images])
    nlm_row[sets[1][0]] = float(
        np.mean([metrics.psnr(o, c) for o, (_, _, c, _) in zip(outs, sidd.images)])
    )
    nlm_row["note"] = f"h {nlm_h:g} (Kodak), best h {best_h:g} (SIDD)"

    measured = [r for r in rows if "mp_per_s" in r]
    bases = {
        r["tier"]: r for r in measured if r["runtime"] == "tensorflow" and r["precision"] == "fp32"
    }
    ens_rows = []
    for tier in tiers if args.ensemble > 1 else ():
        # The tier's fastest float row, averaged over the symmetries: the same converted model.
        floats = [r for r in measured if r["tier"] == tier and r["precision"] != "int8"]
        if not floats:
            continue
        fastest = max(floats, key=lambda r: r["mp_per_s"])
        single = denoisers[(tier, fastest["runtime"], fastest["precision"])]
        ens = copy.copy(single)
        ens.ensemble = args.ensemble
        ratio = interleaved_rates(
            {
                "x1": lambda s=single: s.predict_batch(batch),
                "xk": lambda e=ens: e.predict_batch(batch),
            },
            mp,
            seconds=0,
            min_rounds=1,
        )
        row = {
            "tier": tier,
            "runtime": f"{fastest['runtime']} x{args.ensemble} ensemble",
            "precision": fastest["precision"],
            "mp_per_s": fastest["mp_per_s"] * ratio["xk"][0] / ratio["x1"][0],
            "mp_per_cpu_s": fastest["mp_per_cpu_s"] * ratio["xk"][1] / ratio["x1"][1],
        }
        for label, bench_set in sets:
            row[label] = psnr_on(ens, bench_set)
        row["note"] = f"{ratio['x1'][0] / ratio['xk'][0]:.1f}x the time of x1; " + ", ".join(
            f"{label.split(' ')[0]} {row[label] - fastest[label]:+.3f} dB" for label, _ in sets
        )
        ens_rows.append(row)

    print()
    print(f"Speed: {args.size}² tile, batch 1; NLM on the same image (h {nlm_h:g}, 7/21)")
    print("MP/s: wall clock, median of interleaved rounds; MP/cpu-s: per CPU-second of this")
    print("process (immune to other load). x NLM: the ratio to NLM of each. Δ TF: PSNR")
    print("difference to the same tier's TensorFlow fp32 (a runtime's or int8's cost).")
    head = (
        f"{'tier':<7} {'runtime':<28} {'prec':<5} {'GFLOP/MP':>8} {'load s':>7} {'MP/s':>7} "
        f"{'x NLM':>6} {'MP/cpu-s':>8} {'x NLM':>6}"
    )
    for label, _ in sets:
        head += f" {label[:20]:>20} {'Δ TF':>6}"
    print(head)
    all_rows = [*rows, *ens_rows, nlm_row]
    for r in all_rows:
        gflops = tiers[r["tier"]]["info"]["flops_per_megapixel"] / 1e9 if r["tier"] in tiers else 0
        gf = f"{gflops:8.1f}" if gflops else f"{'':>8}"
        if "skipped" in r:
            print(f"{r['tier']:<7} {r['runtime']:<28} {r['precision']:<5} {gf} ({r['skipped']})")
            continue
        load = f"{r['load_s']:7.1f}" if "load_s" in r else f"{'':>7}"
        line = (
            f"{r['tier']:<7} {r['runtime']:<28} {r['precision']:<5} {gf} {load} "
            f"{r['mp_per_s']:7.3f} {r['mp_per_s'] / nlm_rate:6.2f} {r['mp_per_cpu_s']:8.3f} "
            f"{r['mp_per_cpu_s'] / nlm_cpu_rate:6.2f}"
        )
        base = bases.get(r["tier"])
        for label, _ in sets:
            delta = f"{r[label] - base[label]:+6.3f}" if base else f"{'':>6}"
            line += f" {r[label]:20.2f} {delta}"
        print(line + (f"  {r['note']}" if "note" in r else ""))
    ceilings = []
    if args.roofline:
        best: dict[tuple[str, str], float] = {}
        for r in rows:
            if "mp_per_cpu_s" in r:
                key = (r["tier"], r["precision"])
                best[key] = max(best.get(key, 0.0), r["mp_per_cpu_s"])
        print()
        ceilings = measure_ceilings(
            precisions, tier_gflops, nlm_cpu_rate, args.seconds / 3, measured=best
        )
        print("\n".join(ceilings))
    if args.json:
        payload = {
            "ceilings": ceilings,
            "cpu": name,
            "flags": flags,
            "tiers": {k: {"path": t["path"], **t["info"]} for k, t in tiers.items()},
            "tier_notes": tier_notes,
            "size": args.size,
            "fp32_only": args.fp32_only,
            "cap_isa": args.cap_isa,
            "quick": args.quick,
            "rows": all_rows,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
