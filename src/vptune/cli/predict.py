"""`vptune predict`: top-k classes for image files, or colour masks from a segmentation model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..data import input_spec, load_rgb
from ..segmentation.palette import colour_mask, overlay
from ..engine.evaluate import load_run_model, pick_device, run_config
from ..segmentation.inference import predict_mask
from ..errors import DataError, VptuneError
from ..persistence import load
from ..serve import Predictor


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify or segment images with a run folder or per-task file")
    parser.add_argument("model", metavar="RUN_DIR_OR_FILE", help="a run folder, a per-task .safetensors file, or one "
                        "on the Hugging Face Hub: hf://OWNER/NAME[@REVISION][/FILE.safetensors]")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify or segment")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (5)")
    parser.add_argument("--out-dir", help="segmentation: folder for <image>_mask.png and <image>_overlay.png "
                        "(default: each image's folder)")
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
        model = load(args.model)  # the file records its own input pipeline; hf:// names are downloaded
    paths = [Path(p) for p in args.images]
    missing = next((p for p in paths if not p.is_file()), None)
    if missing:
        raise DataError(f"image '{missing}' does not exist")
    device = pick_device(args.device)
    if model.task_type == "segmentation":
        model = model.to(device).eval()
        for path in paths:
            _write_masks(model, path, device, Path(args.out_dir) if args.out_dir else path.parent)
        return 0
    predictor = Predictor(model, device=device)
    for path in paths:
        ranked = ", ".join(f"{p.label} {p.score:.3f}" for p in predictor.predict([path], top_k=args.top_k)[0])
        print(f"{path}: {ranked}")
    return 0


def _write_masks(model, path: Path, device: torch.device, out_dir: Path) -> None:
    image = load_rgb(path)
    mask = predict_mask(model, image, model.input_spec, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path = out_dir / f"{path.stem}_mask.png", out_dir / f"{path.stem}_overlay.png"
    colour_mask(mask).save(mask_path)
    overlay(image, mask).save(overlay_path)
    ids, counts = np.unique(mask, return_counts=True)
    order = np.argsort(-counts)
    shares = ", ".join(f"{model.class_names[ids[i]]} {counts[i] / mask.size:.0%}" for i in order)
    print(f"{path}: {mask_path}, {overlay_path} ({shares})")
