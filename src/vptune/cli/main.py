"""Entry point of the `vptune` command: parses, dispatches, turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import VptuneError
from . import data, demo, evaluate, info, params, predict, train

SUBCOMMANDS = (train, evaluate, predict, info, params, data, demo)


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


class _StderrLines(logging.Handler):
    """Library log records as one `vptune: ...` line each on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning: " if record.levelno >= logging.WARNING else ""
        print(f"vptune: {level}{record.getMessage()}", file=sys.stderr)


def _show_library_messages() -> None:
    logger = logging.getLogger("vptune")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 vptune error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_library_messages()
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
