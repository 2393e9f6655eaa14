"""Dynamic batching: requests of any tasks that arrive close together run as one model call.

The event loop only queues requests and hands batches to one worker thread, so it keeps
answering (health checks, new requests) while the model runs. The queue is bounded: when
it is full a request is refused at once (QueueFullError, 429) instead of waiting longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .http_errors import NotReadyError, QueueFullError

RunBatch = Callable[[Sequence[Any], Sequence[str], int], list[list[Any]]]


@dataclass
class _Job:
    image: Any
    task: str
    top_k: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for up to `max_wait_s` or `max_batch` images, then runs them together.

    `run_batch(images, task_names, top_k)` returns one ranked prediction list per image;
    `on_batch(size, queue_seconds)` is told about every batch (for metrics).
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, list[float]], None] = lambda size, waits: None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vptune-batch")
        self._task: asyncio.Task | None = None
        self._stopping = False

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop batching; requests still waiting are answered NotReadyError (the service is stopping)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        _stopping(self._drain())
        self._executor.shutdown(wait=True)

    def _drain(self) -> list[_Job]:
        return [self._queue.get_nowait() for _ in range(self._queue.qsize())]

    def stop_soon(self) -> None:
        """From any thread (a signal handler): answer waiting and new requests that the service is stopping,
        instead of letting them wait out `max_wait_s` while the server shuts down."""
        self._stopping = True
        if self._task is not None:
            self._task.get_loop().call_soon_threadsafe(self._task.cancel)

    async def submit(self, image: Any, task: str, top_k: int) -> list[Any]:
        """The top-`top_k` predictions of `image` for `task`, computed in some batch."""
        if self._stopping:
            raise NotReadyError("the service is stopping; retry on another instance")
        job = _Job(image, task, top_k, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(
                f"the queue is full ({self._queue.maxsize} requests waiting); retry shortly"
            ) from None
        return await job.future

    async def _loop(self) -> None:
        batch: list[_Job] = []
        try:
            while True:
                batch = []
                await self._next_batch(batch)
        except asyncio.CancelledError:
            _stopping(batch + self._drain())
            raise

    async def _next_batch(self, batch: list[_Job]) -> None:
        """Collect one batch into `batch` (so that a stop can answer it) and run it."""
        loop = asyncio.get_running_loop()
        batch.append(await self._queue.get())
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        batch[:] = [job for job in batch if not job.future.done()]  # clients that went away
        if not batch:
            return
        started = time.perf_counter()
        self._on_batch(len(batch), [started - job.queued_at for job in batch])
        outcomes = await loop.run_in_executor(self._executor, self._run, batch)
        for job, outcome in zip(batch, outcomes):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _run(self, batch: list[_Job]) -> list[Any]:
        """Results (or exceptions) per job; a failed batch is retried image by image so one bad
        request (say, a task removed meanwhile) does not fail the others."""
        try:
            results = self._run_batch(
                [job.image for job in batch], [job.task for job in batch], max(job.top_k for job in batch)
            )
            return [ranked[: job.top_k] for job, ranked in zip(batch, results)]
        except Exception as err:
            if len(batch) == 1:
                return [err]
        return [self._run([job])[0] for job in batch]


def _stopping(jobs: list[_Job]) -> None:
    """Answer requests that will not run because the service is stopping."""
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(NotReadyError("the service is stopping; retry on another instance"))
