"""The tasks being served: a MultiTask kept in step with a folder of per-task files.

Every `<task>.safetensors` in the folder is a task named by the file's stem. A thread polls
the folder's modification times every few seconds and adds, replaces or removes tasks to
match; the admin routes change the folder and the MultiTask together through the same
methods. One lock guards the MultiTask, so a batch never runs while a task is swapped.

A file that cannot be loaded never takes a task away: when it replaces a served task's file,
the task keeps serving from memory and `errors()` says why; a file that serves nothing is
listed by `failed()`. A start that loads no task from a folder of files is a failed start
(`start_error`), reported to `on_failed_start`.
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

from ..errors import VptuneError
from .http_errors import NotReadyError, UnknownTaskError, UploadError

STOP_SECONDS = 2.0  # how long stopping waits for the folder thread (a daemon: it ends with the process)

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


def check_task_files(folder: Path) -> None:
    """Raise VptuneError when `folder` holds task files and none of them is a per-task file of a
    classification task (read from the headers only, nothing loaded); an empty folder passes."""
    from ..persistence import read_description

    reasons = {}
    for path in sorted(Path(folder).glob(f"*{SUFFIX}")):
        if not TASK_NAME.fullmatch(path.name[: -len(SUFFIX)]) or not path.is_file():
            continue
        try:
            task_type = read_description(path).get("task_type", "classification")
        except VptuneError as err:
            reasons[path.name] = str(err)
            continue
        if task_type != "classification":
            reasons[path.name] = f"a {task_type} task; the service serves classification tasks"
            continue
        return
    if reasons:
        listed = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        raise VptuneError(f"no file of --tasks '{folder}' can be served ({listed})")


class TaskRegistry:
    """A MultiTask whose tasks follow the `*.safetensors` files of `folder`."""

    def __init__(
        self, folder: Path, backbone: str | None, device: str, make_multitask: MultiTaskFactory = default_multitask
    ) -> None:
        self.folder = Path(folder)
        self.backbone = backbone
        self.device = device
        self.start_error: str | None = None
        self._make_multitask = make_multitask
        self._multitask: Any = None
        self._model_lock = threading.Lock()  # the MultiTask: batches, adds, removes
        self._files_lock = threading.Lock()  # folder scans and admin changes, one at a time
        self._stamps: dict[str, tuple[int, int]] = {}  # task -> (mtime_ns, size) of the file last seen
        self._kept: dict[str, tuple[Any, str]] = {}  # task -> (its info, why its new file was refused)
        self._failed: dict[str, str] = {}  # task name -> why its file serves nothing
        self._stop = threading.Event()
        self._first_scan_done = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[int], None] = lambda count: None  # told the number of tasks after a change
        self.on_load_error: Callable[[str], None] = lambda name: None  # told of a folder file that did not load
        self.on_failed_start: Callable[[str], None] | None = None  # told why the service cannot start (else logged)

    # ------------------------------------------------------------ life cycle
    def start(self, watch_seconds: float) -> None:
        """Build the MultiTask, load the folder and keep watching it, in a background thread."""
        self._thread = threading.Thread(target=self._run, args=(watch_seconds,), name="vptune-tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_SECONDS)

    @property
    def ready(self) -> bool:
        """Whether the backbone is loaded and the folder's tasks were loaded once."""
        return self._first_scan_done.is_set() and getattr(self._multitask, "backbone", None) is not None

    def not_ready_reason(self) -> str:
        """Why the service does not answer predictions yet, in one line."""
        if self.start_error:
            return self.start_error
        if not self._first_scan_done.is_set():
            return f"loading the backbone and the tasks of {self.folder}; retry when GET /readyz answers 200"
        return (f"no task loaded yet: {self.folder} holds no <task>{SUFFIX} file; add one there "
                "(or PUT /v1/tasks/{task})")

    def _run(self, watch_seconds: float) -> None:
        try:
            self._multitask = self._make_multitask(self.backbone, self.device)
        except Exception as err:  # answered as the reason of a failed start, never as "still loading"
            self._fail_start(f"cannot load the backbone: {' '.join(str(err).split()) or type(err).__name__}")
            return
        self._sync_logged()
        if self._failed and not self._multitask.tasks:
            reasons = "; ".join(f"{name}{SUFFIX}: {reason}" for name, reason in sorted(self._failed.items()))
            self._fail_start(f"no task could be loaded from {self.folder} ({reasons})")
            return
        self._first_scan_done.set()
        while not self._stop.wait(watch_seconds):
            self._sync_logged()

    def _fail_start(self, reason: str) -> None:
        self.start_error = reason
        if self.on_failed_start is None:
            log.error(reason)
        else:
            self.on_failed_start(reason)

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
        return [self._kept.get(name, (info, None))[0] for name, info in sorted(self._multitask.tasks.items())]

    def get(self, name: str) -> Any:
        """TaskInfo of `name`; UnknownTaskError if it is not loaded."""
        info = self._multitask.tasks.get(name) if self._multitask is not None else None
        if info is None:
            raise UnknownTaskError(f"task '{name}' is not loaded; GET /v1/tasks lists the loaded tasks")
        return self._kept.get(name, (info, None))[0]

    def errors(self) -> dict[str, str]:
        """Served tasks whose file was replaced by one that cannot be loaded: name -> why (they keep serving)."""
        return {name: reason for name, (_, reason) in self._kept.items()}

    def failed(self) -> dict[str, str]:
        """Files of the folder that serve nothing: task name -> why they could not be loaded."""
        return dict(self._failed)

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
                    reason = " ".join(str(err).split()) or type(err).__name__
                    kept = " (its previous version keeps serving)" if name in self._kept else ""
                    log.error("task '%s' not loaded: %s%s", name, reason, kept)
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
            raise NotReadyError(self.not_ready_reason())
        final = self.folder / f"{name}{SUFFIX}"
        part = self.folder / f".upload-{uuid.uuid4().hex}.part"
        part.write_bytes(data)
        try:
            with self._files_lock:
                # A task kept in memory has a broken file on disk: it comes back from memory instead.
                on_disk = name in self._multitask.tasks and name not in self._kept and final.is_file()
                try:
                    self._swap(name, part, fallback=final if on_disk else None, from_folder=False)
                except Exception as err:  # whatever a foreign or broken file raises, the answer is a refusal
                    # The client knows its file as "the upload", not by the temporary name it had here.
                    reason = " ".join(str(err).split()).replace(f"cannot add task '{name}' from '{part}': ", "")
                    reason = reason.replace(f"'{part}'", "the upload") or type(err).__name__
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
    def _swap(self, name: str, path: Path, fallback: Path | None = None, *, from_folder: bool = True) -> None:
        """Load `path` as task `name`, replacing any task of that name.

        On failure the old task comes back, from `fallback` (its file) when given, else from
        the model in memory. A file of the folder that failed is remembered for `errors()` /
        `failed()` (`from_folder`; an upload's failure is answered to its client instead).
        """
        with self._model_lock:
            old = self._multitask.model(name) if name in self._multitask.tasks else None
            old_info = self.get(name) if old is not None else None
            if old is not None:
                self._multitask.remove(name)
            try:
                self._multitask.add(name, str(path))
            except Exception as err:
                reason = " ".join(str(err).split()) or type(err).__name__
                if fallback is not None:
                    self._multitask.add(name, str(fallback))
                elif old is not None:
                    self._multitask.add(name, old)
                if from_folder and old is not None and fallback is None:
                    self._kept[name] = (old_info, f"its file was replaced by one that cannot be loaded ({reason}); "
                                                  "the previous version keeps serving")
                elif from_folder:
                    self._failed[name] = reason
                self.on_change(len(self._multitask.tasks))
                raise
            self._kept.pop(name, None)
            self._failed.pop(name, None)
            self.on_change(len(self._multitask.tasks))

    def _remove(self, name: str) -> None:
        with self._model_lock:
            if name in self._multitask.tasks:
                self._multitask.remove(name)
            self._kept.pop(name, None)
            self._failed.pop(name, None)
            self.on_change(len(self._multitask.tasks))

