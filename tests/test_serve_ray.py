"""`vptune serve --ray --replicas 2`: one local Ray instance for this module (the command's own), two
replicas answering mixed concurrent requests as each task's own model, one replica killed, a clean stop."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")
psutil = pytest.importorskip("psutil")

from serve_helpers import Reference, many_task_files, png, random_backbone_file

SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-serve")
    backbone = random_backbone_file(root / "backbone.safetensors", seed=0)
    paths = many_task_files(backbone, root / "tasks", 6)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "vptune", "serve", "--tasks", str(root / "tasks"), "--ray", "--replicas", "2",
         "--port", str(port), "--max-loaded-tasks", "4", "--log-level", "warning"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not any(line.startswith("serving on") for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.send_signal(signal.SIGTERM)
            pytest.fail("vptune serve --ray did not start:\n" + "".join(lines[-30:]))
        time.sleep(0.5)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client, paths, process, lines
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)


def _predict(client: httpx.Client, task: str, image: bytes) -> httpx.Response:
    return client.post(f"/v1/tasks/{task}/predict", content=image, headers={"serve_multiplexed_model_id": task})


def _check(reference: Reference, path: Path, image: bytes, answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["task"] == path.stem
    reference.check(path, image, answer.json())


def test_mixed_concurrent_requests_equal_each_tasks_own_model(service):
    client, paths, _, _ = service
    images = [png(seed) for seed in range(4)]
    reference = Reference()
    jobs = [(path, image) for path in paths for image in images] * 2
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: _predict(client, job[0].stem, job[1]), jobs))
    for (path, image), answer in zip(jobs, answers):
        _check(reference, path, image, answer)
    # The batch route mixes tasks in one request, without a routing header.
    body = {"items": [{"task": p.stem, "image": base64.b64encode(images[0]).decode()} for p in paths]}
    results = client.post("/v1/predict", json=body).json()["results"]
    for path, result in zip(paths, results):
        reference.check(path, images[0], result)


def _replica_processes(process: subprocess.Popen) -> list:
    """The processes of the deployment's replicas (Ray titles them `ray::ServeReplica:...`)."""
    children = psutil.Process(process.pid).children(recursive=True)
    return [child for child in children if "ServeReplica" in " ".join(child.cmdline())]


def test_a_killed_replica_costs_retries_or_503s_never_a_wrong_answer(service):
    client, paths, process, _ = service
    replicas = _replica_processes(process)
    assert len(replicas) == 2
    image = png(7)
    reference = Reference()
    statuses = []

    def ask(index: int) -> None:
        path = paths[index % len(paths)]
        try:
            answer = _predict(client, path.stem, image)
        except httpx.TransportError:
            statuses.append("transport")
            return
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            _check(reference, path, image, answer)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, i) for i in range(20)]
        replicas[0].kill()  # the replica's process dies as in a crash
        futures += [pool.submit(ask, i) for i in range(20, 60)]
        for future in futures:
            future.result()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 40
    for path in paths:  # and the deployment still answers every task
        _check(reference, path, image, _predict(client, path.stem, image))


def test_sigterm_stops_the_service_and_its_ray_instance(service):
    client, _, process, lines = service
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0
    assert not any("Traceback" in line for line in lines), "".join(lines[-30:])
    with pytest.raises(httpx.TransportError):
        client.get("/healthz", timeout=5)
