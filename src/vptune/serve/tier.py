"""Which tasks are in memory: loaded on first request, a bounded set, the least recently used evicted.

The tier knows every task the service can answer and the state of each, a value clients see on
`GET /v1/tasks`: `known` (a file, not in memory), `loading`, `loaded`, or `failed` (with why).
A request awaits `acquire(names)`: tasks not in memory are loaded in one loader thread (requests
for the same task share its load) while the batching thread goes on with other tasks; acquired
tasks are pinned until `release`, so a batch never loses a task it was given. After each load,
and when pins are released, the least recently used unpinned tasks are evicted until the set
fits `Limits` (tasks and/or bytes of their own tensors); pinned tasks may keep it over its
bounds until they are released.

Loads and evictions run one at a time in the loader thread, so a task is never loaded and
evicted at once. The tier does not read files itself: `load(name)` (which returns the bytes the
task holds) and `unload(name)` are the registry's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from .http_errors import TaskLoadError, UnknownTaskError

TaskState = Literal["known", "loading", "loaded", "failed"]


@dataclass(frozen=True)
class Limits:
    """Bounds of the loaded set: at most `max_tasks` tasks and `max_bytes` bytes of their own tensors
    (None: no bound). Without any bound every task is loaded as soon as it is known."""

    max_tasks: int | None = None
    max_bytes: int | None = None

    @property
    def bounded(self) -> bool:
        return self.max_tasks is not None or self.max_bytes is not None


class Tier:
    """States of the known tasks and the bounded, least-recently-used set of loaded ones."""

    def __init__(
        self,
        limits: Limits,
        load: Callable[[str], int],
        unload: Callable[[str], None],
        *,
        on_load: Callable[[float], None] = lambda seconds: None,
        on_evict: Callable[[], None] = lambda: None,
    ) -> None:
        self.limits = limits
        self._load_task, self._unload_task = load, unload
        self._on_load, self._on_evict = on_load, on_evict
        self._lock = threading.Lock()
        self._states: dict[str, TaskState] = {}
        self._errors: dict[str, str] = {}
        self._loaded: OrderedDict[str, int] = OrderedDict()  # task -> bytes, least recently used first
        self._pins: Counter[str] = Counter()
        self._loads: dict[str, asyncio.Future] = {}  # loads in flight, shared by their requests
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vptune-load")

    # ------------------------------------------------------------ what the registry tells
    def known(self, name: str) -> None:
        """`name` has a file that is not in memory (a new file, or a changed one to retry)."""
        with self._lock:
            if self._states.get(name) != "loading":
                self._states[name] = "known"
                self._errors.pop(name, None)
                self._loaded.pop(name, None)

    def loaded(self, name: str, memory: int) -> None:
        """`name` is in memory, holding `memory` bytes of its own."""
        with self._lock:
            self._states[name] = "loaded"
            self._errors.pop(name, None)
            self._loaded[name] = memory
            self._loaded.move_to_end(name)

    def failed(self, name: str, reason: str) -> None:
        """`name`'s file cannot be loaded; requests for it are answered `reason` until its file changes."""
        with self._lock:
            self._states[name] = "failed"
            self._errors[name] = reason
            self._loaded.pop(name, None)

    def forget(self, name: str) -> None:
        """`name` has no file any more (and is not in memory)."""
        with self._lock:
            self._states.pop(name, None)
            self._errors.pop(name, None)
            self._loaded.pop(name, None)

    # ------------------------------------------------------------ reading
    def state(self, name: str) -> TaskState | None:
        return self._states.get(name)

    def states(self) -> dict[str, TaskState]:
        """Every known task's state, by name."""
        with self._lock:
            return dict(sorted(self._states.items()))

    def errors(self) -> dict[str, str]:
        """Failed tasks: name -> why their file cannot be loaded."""
        with self._lock:
            return dict(sorted(self._errors.items()))

    @property
    def memory(self) -> int:
        """Bytes the loaded tasks hold beyond the shared backbone."""
        return sum(self._loaded.values())

    # ------------------------------------------------------------ requests
    async def acquire(self, names: Iterable[str]) -> None:
        """Load what `names` lack and pin them all until `release(names)`.

        Raises UnknownTaskError (404) for a name without a file, TaskLoadError (422) for a task
        whose file cannot be loaded; nothing stays pinned then.
        """
        wanted = list(dict.fromkeys(names))
        pinned: list[str] = []
        try:
            for name in wanted:
                self._pin(name)
                pinned.append(name)
            await asyncio.gather(*(self._ensure_loaded(name) for name in wanted))
        except BaseException:
            self.release(pinned)
            raise

    def release(self, names: Iterable[str]) -> None:
        """Unpin tasks `acquire` pinned; evicts (in the loader thread) if the set is over its bounds."""
        with self._lock:
            for name in dict.fromkeys(names):
                self._pins[name] -= 1
                if self._pins[name] <= 0:
                    del self._pins[name]
        self.trim()

    def trim(self) -> None:
        """Evict, in the loader thread, the least recently used unpinned tasks while the set is over its bounds."""
        with self._lock:
            over = self._over()
        if over:
            self._loader.submit(self._evict)

    def _pin(self, name: str) -> None:
        with self._lock:
            state = self._states.get(name)
            if state is None:
                raise UnknownTaskError(f"task '{name}' is not served; GET /v1/tasks lists the tasks")
            if state == "failed":
                raise TaskLoadError(f"task '{name}' cannot be loaded: {self._errors[name]}")
            self._pins[name] += 1
            if state == "loaded":
                self._loaded.move_to_end(name)

    async def _ensure_loaded(self, name: str) -> None:
        if self._states.get(name) == "loaded":
            return
        load = self._loads.get(name)
        if load is None:
            load = asyncio.get_running_loop().run_in_executor(self._loader, self._load, name)
            self._loads[name] = load
            load.add_done_callback(lambda _: self._loads.pop(name, None))
        await asyncio.shield(load)

    # ------------------------------------------------------------ the loader thread
    def _load(self, name: str) -> None:
        with self._lock:
            state = self._states.get(name)
            if state == "loaded":
                self._loaded.move_to_end(name)
                return
            if state in (None, "failed"):
                raise (UnknownTaskError(f"task '{name}' is not served; GET /v1/tasks lists the tasks")
                       if state is None else TaskLoadError(f"task '{name}' cannot be loaded: {self._errors[name]}"))
            self._states[name] = "loading"
        started = time.perf_counter()
        try:
            memory = self._load_task(name)
        except Exception as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            self.failed(name, reason)
            raise TaskLoadError(f"task '{name}' cannot be loaded: {reason}") from err
        self.loaded(name, memory)
        self._on_load(time.perf_counter() - started)
        self._evict()

    def _evict(self) -> None:
        while True:
            with self._lock:
                victim = next((name for name in self._loaded if not self._pins[name]), None) if self._over() else None
                if victim is None:
                    return
                del self._loaded[victim]
                self._states[victim] = "known"
            self._unload_task(victim)
            self._on_evict()

    def _over(self) -> bool:
        tasks, memory = self.limits.max_tasks, self.limits.max_bytes
        return bool((tasks is not None and len(self._loaded) > tasks)
                    or (memory is not None and sum(self._loaded.values()) > memory))

    def stop(self) -> None:
        self._loader.shutdown(wait=True, cancel_futures=True)
