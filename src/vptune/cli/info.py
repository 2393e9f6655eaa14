"""`vptune info`: what a per-task file or run folder holds."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from safetensors import safe_open

from ..engine.evaluate import TASK_FILE
from ..errors import VptuneError
from ..persistence import local_task_file, read_description


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe a per-task file or run folder")
    parser.add_argument("path", metavar="FILE_OR_RUN_DIR", help="a per-task .safetensors file, a run folder, or a "
                        "file on the Hugging Face Hub (hf://OWNER/NAME[@REVISION][/FILE.safetensors])")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def describe(path: Path) -> dict:
    """Method, head, backbone, tuned parameters and bytes of a per-task file (or a run's)."""
    run_dir = path if path.is_dir() else None
    file = path / TASK_FILE if run_dir else path
    if run_dir and not file.is_file():
        raise VptuneError(f"'{path}' holds no {TASK_FILE}; is it a finished vptune run folder?")
    description = read_description(file)
    with safe_open(str(file), framework="pt") as handle:
        parameters = sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
        tensors = len(handle.keys())
    info = {
        "file": str(file),
        "method": description["method"],
        "backbone": description["backbone"],
        "arch": description["arch"],
        "img_size": description["img_size"],
        "num_classes": description["num_classes"],
        "task_type": description.get("task_type", "classification"),
        "head": description.get("head", {"kind": "linear"}),
        # How images are prepared; null in files older than the record (they prepare as VTAB).
        "input": description.get("input"),
        "tuned_parameters": parameters,
        "tensors": tensors,
        "bytes": file.stat().st_size,
        "options": description["options"],
        "backbone_fingerprint": description["backbone_fingerprint"],
        "vptune_version": description["vptune_version"],
    }
    if run_dir and (run_dir / "summary.json").is_file():
        info["summary"] = json.loads((run_dir / "summary.json").read_text())
    return info


def run(args: argparse.Namespace) -> int:
    info = describe(local_task_file(args.path))  # hf:// names are downloaded first
    if args.json:
        print(json.dumps(info))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return 0
