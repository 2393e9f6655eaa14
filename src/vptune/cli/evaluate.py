"""`vptune eval`: metrics of a finished run on a split; the last line is one JSON object."""

from __future__ import annotations

import argparse
import json

from ..engine import evaluate_run
from ..engine.distributed import is_main_process


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a run folder on a split")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `vptune train`")
    parser.add_argument("--split", default="test", help="split to evaluate (test)")
    parser.add_argument("--data", help="data root, if not the one the run was trained from")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (the run's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--multi-scale", action="store_true",
                        help="segmentation: average the softmax over scales 0.5-1.75 and flips (slower)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table, only the JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_run(args.run_dir, args.split, data=args.data, batch_size=args.batch_size,
                           device=args.device, quiet=args.quiet, multi_scale=args.multi_scale)
    result = {"run": args.run_dir, **metrics}
    if not is_main_process():
        return 0  # under torchrun every rank holds the gathered metrics; rank 0 prints them
    if not args.quiet:
        width = max(len(k) for k in result)
        for key, value in result.items():
            if key == "IoU":  # per-class scores, one line each
                print(key)
                name_width = max(len(name) for name in value)
                for name, score in value.items():
                    print(f"  {name:<{name_width}}  {_shown(score)}")
            elif isinstance(value, dict):
                print(f"{key:<{width}}  " + " ".join(f"{k} {_shown(v)}" for k, v in value.items()))
            else:
                print(f"{key:<{width}}  {_shown(value)}")
    print(json.dumps(result))
    return 0


def _shown(value: object) -> object:
    return f"{value:.4f}" if isinstance(value, float) else value
