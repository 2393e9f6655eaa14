"""The paper's protocol as one call: tune on validation, choose, retrain with seeds, test."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from ...engine.runinfo import progress
from ...errors import VptuneError
from .launchers import launch
from .results import ResultsTable, make_row
from .selection import choose, validation_score
from .spec import SweepSpec
from .trials import RESULT, Trial, final_trials, tune_trials


def run_sweep(spec: SweepSpec, *, show: bool = True) -> list[dict[str, Any]]:
    """Run (or finish) the sweep `spec` describes; return the rows of its results table.

    Tune trials train on the tuning split (train800 / train) and are scored on validation;
    per task x method x ablation value the setting chosen by `spec.select` is retrained on
    the full training split with seeds 0..S-1 and evaluated on test. Finished trials of an
    earlier attempt are reused, unfinished ones resumed from their checkpoints.
    """
    return _Sweep(spec, show).run()


class _Sweep:
    def __init__(self, spec: SweepSpec, show: bool) -> None:
        self.spec, self.show = spec, show
        self.table = ResultsTable(spec.out)
        self.records: dict[str, dict[str, Any]] = {}
        self.best: float | None = None
        self.bar = None

    def run(self) -> list[dict[str, Any]]:
        spec = self.spec
        tune = _unique(tune_trials(spec))  # reads every task's layout first: bad data fails before any write
        Path(spec.out).mkdir(parents=True, exist_ok=True)
        (Path(spec.out) / "sweep.yaml").write_text(yaml.safe_dump(dataclasses.asdict(spec), sort_keys=False))
        self._load_kept(tune)
        arms = len({t.arm for t in tune})
        self.bar = progress(range(len(tune) + arms * spec.seeds), "sweep", enabled=self.show)
        self.bar.update(len(self.records))
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

    def _on_record(self, record: dict[str, Any]) -> None:
        if record["trial"] in self.records:
            return
        self.records[record["trial"]] = record
        self.table.append(make_row(record, self.spec.select, None if record["stage"] == "tune" else True))
        self._note_best(record)
        self.bar.update(1)

    def _note_best(self, record: dict[str, Any]) -> None:
        score = validation_score(record, self.spec.select) if record["stage"] == "tune" else None
        if score is not None and (self.best is None or score["top1"] > self.best):
            self.best = score["top1"]
            if self.bar is not None:
                self.bar.set_postfix_str(f"best val top1 {self.best:.4f}")

    def _rows(self, tune: list[Trial], finals: list[Trial], chosen: dict[str, str] | None) -> list[dict[str, Any]]:
        rows = []
        for trial in tune + finals:
            record = self.records.get(trial.id)
            if record is None:
                continue
            selected = True if trial.stage == "final" else None if chosen is None else chosen.get(trial.arm) == trial.id
            rows.append(make_row(record, self.spec.select, selected))
        return rows


def _unique(trials: list[Trial]) -> list[Trial]:
    seen: dict[str, Trial] = {}
    for trial in trials:
        if trial.id in seen:
            raise VptuneError(f"settings {seen[trial.id].setting} and {trial.setting} of {trial.method} on "
                              f"{trial.task} give the same run; drop one of them from the grid")
        seen[trial.id] = trial
    return trials


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per task x method x ablation value: chosen setting, its validation and mean test top-1."""
    lines: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if row["stage"] == "tune" and row["selected"]:
            lines[(row["task"], row["method"], json.dumps(row["setting"], sort_keys=True))] = {
                "task": row["task"], "method": row["method"], "setting": row["setting"], "val_top1": row["top1"],
                "test": []}
    for row in rows:
        key = (row["task"], row["method"], json.dumps(row["setting"], sort_keys=True))
        if row["stage"] == "final" and key in lines and row["top1"] is not None:
            lines[key]["test"].append(row["top1"])
    for line in lines.values():
        tests = line.pop("test")
        line.update(seeds=len(tests), test_top1=statistics.mean(tests) if tests else None,
                    test_std=statistics.stdev(tests) if len(tests) > 1 else 0.0)
    return list(lines.values())


def format_summary(lines: list[dict[str, Any]]) -> str:
    """The summary as a text table."""
    out = [f"{'task':<16} {'method':<14} {'val top-1':>9} {'test top-1':>18}  setting"]
    for line in lines:
        test = "-" if line["test_top1"] is None else f"{line['test_top1']:.4f} ± {line['test_std']:.4f} (n={line['seeds']})"
        setting = ", ".join(f"{k}={v}" for k, v in line["setting"].items())
        out.append(f"{line['task']:<16} {line['method']:<14} {line['val_top1']:>9.4f} {test:>18}  {setting}")
    return "\n".join(out)
