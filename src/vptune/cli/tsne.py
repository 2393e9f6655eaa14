"""`vptune tsne`: t-SNE panels of trained runs' final pre-head features."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VptuneError
from ..experiments.tsne import tsne_figure

SUFFIXES = (".png", ".svg", ".pdf")


def register(subparsers) -> None:
    parser = subparsers.add_parser("tsne", help="t-SNE of runs' pre-head features on their test split, by class")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `vptune train`")
    parser.add_argument("--out", required=True, metavar="FILE", help=f"figure file ({', '.join(SUFFIXES)})")
    parser.add_argument("--max-images", type=int, default=1000, help="images per run, a seeded subset (1000)")
    parser.add_argument("--split", default="test", help="split to embed (test)")
    parser.add_argument("--data", help="data root (default: each run's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and the t-SNE (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in SUFFIXES:
        raise VptuneError(f"--out {out} must end in {', '.join(SUFFIXES)}")
    fig = tsne_figure(args.runs, split=args.split, max_images=args.max_images, data=args.data, seed=args.seed,
                      quiet=args.quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")
    return 0
