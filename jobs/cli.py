"""``denoise``: one command, one sub-command per job. A thin front over ``jobs/``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command -> (module under jobs/, one-line help)
COMMANDS = {
    "ingest": ("jobs.ingest", "image sets (SIDD, pairs, clean) -> Parquet shards"),
    "train": ("jobs.train", "fit a denoiser with Ray Train from ingested shards"),
    "run": ("jobs.run", "denoise a folder, bucket or data set; metrics and report"),
    "benchmark": ("jobs.benchmark", "our models vs noisy input, OpenCV NLM and CBM3D, one run"),
    "noise-stats": ("jobs.noise_stats", "real noise vs each synthetic mode: levels, correlations"),
    "demo": ("jobs.demo", "the whole pipeline on photos bundled with scikit-image"),
    "promote": ("jobs.promote", "ship a run's model as the packaged default, with lineage"),
    "models": ("jobs.models", "list the architectures with parameters and FLOPs per megapixel"),
    "export": ("jobs.export", "a model as ONNX, TFLite (LiteRT) or a SavedModel"),
}


def main(argv: list[str] | None = None) -> int:
    from jobs import quiet

    try:
        # Before the jobs are imported: they import TensorFlow (quiet start-up).
        quiet.configure(argv)
        from jobs.common import add_verbose, interrupted, run_guarded

        parser = argparse.ArgumentParser(
            prog="denoise",
            description="Distributed image denoising on Ray: ingest, train, run, benchmark.",
        )
        add_verbose(parser)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        modules = {}
        for name, (module_name, help_text) in COMMANDS.items():
            module = importlib.import_module(module_name)
            modules[name] = module
            sub_parser = sub.add_parser(name, help=help_text, description=module.__doc__)
            module.add_arguments(sub_parser)
            add_verbose(sub_parser)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return run_guarded(args.command, modules[args.command].run, args)
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being reported
        return interrupted(args.command)


def entry() -> None:
    """The ``denoise`` program. After Ctrl-C the outputs are safe, but Ray's and
    TensorFlow's threads may still be running, and interpreter teardown among them
    can crash (a segfault after the interrupt line, seen in CI): leave at once."""
    from jobs import quiet

    stop_filter = quiet.filter_native_stderr()
    try:
        code = main()
    finally:
        stop_filter()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
