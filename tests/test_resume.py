"""A run killed (SIGKILL) after its first epoch and resumed ends exactly like one never interrupted."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vptune.engine import evaluate_run

from conftest import TINY_CLI, run_vptune

EPOCHS = 3


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def without(values: dict, *keys: str) -> dict:
    return {k: v for k, v in values.items() if k not in keys}


def kill_after_first_epoch(args: list[str], run_dir: Path) -> None:
    """Start `vptune train`, SIGKILL it once epoch 1's checkpoint and metrics row exist."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vptune", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not ((run_dir / "checkpoint.pt").is_file() and len(metrics_rows(run_dir)) == 1):
            assert process.poll() is None, f"training ended before the kill: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
    finally:
        process.kill()  # SIGKILL: no chance to clean up
        process.wait()
        process.stderr.close()


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(small_digits_root, tmp_path):
    def train_args(out: Path) -> list[str]:
        # vpt-deep with prompt dropout: the resumed epochs must redraw the same dropout masks.
        return ["train", "--data", str(small_digits_root), "--task", "digits", *TINY_CLI, "--method", "vpt-deep",
                "--num-prompts", "4", "--prompt-dropout", "0.2", "--epochs", str(EPOCHS), "--seed", "3", "--quiet",
                "--out", str(out)]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_vptune(*train_args(whole)).returncode == 0

    kill_after_first_epoch(train_args(killed), killed)
    assert len(metrics_rows(killed)) < EPOCHS and not (killed / "task.safetensors").exists()
    resumed = run_vptune("train", "--resume", "--out", killed, "--quiet")
    assert resumed.returncode == 0, resumed.stderr

    assert len(metrics_rows(whole)) == EPOCHS
    assert [without(r, "seconds") for r in metrics_rows(killed)] == [without(r, "seconds") for r in metrics_rows(whole)]
    summaries = [json.loads((run / "summary.json").read_text()) for run in (whole, killed)]
    assert without(summaries[1], "train_seconds_this_session") == without(summaries[0], "train_seconds_this_session")

    tensors = [load_file(run / "task.safetensors") for run in (whole, killed)]
    assert tensors[0].keys() == tensors[1].keys()
    for name, value in tensors[0].items():
        assert value.equal(tensors[1][name]), name

    results = [evaluate_run(run, "test", quiet=True) for run in (whole, killed)]
    assert results[0] == results[1] and results[0]["n"] == 100
