"""The sweep's results table: `results.jsonl` and `results.csv`, one row per trial and split.

Rows are appended as trials finish (each row one write to a file opened for appending) and
the table is rewritten in a fixed order when the sweep ends, so an interrupted and rerun
sweep ends with the same table as an uninterrupted one (wall times aside).
"""

from __future__ import annotations

import csv
import io
import os
import json
from pathlib import Path
from typing import Any

from ...files import atomic_write
from .selection import validation_score

COLUMNS = (
    "trial", "task", "group", "method", "stage", "setting", "seed", "split", "top1", "top5", "auc", "n",
    "selected", "selected_epoch", "epochs", "tuned_params", "backbone_params", "bytes_per_task", "wall_seconds",
    "run_dir", "config", "error",
)
JSONL, CSV = "results.jsonl", "results.csv"


def make_row(record: dict[str, Any], rule: str, selected: bool | None) -> dict[str, Any]:
    """A table row from a trial record; tune rows carry the validation metrics `rule` reads.

    `selected` is None while the trial's arm is still being tuned.
    """
    if record["stage"] == "tune":
        metrics = validation_score(record, rule) or {}
        split = record["val"]["split"] if "val" in record else record["config"].get("eval_split")
    else:
        metrics = record.get("test", {})
        split = "test"
    row = {key: record.get(key) for key in COLUMNS}
    row.update(split=split, selected=selected, **{key: metrics.get(key) for key in ("top1", "top5", "auc", "n")})
    return row


class ResultsTable:
    """`results.jsonl` and `results.csv` in a sweep folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / JSONL, self.folder / CSV

    def append(self, row: dict[str, Any]) -> None:
        """Add one row to both files; a crash leaves whole lines only."""
        _append(self.jsonl, json.dumps(row) + "\n")
        _append(self.csv, _csv_text([row], header=False))

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace both files with `rows` (each file swapped in atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.jsonl, "".join(json.dumps(row) + "\n" for row in rows))
        atomic_write(self.csv, _csv_text(rows, header=True))

    def read(self) -> list[dict[str, Any]]:
        if not self.jsonl.is_file():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]


def _csv_text(rows: list[dict[str, Any]], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: json.dumps(v) if isinstance(v, (dict, list)) else v for key, v in row.items()})
    return buffer.getvalue()


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

