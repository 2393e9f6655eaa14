"""`vptune predict`: top-k classes for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import input_spec
from ..engine.evaluate import load_run_model, pick_device, run_config
from ..errors import DataError, VptuneError
from ..serve import Predictor


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with a run folder or per-task file")
    parser.add_argument("model", metavar="RUN_DIR_OR_FILE", help="a run folder or a per-task .safetensors file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise VptuneError(f"--top-k must be >= 1, got {args.top_k}")
    source = Path(args.model)
    if source.is_dir():
        config = run_config(source)
        model = load_run_model(source, config)
        # The run's own protocol, also for files written before they recorded it.
        model.set_input_spec(input_spec(model.backbone, config.protocol))
    else:
        model = source  # the file records its own input pipeline
    predictor = Predictor(model, device=pick_device(args.device))
    for image_path in args.images:
        path = Path(image_path)
        if not path.is_file():
            raise DataError(f"image '{path}' does not exist")
        ranked = ", ".join(f"{p.label} {p.score:.3f}" for p in predictor.predict([path], top_k=args.top_k)[0])
        print(f"{path}: {ranked}")
    return 0
