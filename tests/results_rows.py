"""Hand-made rows of a sweep's results table, in the layout `vptune sweep` writes (typed as ResultRow)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from vptune.experiments.results_table import ResultRow

BACKBONE = 1000
# method -> task -> final test top-1 per seed; eurosat has 2 seeds, dsprites_loc 1.
FINAL = {
    "full": {"cifar100": [0.60, 0.62, 0.64], "dtd": [0.50, 0.50, 0.50], "eurosat": [0.90, 0.92], "dsprites_loc": [0.40]},
    "linear": {"cifar100": [0.70, 0.70, 0.70], "dtd": [0.40, 0.44, 0.48], "eurosat": [0.80, 0.84], "dsprites_loc": [0.30]},
    "vpt-deep": {"cifar100": [0.65, 0.66, 0.67], "dtd": [0.55, 0.57, 0.59], "eurosat": [0.95, 0.93], "dsprites_loc": [0.45]},
}
# Tuned parameters per task (head included): head sizes differ between tasks for vpt-deep.
TUNED = {
    "full": dict.fromkeys(FINAL["full"], 1010),
    "linear": dict.fromkeys(FINAL["linear"], 10),
    "vpt-deep": {"cifar100": 100, "dtd": 60, "eurosat": 40, "dsprites_loc": 40},
}
CHOSEN_LR = {"full": 0.001, "linear": 0.1, "vpt-deep": 0.01}
GRID_LR = (0.001, 0.01, 0.1)


def row(task: str, method: str, seed: int, top1: float, *, stage: str = "final", setting: dict | None = None,
        **extra: Any) -> ResultRow:
    """One results row with every key of the documented schema."""
    return ResultRow.from_json({
        "trial": f"{task}-{method}-{seed}-{json.dumps(setting, sort_keys=True)}",
        "task": task, "group": None, "method": method, "stage": stage, "setting": setting or {}, "seed": seed,
        "split": "test" if stage == "final" else "val200", "top1": top1, "n": 100,
        "selected": None if stage == "final" else False, "selected_epoch": 3, "epochs": 3,
        "tuned_params": TUNED.get(method, {}).get(task, 10), "backbone_params": BACKBONE, "bytes_per_task": 4000,
        "wall_seconds": 1.5, "run_dir": f"/runs/{task}/{method}/{seed}", "config": {"lr": 0.01, "seed": seed},
        "error": None, **extra,
    })


def paper_rows() -> list[ResultRow]:
    """Tune rows (one lr selected per task x method x seed) and the final rows of FINAL."""
    rows = []
    for method, tasks in FINAL.items():
        for task, scores in tasks.items():
            for seed, top1 in enumerate(scores):
                for lr in GRID_LR:
                    chosen = lr == CHOSEN_LR[method]
                    rows.append(row(task, method, seed, 0.5 + 0.1 * chosen, stage="tune", setting={"lr": lr},
                                    selected=chosen))
                rows.append(row(task, method, seed, top1, setting={"lr": CHOSEN_LR[method]}))
    return rows


def ablation_rows(key: str, values: list[Any]) -> list[ResultRow]:
    """Final rows of vpt-deep at every value of `key` on two natural and one structured task, 2 seeds,
    plus Linear and Full references; top-1 = 0.5 + 0.1 * value index + 0.01 * seed (+0.05 on dtd)."""
    rows = []
    for task, bonus in (("cifar100", 0.0), ("dtd", 0.05), ("dsprites_loc", 0.0)):
        for seed in (0, 1):
            for index, value in enumerate(values):
                top1 = 0.5 + 0.1 * index + 0.01 * seed + bonus
                rows.append(row(task, "vpt-deep", seed, top1, setting={"lr": 0.01, key: value}))
            rows.append(row(task, "linear", seed, 0.3, setting={"lr": 0.1}))
            rows.append(row(task, "full", seed, 0.9, setting={"lr": 0.001}))
    return rows


def write_results(rows: list[ResultRow], folder: Path) -> Path:
    """Write `rows` as the sweep does: results.jsonl and results.csv (nested values as JSON strings)."""
    rows = [r.to_json() for r in rows]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = list(rows[0])
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)
                             for k, v in r.items()})
    return folder
