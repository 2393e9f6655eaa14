"""Run several `vptune` commands in one fresh process (one import of torch), for tests that need a clean
environment (HF_ENDPOINT, HF_HOME, ...) but many commands: reads a JSON list of argument lists on stdin,
prints a JSON list of {code, out, err}."""

import contextlib
import io
import json
import sys

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
