"""Where the served tasks' files come from: a folder (watched, writable) or a Hub repository (read-only).

A source lists its tasks as `name -> (location, stamp)`; a stamp that changes means the file
changed. `local(location)` is the file to load, downloaded first for the Hub.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Hashable
from pathlib import Path

from ..errors import VptuneError

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

Listing = dict[str, tuple[str, Hashable]]


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
    """The `.safetensors` files of a Hub model repository (`hf://OWNER/NAME[@REVISION]`), listed at start and
    again every `refresh_seconds` (0: never).

    A task is named by its file's stem and stamped by its blob id, so a file added, replaced or
    deleted in the repository is picked up at the next listing; a file is downloaded into the
    Hugging Face cache when its task is loaded. Raises VptuneError when the repository cannot be
    listed at start or two files share a stem; a later listing that fails keeps the last one.
    """

    writable = False

    def __init__(self, uri: str, refresh_seconds: float = 0.0) -> None:
        from ..hub.tasks import parse_hub_uri

        self.uri = uri
        self.refresh_seconds = refresh_seconds
        self._repo = parse_hub_uri(uri)
        if self._repo.path_in_repo:
            raise VptuneError(f"--tasks '{uri}' names a file; name the repository (hf://OWNER/NAME[@REVISION])")
        self._listing = self._list()
        self._listed_at = time.monotonic()

    def _list(self) -> Listing:
        from ..hub.client import file_ids
        from ..hub.tasks import hub_uri

        listing: Listing = {}
        for path, blob in sorted(file_ids(self._repo.id, revision=self._repo.revision).items()):
            name = Path(path).name[: -len(SUFFIX)]
            if not path.endswith(SUFFIX) or not TASK_NAME.fullmatch(name):
                continue
            if name in listing:
                raise VptuneError(f"--tasks '{self.uri}' holds two task files named '{name}' "
                                  f"({listing[name][0]} and {path}); serve a repository with one per name")
            listing[name] = (hub_uri(self._repo.id, self._repo.revision, path), blob)
        return listing

    def __str__(self) -> str:
        return self.uri

    def scan(self, last: Listing) -> Listing:
        """The last listing, listed again first when `refresh_seconds` have passed since it."""
        if self.refresh_seconds and time.monotonic() - self._listed_at >= self.refresh_seconds:
            self._listed_at = time.monotonic()
            try:
                self._listing = self._list()
            except VptuneError as err:
                log.error("cannot list the tasks of %s again (the last listing stays): %s", self.uri, err)
        return dict(self._listing)

    def local(self, location: str) -> Path:
        from ..hub.tasks import task_file

        return task_file(location)


def is_hub(tasks: str | os.PathLike) -> bool:
    return isinstance(tasks, str) and tasks.startswith("hf://")


def open_source(tasks: str | os.PathLike, hub_refresh_seconds: float = 0.0) -> FolderSource | HubSource:
    """The source `--tasks` names: `hf://OWNER/NAME[@REVISION]` (listed again every `hub_refresh_seconds`)
    or a folder."""
    return HubSource(str(tasks), hub_refresh_seconds) if is_hub(tasks) else FolderSource(Path(tasks))
