"""Command-line options shared by subcommands: training settings, method options and their parsing."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import yaml

from ..engine import TrainConfig
from ..errors import VptuneError
from ..experiments.sweep.grid import block_range

# Method options that have a flag of their own (a YAML config may give them at top level too).
METHOD_FLAGS = ("num_prompts", "prompt_dropout", "prompt_dim", "deep_blocks", "location", "output")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Flags of the settings every run shares: backbone, method options, optimisation, runtime."""
    defaults = TrainConfig()
    parser.add_argument("--protocol", help="transforms: vtab (resize) or fgvc (crop+flip); default from the layout")
    parser.add_argument("--backbone", help=f"backbone id, timm name or checkpoint path ({defaults.backbone})")
    parser.add_argument("--arch", help="timm architecture of a checkpoint given as --backbone")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="random backbone weights (for tests and timing)")
    parser.add_argument("--allow-key", dest="allow_keys", action="append",
                        help="accept this missing/unexpected checkpoint key or prefix (repeatable)")
    add_method_options(parser)
    parser.add_argument("--img-size", type=int, help="input size (default: the backbone's; 224 for the offline one)")
    parser.add_argument("--epochs", type=int, help=f"epochs ({defaults.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"global batch size ({defaults.batch_size})")
    parser.add_argument("--optimizer", help=f"adamw or sgd ({defaults.optimizer})")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the method's, see README)")
    parser.add_argument("--scale-lr", action="store_true", help="multiply --lr by batch/256 (the paper's convention)")
    parser.add_argument("--weight-decay", type=float, help=f"weight decay on weights ({defaults.weight_decay})")
    parser.add_argument("--train-fraction", type=float,
                        help="train on this seeded, class-stratified share of the training split (1.0)")
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
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, help="data loader processes (0)")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and count them")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Flags for the method's options; unset flags leave the method's own defaults."""
    group = parser.add_argument_group("method options")
    group.add_argument("--num-prompts", type=int, default=argparse.SUPPRESS, help="prompt tokens per block (10)")
    group.add_argument("--prompt-dropout", type=float, default=argparse.SUPPRESS,
                       help="dropout on prompts (0.1 deep, 0 shallow)")
    group.add_argument("--prompt-dim", type=int, default=argparse.SUPPRESS,
                       help="learn prompts of this size and project them to the model width")
    group.add_argument("--deep-blocks", default=argparse.SUPPRESS, metavar="I-J",
                       help="prompt only blocks I..J (1-based, inclusive), e.g. 1-6")
    group.add_argument("--location", default=argparse.SUPPRESS,
                       help="prepend (default), add, prepend-pixel, concat-channel")
    group.add_argument("--output", default=argparse.SUPPRESS,
                       help="features the head reads: cls (default), image-pool, prompt-pool, global-pool")
    group.add_argument("--option", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE",
                       help="any other method option, e.g. --option reduction=8 (repeatable)")


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line, typed."""
    options = method_flags(vars(args))
    for item in getattr(args, "option", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VptuneError(f"--option takes KEY=VALUE, got '{item}'")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def method_flags(values: Mapping[str, Any]) -> dict[str, Any]:
    """The method options among `values` (parsed flags or a YAML mapping), with --deep-blocks parsed."""
    options = {flag: values[flag] for flag in METHOD_FLAGS if flag in values}
    if isinstance(options.get("deep_blocks"), str):
        options["deep_blocks"] = block_range(options["deep_blocks"])
    return options
