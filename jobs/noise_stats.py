"""``denoise noise-stats``: real noise (noisy minus clean) against each synthetic mode.

For every paired set it measures the residual's std per intensity level, its
spatial correlation at 1 and 2 px and its cross-channel correlation
(:mod:`denoise_core.noise_stats`), then synthesises each ``--synthetic`` mode on
the same clean images and measures that too. Levels are matched per image: of
``--match`` draws of the mode's parameters, the one whose overall std is closest
to the real residual's is kept, so the rows compare the noise's shape, not its
strength. Ray is not used: this is a small, single-process measurement.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from denoise_core import manifest, storage
from jobs.common import fail, job_main

DEFAULT_MODES = "gaussian:0-55;camera;isp;mix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pairs",
        action="append",
        required=True,
        metavar="URI[#SPLIT]",
        help="real noisy/clean pairs: a folder in a paired layout, or an ingested data set "
        "with #SPLIT (repeat)",
    )
    p.add_argument(
        "--synthetic",
        default=DEFAULT_MODES,
        help="noise specs to compare, joined by ';' (default %(default)s); '' for none",
    )
    p.add_argument(
        "--match",
        type=int,
        default=4,
        help="draws per image of each synthetic mode; the one closest in std is kept "
        "(default %(default)s; 1 = no matching)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N pairs per set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write RESULT.md and RESULT.json here")


def _matched(clean: np.ndarray, target_std: float, spec, tries: int, rng) -> np.ndarray:
    from denoise_core import noise

    best, best_gap = None, np.inf
    for _ in range(tries):
        noisy = noise.synthesize(clean, spec, rng)
        gap = abs(np.log(max(float((noisy - clean).std()), 1e-9) / max(target_std, 1e-9)))
        if gap < best_gap:
            best, best_gap = noisy, gap
    return best


def run(args: argparse.Namespace) -> int:
    from denoise_core import benchmark, noise, noise_stats

    if args.match < 1:
        return fail(f"--match must be at least 1, got {args.match}")
    try:
        specs = [noise.parse_noise_spec(s) for s in args.synthetic.split(";") if s.strip()]
    except ValueError as exc:
        return fail(str(exc))
    rows = []
    for pair_spec in args.pairs:
        uri, split = manifest.parse_set_spec(pair_spec)
        bench_set = benchmark.paired_set(storage.absolute(uri), split, args.limit)
        if not bench_set.images:
            return fail(f"no noisy/clean pairs found in {uri}")
        pairs = [(n, c) for _, n, c, _ in bench_set.images]
        rows.append(noise_stats.measure(f"real: {bench_set.name}", pairs))
        print(f"measured {len(pairs)} pairs of {bench_set.name}", flush=True)
        for spec in specs:
            rng = np.random.default_rng(args.seed)
            synthetic = [
                (_matched(c, float((n - c).std()), spec, args.match, rng), c) for n, c in pairs
            ]
            rows.append(noise_stats.measure(f"{spec} on {bench_set.name}", synthetic))
    table = noise_stats.format_table(rows)
    bias = noise_stats.format_bias_table(rows)
    print()
    print(table)
    print("\nMean of noisy - clean per clean level (bias; 0 for zero-mean noise):\n")
    print(bias)
    if args.output:
        payload = {"rows": [r.row() for r in rows], "levels": noise_stats.LEVEL_EDGES}
        storage.write_bytes_atomic(args.output + ".json", json.dumps(payload, indent=2).encode())
        markdown = f"{table}\n\nMean of noisy - clean per clean level:\n\n{bias}\n"
        storage.write_bytes_atomic(args.output + ".md", markdown.encode())
        print(f"\nwritten: {args.output}.md, {args.output}.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("noise-stats", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
