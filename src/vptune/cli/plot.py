"""`vptune plot`: the paper's ablation figures from a sweep's results."""

from __future__ import annotations

import argparse

from ..experiments.figures import ABLATIONS, plot_ablations
from ..experiments.results import load_results, read_groups


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help=f"ablation figures ({', '.join(ABLATIONS)}) per task group, PNG and SVG")
    parser.add_argument("results", metavar="RESULTS", nargs="+",
                        help="sweep folders or results.jsonl / results.csv, read as one table (e.g. an ablation "
                             "sweep with the sweep that holds Linear and Full)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for ablation-<setting>.png/.svg")
    parser.add_argument("--groups", metavar="FILE", help="YAML {group: [task, ...]} (default: as `vptune report`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    groups = read_groups(args.groups) if args.groups else None
    rows = [row for results in args.results for row in load_results(results)]
    for path in plot_ablations(rows, args.out, groups):
        print(f"wrote {path}")
    return 0
