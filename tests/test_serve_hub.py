"""`vptune serve --tasks hf://OWNER/NAME`: the task files of a Hub repository, read-only, loaded on request
(a loopback Hub stands in for the real one)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
huggingface_hub = pytest.importorskip("huggingface_hub")

from fastapi.testclient import TestClient

from hub_server import LocalHub
from serve_helpers import Reference, many_task_files, png, random_backbone_file, wait_for
from vptune.cli.main import main
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig
from vptune.serve.sources import HubSource


@pytest.fixture(scope="module")
def hub_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-serve")
    backbone = random_backbone_file(root / "backbone.safetensors", seed=0)
    paths = many_task_files(backbone, root / "tasks", 3)
    files = {f"tasks/{path.name}": path.read_bytes() for path in paths} | {"README.md": b"# tasks\n"}
    with LocalHub() as hub, pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        patch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                      hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "cache"))
        hub.add("model", "me/tasks", files)
        app = create_app(ServeConfig(tasks_dir="hf://me/tasks", max_loaded_tasks=2, admin_token="secret"))
        with TestClient(app) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, message="the service to be ready")
            yield client, paths, hub


def test_the_repositorys_task_files_are_listed_and_loaded_on_request(hub_client):
    client, paths, hub = hub_client
    listed = {task["name"]: task["state"] for task in client.get("/v1/tasks").json()["tasks"]}
    assert set(listed) == {"t0000", "t0001", "t0002"} and listed["t0000"] == "loaded"
    assert listed["t0002"] == "known" and not hub.downloads("tasks/t0002.safetensors")
    image = png(1)
    reference = Reference()
    for path in paths:
        answer = client.post(f"/v1/tasks/{path.stem}/predict", content=image)
        assert answer.status_code == 200, answer.text
        reference.check(path, image, answer.json())
    assert hub.downloads("tasks/t0002.safetensors")


def test_tasks_from_the_hub_are_read_only(hub_client):
    client, paths, _ = hub_client
    answer = client.put("/v1/tasks/new", content=paths[0].read_bytes(), headers={"authorization": "Bearer secret"})
    assert answer.status_code == 409 and "hf://me/tasks" in answer.json()["error"]
    answer = client.delete("/v1/tasks/t0000", headers={"authorization": "Bearer secret"})
    assert answer.status_code == 409


def test_a_task_pushed_with_vptune_push_is_served_as_the_local_file(hub_client, tmp_path, monkeypatch):
    client, paths, _ = hub_client
    monkeypatch.setenv("HF_TOKEN", "hf_local_test")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["push", str(paths[1]), "me/pushed"]) == 0
    app = create_app(ServeConfig(tasks_dir="hf://me/pushed"))
    with TestClient(app) as pushed:
        wait_for(lambda: pushed.get("/readyz").status_code == 200, message="the service to be ready")
        image = png(2)
        answer = pushed.post("/v1/tasks/task/predict", content=image)
        assert answer.status_code == 200, answer.text
        Reference().check(paths[1], image, answer.json())
        local = client.post(f"/v1/tasks/{paths[1].stem}/predict", content=image).json()
        assert answer.json()["predictions"] == local["predictions"]


def test_task_files_added_replaced_or_deleted_on_the_hub_are_picked_up(hub_client, tmp_path, monkeypatch):
    first, paths, hub = hub_client
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    hub.add("model", "me/changing", {"a.safetensors": paths[0].read_bytes()})
    image = png(3)
    app = create_app(ServeConfig(tasks_dir="hf://me/changing", watch_seconds=0.1, hub_refresh_seconds=0.2))
    with TestClient(app) as client:
        def answer(task: str):
            return client.post(f"/v1/tasks/{task}/predict", content=image)

        wait_for(lambda: client.get("/readyz").status_code == 200, message="the service to be ready")
        Reference().check(paths[0], image, answer("a").json())
        # One commit replaces a.safetensors with another task's file and adds b.safetensors.
        hub.add("model", "me/changing",
                {"a.safetensors": paths[1].read_bytes(), "b.safetensors": paths[2].read_bytes()})
        replaced = first.post(f"/v1/tasks/{paths[1].stem}/predict", content=image).json()["predictions"]
        wait_for(lambda: answer("a").json()["predictions"] == replaced, message="the replaced file to serve")
        Reference().check(paths[1], image, answer("a").json())
        wait_for(lambda: answer("b").status_code == 200, message="the added file to serve")
        Reference().check(paths[2], image, answer("b").json())
        hub.add("model", "me/changing", {"b.safetensors": paths[2].read_bytes()})
        wait_for(lambda: answer("a").status_code == 404, message="the deleted file to stop serving")
        assert answer("b").status_code == 200


def test_a_failed_listing_keeps_the_last_one(hub_client):
    _, paths, hub = hub_client
    hub.add("model", "me/vanishing", {"x.safetensors": paths[0].read_bytes()})
    source = HubSource("hf://me/vanishing", refresh_seconds=1e-6)
    listed = source.scan({})
    assert set(listed) == {"x"}
    del hub.repos[("model", "me/vanishing")]
    assert source.scan(listed) == listed
    assert HubSource("hf://me/tasks", refresh_seconds=0).scan({}).keys() == {"t0000", "t0001", "t0002"}
