"""The dynamic batcher: one model call for requests of different tasks, limits, failures kept apart."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vptune.serve.batching import Batcher
from vptune.serve.http_errors import QueueFullError


class Recorder:
    """A run_batch that records its calls and ranks each image as [(task, image, k)]."""

    def __init__(self, fail_task: str | None = None, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[list, list, int]] = []
        self.fail_task, self.gate = fail_task, gate

    def __call__(self, images, tasks, top_k):
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append((list(images), list(tasks), top_k))
        if self.fail_task in tasks:
            raise ValueError(f"task {self.fail_task} fails")
        return [[(task, image, k)] * 3 for image, task, k in zip(images, tasks, [top_k] * len(images))]


def run(coroutine):
    return asyncio.run(coroutine)


async def _submit_all(batcher: Batcher, jobs, *, return_exceptions=False):
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(*job) for job in jobs), return_exceptions=return_exceptions)
    finally:
        await batcher.stop()


def test_requests_of_different_tasks_share_one_call_and_get_their_own_answers():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=8, max_wait_s=0.2, max_queue=16)
    jobs = [("img-a", "task-a", 1), ("img-b", "task-b", 3), ("img-c", "task-c", 2)]
    answers = run(_submit_all(batcher, jobs))
    assert recorder.calls == [(["img-a", "img-b", "img-c"], ["task-a", "task-b", "task-c"], 3)]
    assert answers == [[("task-a", "img-a", 3)], [("task-b", "img-b", 3)] * 3, [("task-c", "img-c", 3)] * 2]


def test_batches_stop_at_max_batch():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=2, max_wait_s=0.2, max_queue=16)
    run(_submit_all(batcher, [(i, "t", 1) for i in range(5)]))
    assert [len(images) for images, _, _ in recorder.calls] == [2, 2, 1]
    assert [image for images, _, _ in recorder.calls for image in images] == list(range(5))


def test_a_failing_request_does_not_fail_the_others_in_its_batch():
    recorder = Recorder(fail_task="bad")
    batcher = Batcher(recorder, max_batch=8, max_wait_s=0.2, max_queue=16)
    answers = run(_submit_all(batcher, [(1, "good", 1), (2, "bad", 1), (3, "good", 1)], return_exceptions=True))
    assert answers[0] == [("good", 1, 1)] and answers[2] == [("good", 3, 1)]
    assert isinstance(answers[1], ValueError)


def test_a_full_queue_refuses_at_once():
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = Batcher(recorder, max_batch=1, max_wait_s=0, max_queue=1)

    async def scenario():
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(1, "t", 1))  # taken by the worker, blocks on the gate
        await asyncio.sleep(0.2)
        waiting = asyncio.ensure_future(batcher.submit(2, "t", 1))  # fills the queue
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError):
            await batcher.submit(3, "t", 1)
        gate.set()
        results = await asyncio.gather(running, waiting)
        await batcher.stop()
        return results

    assert run(scenario()) == [[("t", 1, 1)], [("t", 2, 1)]]
