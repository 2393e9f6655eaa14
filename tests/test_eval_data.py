"""`vptune eval` scores the data a run was trained on, by absolute path, and says which data it scored."""

from __future__ import annotations

import json

import pytest
import yaml

from vptune.cli.main import main
from vptune.engine import evaluate_run
from vptune.errors import VptuneError

from conftest import SMALL_SPLITS, TINY_CLI, copy_task


def test_eval_from_another_folder_scores_the_original_data_by_path(small_digits_root, tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    copy_task(small_digits_root, first / "data")
    # Another folder with a data root of the same relative name, whose test split is smaller.
    other = copy_task(small_digits_root, second / "data")
    (other / "test.txt").write_text("".join((other / "test.txt").read_text().splitlines(keepends=True)[:10]))
    run_dir = tmp_path / "run"

    monkeypatch.chdir(first)
    args = ["train", "--data", "data", "--task", "digits", *TINY_CLI, "--method", "linear", "--epochs", "1",
            "--quiet", "--out", str(run_dir)]
    assert main(args) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"] == str(first / "data")

    monkeypatch.chdir(second)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = json.loads(lines[-1])
    assert result["data"] == {"root": str(first / "data"), "task": "digits", "split": "test"}
    assert result["n"] == SMALL_SPLITS["test"]
    assert any(line.startswith("data ") and str(first / "data") in line for line in lines[:-1])

    # Asked for explicitly, the other data is scored, and named as such.
    assert main(["eval", str(run_dir), "--split", "test", "--data", "data", "--quiet"]) == 0
    explicit = json.loads(capsys.readouterr().out)
    assert explicit["data"]["root"] == str(second / "data") and explicit["n"] == 10


def test_a_run_that_recorded_a_relative_root_is_not_scored_on_the_current_folder(small_digits_root, tmp_path,
                                                                                  monkeypatch):
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(small_digits_root), "--task", "digits", *TINY_CLI, "--method", "linear",
                 "--epochs", "1", "--quiet", "--out", str(run_dir)]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "data": "data"}, sort_keys=False))
    copy_task(small_digits_root, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VptuneError, match="relative data root 'data'.*pass --data"):
        evaluate_run(run_dir, "test", quiet=True)
