"""`--precision bf16` and the decode threads: answers still the tasks' own (to bf16's precision)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from conftest import assert_one_line_error, run_vptune
from serve_helpers import Reference, many_task_files, png, random_backbone_file, wait_for
from vptune.engine import runinfo
from vptune.errors import VptuneError
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    backbone = random_backbone_file(root / "backbone.safetensors", seed=0)
    return many_task_files(backbone, root / "tasks", 3)


def test_bf16_answers_are_the_tasks_own_to_bf16_precision(paths, monkeypatch, caplog):
    monkeypatch.setattr(runinfo, "cpu_native_bf16", lambda: False)
    config = ServeConfig(tasks_dir=paths[0].parent, precision="bf16", decode_threads=3)
    image = png(9)
    reference = Reference()
    with caplog.at_level(logging.WARNING), TestClient(create_app(config)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, message="the service to be ready")
        for path in paths:
            answer = client.post(f"/v1/tasks/{path.stem}/predict", content=image, params={"top_k": 1})
            assert answer.status_code == 200, answer.text
            expected = reference.scores(path, image)
            top = answer.json()["predictions"][0]
            assert top["index"] == int(expected.argmax())
            assert top["score"] == pytest.approx(float(expected.max()), abs=0.03)
    assert "--precision bf16 on this CPU is emulated" in caplog.text


@pytest.mark.parametrize("settings, message", [
    ({"precision": "fp16"}, "--precision 'fp16' is not one of fp32, bf16"),
    ({"decode_threads": 0}, "--decode-threads must be a whole number in [1, 256], got 0"),
    ({"max_loaded_tasks": 0}, "--max-loaded-tasks must be a whole number in [1, 1e+07], got 0"),
])
def test_bad_settings_are_refused(paths, settings, message):
    with pytest.raises(VptuneError, match=message.replace("[", r"\[").replace("+", r"\+")):
        ServeConfig(tasks_dir=paths[0].parent, **settings)


def test_plain_serve_imports_no_ray_and_ray_flags_need_ray(paths):
    code = "import sys, vptune.cli.serve, vptune.serve.app; print('ray' in sys.modules)"
    assert run_vptune("-c", code, prefix=()).stdout.strip() == "False"
    result = run_vptune("serve", "--tasks", str(paths[0].parent), "--replicas", "2")
    assert_one_line_error(result.returncode, result.stderr, "--replicas goes with --ray")
    result = run_vptune("serve", "--tasks", str(paths[0].parent), "--ray", "--autoscale", "3:1")
    assert_one_line_error(result.returncode, result.stderr, "--autoscale '3:1' must be MIN:MAX")
