"""A run killed (SIGKILL) after its first epoch and resumed ends exactly like one never interrupted."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vptune.engine import evaluate_run, trainer
from vptune.engine.runfolder import MARKER

from conftest import TINY_CLI, run_vptune, tiny_train_config

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


class Recorder:
    """What one in-process run does: epochs it trains, the lr of every step, its optimizer and checkpoints."""

    def __init__(self, monkeypatch, *, stop_after_epoch: int | None = None) -> None:
        self.epochs: list[int] = []
        self.lrs: list[float] = []
        self.checkpoints: list[dict] = []
        self.restored_optimizer: dict | None = None
        train_epoch, restore, apply_schedule, save = (trainer._Run._train_epoch, trainer._Run._restore,
                                                      trainer.apply_schedule, trainer.save_checkpoint)

        def recording_train_epoch(run, epoch):
            self.epochs.append(epoch)
            return train_epoch(run, epoch)

        def recording_restore(run, state):
            restore(run, state)
            self.restored_optimizer = copy.deepcopy(run.optimizer.state_dict())

        def recording_apply_schedule(*args):
            lr = apply_schedule(*args)
            self.lrs.append(lr)
            return lr

        def saving(run_dir, state):
            save(run_dir, state)
            self.checkpoints.append(copy.deepcopy(state))
            if state["next_epoch"] == stop_after_epoch:
                raise KeyboardInterrupt

        monkeypatch.setattr(trainer._Run, "_train_epoch", recording_train_epoch)
        monkeypatch.setattr(trainer._Run, "_restore", recording_restore)
        monkeypatch.setattr(trainer, "apply_schedule", recording_apply_schedule)
        monkeypatch.setattr(trainer, "save_checkpoint", saving)


def test_resume_trains_only_the_remaining_epochs_from_the_saved_optimizer_and_schedule(
        small_digits_root, tmp_path, monkeypatch):
    def config(out):
        return tiny_train_config(small_digits_root, out, method="vpt-deep", method_options={"num_prompts": 2},
                                 epochs=EPOCHS, warmup_epochs=1.5, seed=5, batch_size=64,
                                 eval_split="")

    with monkeypatch.context() as patch:
        whole = Recorder(patch)
        trainer.train(config(tmp_path / "whole"))
    with monkeypatch.context() as patch:
        Recorder(patch, stop_after_epoch=1)
        with pytest.raises(KeyboardInterrupt):
            trainer.train(config(tmp_path / "killed"))
    (tmp_path / "killed" / MARKER).unlink()  # as a run of an earlier release left it: still resumable
    with monkeypatch.context() as patch:
        resumed = Recorder(patch)
        trainer.train(config(tmp_path / "killed"), resume=True)

    steps = 256 // 64
    assert whole.epochs == [0, 1, 2] and resumed.epochs == [1, 2]
    # The schedule: warm-up over 6 steps then cosine (closed form), and the resumed steps continue it.
    total, warmup = EPOCHS * steps, 6
    assert whole.lrs == pytest.approx([0.01 * (s + 1) / warmup if s < warmup else
                                       0.005 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
                                       for s in range(total)])
    assert resumed.lrs == whole.lrs[steps:]
    # The optimizer resumes from epoch 1's AdamW moments and step counts, not from a fresh start.
    saved = whole.checkpoints[0]["optimizer"]["state"]
    restored = resumed.restored_optimizer["state"]
    assert saved.keys() == restored.keys() and saved
    for key, state in saved.items():
        assert float(restored[key]["step"]) == steps
        for moment in ("exp_avg", "exp_avg_sq"):
            assert restored[key][moment].equal(state[moment]) and state[moment].abs().sum() > 0
    final = [load_file(tmp_path / run / "task.safetensors") for run in ("whole", "killed")]
    for name, value in final[0].items():
        assert value.equal(final[1][name]), name
    assert [r["epoch"] for r in metrics_rows(tmp_path / "killed")] == ["1", "2", "3"]
