"""The tasks being served: a MultiTask kept in step with a folder of per-task files.

Every `<task>.safetensors` in the folder is a task named by the file's stem. A thread polls
the folder's modification times every few seconds and adds, replaces or removes tasks to
match; the admin routes change the folder and the MultiTask together through the same
methods. One lock guards the MultiTask, so a batch never runs while a task is swapped.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .http_errors import NotReadyError, UnknownTaskError, UploadError

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

MultiTaskFactory = Callable[[str | None, str], Any]


def default_multitask(backbone: str | None, device: str) -> Any:
    """A vptune MultiTask on `backbone` (None: the first task file's)."""
    from .multitask import MultiTask

    return MultiTask(backbone, device=device)


def check_task_name(name: str) -> str:
    """`name` if it can be a task (and file) name, else UploadError."""
    if not TASK_NAME.fullmatch(name) or name.endswith(SUFFIX):
        raise UploadError(
            f"task name '{name}' is not allowed; use letters, digits, '.', '_' and '-' (at most 128, no leading '.')"
        )
    return name


class TaskRegistry:
    """A MultiTask whose tasks follow the `*.safetensors` files of `folder`."""

    def __init__(
        self, folder: Path, backbone: str | None, device: str, make_multitask: MultiTaskFactory = default_multitask
    ) -> None:
        self.folder = Path(folder)
        self.backbone = backbone
        self.device = device
        self.load_error: str | None = None
        self._make_multitask = make_multitask
        self._multitask: Any = None
        self._model_lock = threading.Lock()  # the MultiTask: batches, adds, removes
        self._files_lock = threading.Lock()  # folder scans and admin changes, one at a time
        self._stamps: dict[str, tuple[int, int]] = {}  # task -> (mtime_ns, size) of the file last seen
        self._stop = threading.Event()
        self._first_scan_done = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[int], None] = lambda count: None  # told the number of tasks after a change
        self.on_load_error: Callable[[str], None] = lambda name: None  # told of a folder file that did not load

    # ------------------------------------------------------------ life cycle
    def start(self, watch_seconds: float) -> None:
        """Build the MultiTask, load the folder and keep watching it, in a background thread."""
        self._thread = threading.Thread(target=self._run, args=(watch_seconds,), name="vptune-tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def ready(self) -> bool:
        """Whether the backbone is loaded and the folder's tasks were loaded once."""
        return self._first_scan_done.is_set() and getattr(self._multitask, "backbone", None) is not None

    def _run(self, watch_seconds: float) -> None:
        try:
            self._multitask = self._make_multitask(self.backbone, self.device)
        except Exception as err:  # any failure here leaves the service up, answering 503 with the reason
            self.load_error = f"cannot load the backbone: {err}"
            log.error(self.load_error)
            return
        self._sync_logged()
        self._first_scan_done.set()
        while not self._stop.wait(watch_seconds):
            self._sync_logged()

    def _sync_logged(self) -> None:
        try:
            self.sync()
        except Exception:  # the watch goes on; the next poll tries again
            log.exception("scanning the tasks folder %s failed", self.folder)

    # ------------------------------------------------------------ reading
    def tasks(self) -> list[Any]:
        """TaskInfo of every loaded task, by name (no lock: the event loop must not wait for a batch)."""
        if self._multitask is None:
            return []
        return [info for _, info in sorted(self._multitask.tasks.items())]

    def get(self, name: str) -> Any:
        """TaskInfo of `name`; UnknownTaskError if it is not loaded."""
        info = self._multitask.tasks.get(name) if self._multitask is not None else None
        if info is None:
            raise UnknownTaskError(f"task '{name}' is not loaded; GET /v1/tasks lists the loaded tasks")
        return info

    def predict(self, images: Sequence[Any], task_names: Sequence[str], top_k: int) -> list[list[Any]]:
        """One MultiTask call for images of any mix of tasks (called from the batching thread)."""
        with self._model_lock:
            for name in task_names:
                self.get(name)
            return self._multitask.predict(list(images), list(task_names), top_k=top_k)

    # ------------------------------------------------------------ folder
    def sync(self) -> None:
        """Add, replace and remove tasks so they match the folder's files."""
        with self._files_lock:
            files = self._scan()
            for name in sorted(set(self._stamps) - set(files)):
                del self._stamps[name]
                self._remove(name)
                log.info("task '%s' removed: its file is gone", name)
            for name, (path, stamp) in sorted(files.items()):
                if self._stamps.get(name) == stamp:
                    continue
                self._stamps[name] = stamp  # also on failure: a bad file is retried once it changes
                try:
                    self._swap(name, path)
                    log.info("task '%s' loaded from %s", name, path)
                except Exception as err:  # a half-written or foreign file must not stop the watch
                    log.error("task '%s' not loaded: %s", name, " ".join(str(err).split()) or type(err).__name__)
                    self.on_load_error(name)

    def _scan(self) -> dict[str, tuple[Path, tuple[int, int]]]:
        files = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as err:
            log.error("cannot read tasks folder %s: %s", self.folder, err)
            return {name: (self.folder / f"{name}{SUFFIX}", stamp) for name, stamp in self._stamps.items()}
        for entry in entries:
            name = entry.name[: -len(SUFFIX)]
            if entry.name.endswith(SUFFIX) and TASK_NAME.fullmatch(name) and entry.is_file():
                stat = entry.stat()
                files[name] = (Path(entry.path), (stat.st_mtime_ns, stat.st_size))
        return files

    # ------------------------------------------------------------ admin
    def put(self, name: str, data: bytes) -> Any:
        """Add or replace task `name` from the bytes of a per-task file, and keep the file in the folder.

        The file is loaded (safetensors only) before it replaces the old one, so a bad upload
        leaves the old task serving. Raises UploadError for a file that cannot be served
        (broken, not a per-task file, or made on another backbone).
        """
        check_task_name(name)
        if self._multitask is None:
            raise NotReadyError(self.load_error or "the service is still starting; retry in a moment")
        final = self.folder / f"{name}{SUFFIX}"
        part = self.folder / f".upload-{uuid.uuid4().hex}.part"
        part.write_bytes(data)
        try:
            with self._files_lock:
                old = final if name in self._multitask.tasks and final.is_file() else None
                try:
                    self._swap(name, part, fallback=old)
                except Exception as err:  # whatever a foreign or broken file raises, the answer is a refusal
                    reason = " ".join(str(err).split()) or type(err).__name__
                    raise UploadError(f"uploaded file for task '{name}' refused: {reason}") from err
                os.replace(part, final)
                stat = final.stat()
                self._stamps[name] = (stat.st_mtime_ns, stat.st_size)
                return self.get(name)
        finally:
            part.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Remove task `name` and its file; UnknownTaskError if it is not loaded."""
        with self._files_lock:
            self.get(name)
            self._remove(name)
            (self.folder / f"{name}{SUFFIX}").unlink(missing_ok=True)
            self._stamps.pop(name, None)

    # ------------------------------------------------------------ the MultiTask
    def _swap(self, name: str, path: Path, fallback: Path | None = None) -> None:
        """Load `path` as task `name`, replacing any task of that name; on failure re-add `fallback`."""
        with self._model_lock:
            if name in self._multitask.tasks:
                self._multitask.remove(name)
            try:
                self._multitask.add(name, str(path))
            except Exception:
                if fallback is not None:
                    self._multitask.add(name, str(fallback))
                self.on_change(len(self._multitask.tasks))
                raise
            self.on_change(len(self._multitask.tasks))

    def _remove(self, name: str) -> None:
        with self._model_lock:
            if name in self._multitask.tasks:
                self._multitask.remove(name)
            self.on_change(len(self._multitask.tasks))

