"""Entry point of the `vptune` command: parses, dispatches, turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

import torch

from .._version import __version__
from ..errors import VptuneError
from . import data, demo, evaluate, info, params, plot, predict, push, report, serve, sweep, train, tsne

SUBCOMMANDS = (train, sweep, evaluate, predict, info, params, data, demo, report, plot, tsne, serve, push)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one `vptune: error:` line, like every other error,
    and that refuses empty values: an empty path would silently mean the current folder."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vptune: error: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if isinstance(action, argparse._SubParsersAction) or action.dest == argparse.SUPPRESS:
                continue  # a subcommand's parser checks its own arguments
            if any(isinstance(item, str) and not item.strip() for item in (value if isinstance(value, list) else [value])):
                name = "/".join(action.option_strings) or action.metavar or action.dest
                self.error(f"argument {name}: empty value; give one, or leave the argument out")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        # One line, also when a message quotes a multi-line error of another library.
        print(f"vptune: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as exc:
        if args.debug or not _out_of_memory(exc):
            raise
        print(f"vptune: error: out of memory ({_first_line(exc)}); use a smaller --batch-size, --img-size, "
              "--num-classes or backbone", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vptune: interrupted", file=sys.stderr)
        return 130


def _out_of_memory(exc: BaseException) -> bool:
    """A failed allocation, on the CPU (MemoryError, torch's allocator) or the GPU."""
    text = str(exc)
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # torch's CPU allocator message starts with an "[enforce fail at ...]" prefix; keep the sentence.
    text = text[text.find("can't allocate memory"):] if "can't allocate memory" in text else text
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


if __name__ == "__main__":
    sys.exit(main())
