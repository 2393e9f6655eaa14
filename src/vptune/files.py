"""Writing files so that a reader never sees half of one, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


def output_file(path: str | os.PathLike, flag: str = "--out", inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Where a command may write the file the user named: `path` (through any symlink), checked.

    Raises VptuneError, naming `path` and the reason, for an empty name, a folder, something
    that is not a regular file (a device, a pipe), one of the command's `inputs`, or a parent
    folder that does not exist. Writes nothing.
    """
    path = _named(path, flag)
    target = path.resolve()
    if target.is_dir():
        raise VptuneError(f"{flag} '{path}' is a folder; name a file, e.g. '{path / 'out'}{path.suffix}'")
    if target.exists() and not target.is_file():
        raise VptuneError(f"{flag} '{path}' is not a regular file (a device or a pipe); name a file")
    _not_an_input(path, target, flag, inputs)
    if not target.parent.is_dir():
        what = "is a file" if target.parent.exists() else "does not exist"
        raise VptuneError(f"{flag} '{path}': folder '{target.parent}' {what}; create the folder or pick another path")
    return target


def output_folder(path: str | os.PathLike, flag: str = "--out", inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Where a command may create or fill the folder the user named: `path` resolved, checked.

    Raises VptuneError, naming `path` and the reason, for an empty name, an existing file, one
    of the command's `inputs`, or a path under a file. Writes nothing (see `make_folder`).
    """
    path = _named(path, flag)
    target = path.resolve()
    if target.exists() and not target.is_dir():
        raise VptuneError(f"{flag} '{path}' is a file, not a folder; pick a folder")
    _not_an_input(path, target, flag, inputs)
    ancestor = next(p for p in target.parents if p.exists())
    if not ancestor.is_dir():
        raise VptuneError(f"{flag} '{path}' lies under '{ancestor}', which is a file; pick a folder")
    return target


def make_folder(path: Path, flag: str = "--out") -> None:
    """Create `path` and its missing parents; VptuneError naming it when that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VptuneError(f"cannot create {flag} folder '{path}': {exc.strerror or exc}") from exc


def _named(path: str | os.PathLike, flag: str) -> Path:
    if not str(path).strip():
        raise VptuneError(f"{flag} is empty; name a path")
    return Path(path).expanduser()


def _not_an_input(path: Path, target: Path, flag: str, inputs: Iterable[str | os.PathLike]) -> None:
    for given in inputs:
        if Path(given).expanduser().resolve() == target:
            raise VptuneError(f"{flag} '{path}' is one of this command's inputs ('{given}'); write somewhere else")


@contextmanager
def filled_folder(path: Path, flag: str = "--out") -> Iterator[Path]:
    """Create `path` (and missing parents) for the block to write into.

    If the block fails, the folders this call created are removed again when they hold
    nothing, so a refused or failed command leaves no empty folder behind.
    """
    created = [p for p in (path, *path.parents) if not p.exists()]
    make_folder(path, flag)
    try:
        yield path
    except BaseException:
        for folder in created:  # deepest first
            with suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        raise


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
