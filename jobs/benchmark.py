"""``denoise benchmark``: our models against the noisy input, OpenCV NLM and CBM3D, in one run.

Clean sets get synthetic noise (``--noise gaussian:15,25,50`` gives one set per
sigma; ``camera`` the camera-like mode) under the published Gaussian protocol;
paired sets (an ingested data set's split, or a SIDD / suffix-pair folder) use
their real noise. Prints a Markdown table and writes it with a JSON of PSNR,
SSIM, seconds and MP/s per method per set.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from denoise_core import manifest, storage
from jobs.common import fail, job_main

METHODS = ("noisy", "nlm", "nlm-best", "cbm3d", "models")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", action="append", default=[], help="folder of clean images (repeat)")
    p.add_argument(
        "--noise",
        default="gaussian:15,25,50",
        help="noise for clean sets: gaussian:S1,S2,… (one set per sigma) and/or camera, "
        "joined by ';' (default %(default)s)",
    )
    p.add_argument(
        "--pairs",
        action="append",
        default=[],
        metavar="URI[#SPLIT]",
        help="real noisy/clean pairs: a folder in a paired layout, or an ingested data set "
        "with #SPLIT (default split val)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a .keras model to include (repeat); PATH or a bare NAME may be a packaged tier "
        "(default, fast); default: the packaged default model if present",
    )
    p.add_argument(
        "--precision",
        default="auto",
        help="compute precision(s) of the models, comma-separated (auto, fp32, bf16, fp16, "
        "int8; as in `denoise run`); with several, each model runs in each and is named "
        "NAME/PRECISION (default %(default)s)",
    )
    p.add_argument(
        "--runtime",
        default="tensorflow",
        help="inference runtime(s) of the models, comma-separated (auto, tensorflow, "
        "openvino, onnxruntime; see `denoise run`); with several, each model runs in each "
        "and is named NAME/RUNTIME (default %(default)s)",
    )
    p.add_argument(
        "--ensemble",
        default="1",
        help="self-ensemble size(s), comma-separated (1, 2, 4, 8: predictions averaged over "
        "flips and 90° turns, k times the model's work); with several, NAME/xK "
        "(default %(default)s)",
    )
    p.add_argument(
        "--methods",
        default="noisy,nlm,nlm-best,cbm3d,models",
        help="comma-separated subset of noisy,nlm,nlm-best,cbm3d,models (nlm-best: NLM at "
        "the one strength best for the whole set, chosen with the ground truth; an oracle, "
        "on real-noise sets only) (default %(default)s)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N images per set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--output",
        default=None,
        help="write RESULT.md, RESULT.json and RESULT.html (real-noise sets' crops) here",
    )


def _gaussian_specs(text: str) -> list[str]:
    specs = []
    for part in text.split(";"):
        part = part.strip()
        if part.startswith("gaussian:") and "," in part:
            specs += [f"gaussian:{s}" for s in part.split(":", 1)[1].split(",")]
        elif part:
            specs.append(part)
    return specs


def run(args: argparse.Namespace) -> int:
    from denoise_core import benchmark, weights

    wanted = {m.strip() for m in args.methods.split(",") if m.strip()}
    unknown = wanted - set(METHODS)
    if unknown:
        return fail(
            f"unknown --methods {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}"
        )
    methods: dict = {}
    if "noisy" in wanted:
        methods["noisy"] = None
    if "nlm" in wanted:
        methods["nlm"] = benchmark.nlm_method()
    if "nlm-best" in wanted:
        methods["nlm-best"] = benchmark.BestStrengthNLM()
    if "cbm3d" in wanted:
        methods["cbm3d"] = benchmark.cbm3d_method()
    if "models" in wanted:
        model_args = list(args.model)
        if not model_args:
            from denoise_core.weights import default_model_path

            path = default_model_path()
            if path:
                model_args = [f"default={path}"]
        from denoise_core.inference import ENSEMBLES, resolve_precision, resolve_runtime

        precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
        runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]
        try:
            resolved = {p: resolve_precision(p) for p in precisions}
            resolved_runtimes = {r: resolve_runtime(r) for r in runtimes}
            ensembles = [int(e) for e in args.ensemble.split(",") if e.strip()]
        except ValueError as exc:
            return fail(str(exc))
        bad = [e for e in ensembles if e not in ENSEMBLES]
        if bad or not ensembles:
            return fail(f"--ensemble takes {', '.join(map(str, ENSEMBLES))}, got {args.ensemble}")
        print("models compute in " + ", ".join(f"{p} -> {r}" for p, r in resolved.items()))
        if runtimes != ["tensorflow"]:
            print("models run in " + ", ".join(f"{r} -> {v}" for r, v in resolved_runtimes.items()))
        for spec in model_args:
            name, _, path = spec.partition("=")
            try:  # NAME=default|fast, or just default|fast: a packaged tier
                path = weights.resolve_model(path or name)
            except weights.NoPackagedModel as exc:
                return fail(str(exc))
            for runtime in runtimes:
                for precision in precisions:
                    for ensemble in ensembles:
                        label = name
                        label += f"/{runtime}" if len(runtimes) > 1 else ""
                        label += f"/{precision}" if len(precisions) > 1 else ""
                        label += f"/x{ensemble}" if len(ensembles) > 1 else ""
                        try:
                            methods[label] = benchmark.model_method(
                                storage.absolute(path),
                                precision=precision,
                                runtime=runtime,
                                ensemble=ensemble,
                            )
                        except ValueError as exc:  # e.g. a precision the runtime lacks
                            return fail(f"{label}: {exc}")

    sets = []
    for uri in args.clean:
        for spec in _gaussian_specs(args.noise):
            sets.append(benchmark.clean_set(storage.absolute(uri), spec, args.limit, args.seed))
    for spec in args.pairs:
        uri, split = manifest.parse_set_spec(spec)
        sets.append(benchmark.paired_set(storage.absolute(uri), split, args.limit))
    if not sets:
        print("error: give at least one --clean or --pairs set")
        return 2

    start = time.time()

    def progress(res):
        row = res.row()
        mps = f"{row['mp_per_s']:.3f} MP/s" if row["mp_per_s"] else ""
        note = f"  ({res.note})" if res.note else ""
        print(
            f"  {row['set']:<28} {row['method']:<12} {row['psnr']:.2f} dB  {mps}{note}", flush=True
        )

    results = benchmark.run_benchmark(sets, methods, progress)
    table = benchmark.markdown_table(results)
    print()
    print(table)
    if args.output:
        cpu = platform.processor()
        payload = {
            "results": [r.row() for r in results],
            "seconds": round(time.time() - start, 1),
            "cpu": cpu,
            "protocol": benchmark.__doc__,
        }
        storage.write_bytes_atomic(args.output + ".json", json.dumps(payload, indent=2).encode())
        storage.write_bytes_atomic(args.output + ".md", (table + "\n").encode())
        html_text = _report(results, sets, table)
        storage.write_bytes_atomic(args.output + ".html", html_text.encode())
        print(f"\nwritten: {args.output}.md, {args.output}.json, {args.output}.html")
    return 0


def _report(results, sets, table: str) -> str:
    """HTML with the tables and, per real-noise set, every method's crops beside the truth."""
    from denoise_core import benchmark, report

    figures = []
    for bench_set in sets:
        rows = [r for r in results if r.bench_set == bench_set.name and r.crops]
        if not rows:
            continue
        clean = [c[benchmark.report_crop(c.shape)] for _, _, c, _ in bench_set.images]
        columns = [(r.method, r.crops, r.psnr) for r in rows]
        keys = [key for key, *_ in bench_set.images]
        figures.append((bench_set.name, report.benchmark_crops_figure(keys, columns, clean)))
    return report.benchmark_html("denoise benchmark", table, figures)


def main(argv: list[str] | None = None) -> int:
    return job_main("benchmark", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
