"""Choosing one setting per task x method (x ablation value) from validation, never from test.

The paper's rule reads the validation top-1 of the final epoch; `best-epoch` reads the
engine's best epoch instead. Ties go to the smaller learning rate, then to the earlier grid
point.
"""

from __future__ import annotations

from typing import Any


def validation_score(record: dict[str, Any], rule: str) -> dict[str, Any] | None:
    """The validation metrics a tune record is judged by under `rule`; None for a failed trial."""
    if "val" not in record:
        return None
    return record["val"]["last" if rule == "last-epoch" else "best"]


def choose(records: list[dict[str, Any]], rule: str) -> dict[str, str]:
    """For each arm, the id of its chosen tune trial (arms whose trials all failed are left out)."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        if validation_score(record, rule) is None:
            continue
        current = chosen.get(record["arm"])
        if current is None or _rank(record, rule) < _rank(current, rule):
            chosen[record["arm"]] = record
    return {arm: record["trial"] for arm, record in chosen.items()}


def _rank(record: dict[str, Any], rule: str) -> tuple[float, float, int]:
    return (-validation_score(record, rule)["top1"], record["config"]["lr"], record["order"])
