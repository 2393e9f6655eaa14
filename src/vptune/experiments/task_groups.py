"""Task groups of a results table: the paper's (VTAB Natural / Specialized / Structured, FGVC), the
rows' own, or a user's YAML file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from ..data.formats import canonical_task_name
from .results_table import ResultRow, ResultsError

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
EXAMPLE = "write YAML like `natural: [cifar100, dtd]`"


def read_groups(path: str | Path) -> dict[str, list[str]]:
    """A user's task groups from YAML `{group: [task, ...]}`, in file order; ResultsError if malformed."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"groups file {path} {'is a folder' if path.is_dir() else 'does not exist'}; {EXAMPLE}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not data or not all(
        isinstance(group, str) and isinstance(tasks, list) and all(isinstance(t, str) and t for t in tasks)
        for group, tasks in data.items()
    ):
        raise ResultsError(f"{path} must map each group to a list of task names; {EXAMPLE}")
    owner: dict[str, str] = {}
    for group, tasks in data.items():
        for task in tasks:
            name = canonical_task_name(task)
            if name in owner:
                raise ResultsError(f"{path} puts task '{task}' in {owner[name]!r} and {group!r}; keep it in one group")
            owner[name] = group
    return {group: list(tasks) for group, tasks in data.items()}


def task_groups(rows: Iterable[ResultRow], groups: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Every task of `rows` under its group, groups and tasks in a stable order.

    A task's group is, first found: the user's `groups` (task names compared through the
    VTAB aliases), the rows' own `group` field, the paper's groups (`BUILTIN_GROUPS`), else
    `other`. Groups come in the order: the user's, the paper's, the rest as first seen.
    """
    rows = list(rows)
    user = {canonical_task_name(t): g for g, tasks in (groups or {}).items() for t in tasks}
    builtin = {t: g for g, tasks in BUILTIN_GROUPS.items() for t in tasks}
    row_group = {row.task: row.group for row in rows if row.group}
    assigned: dict[str, list[str]] = {}
    for task in dict.fromkeys(row.task for row in rows):
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
