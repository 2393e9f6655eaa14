"""The paper's protocol as one call: tune on validation, choose, retrain with seeds, test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...engine.runinfo import progress
from ...errors import VptuneError
from ...files import filled_folder
from ..results_table import COLUMNS, ResultRow, ResultsTable
from ..seeds import SeedScores, over_seeds
from .launchers import launch
from .selection import choose, validation_score
from .spec import SweepSpec
from .folder import check_sweep_folder, record_sweep
from .trials import RESULT, Trial, check_trials, final_trials, tune_trials


def run_sweep(spec: SweepSpec, *, show: bool = True) -> list[ResultRow]:
    """Run (or finish) the sweep `spec` describes; return the rows of its results table.

    Tune trials train on the tuning split (train800 / train) and are scored on validation;
    per task x method x ablation value the setting chosen by `spec.select` is retrained on
    the full training split with seeds 0..S-1 and evaluated on test. Finished trials of an
    earlier attempt are reused, unfinished ones resumed from their checkpoints. Every trial's
    settings and the `--out` folder are checked before anything is written (VptuneError).
    """
    return _Sweep(spec, show).run()


class _Sweep:
    def __init__(self, spec: SweepSpec, show: bool) -> None:
        self.spec, self.show = spec, show
        self.table = ResultsTable(spec.out)
        self.records: dict[str, dict[str, Any]] = {}
        self.in_table: set[tuple[str | None, str]] = set()
        self.best: float | None = None
        self.bar = None

    def run(self) -> list[ResultRow]:
        spec = self.spec
        tune = _unique(tune_trials(spec))  # reads every task's layout first: bad data fails before any write
        check_trials(tune)
        check_sweep_folder(spec)
        if self.table.exists():  # a rerun: the rows of the earlier attempt stay until the table is rewritten whole
            self.in_table = {(row.trial, row.stage) for row in self.table.read()}
        with filled_folder(Path(spec.out)):
            record_sweep(spec)
        self._load_kept(tune)
        arms = len({t.arm for t in tune})
        self.bar = progress(range(len(tune) + arms * spec.seeds), "sweep", enabled=self.show)
        self.bar.update(len(self.records))
        if not self.table.exists():
            self.table.rewrite(self._rows(tune, [], None))
        launch(spec, "tune", tune, self._on_record)
        chosen = choose([self.records[t.id] for t in tune], spec.select)
        finals = _unique(final_trials(spec, [t for t in tune if chosen.get(t.arm) == t.id]))
        known = len(self.records)
        self._load_kept(finals)
        self.bar.update(len(self.records) - known)
        launch(spec, "final", finals, self._on_record)
        self.bar.close()
        rows = self._rows(tune, finals, chosen)
        self.table.rewrite(rows)
        return rows

    def _load_kept(self, trials: list[Trial]) -> None:
        for trial in trials:
            if (trial.run_dir / RESULT).is_file():
                self.records[trial.id] = json.loads((trial.run_dir / RESULT).read_text())
                self._note_best(self.records[trial.id])
                self._append(self.records[trial.id])

    def _on_record(self, record: dict[str, Any]) -> None:
        if record["trial"] in self.records:
            return
        self.records[record["trial"]] = record
        self._append(record)
        self._note_best(record)
        self.bar.update(1)

    def _append(self, record: dict[str, Any]) -> None:
        """Add a finished trial's row to the table unless the table holds it already."""
        key = (record["trial"], record["stage"])
        if key not in self.in_table and self.table.exists():
            self.table.append(trial_row(record, self.spec.select, None if record["stage"] == "tune" else True))
            self.in_table.add(key)

    def _note_best(self, record: dict[str, Any]) -> None:
        score = validation_score(record, self.spec.select) if record["stage"] == "tune" else None
        if score is not None and (self.best is None or score["top1"] > self.best):
            self.best = score["top1"]
            if self.bar is not None:
                self.bar.set_postfix_str(f"best val top1 {self.best:.4f}")

    def _rows(self, tune: list[Trial], finals: list[Trial], chosen: dict[str, str] | None) -> list[ResultRow]:
        rows = []
        for trial in tune + finals:
            record = self.records.get(trial.id)
            if record is None:
                continue
            selected = True if trial.stage == "final" else None if chosen is None else chosen.get(trial.arm) == trial.id
            rows.append(trial_row(record, self.spec.select, selected))
        self.in_table = {(row.trial, row.stage) for row in rows}
        return rows


def trial_row(record: dict[str, Any], rule: str, selected: bool | None) -> ResultRow:
    """The table row of a trial record; tune rows carry the validation metrics `rule` reads.

    `selected` is None while the trial's arm is still being tuned.
    """
    if record["stage"] == "tune":
        metrics = validation_score(record, rule) or {}
        split = record["val"]["split"] if "val" in record else record["config"].get("eval_split")
    else:
        metrics = record.get("test", {})
        split = "test"
    values = {key: record.get(key) for key in COLUMNS}
    values.update(split=split, selected=selected, **{key: metrics.get(key) for key in ("top1", "top5", "auc", "n")})
    return ResultRow(**values)


def _unique(trials: list[Trial]) -> list[Trial]:
    seen: dict[str, Trial] = {}
    for trial in trials:
        if trial.id in seen:
            raise VptuneError(f"settings {seen[trial.id].setting} and {trial.setting} of {trial.method} on "
                              f"{trial.task} give the same run; drop one of them from the grid")
        seen[trial.id] = trial
    return trials


def summary(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """One line per task x method x ablation value: chosen setting, its validation top-1 and the test
    top-1 over seeds (`test`: SeedScores, None before any final run finished)."""
    lines: dict[tuple, dict[str, Any]] = {}
    tests: dict[tuple, list[float]] = {}
    for row in rows:
        if row.stage == "tune" and row.selected:
            key = (row.task, row.method, json.dumps(row.setting, sort_keys=True))
            lines[key] = {"task": row.task, "method": row.method, "setting": row.setting, "val_top1": row.top1}
            tests[key] = []
    for row in rows:
        key = (row.task, row.method, json.dumps(row.setting, sort_keys=True))
        if row.stage == "final" and key in lines and row.top1 is not None:
            tests[key].append(row.top1)
    for key, line in lines.items():
        line["test"] = over_seeds(tests[key]) if tests[key] else None
    return list(lines.values())


def format_summary(lines: list[dict[str, Any]]) -> str:
    """The summary as a text table; one seed shows as `(n=1)`, without a spread."""
    out = [f"{'task':<16} {'method':<14} {'val top-1':>9} {'test top-1':>18}  setting"]
    for line in lines:
        test: SeedScores | None = line["test"]
        shown = "-" if test is None else test.text()
        setting = ", ".join(f"{k}={v}" for k, v in line["setting"].items())
        out.append(f"{line['task']:<16} {line['method']:<14} {line['val_top1']:>9.4f} {shown:>18}  {setting}")
    return "\n".join(out)
