"""`vptune serve` as a user runs it: a real process on loopback, and one-line errors for misuse."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")

from vptune.cli.main import main
from serve_helpers import Reference, build_task_files, copy_tasks, png


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_answers_on_loopback_and_stops_at_once_on_sigterm(tmp_path):
    files = build_task_files(tmp_path)
    folder = copy_tasks(files, tmp_path / "tasks")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VPTUNE_ADMIN_TOKEN": "from-env"}
    # A lone request waits 10 s for a partner; two together fill a batch and run at once.
    process = subprocess.Popen(
        [sys.executable, "-m", "vptune", "serve", "--tasks", str(folder), "--port", str(port), "--log-level", "warning",
         "--backbone", str(tmp_path / "backbone.safetensors"), "--max-batch", "2", "--max-wait-ms", "10000"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(2) as pool:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    assert process.poll() is None, process.communicate()[1]
                time.sleep(0.2)
            pair = [pool.submit(httpx.post, f"{url}/v1/tasks/{task}/predict", content=png(4), timeout=60)
                    for task in ("deep2", "lin")]
            answer = pair[0].result()
            assert answer.status_code == 200 and pair[1].result().status_code == 200, answer.text
            Reference().check(folder / "deep2.safetensors", png(4), answer.json())
            # the admin token came from the environment
            assert httpx.delete(f"{url}/v1/tasks/lin", headers={"authorization": "Bearer from-env"}).status_code == 200
            waiting = pool.submit(httpx.post, f"{url}/v1/tasks/deep5/predict", content=png(5), timeout=60)
            time.sleep(1.0)  # queued, waiting for a partner
        finally:
            asked = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            stopped = time.monotonic() - asked
        assert stopped < 8, f"SIGTERM took {stopped:.1f} s"
        try:
            assert waiting.result().status_code == 503  # told the service is stopping
        except httpx.TransportError:
            pass  # or cut off with the connection
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_a_start_that_loads_no_task_exits_with_the_reason(tmp_path, capsys):
    files = build_task_files(tmp_path)
    folder = tmp_path / "alien-only"
    folder.mkdir()
    (folder / "alien.safetensors").write_bytes(files.other_backbone.read_bytes())  # made on other weights
    code = main(["serve", "--tasks", str(folder), "--backbone", str(tmp_path / "backbone.safetensors"),
                 "--port", str(_free_port()), "--log-level", "error"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vptune: error: the service could not start: no task could be loaded from")
    assert "alien.safetensors" in last and "weights" in last
