"""Entry point of the `vptune` command: parses, dispatches, turns errors into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import VptuneError
from . import data, demo, evaluate, info, params, predict, sweep, train

SUBCOMMANDS = (train, sweep, evaluate, predict, info, params, data, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vptune", description="Visual Prompt Tuning and parameter-efficient tuning of vision backbones."
    )
    parser.add_argument("--version", action="version", version=f"vptune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 vptune error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except VptuneError as exc:
        if args.debug:
            raise
        print(f"vptune: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vptune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
