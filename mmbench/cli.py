"""The ``mmbench`` console script: train / collect / bench-speed."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

USAGE = """usage: mmbench <command> [args]

commands:
  train [hydra overrides...]         one run, or a sweep with -m/--multirun
  collect DIR... --name NAME [--allow-mixed]
                                     run/multirun dirs -> outputs/leaderboards/NAME/
                                     (every differing config key is an axis)
  bench-speed [--out CSV]            step cost per strategy -> outputs/benchmarks/step_cost.csv
  bench-approx [--steps N]           representation-level vs exact MMPareto in training
                                     -> outputs/benchmarks/approximation.csv (+ .md)
  prepare DATASET --raw RAW --out DIR  raw dataset files -> the prepared layout (once)
  bench-data [--out CSV]             loader throughput -> outputs/benchmarks/data_throughput.csv
"""

MODULE_COMMANDS = {
    "bench-speed": "mmbench.bench.step_cost",
    "bench-approx": "mmbench.bench.approximation",
    "prepare": "mmbench.data.prepare",
    "bench-data": "mmbench.bench.data_throughput",
}


def collect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mmbench collect")
    parser.add_argument("dirs", nargs="+", type=Path, help="run or multirun directories")
    parser.add_argument("--name", required=True, help="leaderboard folder name")
    parser.add_argument("--out", type=Path, default=Path("outputs/leaderboards"))
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="pool runs of the same settings that differ only in code revision (or repeat a "
        "seed, or lack .hydra/config.yaml) in one cell; runs of different settings are never "
        "pooled: every config key in which runs differ is a leaderboard axis",
    )
    parser.add_argument(
        "--smooth", type=int, default=5, help="moving-average width of the cosine plot"
    )
    args = parser.parse_args(argv)
    from mmbench.results import write_leaderboard

    try:
        out = write_leaderboard(args.dirs, args.name, args.out, args.allow_mixed, args.smooth)
    except (FileNotFoundError, ValueError) as error:
        print(f"mmbench collect: {error}", file=sys.stderr)
        return 2
    print((out / "leaderboard.md").read_text())
    print(f"written: {out}/runs.csv, leaderboard.csv, comparison.csv, leaderboard.md, plots/")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from mmbench import train

        sys.argv = ["mmbench train", *rest]
        train.main()
        return 0
    if command == "collect":
        return collect(rest)
    if command in MODULE_COMMANDS:
        return importlib.import_module(MODULE_COMMANDS[command]).main(rest)
    print(f"mmbench: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
