"""Task types: one registered object per kind of task (its data, head, recipe, loss, metrics and evaluation).

A new task type is one module registering a `TaskType` subclass, plus its import below.
"""

from __future__ import annotations

from typing import Any

from ..data.formats import resolve_task_dir
from ..errors import VptuneError
from .base import TASK_TYPES, Meter, Scoring, TaskType
from . import classification, segmentation, multilabel  # noqa: F401  (registration)


def get_task_type(name: str) -> TaskType:
    """The task type called `name`; VptuneError with a suggestion otherwise."""
    return TASK_TYPES.get(name)


def task_type_of(data: str, task: str) -> tuple[TaskType, str]:
    """The task type of the task folder `<data>/<task>` and the name of the layout it is stored in.

    Each task type is asked in turn; the fallback (classification) last, which raises DataError
    naming the layouts when the folder is in none.
    """
    task_dir = resolve_task_dir(data, task)
    for kind in sorted(TASK_TYPES, key=lambda t: t.fallback):
        layout = kind.find_layout(task_dir)
        if layout is not None:
            return kind, layout
    raise VptuneError(f"{task_dir} is in no layout of a task type ({', '.join(TASK_TYPES.names())})")


def check_eval_options(kind: TaskType, options: dict[str, Any]) -> None:
    """VptuneError for an evaluation option (set) that task type `kind` does not take."""
    for name, value in options.items():
        if value and name not in kind.eval_options:
            takers = [t.name for t in TASK_TYPES if name in t.eval_options]
            raise VptuneError(f"--{name.replace('_', '-')} applies to {' and '.join(takers)} runs; "
                              f"this run is {kind.name}")


__all__ = ["TASK_TYPES", "Meter", "Scoring", "TaskType", "check_eval_options", "get_task_type", "task_type_of"]
