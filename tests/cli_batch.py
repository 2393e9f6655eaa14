"""Several `vptune` commands in one fresh process (one import of torch), for tests that need a clean environment
(HF_ENDPOINT, HF_HOME, ...) for many commands. As a script it reads a JSON list of argument lists on stdin and
prints a JSON list of {code, out, err}; `run_batch` drives it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path


def run_batch(calls: list[list[str]], env: dict[str, str]) -> list[dict]:
    """Run `vptune` commands in one fresh process with `env` added; their exit codes and outputs."""
    done = subprocess.run([sys.executable, __file__], input=json.dumps([[str(a) for a in c] for c in calls]),
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _main() -> None:
    from vptune.cli.main import main

    results = []
    for argv in json.load(sys.stdin):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse usage errors
                code = exc.code
        results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
    print(json.dumps(results))


if __name__ == "__main__":
    _main()
