"""Command-line options shared by subcommands: training settings, method and head options and their parsing."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from ..engine import TrainConfig
from ..engine.config import OPTIMIZERS, PRECISIONS, SCHEDULES
from ..errors import VptuneError
from ..methods import available_methods, get_method
from ..prompts.prototypes import DEFAULT_INIT_SAMPLES
from ..tasks import TASK_TYPES

# Method options that have a flag of their own (a YAML config may give them at top level too).
METHOD_FLAGS = ("num_prompts", "prompt_dropout", "prompt_dim", "deep_blocks", "location", "output", "init",
                "init_samples")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Flags of the settings every run shares: backbone, method options, optimisation, runtime; every default shown."""
    d = TrainConfig()  # every default shown below is read from here
    parser.add_argument("--protocol", help="transforms: vtab (resize) or fgvc (crop+flip) (default: from the layout)")
    parser.add_argument("--backbone", help=f"backbone id, timm name or checkpoint path (default: {d.backbone})")
    parser.add_argument("--arch", help="timm architecture of a checkpoint given as --backbone (default: none)")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="random backbone weights, for tests and timing (default: pretrained)")
    parser.add_argument("--allow-key", dest="allow_keys", action="append",
                        help="accept this missing/unexpected checkpoint key or prefix (repeatable; default: none)")
    add_method_options(parser)
    parser.add_argument("--img-size", type=int, help="input size, a multiple of the backbone's patch size "
                        "(default: the backbone's; 224 for the offline one)")
    parser.add_argument("--normalize", help="mean/std of the input pipeline: backbone (its pretrained config's), "
                        f"imagenet (what the VPT authors' code uses) or none (pixels in [0, 1]) (default: {d.normalize})")
    parser.add_argument("--epochs", type=int, help=f"epochs, >= 1 (default: {d.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"global batch size, >= 1 (default: {d.batch_size})")
    parser.add_argument("--optimizer", help=f"{' or '.join(OPTIMIZERS)} (default: {recipe('optimizer')})")
    parser.add_argument("--lr", type=float, help="peak learning rate, > 0 (default: classification the method's, see README; "
                        "segmentation 0.001)")
    parser.add_argument("--scale-lr", action="store_true",
                        help=f"multiply --lr by batch/256, the paper's convention (default: {d.scale_lr})")
    parser.add_argument("--weight-decay", type=float, help=f"weight decay on weights, >= 0 (default: {recipe('weight_decay')})")
    parser.add_argument("--train-fraction", type=float,
                        help=f"train on this seeded, class-stratified share of the training split, in (0, 1] "
                        f"(default: {d.train_fraction})")
    parser.add_argument("--decay-tuned-tokens", action="store_true",
                        help=f"also decay prompts and other tokens (default: {d.decay_tuned_tokens})")
    parser.add_argument("--momentum", type=float, help=f"SGD momentum, in [0, 1) (default: {d.momentum})")
    parser.add_argument("--warmup-epochs", type=float, help=f"linear warm-up length, >= 0 (default: {recipe('warmup_epochs')})")
    parser.add_argument("--schedule", help=f"lr schedule after warm-up: {' or '.join(SCHEDULES)} (default: {recipe('schedule')})")
    parser.add_argument("--poly-power", type=float, help=f"exponent of the poly schedule, > 0 (default: {d.poly_power})")
    parser.add_argument("--min-lr", type=float, help="lr the poly schedule ends at, >= 0 (default: classification 0, segmentation lr/10)")
    parser.add_argument("--head-lr-multiplier", type=float,
                        help=f"the head trains at lr times this, e.g. 10 as SETR, > 0 (default: {recipe('head_lr_multiplier')})")
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
    parser.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default: {d.device})")
    parser.add_argument("--num-workers", type=int, help=f"data loader processes, >= 0 (default: {d.num_workers})")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help=f"skip unreadable images and count them (default: {d.skip_bad_images})")


def recipe(name: str) -> str:
    """A recipe field's defaults for the help text, by task type: `classification X, segmentation Y, ...`."""
    return ", ".join(f"{kind.name} {kind.recipe[name]}" for kind in TASK_TYPES)


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Flags for the method's options; unset flags leave the method's own defaults."""
    group = parser.add_argument_group("method options")
    group.add_argument("--num-prompts", type=int, default=argparse.SUPPRESS,
                       help="prompt tokens per block (default: 10 on a ViT, the family's default otherwise)")
    group.add_argument("--prompt-dropout", type=float, default=argparse.SUPPRESS,
                       help="dropout on prompts (default: 0.1 deep, 0 shallow and e2vpt)")
    group.add_argument("--prompt-dim", type=int, default=argparse.SUPPRESS,
                       help="learn prompts of this size and project them to the model width (default: the model width)")
    group.add_argument("--deep-blocks", default=argparse.SUPPRESS, metavar="I-J",
                       help="prompt only blocks I..J (1-based, inclusive), e.g. 1-6 (default: every block)")
    group.add_argument("--location", default=argparse.SUPPRESS,
                       help="prepend, add, prepend-pixel, concat-channel (default: prepend)")
    group.add_argument("--output", default=argparse.SUPPRESS,
                       help="features the head reads: cls, image-pool, prompt-pool, global-pool (default: cls)")
    group.add_argument("--init", default=argparse.SUPPRESS,
                       help="prompt init: uniform, or prototypes of the training images' tokens entering each prompted "
                       "block (SPT): mean-pool, max-pool, kmeans (default: uniform)")
    group.add_argument("--init-samples", type=int, default=argparse.SUPPRESS,
                       help=f"training images (a seeded sample) a non-uniform --init reads (default: {DEFAULT_INIT_SAMPLES})")
    group.add_argument("--option", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE",
                       help="any other method option, e.g. --option reduction=8, --option target_modules=[qkv,proj] "
                       "(repeatable; each method's options and defaults are listed at the end)")


def methods_help() -> str:
    """One line per registered method: its name, its options with their defaults, what it tunes."""
    lines = []
    for name in available_methods():
        method, _ = get_method(name)
        options = [f"{f.name}={_shown_default(f)}" for f in dataclasses.fields(method.Options)]
        lines.append(f"  {name:<14} {' '.join(options) or '(no options)'}")
    return "\n".join(lines)


def _shown_default(field: dataclasses.Field) -> str:
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if value is None:
        return "auto"  # chosen from the backbone and method when the model is built
    return f"[{','.join(value)}]" if isinstance(value, tuple) else str(value)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line, typed."""
    return {**method_flags(vars(args)), **key_values(getattr(args, "option", []), "--option")}


def add_head_options(parser: argparse.ArgumentParser, *, default: str | None = "linear") -> None:
    """--head and its --head-option KEY=VALUE flags; `default=None` leaves --head unset (train picks by data)."""
    from ..heads import available_heads

    shown = default or "linear, setr-pup for segmentation data"
    group = parser.add_argument_group("head")
    group.add_argument("--head", default=default or argparse.SUPPRESS,
                       help=f"head kind: {', '.join(available_heads())} (default {shown}; setr-* segment)")
    group.add_argument("--head-option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the head, e.g. --head-option channels=256 or aux_blocks=[] (repeatable)")


def head_options(args: argparse.Namespace) -> dict[str, Any]:
    """The head options given with --head-option, typed."""
    return key_values(args.head_option, "--head-option")


def key_values(items: list[str], flag: str) -> dict[str, Any]:
    """`KEY=VALUE` strings as a mapping, values read as YAML (`3`, `[1, 2]`, `true`)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VptuneError(f"{flag} takes KEY=VALUE, got '{item}'")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise VptuneError(f"{flag} {key}: cannot read '{value}'; write a number, a word or a list "
                              "like [qkv, proj]") from None
    return options


def method_flags(values: Mapping[str, Any]) -> dict[str, Any]:
    """The method options among `values` (parsed flags or a YAML mapping); their text is read by the method's
    options (e.g. --deep-blocks 1-6)."""
    return {flag: values[flag] for flag in METHOD_FLAGS if flag in values}
