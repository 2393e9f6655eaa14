"""`vptune train`: train one task from flags or a YAML config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..engine import TrainConfig, train
from ..engine.config import read_yaml
from ..engine.distributed import is_main_process
from ..engine.trainer import RUNTIME_KEYS
from ..errors import VptuneError
from .flags import (METHOD_FLAGS, add_head_options, add_training_options, head_options, method_flags, method_options,
                      methods_help)


def register(subparsers) -> None:
    d = TrainConfig()  # every default shown below is read from here
    parser = subparsers.add_parser(
        "train", help="train a task and write a run folder",
        description="Train one task. Flags override values from --config; unset flags keep the defaults shown. "
                    "Optimizer and schedule defaults depend on the task type: classification AdamW at the method's "
                    "lr, segmentation SETR's ADE20K recipe (SGD, lr 1e-3, no weight decay, head lr x10, poly "
                    "schedule to lr/10, no warm-up).",
        argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG.format(methods=methods_help(), runtime=", ".join(f"--{k.replace('_', '-')}" for k in RUNTIME_KEYS)),
    )
    parser.add_argument("--config", help="YAML file of flag: value, flag names with _ (e.g. batch_size: 64, "
                        "num_prompts: 50, pretrained: false); values are typed like the flags")
    parser.add_argument("--data", help="root folder holding task folders (required)")
    parser.add_argument("--task", help="task folder name (VTAB-1k, FGVC json or class folders; aliases accepted; "
                        "ADE20K, VOC, Cityscapes or image/mask folders for segmentation; required)")
    parser.add_argument("--train-split", help="split to train on (default: train800 for VTAB-1k, else train)")
    parser.add_argument("--eval-split", help="validation split chosen by best top-1; 'none' for none "
                        "(default: val200 for VTAB-1k, else val)")
    parser.add_argument("--method", help=f"tuning method, one of those listed below (default: {d.method})")
    add_training_options(parser)
    add_head_options(parser, default=None)
    parser.add_argument("--seed", type=int, help=f"seed of data order, dropout and init, in [0, 2**32) (default: {d.seed})")
    parser.add_argument("--out", help=f"run folder: new, empty, or a run's with --resume (default: {d.out})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last epoch with its own settings (see below)")
    parser.add_argument("--quiet", action="store_true", help=f"no progress bars or epoch lines (default: {d.quiet})")
    parser.set_defaults(func=run)


EPILOG = """\
methods (--method NAME) and their options with defaults (set them with their flags above or --option KEY=VALUE):
{methods}

--img-size must be a multiple of the backbone's patch size (16 for *_patch16_* timm models, 14 for the
default dinov2-s14-imgfocus).

--resume continues the run in --out with the settings recorded in its config.yaml. Only the runtime
settings {runtime} may change (said in one line on stderr); any other flag given with a
different value is refused with the differing settings named.
"""


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults (with --resume: the run's own settings), then the YAML file, then the flags given."""
    base = _run_settings(args) if getattr(args, "resume", False) else {}
    values = read_yaml(args.config) if "config" in args else {}
    # Method options may sit at the top level of the YAML file, like their flags.
    yaml_flags = method_flags(values)
    values = {key: value for key, value in values.items() if key not in METHOD_FLAGS}
    yaml_options = values.get("method_options") or {}
    if not isinstance(yaml_options, dict):
        raise VptuneError(f"method_options in '{args.config}' must be a mapping of option: value, got {yaml_options!r}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    options = {**base.get("method_options", {}), **yaml_options, **yaml_flags, **method_options(args)}
    heads = {**base.get("head_options", {}), **(values.get("head_options") or {}), **head_options(args)}
    merged = {**base, **values, **given, "method_options": options, "head_options": heads}
    if isinstance(merged.get("eval_split"), str) and merged["eval_split"].lower() == "none":
        merged["eval_split"] = ""
    return TrainConfig.from_dict(merged)


def _run_settings(args: argparse.Namespace) -> dict:
    """The settings recorded in the run folder being resumed (none if it has no config.yaml)."""
    path = Path(getattr(args, "out", TrainConfig.out)) / "config.yaml"
    return read_yaml(path) if path.is_file() else {}


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    summary = train(config, resume=getattr(args, "resume", False))
    if not config.quiet and is_main_process():
        print(json.dumps(summary))
    return 0
