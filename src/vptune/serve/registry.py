"""The tasks being served: a MultiTask kept in step with the task files of a source.

Every `<task>.safetensors` of the source (a folder, or a Hub repository: see sources.py) is a
task named by the file's stem. A thread polls the folder's modification times every few
seconds and adds, replaces or removes tasks to match; the admin routes change the folder and
the MultiTask together through the same methods. Which tasks are in memory is the tier's
(tier.py): without bounds every file is loaded as soon as it is seen; with bounds a task is
loaded on its first request and the least recently used are evicted. A file is read outside
the MultiTask's lock, which only guards the short insert and remove, so a batch never waits
for a file and never runs while a task is swapped.

A file that cannot be loaded never takes a task away: when it replaces a served task's file,
the task keeps serving from memory and `errors()` says why; a file that serves nothing is a
`failed` task of the tier, with why. A start that loads no task from a source of files is a
failed start (`start_error`), reported to `on_failed_start`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import VptuneError
from .http_errors import NotReadyError, ReadOnlyTasksError, UnknownTaskError, UploadError
from .sources import SUFFIX, TASK_NAME, FolderSource, HubSource, Listing, open_source
from .tier import Limits, Tier

STOP_SECONDS = 2.0  # how long stopping waits for the folder thread (a daemon: it ends with the process)

log = logging.getLogger(__name__)

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
    """A MultiTask whose tasks follow the `*.safetensors` files of `tasks` (a folder or `hf://OWNER/NAME`),
    loaded into the bounded set `limits` allows."""

    def __init__(
        self, tasks: str | Path, backbone: str | None, device: str, make_multitask: MultiTaskFactory = default_multitask,
        limits: Limits = Limits(), precision: str = "fp32", hub_refresh_seconds: float = 0.0,
    ) -> None:
        self.where = str(tasks)
        self.hub_refresh_seconds = hub_refresh_seconds
        self.precision = precision
        self._tasks_arg = tasks
        self.backbone = backbone
        self.device = device
        self.start_error: str | None = None
        self.source: FolderSource | HubSource | None = None
        self._make_multitask = make_multitask
        self._multitask: Any = None
        self._model_lock = threading.Lock()  # the MultiTask: batches, inserts, removes
        self._files_lock = threading.Lock()  # folder scans and admin changes, one at a time
        self._listing: Listing = {}  # task -> (location, stamp) of the file last seen
        self._kept: dict[str, tuple[Any, str]] = {}  # task -> (its info, why its new file was refused)
        self._stop = threading.Event()
        self._first_scan_done = threading.Event()
        self._thread: threading.Thread | None = None
        self.tier = Tier(limits, self._load, self._unload, on_load=lambda seconds: self.on_load(seconds),
                         on_evict=lambda: self.on_evict())
        self.on_change: Callable[[int], None] = lambda count: None  # told the number of tasks loaded after a change
        self.on_load_error: Callable[[str], None] = lambda name: None  # told of a task file that did not load
        self.on_load: Callable[[float], None] = lambda seconds: None  # told how long each on-demand load took
        self.on_evict: Callable[[], None] = lambda: None  # told of each task evicted from the tier
        self.on_failed_start: Callable[[str], None] | None = None  # told why the service cannot start (else logged)

    @property
    def lazy(self) -> bool:
        """Whether tasks are loaded on their first request (the tier is bounded) rather than all at once."""
        return self.tier.limits.bounded

    # ------------------------------------------------------------ life cycle
    def start(self, watch_seconds: float) -> None:
        """Build the MultiTask, list the tasks (loading them unless lazy) and keep watching, in a background thread."""
        self._thread = threading.Thread(target=self._run, args=(watch_seconds,), name="vptune-tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_SECONDS)
        self.tier.stop()

    @property
    def ready(self) -> bool:
        """Whether the backbone is loaded and the source's tasks were listed (and, unless lazy, loaded) once."""
        return self._first_scan_done.is_set() and getattr(self._multitask, "backbone", None) is not None

    @property
    def started(self) -> bool:
        """Whether the start is over: the tasks were listed (and, unless lazy, loaded) once, or the start failed."""
        return self._first_scan_done.is_set() or self.start_error is not None

    def not_ready_reason(self) -> str:
        """Why the service does not answer predictions yet, in one line."""
        if self.start_error:
            return self.start_error
        if not self._first_scan_done.is_set():
            return f"loading the backbone and the tasks of {self.where}; retry when GET /readyz answers 200"
        return (f"no task loaded yet: {self.where} holds no <task>{SUFFIX} file; add one there "
                "(or PUT /v1/tasks/{task})")

    def _run(self, watch_seconds: float) -> None:
        try:
            self.source = open_source(self._tasks_arg, self.hub_refresh_seconds)
        except Exception as err:  # a Hub repository that cannot be listed
            self._fail_start(f"cannot list the tasks of {self.where}: {' '.join(str(err).split())}")
            return
        try:
            self._multitask = self._make_multitask(self.backbone, self.device)
        except Exception as err:  # answered as the reason of a failed start, never as "still loading"
            self._fail_start(f"cannot load the backbone: {' '.join(str(err).split()) or type(err).__name__}")
            return
        self._sync_logged()
        if self.lazy:
            self._load_first()
        failed = self.tier.errors()
        if failed and not self._multitask.tasks:
            reasons = "; ".join(f"{name}{SUFFIX}: {reason}" for name, reason in failed.items())
            self._fail_start(f"no task could be loaded from {self.where} ({reasons})")
            return
        self._first_scan_done.set()
        while not self._stop.wait(watch_seconds):
            self._sync_logged()  # a Hub source lists its repository again only every hub_refresh_seconds

    def _load_first(self) -> None:
        """Lazy start: load tasks in name order until one loads, which brings the backbone."""
        for name in sorted(self._listing):
            try:
                self.tier.loaded(name, self._load(name))
                return
            except Exception as err:
                self.tier.failed(name, " ".join(str(err).split()) or type(err).__name__)

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
            log.exception("scanning the tasks of %s failed", self.where)

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
            raise UnknownTaskError(f"task '{name}' is not loaded; GET /v1/tasks lists the tasks")
        return self._kept.get(name, (info, None))[0]

    def errors(self) -> dict[str, str]:
        """Served tasks whose file was replaced by one that cannot be loaded: name -> why (they keep serving)."""
        return {name: reason for name, (_, reason) in self._kept.items()}

    def failed(self) -> dict[str, str]:
        """Task files that serve nothing: task name -> why they could not be loaded."""
        return self.tier.errors()

    def input_spec(self, name: str) -> Any:
        """The input pipeline of loaded task `name` (see `prepare_image`)."""
        return self._multitask.model(name).input_spec

    def predict(self, inputs: Sequence[Any], task_names: Sequence[str], top_k: int) -> list[list[Any]]:
        """One MultiTask call for prepared images (`input_spec`) of any mix of acquired tasks, from the
        batching thread; under bf16 autocast with `precision` bf16."""
        with self._model_lock, self._autocast():
            return self._multitask.predict_prepared(list(inputs), list(task_names), top_k=top_k)

    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        from ..engine.evaluate import autocast  # the training engine's, imported only when asked for

        return autocast(torch.device(self.device), self.precision)

    # ------------------------------------------------------------ files
    def sync(self) -> None:
        """Add, replace and remove tasks so they match the source's files."""
        with self._files_lock:
            files = self.source.scan(self._listing)
            for name in sorted(set(self._listing) - set(files)):
                del self._listing[name]
                self._remove(name)
                log.info("task '%s' removed: its file is gone", name)
            for name, (location, stamp) in sorted(files.items()):
                if self._listing.get(name) == (location, stamp):
                    continue
                self._listing[name] = (location, stamp)  # also on failure: a bad file is retried once it changes
                if self.lazy and name not in self._multitask.tasks:
                    self.tier.known(name)
                    continue
                try:
                    self._swap(name, self.source.local(location))
                    log.info("task '%s' loaded from %s", name, location)
                except Exception as err:  # a half-written or foreign file must not stop the watch
                    reason = " ".join(str(err).split()) or type(err).__name__
                    kept = " (its previous version keeps serving)" if name in self._kept else ""
                    log.error("task '%s' not loaded: %s%s", name, reason, kept)
            self.tier.trim()

    # ------------------------------------------------------------ admin
    def put(self, name: str, data: bytes) -> Any:
        """Add or replace task `name` from the bytes of a per-task file, and keep the file in the folder.

        The file is loaded (safetensors only) before it replaces the old one, so a bad upload
        leaves the old task serving. Raises UploadError for a file that cannot be served
        (broken, not a per-task file, or made on another backbone), ReadOnlyTasksError for
        tasks from a Hub repository.
        """
        check_task_name(name)
        if self._multitask is None or self.source is None:
            raise NotReadyError(self.not_ready_reason())
        self._require_writable()
        final = self.source.path(name)
        part = final.parent / f".upload-{uuid.uuid4().hex}.part"
        part.write_bytes(data)
        try:
            with self._files_lock:
                try:
                    self._swap(name, part, from_folder=False)
                except Exception as err:  # whatever a foreign or broken file raises, the answer is a refusal
                    # The client knows its file as "the upload", not by the temporary name it had here.
                    reason = " ".join(str(err).split()).replace(f"cannot add task '{name}' from '{part}': ", "")
                    reason = reason.replace(f"'{part}'", "the upload") or type(err).__name__
                    raise UploadError(f"uploaded file for task '{name}' refused: {reason}") from err
                os.replace(part, final)
                stat = final.stat()
                self._listing[name] = (str(final), (stat.st_mtime_ns, stat.st_size))
                info = self.get(name)
            self.tier.trim()
            return info
        finally:
            part.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Remove task `name` and its file; UnknownTaskError if it is not served."""
        self._require_writable()
        with self._files_lock:
            if name not in self._listing:
                raise UnknownTaskError(f"task '{name}' is not served; GET /v1/tasks lists the tasks")
            self._remove(name)
            self.source.path(name).unlink(missing_ok=True)
            del self._listing[name]

    def _require_writable(self) -> None:
        if self.source is not None and not self.source.writable:
            raise ReadOnlyTasksError(f"the tasks come from {self.where}, which is read-only here; "
                                     "push task files there instead")

    # ------------------------------------------------------------ the MultiTask
    def _swap(self, name: str, path: Path, *, from_folder: bool = True) -> None:
        """Load `path` as task `name`, replacing any task of that name once the new one is read.

        On failure the old task keeps serving. A file of the folder that failed is remembered
        for `errors()` (a served task kept) or as a failed task (`from_folder`; an upload's
        failure is answered to its client instead).
        """
        try:
            task = self._multitask.read(name, str(path))
        except Exception as err:
            if from_folder:
                reason = " ".join(str(err).split()) or type(err).__name__
                if name in self._multitask.tasks:
                    self._kept[name] = (self.get(name), f"its file was replaced by one that cannot be loaded "
                                                        f"({reason}); the previous version keeps serving")
                else:
                    self.tier.failed(name, reason)
                self.on_load_error(name)
            raise
        with self._model_lock:
            if name in self._multitask.tasks:
                self._multitask.remove(name)
            info = self._multitask.insert(task)
            self._kept.pop(name, None)
        self.tier.loaded(name, info.memory)
        self.on_change(len(self._multitask.tasks))

    def _load(self, name: str) -> int:
        """Load known task `name` from its file (the tier's loader); the bytes it holds."""
        try:
            location = self._listing[name][0]
            task = self._multitask.read(name, str(self.source.local(location)))
        except Exception:
            self.on_load_error(name)
            raise
        with self._model_lock:
            info = self._multitask.insert(task)
        self.on_change(len(self._multitask.tasks))
        return info.memory

    def _unload(self, name: str) -> None:
        """Take task `name` out of memory (the tier's eviction); its file stays known."""
        with self._model_lock:
            if name in self._multitask.tasks:
                self._multitask.remove(name)
            self._kept.pop(name, None)
        self.on_change(len(self._multitask.tasks))

    def _remove(self, name: str) -> None:
        self._unload(name)
        self.tier.forget(name)
