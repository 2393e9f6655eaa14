"""`vptune report`: the paper's result tables from a sweep's results."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.report import FORMATS, build_report
from ..experiments.results import load_results, read_groups


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="tables of test top-1 per task and group from a sweep's results")
    parser.add_argument("results", metavar="RESULTS", help="a sweep folder, or its results.jsonl / results.csv")
    parser.add_argument("--groups", metavar="FILE", help="YAML {group: [task, ...]}; default: the rows' groups, "
                        "then VTAB Natural/Specialized/Structured and FGVC")
    parser.add_argument("--format", choices=sorted(FORMATS), default="markdown", help="output format (markdown)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of printing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    groups = read_groups(args.groups) if args.groups else None
    text = FORMATS[args.format](build_report(load_results(args.results), groups))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
