"""`vptune predict`: top-k classes for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data import build_transform, load_rgb
from ..engine.evaluate import load_run_model, pick_device, run_config
from ..engine.loaders import input_spec
from ..errors import DataError, VptuneError
from ..persistence import load


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
        model, protocol = load_run_model(source, config), config.protocol
    else:
        model, protocol = load(source), "vtab"
    device = pick_device(args.device)
    model = model.to(device).eval()
    spec = input_spec(model.backbone, protocol)
    transform = build_transform(spec.protocol, spec.img_size, spec.mean, spec.std, train=False)
    k = min(args.top_k, model.num_classes)
    for image_path in args.images:
        path = Path(image_path)
        if not path.is_file():
            raise DataError(f"image '{path}' does not exist")
        with torch.no_grad():
            probs = model(transform(load_rgb(path)).unsqueeze(0).to(device)).softmax(dim=1)[0].cpu()
        top = probs.topk(k)
        ranked = ", ".join(f"{model.class_names[i]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}")
    return 0
