"""`vptune train`: train one task from flags or a YAML config file."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..engine import TrainConfig, train
from ..engine.config import read_yaml
from ..engine.distributed import is_main_process
from .options import METHOD_FLAGS, add_training_options, method_flags, method_options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a task and write a run folder",
        description="Train one task. Flags override values from --config; unset flags keep the defaults shown.",
        argument_default=argparse.SUPPRESS,
    )
    defaults = TrainConfig()
    parser.add_argument("--config", help="YAML file of flag: value, flag names with _ (e.g. batch_size: 64, "
                        "num_prompts: 50, pretrained: false)")
    parser.add_argument("--data", help="root folder holding task folders")
    parser.add_argument("--task", help="task folder name (VTAB-1k, FGVC json or class folders; aliases accepted)")
    parser.add_argument("--train-split", help="split to train on (train800 for VTAB-1k, else train)")
    parser.add_argument("--eval-split", help="validation split chosen by best top-1 (val200 / val); 'none' for none")
    parser.add_argument("--method", help=f"tuning method ({defaults.method})")
    add_training_options(parser)
    parser.add_argument("--seed", type=int, help=f"seed of data order, dropout and init ({defaults.seed})")
    parser.add_argument("--out", help=f"run folder ({defaults.out})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the YAML file, then the flags given."""
    values = read_yaml(args.config) if "config" in args else {}
    # Method options may sit at the top level of the YAML file, like their flags.
    yaml_flags = method_flags(values)
    values = {key: value for key, value in values.items() if key not in METHOD_FLAGS}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    options = {**values.get("method_options", {}), **yaml_flags, **method_options(args)}
    merged = {**values, **given, "method_options": options}
    if str(merged.get("eval_split", "")).lower() == "none":
        merged["eval_split"] = ""
    return TrainConfig.from_dict(merged)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    summary = train(config, resume=getattr(args, "resume", False))
    if not config.quiet and is_main_process():
        print(json.dumps(summary))
    return 0
