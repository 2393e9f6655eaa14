"""The tier: 200 task files, at most 20 in memory, loaded on request and evicted least recently used first."""

from __future__ import annotations

import base64
import io
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

pytest.importorskip("fastapi")

from PIL import Image

import vptune
from serve_helpers import (
    ServerThread, Reference, many_task_files, metric, png, random_backbone_file, wait_for,
)
from vptune.data import build_transform
from vptune.data.transforms import input_spec
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig
from vptune.serve.multitask import MultiTask

COUNT, TIER = 200, 20
SLOW = "t0007"  # its load waits until the test lets it go


class GatedMultiTask(MultiTask):
    """A MultiTask whose reading of task SLOW's file waits for `gate`."""

    gate = threading.Event()

    def read(self, name, path_or_model):
        if name == SLOW:
            self.gate.wait(60)
        return super().read(name, path_or_model)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("tier")
    backbone = random_backbone_file(root / "backbone.safetensors", seed=0)
    folder = root / "tasks"
    paths = many_task_files(backbone, folder, COUNT)
    spare = many_task_files(backbone, root / "spare", 1)[0]
    config = ServeConfig(tasks_dir=folder, max_loaded_tasks=TIER, max_batch=32, max_wait_ms=5, watch_seconds=0.2)
    server = ServerThread(create_app(config, make_multitask=lambda b, d: GatedMultiTask(b, device=d))).start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client, paths, spare
    server.stop()


def _own_answers(paths: list[Path], image: bytes) -> dict[str, torch.Tensor]:
    """Each task's own model (its file loaded alone onto one copy of the backbone) scoring `image`."""
    first = vptune.load(paths[0])
    backbone, weights = first.backbone, first.backbone_fingerprint
    spec = input_spec(backbone, "vtab")
    transform = build_transform("vtab", spec.img_size, spec.mean, spec.std, train=False)
    batch = transform(Image.open(io.BytesIO(image)).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return {path.stem: vptune.load(path, backbone, backbone_fingerprint=weights).eval()(batch).softmax(dim=1)[0] for path in paths}


def _predict_many(client: httpx.Client, tasks: list[str], image: bytes) -> dict[str, list[float]]:
    body = {"items": [{"task": t, "image": base64.b64encode(image).decode()} for t in tasks], "top_k": 5}
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 200, answer.text
    return {r["task"]: r for r in answer.json()["results"]}


def _states(client: httpx.Client) -> dict[str, str]:
    return {t["name"]: t["state"] for t in client.get("/v1/tasks").json()["tasks"]}


def test_tasks_are_known_before_they_are_loaded(served):
    client, paths, _ = served
    states = _states(client)
    assert len(states) == COUNT and set(states.values()) <= {"known", "loaded"}
    assert list(states.values()).count("loaded") <= TIER


def test_every_answer_is_the_tasks_own_and_memory_stays_bounded(served):
    client, paths, _ = served
    GatedMultiTask.gate.set()
    image = png(3)
    expected = _own_answers(paths, image)
    names = sorted(expected)
    loads_before = metric(client, "vptune_task_loads_total")
    # Requests of 10 tasks each, 4 at once: every task is asked for twice, far more than the tier holds.
    groups = [names[i:i + 10] for i in range(0, COUNT, 10)] * 2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda group: _predict_many(client, group, image), groups))
    for answer in answers:
        for task, result in answer.items():
            top = expected[task].topk(5)
            assert [p["index"] for p in result["predictions"]] == top.indices.tolist()
            assert [p["score"] for p in result["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-4)
    wait_for(lambda: metric(client, "vptune_tasks_loaded") <= TIER, message="the tier to shrink to its bound")
    assert metric(client, "vptune_task_loads_total") - loads_before >= COUNT
    assert metric(client, "vptune_task_evictions_total") >= COUNT - TIER
    memory = metric(client, "vptune_task_memory_bytes")
    per_task = sum(t.numel() * t.element_size() for t in vptune.load(paths[0]).tuned_state_dict().values())
    assert 0 < memory <= TIER * per_task * 1.01
    assert list(_states(client).values()).count("loaded") <= TIER


def test_an_evicted_task_reloads_on_request(served):
    client, paths, _ = served
    GatedMultiTask.gate.set()
    image = png(4)
    _predict_many(client, ["t0000"], image)
    for start in range(20, 20 + 2 * TIER, 10):  # enough other tasks to push t0000 out
        _predict_many(client, [f"t{i:04d}" for i in range(start, start + 10)], image)
    wait_for(lambda: _states(client)["t0000"] == "known", message="t0000 to be evicted")
    loads = metric(client, "vptune_task_loads_total")
    answer = client.post("/v1/tasks/t0000/predict", content=image)
    assert answer.status_code == 200
    Reference().check(paths[0], image, answer.json())
    assert metric(client, "vptune_task_loads_total") == loads + 1
    assert _states(client)["t0000"] == "loaded"


def test_a_request_waits_for_its_load_without_holding_up_other_tasks(served):
    client, paths, _ = served
    image = png(5)
    _predict_many(client, ["t0001"], image)  # loaded
    for start in range(40, 40 + 2 * TIER, 10):  # SLOW is evicted if it was loaded
        _predict_many(client, [f"t{i:04d}" for i in range(start, start + 10)] + ["t0001"], image)
    wait_for(lambda: _states(client)[SLOW] == "known", message=f"{SLOW} to be out of memory")
    GatedMultiTask.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.post, f"/v1/tasks/{SLOW}/predict", content=image)
        wait_for(lambda: _states(client)[SLOW] == "loading", message=f"{SLOW} to be loading")
        assert client.post("/v1/tasks/t0001/predict", content=image).status_code == 200
        assert not slow.done()
        GatedMultiTask.gate.set()
        answer = slow.result(timeout=60)
    assert answer.status_code == 200
    Reference().check(paths[7], image, answer.json())


def test_a_broken_file_is_a_4xx_naming_it_and_a_replaced_file_is_picked_up(served):
    client, paths, spare = served
    GatedMultiTask.gate.set()
    image = png(6)
    folder = paths[0].parent
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    wait_for(lambda: "broken" in _states(client), message="the broken file to be known")
    answer = client.post("/v1/tasks/broken/predict", content=image)
    assert answer.status_code == 422 and "broken.safetensors" in answer.json()["error"]
    assert answer.json()["type"] == "TaskLoadError"
    failed = {f["name"]: f for f in client.get("/v1/tasks").json()["failed"]}
    assert failed["broken"]["state"] == "failed" and "broken.safetensors" in failed["broken"]["error"]
    assert client.post("/v1/tasks/t0002/predict", content=image).status_code == 200
    # The broken file replaced by a good one, and a served task's file replaced by another task's.
    shutil.copy(spare, folder / "broken.tmp")
    (folder / "broken.tmp").replace(folder / "broken.safetensors")
    shutil.copy(spare, folder / "t0002.tmp")
    (folder / "t0002.tmp").replace(folder / "t0002.safetensors")
    reference = Reference()
    for name in ("broken", "t0002"):
        wait_for(lambda: client.post(f"/v1/tasks/{name}/predict", content=image).status_code == 200
                 and _same(client, name, reference.scores(spare, image), image), message=f"{name} to change")


def _same(client: httpx.Client, name: str, scores: torch.Tensor, image: bytes) -> bool:
    answer = client.post(f"/v1/tasks/{name}/predict", content=image).json()
    return [p["index"] for p in answer["predictions"]] == scores.topk(5).indices.tolist()
