"""A sweep's results as PETL_Vision's per-task output files, so they drop into that harness's tables.

PETL_Vision (OSU-MLB/PETL_Vision, `experiment/tune.py` and `experiment/run.py`) keeps, per
`<experiment>/<dataset>/<task>/<method>/` folder:

- `tune_summary.csv`: one row per grid point, columns `param_set,train_loss,train_top1,train_top5,
  val_loss,val_top1,val_top5`; `param_set` is the setting as a Python dict literal (the harness
  reads it back with `eval` and picks the row with the highest `val_top1`, column 5);
- `final_summary.csv`: one row per final run, `run_idx,train_loss,train_top1,train_top5,test_loss,
  test_top1,test_top5`;
- `final_result.json`: `avg_acc` (mean test top-1 over the final runs), `avg_best_acc` (the best
  test top-1 along training), `inserted_parameters` (trainable parameters without the head) and
  `best_tune` (the chosen setting).

Accuracies are in percent there. vptune writes what its rows hold: validation and test top-1 and
top-5; losses and training accuracies, which the rows do not keep, are empty cells, and
`avg_best_acc` is null because vptune never scores test during training. VTAB-1k tasks go under
`processed_vtab/<task>` with PETL_Vision's task names (`--data processed_vtab-<task>` there);
other tasks under their group's name.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from ..data.benchmark_tasks import VTAB_TASKS
from ..data.formats import canonical_task_name
from ..files import atomic_write, make_folder
from .report import method_labels
from .results_table import ResultRow
from .task_groups import task_groups

TUNE_SUMMARY, FINAL_SUMMARY, FINAL_RESULT = "tune_summary.csv", "final_summary.csv", "final_result.json"
TUNE_COLUMNS = ("param_set", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
FINAL_COLUMNS = ("run_idx", "train_loss", "train_top1", "train_top5", "test_loss", "test_top1", "test_top5")
VTAB_DATASET = "processed_vtab"


def write_petl_vision(rows: list[ResultRow], out: Path) -> list[Path]:
    """Write PETL_Vision's three files for every task x method of `rows` that has final rows, under `out`
    (created if missing; files of those names replaced whole); return the folders written."""
    final = [row for row in rows if row.stage == "final"]
    tune = [row for row in rows if row.stage == "tune"]
    groups = {task: group for group, tasks in task_groups(final).items() for task in tasks}
    finals: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row, label in zip(final, method_labels(final)):
        finals[(row.task, label)].append(row)
    tunes: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row, label in zip(tune, method_labels(final, tune)):
        tunes[(row.task, label)].append(row)
    written = []
    for (task, label), runs in finals.items():
        folder = out / _dataset(task, groups[task]) / _task_name(task) / _folder_name(label)
        make_folder(folder, "--petl-dir")
        runs = sorted(runs, key=lambda r: r.seed)
        atomic_write(folder / TUNE_SUMMARY, _csv(TUNE_COLUMNS, [
            [repr(r.setting), "", "", "", "", _percent(r.top1), _percent(r.top5)] for r in tunes[(task, label)]]))
        atomic_write(folder / FINAL_SUMMARY, _csv(FINAL_COLUMNS, [
            [r.seed, "", "", "", "", _percent(r.top1), _percent(r.top5)] for r in runs]))
        atomic_write(folder / FINAL_RESULT, json.dumps({
            "avg_acc": _percent(statistics.fmean(r.top1 for r in runs)),
            "avg_best_acc": None,
            "inserted_parameters": _without_head(runs),
            "best_tune": runs[0].setting,
        }) + "\n")
        written.append(folder)
    return written


def _dataset(task: str, group: str) -> str:
    return VTAB_DATASET if canonical_task_name(task) in {t.name for t in VTAB_TASKS} else _folder_name(group)


def _task_name(task: str) -> str:
    # PETL_Vision's VTAB-1k names (utils/global_var.py VTAB_DATASETS) are vptune's canonical ones.
    name = canonical_task_name(task)
    return name if name in {t.name for t in VTAB_TASKS} else _folder_name(task)


def _folder_name(text: str) -> str:
    """A label such as `vpt-deep (num_prompts=10)` as a folder name: `vpt-deep_num_prompts=10`."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


def _percent(value: float | None) -> float | str:
    return "" if value is None else round(100 * value, 4)


def _without_head(runs: list[ResultRow]) -> int | None:
    counts = {r.tuned_params - r.head_params for r in runs if r.tuned_params is not None and r.head_params is not None}
    return counts.pop() if len(counts) == 1 else None


def _csv(header: tuple[str, ...], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
