"""One way to read the places task files come from: a zip, a tar (.tar, .tgz, .tar.gz, ...) or a folder.

Members are named by their POSIX path inside the source. Extraction writes only to the
destinations the caller computed, never to a path taken from the archive itself, and
reads tar members in archive order (one pass over a compressed stream).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from vptune.errors import DataError


class Source:
    """Files of a zip, a tar or a folder: `names()`, `read(name)`, `extract({name: destination})`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        if self.path.is_dir():
            self.kind = "folder"
        elif not self.path.is_file():
            raise DataError(f"'{self.path}' does not exist; pass an archive (.zip, .tar, .tgz) or a folder")
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        elif _is_tar(self.path):
            self.kind = "tar"
        else:
            raise DataError(f"'{self.path}' is neither a zip nor a tar archive nor a folder")
        self._names: list[str] | None = None

    @property
    def stem(self) -> str:
        """The source's own name without archive suffixes (`vtab-1k.zip` -> `vtab-1k`)."""
        name = self.path.name
        for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def names(self) -> list[str]:
        """Every regular file, by its POSIX path inside the source."""
        if self._names is None:
            self._names = self._list()
        return self._names

    def read(self, name: str) -> bytes:
        """The bytes of one member (for split files: small)."""
        try:
            with self._open_one(name) as handle:
                return handle.read()
        except (OSError, KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"cannot read '{name}' from {self.path}: {exc}") from exc

    def extract(self, wanted: dict[str, Path], progress: Callable[[int], None] = lambda n: None) -> None:
        """Copy each member named in `wanted` to its destination; `progress(1)` after each."""
        try:
            for name, handle in self._members(set(wanted)):
                target = wanted[name]
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    shutil.copyfileobj(handle, out, 1 << 20)
                progress(1)
        except (KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"{self.path} is damaged or incomplete ({exc}); download it again") from exc
        except OSError as exc:
            where = exc.filename or "archive"
            raise DataError(f"cannot copy from {self.path}: {exc.strerror or exc} ({where})") from exc

    def _list(self) -> list[str]:
        try:
            if self.kind == "folder":
                return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as archive:
                    return [info.filename for info in archive.infolist() if not info.is_dir()]
            with tarfile.open(self.path) as archive:
                return [member.name for member in archive if member.isfile()]
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"cannot list {self.path}: it is damaged or incomplete ({exc}); download it again") from exc

    @contextmanager
    def _open_one(self, name: str) -> Iterator[IO[bytes]]:
        if self.kind == "folder":
            with (self.path / name).open("rb") as handle:
                yield handle
        elif self.kind == "zip":
            with zipfile.ZipFile(self.path) as archive, archive.open(name) as handle:
                yield handle
        else:
            with tarfile.open(self.path) as archive:
                handle = archive.extractfile(name)
                if handle is None:
                    raise KeyError(name)
                yield handle

    def _members(self, names: set[str]) -> Iterator[tuple[str, IO[bytes]]]:
        if self.kind == "folder":
            for name in sorted(names):
                with (self.path / name).open("rb") as handle:
                    yield name, handle
        elif self.kind == "zip":
            with zipfile.ZipFile(self.path) as archive:
                for name in sorted(names):
                    with archive.open(name) as handle:
                        yield name, handle
        else:
            # Streaming mode: each member is read once, in archive order.
            found = set()
            with tarfile.open(self.path, mode="r|*") as archive:
                for member in archive:
                    if member.isfile() and member.name in names:
                        handle = archive.extractfile(member)
                        if handle is not None:
                            found.add(member.name)
                            yield member.name, handle
            if found != names:
                raise KeyError(f"no member {min(names - found)}")


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False
