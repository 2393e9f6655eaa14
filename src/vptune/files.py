"""Writing files so that a reader never sees half of one, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import VptuneError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary path beside `path` for the block to write; renamed over `path` when the block ends.

    If the block fails (an exception, an interrupt) the temporary file is removed and `path`
    keeps its old content, or stays absent. An OSError while writing or renaming (a missing
    or read-only folder, a full disk) raises VptuneError naming `path` and the reason.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through `atomic_path`; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return path


def write_error(path: Path, exc: OSError) -> VptuneError:
    """One line naming the file that could not be written and why."""
    return VptuneError(f"cannot write '{path}': {exc.strerror or exc}")


@contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """A fresh hidden folder beside `path` for the block to fill; it becomes `path` when the block ends.

    If the block fails (an exception, an interrupt) the folder is removed and `path` is left
    as it was. An existing `path` is replaced only with `overwrite=True`; otherwise, and when
    the folder cannot be made, VptuneError names `path` and the fix.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise VptuneError(f"'{path}' already exists; remove it or pass --overwrite (overwrite=True) to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private to its owner
        if path.exists():
            # Folders cannot be renamed over a non-empty folder: move the old one aside first.
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise
