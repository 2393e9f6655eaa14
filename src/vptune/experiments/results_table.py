"""A sweep's results table: its typed row, and the `results.jsonl` / `results.csv` files that hold it.

`vptune sweep --out DIR` writes `DIR/results.jsonl` and `DIR/results.csv`, one `ResultRow` per
task x method x setting x seed x split. `ResultRow` is the one place the columns are defined;
`to_json` / `from_json` and `to_csv` / `from_csv` round-trip it. `read_rows` reads a table as
users may have edited it and refuses, in one line naming file, line and column, a value no
report could use (NaN, a word where a number belongs, a setting that is not a mapping, an
unknown stage, a missing column, an empty file).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VptuneError
from ..files import atomic_write, write_error

logger = logging.getLogger("vptune")

JSONL, CSV = "results.jsonl", "results.csv"
STAGES = ("tune", "final")


class ResultsError(VptuneError):
    """A results table or groups file is missing or malformed."""


@dataclass(kw_only=True)
class ResultRow:
    """One trial scored on one split; the fields, in order, are the table's columns.

    `stage` "tune": the tuning split trained, scored on validation (the numbers the selection
    reads); "final": the full training split trained, scored on test. `setting` holds the grid
    and ablation values, `config` the resolved TrainConfig; `error` is set (and the metrics
    empty) when the trial failed.
    """

    trial: str | None = None
    task: str
    group: str | None = None
    method: str
    stage: str
    setting: dict[str, Any] = field(default_factory=dict)
    seed: int
    split: str | None = None
    top1: float | None = None
    top5: float | None = None
    auc: float | None = None
    n: int | None = None
    selected: bool | None = None
    selected_epoch: int | None = None
    epochs: int | None = None
    tuned_params: int | None = None
    head_params: int | None = None
    backbone_params: int | None = None
    bytes_per_task: int | None = None
    wall_seconds: float | None = None
    run_dir: str | None = None
    config: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object, keys in `COLUMNS` order."""
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_json(cls, values: Any, where: str = "row") -> "ResultRow":
        """A row from a JSON object; ResultsError (prefixed with `where`) for a value it cannot hold."""
        if not isinstance(values, dict):
            raise ResultsError(f"{where}: expected a JSON object, got {type(values).__name__}")
        return cls._checked({name: values.get(name) for name in COLUMNS}, where, text=False)

    def to_csv(self) -> dict[str, str]:
        """The row as CSV cells: mappings as JSON, None as an empty cell."""
        cells = {}
        for name in COLUMNS:
            value = getattr(self, name)
            cells[name] = "" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)
        return cells

    @classmethod
    def from_csv(cls, cells: dict[str, str | None], where: str = "row") -> "ResultRow":
        """A row from CSV cells (as `to_csv` writes them); ResultsError for a cell it cannot hold."""
        values = {name: None if cells.get(name) in (None, "") else cells[name].strip() for name in COLUMNS}
        return cls._checked(values, where, text=True)

    @classmethod
    def _checked(cls, values: dict[str, Any], where: str, *, text: bool) -> "ResultRow":
        typed = {name: _typed(name, value, text, where) for name, value in values.items()}
        missing = [name for name in REQUIRED if typed[name] is None]
        if typed["top1"] is None and not typed["error"]:
            missing.append("top1")
        if missing:
            raise ResultsError(f"{where}: no value for {', '.join(missing)}; is this a `vptune sweep` table?")
        if typed["n"] == 0 and typed["top1"] is not None:
            raise ResultsError(f"{where}: n is 0, so top1 {typed['top1']} scores no image; n counts the images scored")
        if typed["stage"] not in STAGES:
            raise ResultsError(f"{where}: stage '{typed['stage']}' is neither tune nor final")
        for name in ("task", "method"):
            if not typed[name]:
                raise ResultsError(f"{where}: {name} is empty")
        if typed["setting"] is None:
            typed["setting"] = {}
        return cls(**typed)


COLUMNS = tuple(f.name for f in dataclasses.fields(ResultRow))
REQUIRED = ("task", "method", "stage", "seed")
_METRICS = ("top1", "top5", "auc")
_BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _typed(name: str, value: Any, text: bool, where: str) -> Any:
    """`value` as the column's type; text cells (CSV) are parsed. ResultsError names the column."""
    if value is None:
        return None
    kind = _KINDS[name]
    problem = f"{where}: {name} must be {_KIND_WORDS[kind]}, got {value!r}"
    if kind is dict:
        if text:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ResultsError(f"{problem} (not JSON)") from None
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise ResultsError(problem)
        return value
    if kind is bool:
        if text and isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise ResultsError(problem)
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ResultsError(problem)
        return value
    number = _number(value, text)
    if number is None or not math.isfinite(number):
        raise ResultsError(problem)
    if kind is int:
        if number != int(number):
            raise ResultsError(problem)
        number = int(number)
    if number < 0 or (name in _METRICS and number > 1):
        raise ResultsError(f"{problem}{' (a fraction in [0, 1])' if name in _METRICS else ''}")
    return number


def _number(value: Any, text: bool) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if text and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _kind(annotation: Any) -> type:
    """The type a column holds: `int` for `int | None`, `dict` for `dict[str, Any]`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


_KINDS = {name: _kind(hint) for name, hint in typing.get_type_hints(ResultRow).items()}
_KIND_WORDS = {dict: "a mapping of name: value", bool: "true or false", str: "text",
               int: "a whole number >= 0", float: "a finite number >= 0"}


# ---------------------------------------------------------------- reading


def results_file(path: str | Path) -> Path:
    """The table to read: `path` itself, or `results.jsonl` (else `results.csv`) in a sweep folder."""
    path = Path(path)
    if path.is_dir():
        for name in (JSONL, CSV):
            if (path / name).is_file():
                return path / name
        raise ResultsError(f"{path} holds no {JSONL} or {CSV}; pass the folder `vptune sweep --out` wrote")
    if not path.is_file():
        raise ResultsError(f"results table {path} does not exist; pass a sweep folder or its {JSONL}/{CSV}")
    if path.suffix not in (".jsonl", ".csv"):
        raise ResultsError(f"{path} is neither .jsonl nor .csv; pass a sweep's {JSONL} or {CSV}")
    return path


def read_rows(file: str | Path) -> list[ResultRow]:
    """Every row of a results.jsonl or results.csv file, typed; ResultsError naming file, line and column."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{file} is not UTF-8 text; pass a sweep's {JSONL} or {CSV}") from None
    except OSError as exc:
        raise ResultsError(f"cannot read {file}: {exc.strerror or exc}") from exc
    rows = _jsonl_rows(file, text) if file.suffix == ".jsonl" else _csv_rows(file, text)
    if not rows:
        raise ResultsError(f"{file} holds no rows; wait for the sweep to finish a trial")
    return rows


def _jsonl_rows(file: Path, text: str) -> list[ResultRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{file} line {number}: not a JSON object ({exc.msg})") from exc
        rows.append(ResultRow.from_json(values, f"{file} line {number}"))
    return rows


def _csv_rows(file: Path, text: str) -> list[ResultRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if not header:
        return []
    lacking = [name for name in (*REQUIRED, "top1") if name not in header]
    if lacking:
        raise ResultsError(f"{file} has no column {', '.join(lacking)}; is this a `vptune sweep` table?")
    rows = []
    for cells in reader:
        where = f"{file} line {reader.line_num}"
        if None in cells or any(value is None for value in cells.values()):
            count = sum(value is not None for key, value in cells.items() if key is not None) + len(cells.get(None, []))
            raise ResultsError(f"{where}: has {count} cells where the header has {len(header)} columns")
        rows.append(ResultRow.from_csv(cells, where))
    return rows


def load_results(paths: list[str | Path], notes: list[str] | None = None) -> list[ResultRow]:
    """The rows of finished trials in one or more sweep tables (folders, results.jsonl or results.csv).

    Rows of failed trials (a non-empty `error`) are left out, and a trial that two tables
    hold (the same settings in two sweeps) is counted once; each is said in one line, appended
    to `notes` when given (for a caller that says them only once its work succeeded), else
    logged. Raises ResultsError for a missing or malformed table, a table given twice, or a
    table that holds one trial twice.
    """
    files = [results_file(path) for path in paths]
    seen_files: dict[Path, Path] = {}
    for file in files:
        if file.resolve() in seen_files:
            raise ResultsError(f"{file} is given twice (also as {seen_files[file.resolve()]}); give each table once")
        seen_files[file.resolve()] = file
    rows, failed, shared, claimed = [], 0, 0, {}
    for file in files:
        for row in read_rows(file):
            if row.error:
                failed += 1
                continue
            key = (row.trial, row.stage, row.seed, row.split)
            if row.trial is not None and key in claimed:
                if claimed[key] == file:
                    raise ResultsError(f"{file} holds two rows of trial {row.trial} ({row.stage}, seed {row.seed}, "
                                       f"{row.split}); keep one of them")
                shared += 1  # the same trial in two sweeps (e.g. the Linear reference of two ablations)
                continue
            claimed[key] = file
            rows.append(row)
    said = []
    if failed:
        said.append(f"left out {failed} row{'s' * (failed > 1)} of failed trials (their error column is set)")
    if shared:
        said.append(f"counted {shared} row{'s' * (shared > 1)} once that another table holds too (the same trials)")
    for note in said:
        if notes is None:
            logger.info(note)
        else:
            notes.append(note)
    if not rows:
        raise ResultsError(f"{', '.join(map(str, files))} hold{'s' * (len(files) == 1)} no rows of finished trials")
    return rows


# ---------------------------------------------------------------- writing


class ResultsTable:
    """`results.jsonl` and `results.csv` in a sweep folder.

    Rows are appended as trials finish (each row one write to a file opened for appending, so
    a crash leaves whole lines only) and the table is rewritten in a fixed order at the end.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / JSONL, self.folder / CSV

    def exists(self) -> bool:
        return self.jsonl.is_file() or self.csv.is_file()

    def read(self) -> list[ResultRow]:
        """The rows `results.jsonl` holds (none when it is missing or empty)."""
        if not self.jsonl.is_file() or not self.jsonl.read_text(encoding="utf-8").strip():
            return []
        return read_rows(self.jsonl)

    def append(self, row: ResultRow) -> None:
        """Add one row to both files (a CSV an earlier version wrote with other columns is rewritten first)."""
        _append(self.jsonl, json.dumps(row.to_json()) + "\n")
        fresh = not self.csv.is_file() or self.csv.stat().st_size == 0
        if not fresh and _header(self.csv) != list(COLUMNS):
            atomic_write(self.csv, _csv_text(self.read(), header=True))
        else:
            _append(self.csv, _csv_text([row], header=fresh))

    def rewrite(self, rows: list[ResultRow]) -> None:
        """Replace both files with `rows` (each file swapped in atomically)."""
        atomic_write(self.jsonl, "".join(json.dumps(row.to_json()) + "\n" for row in rows))
        atomic_write(self.csv, _csv_text(rows, header=True))


def _csv_text(rows: list[ResultRow], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    return buffer.getvalue()


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle), [])


def _append(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from exc


def table_files(path: str | Path) -> list[Path]:
    """`path` and the table files of the sweep it belongs to: what a command reading it must not overwrite."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name in (JSONL, CSV) else None
    return [path] + ([folder / JSONL, folder / CSV] if folder is not None else [])
