"""Reading a sweep's results table and naming the task group of each row.

`vptune sweep --out DIR` writes `DIR/results.jsonl` and `DIR/results.csv`, one row per
task x method x setting x seed x split (see the sweep's documentation for the keys).
`load_results` reads either file, or the folder; `task_groups` assigns every task a group.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..data.formats import canonical_task_name
from ..errors import VptuneError

Row = dict[str, Any]


class ResultsError(VptuneError):
    """A results table or groups file is missing or malformed."""


# The paper's task groups: VTAB-1k Natural / Specialized / Structured and the five FGVC tasks.
BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": (
        "clevr_count", "clevr_dist", "dmlab", "kitti",
        "dsprites_loc", "dsprites_ori", "smallnorb_azi", "smallnorb_ele",
    ),
    "fgvc": ("cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars"),
}
GROUP_TITLES = {"natural": "VTAB Natural", "specialized": "VTAB Specialized", "structured": "VTAB Structured",
                "fgvc": "FGVC"}
OTHER_GROUP = "other"
# Keys whose CSV cells hold JSON (nested values) or numbers.
_JSON_KEYS = ("setting", "config")
_INT_KEYS = ("seed", "n", "selected_epoch", "epochs", "tuned_params", "backbone_params", "bytes_per_task")
_FLOAT_KEYS = ("top1", "top5", "auc", "wall_seconds")
REQUIRED_KEYS = ("task", "method", "stage", "seed", "top1")


def results_file(path: str | Path) -> Path:
    """The table to read: `path` itself, or `results.jsonl` (else `results.csv`) in a sweep folder."""
    path = Path(path)
    if path.is_dir():
        for name in ("results.jsonl", "results.csv"):
            if (path / name).is_file():
                return path / name
        raise ResultsError(f"{path} holds no results.jsonl or results.csv; pass the folder `vptune sweep --out` wrote")
    if not path.is_file():
        raise ResultsError(f"results table {path} does not exist; pass a sweep folder or its results.jsonl/.csv")
    if path.suffix not in (".jsonl", ".csv"):
        raise ResultsError(f"{path} is neither .jsonl nor .csv; pass a sweep's results.jsonl or results.csv")
    return path


def load_results(path: str | Path) -> list[Row]:
    """The rows of a sweep's results table (a folder, results.jsonl or results.csv).

    Rows of failed trials (a non-empty `error`) are left out. Raises ResultsError for a
    missing file, an unparsable line or a row without the keys every report needs (task,
    method, stage, seed, top1).
    """
    file = results_file(path)
    rows = [row for row in (_read_jsonl(file) if file.suffix == ".jsonl" else _read_csv(file)) if not row.get("error")]
    if not rows:
        raise ResultsError(f"{file} holds no rows of finished trials; wait for the sweep to finish one")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in REQUIRED_KEYS if row.get(key) is None]
        if missing:
            raise ResultsError(f"{file}: row {number} lacks {', '.join(missing)}; is this a `vptune sweep` table?")
        row.setdefault("setting", {})
    return rows


def _read_jsonl(file: Path) -> Iterable[Row]:
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{file}:{number}: not a JSON object ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ResultsError(f"{file}:{number}: expected a JSON object per line, got {type(row).__name__}")
        yield row


def _read_csv(file: Path) -> Iterable[Row]:
    with file.open(newline="") as handle:
        for number, raw in enumerate(csv.DictReader(handle), start=2):
            try:
                yield {key: _csv_value(key, value) for key, value in raw.items() if key is not None}
            except ValueError as exc:
                raise ResultsError(f"{file}:{number}: {exc}") from exc


def _csv_value(key: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if key in _JSON_KEYS:
        return json.loads(value)
    if key in _INT_KEYS:
        return int(float(value))
    if key in _FLOAT_KEYS:
        return float(value)
    if key == "selected":
        return value.strip().lower() in ("true", "1", "yes")
    return value


def read_groups(path: str | Path) -> dict[str, list[str]]:
    """A user's task groups from YAML `{group: [task, ...]}`, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"groups file {path} does not exist; write YAML like `natural: [cifar100, dtd]`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ResultsError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(tasks, list) and all(isinstance(t, str) for t in tasks) for tasks in data.values()
    ):
        raise ResultsError(f"{path} must map each group to a list of task names, e.g. `natural: [cifar100, dtd]`")
    return {str(group): list(tasks) for group, tasks in data.items()}


def task_groups(rows: list[Row], groups: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Every task of `rows` under its group, groups and tasks in a stable order.

    A task's group is, first found: the user's `groups` (task names compared through the
    VTAB aliases), the rows' own `group` field, the paper's groups (`BUILTIN_GROUPS`), else
    `other`. Groups come in the order: the user's, the paper's, the rest as first seen.
    """
    user = {canonical_task_name(t): g for g, tasks in (groups or {}).items() for t in tasks}
    builtin = {t: g for g, tasks in BUILTIN_GROUPS.items() for t in tasks}
    row_group = {row["task"]: row["group"] for row in rows if row.get("group")}
    assigned: dict[str, list[str]] = {}
    for task in dict.fromkeys(row["task"] for row in rows):
        name = canonical_task_name(task)
        group = user.get(name) or row_group.get(task) or builtin.get(task.lower().replace("-", "_")) \
            or builtin.get(name) or OTHER_GROUP
        assigned.setdefault(group, []).append(task)
    order = [*(groups or {}), *BUILTIN_GROUPS]
    ranked = sorted(assigned, key=lambda g: (order.index(g) if g in order else len(order), g == OTHER_GROUP))
    return {group: assigned[group] for group in ranked}


def group_title(group: str) -> str:
    """How tables and figures name a group: the paper's titles for its own groups."""
    return GROUP_TITLES.get(group, group)
