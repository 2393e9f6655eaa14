"""`vptune train`: train one task from flags or a YAML config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..engine import TrainConfig, train
from ..engine.config import read_yaml
from ..engine.distributed import is_main_process
from ..errors import VptuneError
from .options import METHOD_FLAGS, add_method_options, method_flags, method_options


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
    parser.add_argument("--protocol", help="transforms: vtab (resize) or fgvc (crop+flip); default from the layout")
    parser.add_argument("--backbone", help=f"backbone id, timm name or checkpoint path ({defaults.backbone})")
    parser.add_argument("--arch", help="timm architecture of a checkpoint given as --backbone")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="random backbone weights (for tests and timing)")
    parser.add_argument("--allow-key", dest="allow_keys", action="append",
                        help="accept this missing/unexpected checkpoint key or prefix (repeatable)")
    parser.add_argument("--method", help=f"tuning method ({defaults.method})")
    add_method_options(parser)
    parser.add_argument("--img-size", type=int, help="input size (default: the backbone's; 224 for the offline one)")
    parser.add_argument("--epochs", type=int, help=f"epochs ({defaults.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"global batch size ({defaults.batch_size})")
    parser.add_argument("--optimizer", help=f"adamw or sgd ({defaults.optimizer})")
    parser.add_argument("--lr", type=float, help=f"peak learning rate ({defaults.lr})")
    parser.add_argument("--scale-lr", action="store_true", help="multiply --lr by batch/256 (the paper's convention)")
    parser.add_argument("--weight-decay", type=float, help=f"weight decay on weights ({defaults.weight_decay})")
    parser.add_argument("--decay-tuned-tokens", action="store_true", help="also decay prompts and other tokens")
    parser.add_argument("--momentum", type=float, help=f"SGD momentum ({defaults.momentum})")
    parser.add_argument("--warmup-epochs", type=float, help=f"linear warm-up length ({defaults.warmup_epochs})")
    parser.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    parser.add_argument("--precision", help="fp32 or bf16 (autocast)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute block activations to save memory")
    parser.add_argument("--compile", action="store_true",
                        help="run the model through torch.compile (slow first step; see docs/performance.md)")
    parser.add_argument("--no-cache-features", dest="cache_features", action="store_false",
                        help="run the frozen backbone every epoch even when only the head trains")
    parser.add_argument("--seed", type=int, help=f"seed of data order, dropout and init ({defaults.seed})")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, help="data loader processes (0)")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and count them")
    parser.add_argument("--out", help=f"run folder ({defaults.out})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    parser.set_defaults(func=run)


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
    merged = {**base, **values, **given, "method_options": options}
    if str(merged.get("eval_split", "")).lower() == "none":
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
