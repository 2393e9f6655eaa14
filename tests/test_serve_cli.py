"""`vptune serve` as a user runs it: a real process on loopback, and one-line errors for misuse."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("fastapi")

from conftest import assert_one_line_error
from vptune.cli.main import main
from serve_helpers import Reference, build_task_files, copy_tasks, png


@pytest.mark.parametrize("args, fragments", [
    (["--tasks", "{tmp}/nope"], ("tasks folder", "does not exist")),
    (["--tasks", "{tmp}", "--port", "70000"], ("--port",)),
    (["--tasks", "{tmp}", "--max-batch", "0"], ("max_batch", ">= 1")),
])
def test_misuse_is_one_line(tmp_path, capsys, args, fragments):
    code = main(["serve", *[arg.format(tmp=tmp_path) for arg in args]])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_answers_on_loopback(tmp_path):
    files = build_task_files(tmp_path)
    folder = copy_tasks(files, tmp_path / "tasks")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VPTUNE_ADMIN_TOKEN": "from-env"}
    process = subprocess.Popen(
        [sys.executable, "-m", "vptune", "serve", "--tasks", str(folder), "--port", str(port), "--log-level", "warning",
         "--backbone", str(tmp_path / "backbone.safetensors")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        answer = httpx.post(f"{url}/v1/tasks/deep2/predict", content=png(4), timeout=60)
        assert answer.status_code == 200, answer.text
        Reference().check(folder / "deep2.safetensors", png(4), answer.json())
        # the admin token came from the environment
        assert httpx.delete(f"{url}/v1/tasks/lin", headers={"authorization": "Bearer from-env"}).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
