"""`vptune demo`: the offline end-to-end run behind `make demo`."""

from __future__ import annotations

import argparse

from ..experiments.demo import DEMO_IMG_SIZE, format_table, run_demo


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train Linear and VPT-Deep offline on Fashion-MNIST and compare")
    parser.add_argument("--out", default="runs/demo", help="folder for data and runs (runs/demo)")
    parser.add_argument("--img-size", type=int, default=DEMO_IMG_SIZE, help=f"input size, a multiple of 14 ({DEMO_IMG_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and training (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines, only the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = run_demo(args.out, img_size=args.img_size, seed=args.seed, quiet=args.quiet)
    print(format_table(rows))
    return 0
