"""Command-line options shared by subcommands: method and head options and their parsing."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import VptuneError
from ..methods import available_methods, get_method

# Method options that have a flag of their own (a YAML config may give them at top level too).
METHOD_FLAGS = ("num_prompts", "prompt_dropout", "prompt_dim", "deep_blocks", "location", "output")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Flags for the method's options; unset flags leave the method's own defaults."""
    group = parser.add_argument_group("method options")
    group.add_argument("--num-prompts", type=int, default=argparse.SUPPRESS,
                       help="prompt tokens per block (default: 10 on a ViT, the family's default otherwise)")
    group.add_argument("--prompt-dropout", type=float, default=argparse.SUPPRESS,
                       help="dropout on prompts (default: 0.1 deep, 0 shallow)")
    group.add_argument("--prompt-dim", type=int, default=argparse.SUPPRESS,
                       help="learn prompts of this size and project them to the model width (default: the model width)")
    group.add_argument("--deep-blocks", default=argparse.SUPPRESS, metavar="I-J",
                       help="prompt only blocks I..J (1-based, inclusive), e.g. 1-6 (default: every block)")
    group.add_argument("--location", default=argparse.SUPPRESS,
                       help="prepend, add, prepend-pixel, concat-channel (default: prepend)")
    group.add_argument("--output", default=argparse.SUPPRESS,
                       help="features the head reads: cls, image-pool, prompt-pool, global-pool (default: cls)")
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
    """The method options among `values` (parsed flags or a YAML mapping), with --deep-blocks parsed."""
    options = {flag: values[flag] for flag in METHOD_FLAGS if flag in values}
    if isinstance(options.get("deep_blocks"), str):
        options["deep_blocks"] = parse_block_range(options["deep_blocks"])
    return options


def parse_block_range(text: str) -> list[int]:
    """'1-6' or '1,6' -> [1, 6]."""
    parts = text.replace(",", "-").split("-")
    try:
        first, last = (int(p) for p in parts)
    except ValueError:
        raise VptuneError(f"--deep-blocks takes I-J (e.g. 1-6), got '{text}'") from None
    return [first, last]
