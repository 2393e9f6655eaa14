"""`vptune train`: train one task from flags or a YAML config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..engine import TrainConfig, train
from ..engine.config import OPTIMIZERS, PRECISIONS, SCHEDULES, read_yaml
from ..engine.distributed import is_main_process
from ..engine.trainer import RUNTIME_KEYS
from ..errors import VptuneError
from .options import (METHOD_FLAGS, add_head_options, add_method_options, head_options, method_flags, method_options,
                      methods_help)


def register(subparsers) -> None:
    d = TrainConfig()  # every default shown below is read from here
    parser = subparsers.add_parser(
        "train", help="train a task and write a run folder",
        description="Train one task. Flags override values from --config; unset flags keep the defaults shown.",
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
    parser.add_argument("--protocol", help="transforms: vtab (resize) or fgvc (crop+flip) (default: from the layout)")
    parser.add_argument("--backbone", help=f"backbone id, timm name or checkpoint path (default: {d.backbone})")
    parser.add_argument("--arch", help="timm architecture of a checkpoint given as --backbone (default: none)")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="random backbone weights, for tests and timing (default: pretrained)")
    parser.add_argument("--allow-key", dest="allow_keys", action="append",
                        help="accept this missing/unexpected checkpoint key or prefix (repeatable; default: none)")
    parser.add_argument("--method", help=f"tuning method, one of those listed below (default: {d.method})")
    add_method_options(parser)
    add_head_options(parser, default=None)
    parser.add_argument("--img-size", type=int, help="input size, a multiple of the backbone's patch size "
                        "(default: the backbone's; 224 for the offline one)")
    parser.add_argument("--epochs", type=int, help=f"epochs, >= 1 (default: {d.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"global batch size, >= 1 (default: {d.batch_size})")
    parser.add_argument("--optimizer", help=f"{' or '.join(OPTIMIZERS)} (default: {d.optimizer})")
    parser.add_argument("--lr", type=float, help=f"peak learning rate, > 0 (default: {d.lr})")
    parser.add_argument("--scale-lr", action="store_true",
                        help=f"multiply --lr by batch/256, the paper's convention (default: {d.scale_lr})")
    parser.add_argument("--weight-decay", type=float, help=f"weight decay on weights, >= 0 (default: {d.weight_decay})")
    parser.add_argument("--decay-tuned-tokens", action="store_true",
                        help=f"also decay prompts and other tokens (default: {d.decay_tuned_tokens})")
    parser.add_argument("--momentum", type=float, help=f"SGD momentum, in [0, 1) (default: {d.momentum})")
    parser.add_argument("--warmup-epochs", type=float, help=f"linear warm-up length, >= 0 (default: {d.warmup_epochs})")
    parser.add_argument("--schedule", help=f"lr schedule after warm-up: {' or '.join(SCHEDULES)} (default: {d.schedule})")
    parser.add_argument("--poly-power", type=float, help=f"exponent of the poly schedule, > 0 (default: {d.poly_power})")
    parser.add_argument("--min-lr", type=float, help=f"lr the poly schedule ends at, >= 0 (default: {d.min_lr})")
    parser.add_argument("--head-lr-multiplier", type=float,
                        help=f"the head trains at lr times this, e.g. 10 as SETR, > 0 (default: {d.head_lr_multiplier})")
    parser.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value, > 0 (default: no clipping)")
    parser.add_argument("--precision", help=f"{' or '.join(PRECISIONS)} (autocast; bf16 is slow on CPUs without "
                        f"native bf16) (default: {d.precision})")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help=f"recompute block activations to save memory (default: {d.grad_checkpointing})")
    parser.add_argument("--compile", action="store_true",
                        help=f"run the model through torch.compile (slow first step; see docs/performance.md) "
                        f"(default: {d.compile})")
    parser.add_argument("--no-cache-features", dest="cache_features", action="store_false",
                        help="run the frozen backbone every epoch even when only the head trains (default: cached)")
    parser.add_argument("--seed", type=int, help=f"seed of data order, dropout and init, in [0, 2**32) (default: {d.seed})")
    parser.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default: {d.device})")
    parser.add_argument("--num-workers", type=int, help=f"data loader processes, >= 0 (default: {d.num_workers})")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help=f"skip unreadable images and count them (default: {d.skip_bad_images})")
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
