"""`vptune report`: the paper's result tables from a sweep's results."""

from __future__ import annotations

import argparse
import sys

from ..experiments.petl_vision import write_petl_vision
from ..experiments.report import FORMATS, build_report
from ..experiments.results_table import load_results, table_files
from ..experiments.task_groups import read_groups
from ..files import atomic_write, output_file, output_folder


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="tables of test top-1 per task and group from a sweep's results")
    parser.add_argument("results", metavar="RESULTS", help="a sweep folder, or its results.jsonl / results.csv")
    parser.add_argument("--groups", metavar="FILE", help="YAML {group: [task, ...]}; default: the rows' groups, "
                        "then VTAB Natural/Specialized/Structured and FGVC")
    parser.add_argument("--format", choices=sorted(FORMATS), default="markdown", help="output format (markdown)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE (replaced whole) instead of printing; "
                        "never one of the inputs (default: print)")
    parser.add_argument("--petl-dir", metavar="DIR", help="also write PETL_Vision's final_result.json, "
                        "tune_summary.csv and final_summary.csv per task and method under DIR (created if missing; "
                        "files of those names replaced); never one of the inputs (default: none)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = [*table_files(args.results), *([args.groups] if args.groups else [])]
    out = output_file(args.out, "--out", inputs) if args.out is not None else None
    petl_dir = output_folder(args.petl_dir, "--petl-dir", inputs) if args.petl_dir is not None else None
    groups = read_groups(args.groups) if args.groups else None
    notes: list[str] = []  # said once the report is made, so that a refusal stays one line
    rows = load_results([args.results], notes)
    text = FORMATS[args.format](build_report(rows, groups))
    if out is None:
        print(text, end="")
    else:
        atomic_write(out, text)
        print(f"wrote {args.out}")
    if petl_dir is not None:
        folders = write_petl_vision(rows, petl_dir)
        print(f"wrote PETL_Vision files for {len(folders)} task x method folder{'s' * (len(folders) != 1)} "
              f"under {args.petl_dir}", file=sys.stderr if out is None else sys.stdout)
    for note in notes:
        print(f"vptune: {note}", file=sys.stderr)
    return 0
