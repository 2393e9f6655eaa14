"""One trial of a sweep: its resolved configuration, its identity, and running it to a record.

A trial is known by a hash of its resolved configuration (runtime-only keys left out), and
its run folder is named by that hash, so a rerun finds every finished trial and resumes
the unfinished ones from their checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...accounting import storage_report
from ...backbones import build_backbone
from ...data import load_split
from ...engine import TrainConfig, evaluate_run, train
from ...engine.evaluate import run_config
from ...engine.resolve import resolved_lr
from ...engine.runfolder import TASK_FILE
from ...engine.train_state import CHECKPOINT
from ...engine.trainer import RUNTIME_KEYS
from ...errors import TrainingError, VptuneError
from ...files import atomic_write
from ...tasks import get_task_type, task_type_of
from .grid import grid_points
from .spec import MethodSpec, SweepSpec, TaskSpec, split_options

RESULT = "result.json"
STAGES = ("tune", "final")
# Sweeps select on validation top-1 (`selection.py`), so they run classification tasks.
SWEPT = get_task_type("classification")


@dataclass
class Trial:
    """One training run of a sweep and what it is for.

    `arm` names the task x method x ablation value whose tune trials compete; `order` is the
    trial's position in that arm's grid (the last tie-break of the selection).
    """

    task: str
    group: str | None
    method: str
    stage: str
    setting: dict[str, Any]
    seed: int
    config: dict[str, Any]
    arm: str
    order: int

    @property
    def id(self) -> str:
        return trial_id(self.config)

    @property
    def run_dir(self) -> Path:
        return Path(self.config["out"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Settings added after sweeps were first written, with the value that reproduces what runs did before:
# left out of the hash at that value, so an earlier sweep's finished trials keep their ids.
LATER_SETTINGS = {"normalize": "backbone"}


def trial_id(config: dict[str, Any]) -> str:
    """Hash of a resolved TrainConfig mapping, without the keys that do not change results."""
    kept = {key: value for key, value in config.items() if key not in RUNTIME_KEYS + ("out",)
            and not (key in LATER_SETTINGS and value == LATER_SETTINGS[key])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def tune_trials(spec: SweepSpec) -> list[Trial]:
    """Every grid point of every task x method x ablation value, trained on the tuning split."""
    trials = []
    for task in spec.tasks:
        kind, layout = task_type_of(spec.data, task.name)
        if kind is not SWEPT:
            raise VptuneError(f"task '{task.name}' is a {kind.name} task; vptune sweep runs {SWEPT.name} tasks "
                              f"(tune {kind.name} with vptune train, choosing on val {kind.selection_metric})")
        train_split, eval_split = kind.default_splits(layout)
        seed = spec.settings.get("seed", 0)
        for method in spec.methods:
            for vary in grid_points(method.vary):
                arm = arm_key(task.name, method.name, vary)
                for order, point in enumerate(grid_points(method.grid)):
                    setting = {**vary, **point}
                    config = _config(spec, task, method, setting, seed, train_split, eval_split, "tune")
                    trials.append(Trial(task.name, task.group, method.name, "tune", setting, seed, config, arm, order))
    return trials


def final_trials(spec: SweepSpec, chosen: list[Trial]) -> list[Trial]:
    """Each chosen tune trial retrained on the full training split with seeds 0..S-1, no validation."""
    by_name = {t.name: t for t in spec.tasks}
    methods = {m.name: m for m in spec.methods}
    trials = []
    for choice in chosen:
        kind, layout = task_type_of(spec.data, choice.task)
        split = kind.full_train_split(layout)
        for seed in range(spec.seeds):
            config = _config(spec, by_name[choice.task], methods[choice.method], choice.setting, seed, split, "",
                             "final")
            trials.append(dataclasses.replace(choice, stage="final", seed=seed, config=config))
    return trials


def arm_key(task: str, method: str, vary: dict[str, Any]) -> str:
    return json.dumps([task, method, vary], sort_keys=True)


def _config(spec: SweepSpec, task: TaskSpec, method: MethodSpec, setting: dict[str, Any], seed: int,
            train_split: str, eval_split: str, stage: str) -> dict[str, Any]:
    fields, options = split_options({**spec.settings, **method.settings, **setting})
    values = {**fields, "method_options": options, "data": spec.data, "task": task.name, "method": method.name,
              "seed": seed, "train_split": train_split, "eval_split": eval_split, "quiet": True}
    values["lr"] = resolved_lr(values.get("lr"), method.name, SWEPT)
    config = TrainConfig.from_dict(values).to_dict()
    config["out"] = str(Path(spec.out) / "runs" / task.name / method.name / trial_id(config))
    return config


def check_trials(trials: list[Trial]) -> None:
    """Check every trial's settings as `vptune train` would, and build each distinct model once
    (shapes only where the backbone allows), before a sweep writes anything.

    Raises VptuneError naming the method, task and setting whose value cannot be used.
    """
    built: set[str] = set()
    for trial in trials:
        try:
            config = TrainConfig.from_dict(trial.config)
            config.validate()
            model = [config.backbone, config.arch, config.img_size, config.allow_keys, config.method,
                     config.method_options, config.head or "linear", config.head_options]
            key = json.dumps(model, sort_keys=True, default=str)
            if key not in built:
                storage_report(config.backbone, config.method, num_classes=2, img_size=config.img_size,
                               arch=config.arch, allow_keys=tuple(config.allow_keys), head=config.head or "linear",
                               head_options=config.head_options, **config.method_options)
                built.add(key)
        except VptuneError as exc:
            setting = ", ".join(f"{k}={v}" for k, v in trial.setting.items())
            raise VptuneError(f"{trial.method} on {trial.task}{f' ({setting})' if setting else ''}: {exc}") from exc


def run_trial(trial: Trial) -> dict[str, Any]:
    """Train (or resume) and evaluate one trial; return its record, also kept as `result.json`.

    A trial whose record exists is not run again. A loss that turns non-finite ends the trial
    with an `error` in its record instead of ending the sweep.
    """
    run_dir = trial.run_dir
    if (run_dir / RESULT).is_file():
        return json.loads((run_dir / RESULT).read_text())
    started = time.time()
    config = TrainConfig.from_dict(trial.config)
    record: dict[str, Any] = {"trial": trial.id, **{k: v for k, v in trial.to_dict().items() if k != "config"}}
    try:
        if not (run_dir / TASK_FILE).is_file():
            train(config, resume=(run_dir / CHECKPOINT).is_file())
    except TrainingError as exc:
        record.update(error=str(exc), config=trial.config, run_dir=str(run_dir), wall_seconds=time.time() - started)
        return _keep(record, run_dir)
    resolved = run_config(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    if trial.stage == "tune":
        record["val"] = _validation(run_dir, resolved, summary)
    else:
        record["test"] = evaluate_run(run_dir, "test", device=config.device, quiet=True)
    record.update(
        selected_epoch=summary["selected_epoch"], epochs=resolved.epochs, tuned_params=summary["tuned_parameters"],
        head_params=summary.get("head_parameters"),
        backbone_params=backbone_params(resolved.backbone, resolved.img_size, resolved.arch,
                                        tuple(resolved.allow_keys)),
        bytes_per_task=(run_dir / TASK_FILE).stat().st_size, wall_seconds=round(time.time() - started, 2),
        run_dir=str(run_dir.absolute()), config=resolved.to_dict(),
    )
    return _keep(record, run_dir)


def _validation(run_dir: Path, config: TrainConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Validation metrics of the last epoch and of the engine's best epoch, from metrics.csv."""
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    n = len(load_split(config.data, config.task, config.eval_split, seed=config.seed).samples)

    def metrics(row: dict[str, str]) -> dict[str, Any]:
        values = {key[4:]: float(value) for key, value in row.items() if key.startswith("val_") and value != ""}
        return {"epoch": int(row["epoch"]), **values, "n": n}

    best = next(row for row in rows if int(row["epoch"]) == summary["selected_epoch"])
    return {"split": config.eval_split, "last": metrics(rows[-1]), "best": metrics(best)}


@functools.lru_cache(maxsize=8)
def backbone_params(backbone: str, img_size: int | None, arch: str | None, allow_keys: tuple[str, ...]) -> int:
    """Parameters of the frozen backbone as built for a run (before any method adds to it)."""
    module, _ = build_backbone(backbone, pretrained=False, img_size=img_size, arch=arch, allow_keys=allow_keys)
    return sum(p.numel() for p in module.parameters())


def _keep(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / RESULT, json.dumps(record, indent=1) + "\n")
    return record
