"""Where the served tasks' files come from: a folder (watched, writable) or a Hub repository (read-only).

A source lists its tasks as `name -> (location, stamp)`; a stamp that changes means the file
changed. `local(location)` is the file to load, downloaded first for the Hub.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..errors import VptuneError

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

Listing = dict[str, tuple[str, tuple[int, int]]]


class FolderSource:
    """Every `<task>.safetensors` of `folder`, stamped by modification time and size."""

    writable = True

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __str__(self) -> str:
        return str(self.folder)

    def scan(self, last: Listing) -> Listing:
        """The folder's task files; `last` again when the folder cannot be read."""
        files = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as err:
            log.error("cannot read tasks folder %s: %s", self.folder, err)
            return dict(last)
        for entry in entries:
            name = entry.name[: -len(SUFFIX)]
            if entry.name.endswith(SUFFIX) and TASK_NAME.fullmatch(name) and entry.is_file():
                stat = entry.stat()
                files[name] = (entry.path, (stat.st_mtime_ns, stat.st_size))
        return files

    def local(self, location: str) -> Path:
        return Path(location)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{SUFFIX}"


class HubSource:
    """The `.safetensors` files of a Hub model repository (`hf://OWNER/NAME[@REVISION]`), listed once.

    A task is named by its file's stem; a file is downloaded into the Hugging Face cache when its
    task is first loaded. Raises VptuneError when the repository cannot be listed or two files
    share a stem.
    """

    writable = False

    def __init__(self, uri: str) -> None:
        from ..hub.client import list_files
        from ..hub.tasks import hub_uri, parse_hub_uri

        self.uri = uri
        repo = parse_hub_uri(uri)
        if repo.path_in_repo:
            raise VptuneError(f"--tasks '{uri}' names a file; name the repository (hf://OWNER/NAME[@REVISION])")
        self._listing: Listing = {}
        for path in sorted(list_files(repo.id, revision=repo.revision)):
            name = Path(path).name[: -len(SUFFIX)]
            if not path.endswith(SUFFIX) or not TASK_NAME.fullmatch(name):
                continue
            if name in self._listing:
                raise VptuneError(f"--tasks '{uri}' holds two task files named '{name}' "
                                  f"({self._listing[name][0]} and {path}); serve a repository with one per name")
            self._listing[name] = (hub_uri(repo.id, repo.revision, path), (0, 0))

    def __str__(self) -> str:
        return self.uri

    def scan(self, last: Listing) -> Listing:
        return dict(self._listing)

    def local(self, location: str) -> Path:
        from ..hub.tasks import task_file

        return task_file(location)


def is_hub(tasks: str | os.PathLike) -> bool:
    return isinstance(tasks, str) and tasks.startswith("hf://")


def open_source(tasks: str | os.PathLike) -> FolderSource | HubSource:
    """The source `--tasks` names: `hf://OWNER/NAME[@REVISION]` or a folder."""
    return HubSource(str(tasks)) if is_hub(tasks) else FolderSource(Path(tasks))
