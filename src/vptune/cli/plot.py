"""`vptune plot`: the paper's ablation figures from a sweep's results."""

from __future__ import annotations

import argparse
import sys

from ..experiments.figures import ABLATIONS, plot_ablations
from ..experiments.results_table import load_results, table_files
from ..experiments.task_groups import read_groups
from ..files import output_folder


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help=f"ablation figures ({', '.join(ABLATIONS)}) per task group, PNG and SVG")
    parser.add_argument("results", metavar="RESULTS", nargs="+",
                        help="sweep folders or results.jsonl / results.csv, read as one table (e.g. an ablation "
                             "sweep with the sweep that holds Linear and Full); each table once")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for ablation-<setting>.png/.svg (created if missing; files of those names "
                             "are replaced); never one of the inputs")
    parser.add_argument("--groups", metavar="FILE", help="YAML {group: [task, ...]} (default: as `vptune report`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = [path for results in args.results for path in table_files(results)]
    out = output_folder(args.out, "--out", [*inputs, *([args.groups] if args.groups else [])])
    groups = read_groups(args.groups) if args.groups else None
    notes: list[str] = []  # said once the figures are written, so that a refusal stays one line
    for path in plot_ablations(load_results(args.results, notes), out, groups):
        print(f"wrote {path}")
    for note in notes:
        print(f"vptune: {note}", file=sys.stderr)
    return 0
