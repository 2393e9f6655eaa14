"""`vptune predict`: top-k classes for image files, or colour masks from a segmentation model."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..data import input_spec, load_rgb
from ..engine.evaluate import TASK_FILE, load_run_model, pick_device, run_config
from ..errors import DataError, VptuneError
from ..files import atomic_path, filled_folder, output_folder
from ..persistence import load, local_task_file, read_description
from ..segmentation.inference import predict_mask
from ..segmentation.palette import colour_mask, overlay
from ..serve import Predictor


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify or segment images with a run folder or per-task file")
    parser.add_argument("model", metavar="RUN_DIR_OR_FILE", help="a run folder, a per-task .safetensors file, or one "
                        "on the Hugging Face Hub: hf://OWNER/NAME[@REVISION][/FILE.safetensors]")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify or segment")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image, >= 1 (5)")
    parser.add_argument("--out-dir", help="segmentation: folder for <image>_mask.png and <image>_overlay.png "
                        "(created if missing; default: each image's folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="segmentation: replace mask and overlay files that exist (default: refuse)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise VptuneError(f"--top-k must be >= 1, got {args.top_k}")
    paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise DataError(f"image '{path}' {'is a folder' if path.is_dir() else 'does not exist'}; pass image files")
    source = local_task_file(args.model)  # hf:// names are downloaded into the Hugging Face cache
    config = run_config(source) if source.is_dir() else None
    task_file = source / TASK_FILE if config is not None else source
    task_type = read_description(task_file).get("task_type", "classification")
    if task_type == "segmentation":
        outputs = mask_files(paths, args.out_dir, [source, task_file, *paths], overwrite=args.overwrite)
    elif args.out_dir is not None or args.overwrite:
        raise VptuneError(f"--out-dir and --overwrite apply to segmentation models; '{args.model}' classifies "
                          "and writes nothing")
    device = pick_device(args.device)
    if config is not None:
        model = load_run_model(source, config)
        # The run's own protocol, also for files written before they recorded it.
        model.set_input_spec(input_spec(model.backbone, config.protocol, config.normalize))
    else:
        model = load(source)  # the file records its own input pipeline
    if task_type == "segmentation":
        model = model.to(device).eval()
        folder = Path(args.out_dir) if args.out_dir is not None else None
        with filled_folder(folder, "--out-dir") if folder is not None else nullcontext():
            for path, (mask_path, overlay_path) in zip(paths, outputs):
                _write_masks(model, path, device, mask_path, overlay_path)
        return 0
    predictor = Predictor(model, device=device)
    for path in paths:
        ranked = ", ".join(f"{p.label} {p.score:.3f}" for p in predictor.predict([path], top_k=args.top_k)[0])
        print(f"{path}: {ranked}")
    return 0


def mask_files(images: list[Path], out_dir: str | None, inputs: list[Path], *,
               overwrite: bool) -> list[tuple[Path, Path]]:
    """(mask, overlay) paths of each image, checked before anything is written.

    Raises VptuneError for an `--out-dir` that cannot be a folder, two images that would write
    the same file, an output that is one of the inputs, or a file that exists (unless `overwrite`).
    """
    folder = output_folder(out_dir, "--out-dir", inputs) if out_dir is not None else None
    given = {path.resolve(): path for path in inputs}
    planned: dict[Path, Path] = {}
    pairs = []
    for image in images:
        where = folder or image.resolve().parent
        pair = (where / f"{image.stem}_mask.png", where / f"{image.stem}_overlay.png")
        for path in pair:
            if path in planned:
                raise VptuneError(f"images '{planned[path]}' and '{image}' would both write '{path}'; "
                                  "predict them into different --out-dir folders")
            if path in given:
                raise VptuneError(f"'{path}' for image '{image}' would replace the input '{given[path]}'; "
                                  "pick another --out-dir")
            if path.exists() and (not overwrite or not path.is_file()):
                raise VptuneError(f"'{path}' exists; pass --overwrite to replace it, or pick another --out-dir")
            planned[path] = image
        pairs.append(pair)
    return pairs


def _write_masks(model, path: Path, device: torch.device, mask_path: Path, overlay_path: Path) -> None:
    image = load_rgb(path)
    mask = predict_mask(model, image, model.input_spec, device)
    for target, picture in ((mask_path, colour_mask(mask)), (overlay_path, overlay(image, mask))):
        with atomic_path(target) as tmp:
            picture.save(tmp, format="PNG")
    ids, counts = np.unique(mask, return_counts=True)
    order = np.argsort(-counts)
    shares = ", ".join(f"{model.class_names[ids[i]]} {counts[i] / mask.size:.0%}" for i in order)
    print(f"{path}: {mask_path}, {overlay_path} ({shares})")
