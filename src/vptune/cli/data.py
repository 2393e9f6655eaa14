"""`vptune data`: prepare the offline tasks (VTAB-1k layout; segmentation tasks as image/mask folder pairs)."""

from __future__ import annotations

import argparse

from ..data import available_tasks, prepare_task


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare offline tasks")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prepare = actions.add_parser(
        "prepare", help="write an offline task (VTAB-1k folder, or image/mask folders for segmentation)"
    )
    prepare.add_argument("name", metavar="NAME", help=f"one of: {', '.join(available_tasks())}")
    prepare.add_argument("--out", required=True, metavar="ROOT", help="data root; the task goes to ROOT/NAME")
    prepare.add_argument("--seed", type=int, default=0, help="seed of sampling and rendering (0)")
    prepare.add_argument("--n-test", type=int, default=None, help="test images (task default)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing task folder")
    prepare.set_defaults(func=run_prepare)
    listing = actions.add_parser("list", help="list the offline tasks")
    listing.set_defaults(func=run_list)


def run_prepare(args: argparse.Namespace) -> int:
    path = prepare_task(args.name, args.out, seed=args.seed, n_test=args.n_test, overwrite=args.overwrite)
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    print("\n".join(available_tasks()))
    return 0
