"""`vptune report --petl-dir`: PETL_Vision's per-task files, read back the way that harness reads them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vptune.cli.main import main
from vptune.experiments.petl_vision import write_petl_vision

from conftest import assert_one_line_error
from results_rows import CHOSEN_LR, FINAL, ablation_rows, paper_rows, row, write_results

# What PETL_Vision's experiment/tune.py and run.py write (result_tracker with an empty best-metrics dict).
TUNE_HEADER = ["param_set", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"]
FINAL_HEADER = ["run_idx", "train_loss", "train_top1", "train_top5", "test_loss", "test_top1", "test_top5"]


def harness_best_tune(folder: Path) -> dict:
    """PETL_Vision's final_run: the tune_summary row with the highest val_top1 (column 5), `eval`-ed."""
    with open(folder / "tune_summary.csv", newline="") as f:
        tune_summary = list(csv.reader(f))[1:]
    return eval(sorted(tune_summary, key=lambda x: float(x[5]))[-1][0])  # noqa: S307 - as the harness does


def test_every_task_and_method_gets_the_three_files_the_harness_reads(tmp_path):
    folders = write_petl_vision(paper_rows(), tmp_path)
    assert len(folders) == 12  # 4 tasks x 3 methods
    deep = tmp_path / "processed_vtab" / "dtd" / "vpt-deep"
    assert deep in folders
    with open(deep / "tune_summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == TUNE_HEADER
        assert [eval(r["param_set"]) for r in reader] == [{"lr": lr} for lr in (0.001, 0.01, 0.1)] * 3
    assert harness_best_tune(deep) == {"lr": CHOSEN_LR["vpt-deep"]}
    with open(deep / "final_summary.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert list(runs[0]) == FINAL_HEADER
    assert [(int(r["run_idx"]), float(r["test_top1"])) for r in runs] == [(0, 55.0), (1, 57.0), (2, 59.0)]
    result = json.loads((deep / "final_result.json").read_text())
    assert set(result) == {"avg_acc", "avg_best_acc", "inserted_parameters", "best_tune"}
    assert result["avg_acc"] == pytest.approx(100 * sum(FINAL["vpt-deep"]["dtd"]) / 3)
    assert result["best_tune"] == {"lr": 0.01} and result["avg_best_acc"] is None
    assert result["inserted_parameters"] is None  # these rows do not say which parameters are the head's


def test_inserted_parameters_leave_the_head_out_and_other_tasks_keep_their_group(tmp_path):
    rows = [row("cub", "vpt-deep", seed, 0.8, group="fgvc", tuned_params=9_200, head_params=1_200) for seed in (0, 1)]
    (folder,) = write_petl_vision(rows, tmp_path)
    assert folder == tmp_path / "fgvc" / "cub" / "vpt-deep"
    assert json.loads((folder / "final_result.json").read_text())["inserted_parameters"] == 8_000


def test_an_ablation_gets_a_folder_per_value(tmp_path):
    folders = write_petl_vision(ablation_rows("num_prompts", [1, 10]), tmp_path)
    names = sorted(f.name for f in folders if f.parent.name == "dtd")
    assert names == ["full", "linear", "vpt-deep_num_prompts=1", "vpt-deep_num_prompts=10"]


def test_the_cli_writes_them_beside_the_table_and_refuses_an_input_as_the_folder(tmp_path, capsys):
    sweep = write_results(paper_rows(), tmp_path / "sweep")
    assert main(["report", str(sweep), "--out", str(tmp_path / "report.md"), "--petl-dir", str(tmp_path / "petl")]) == 0
    assert "12 task x method folders" in capsys.readouterr().out
    assert harness_best_tune(tmp_path / "petl" / "processed_vtab" / "cifar" / "linear") == {"lr": 0.1}
    code = main(["report", str(sweep), "--petl-dir", str(sweep)])
    assert_one_line_error(code, capsys.readouterr().err, "--petl-dir")
