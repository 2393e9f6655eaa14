"""A bounded load test on loopback: 8 clients, mixed tasks; no 5xx, no lost or mixed-up answers.

The default run lasts 5 seconds; the slow-marked one 30 seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

pytest.importorskip("fastapi")

from serve_helpers import TASKS, Reference, ServerThread, build_task_files, copy_tasks, png
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig

CLIENTS = 8
MAX_REQUESTS_PER_CLIENT = 20_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    files = build_task_files(root)
    folder = copy_tasks(files, root / "tasks")
    server = ServerThread(create_app(ServeConfig(tasks_dir=folder, max_wait_ms=5))).start()
    reference = Reference()
    cases = []
    for seed in range(12):
        name = list(TASKS)[seed % len(TASKS)]
        image = png(200 + seed, size=(24 + seed, 40))
        top = int(reference.scores(folder / f"{name}.safetensors", image).argmax())
        cases.append((name, image, top, f"{name}-class{top}"))
    yield server.url, cases
    server.stop()


def client_loop(url: str, cases: list, offset: int, deadline: float, outcomes: Counter, lock: threading.Lock) -> None:
    counts: Counter = Counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                break
            name, image, top, label = cases[(offset + i * 5) % len(cases)]
            try:
                response = client.post(f"/v1/tasks/{name}/predict?top_k=1", content=image)
            except httpx.TransportError:
                counts["lost"] += 1
                continue
            if response.status_code >= 500:
                counts["5xx"] += 1
            elif response.status_code == 429:
                counts["429"] += 1
            elif response.status_code != 200:
                counts[f"status {response.status_code}"] += 1
            else:
                body = response.json()
                best = body["predictions"][0]
                ok = body["task"] == name and best["index"] == top and best["label"] == label
                counts["ok" if ok else "mixed up"] += 1
    with lock:
        outcomes.update(counts)


@pytest.mark.parametrize("seconds", [5, pytest.param(30, marks=pytest.mark.slow)])
def test_eight_clients_mixed_tasks_no_errors_and_right_answers(served, seconds):
    url, cases = served
    outcomes: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(url, cases, k, deadline, outcomes, lock)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    assert not any(thread.is_alive() for thread in threads)
    assert outcomes["ok"] > 0
    assert set(outcomes) <= {"ok", "429"}, outcomes
    print(f"\n{seconds}s load: {dict(outcomes)}")
