"""`vptune tsne`: t-SNE panels of trained runs' final pre-head features."""

from __future__ import annotations

import argparse

from ..errors import VptuneError
from ..experiments.figures import save_figure
from ..experiments.tsne import tsne_figure
from ..files import output_file

SUFFIXES = (".png", ".svg", ".pdf")


def register(subparsers) -> None:
    parser = subparsers.add_parser("tsne", help="t-SNE of runs' pre-head features on their test split, by class")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="classification run folders written by `vptune train`")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help=f"figure file ({', '.join(SUFFIXES)}; replaced whole; its folder must exist)")
    parser.add_argument("--max-images", type=int, default=1000, help="images per run, a seeded subset, >= 2 (1000)")
    parser.add_argument("--split", default="test", help="split to embed (test)")
    parser.add_argument("--data", help="data root (default: each run's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and the t-SNE, in [0, 2**32) (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = output_file(args.out, "--out", args.runs)
    if out.suffix.lower() not in SUFFIXES:
        raise VptuneError(f"--out {args.out} must end in {', '.join(SUFFIXES)}")
    fig = tsne_figure(args.runs, split=args.split, max_images=args.max_images, data=args.data, seed=args.seed,
                      quiet=args.quiet)
    save_figure(fig, out)
    print(f"wrote {args.out}")
    return 0
