"""`vptune report`: the paper's result tables from a sweep's results."""

from __future__ import annotations

import argparse
import sys

from ..experiments.report import FORMATS, build_report
from ..experiments.results_table import load_results, table_files
from ..experiments.task_groups import read_groups
from ..files import atomic_write, output_file


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="tables of test top-1 per task and group from a sweep's results")
    parser.add_argument("results", metavar="RESULTS", help="a sweep folder, or its results.jsonl / results.csv")
    parser.add_argument("--groups", metavar="FILE", help="YAML {group: [task, ...]}; default: the rows' groups, "
                        "then VTAB Natural/Specialized/Structured and FGVC")
    parser.add_argument("--format", choices=sorted(FORMATS), default="markdown", help="output format (markdown)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE (replaced whole) instead of printing; "
                        "never one of the inputs (default: print)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = [*table_files(args.results), *([args.groups] if args.groups else [])]
    out = output_file(args.out, "--out", inputs) if args.out is not None else None
    groups = read_groups(args.groups) if args.groups else None
    notes: list[str] = []  # said once the report is made, so that a refusal stays one line
    text = FORMATS[args.format](build_report(load_results([args.results], notes), groups))
    if out is None:
        print(text, end="")
    else:
        atomic_write(out, text)
        print(f"wrote {args.out}")
    for note in notes:
        print(f"vptune: {note}", file=sys.stderr)
    return 0
