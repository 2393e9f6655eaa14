"""What a sweep covers: tasks, methods, their grids and ablation axes, and the settings all trials share.

A sweep is described by one mapping, from a YAML file and/or the command line:

    data: data                      # dataset root
    out: sweeps/vtab                # sweep folder
    tasks: [digits, {name: fashion-mnist, group: natural}]
    methods:                        # a list of names, or name -> its own settings
      linear: {}
      vpt-deep: {num_prompts: 10, grid: {lr: [0.005, 0.01]}}
    grid_name: default              # named grid: default (AdamW, reduced) or paper
    grid: {weight_decay: [0.0001, 0]}   # values that replace the named grid's, for every method
    vary: {num_prompts: [1, 5, 10]} # ablation axes: each value is tuned and retrained on its own
    seeds: 3
    select: last-epoch              # or best-epoch
    backbone: dinov2-s14-imgfocus   # any other key: a training setting or method option for all trials
    epochs: 10
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...engine import TrainConfig
from ...errors import VptuneError
from ...methods import get_method, parse_block_range
from .grid import named_grid

SELECT_RULES = ("last-epoch", "best-epoch")
LAUNCHERS = ("local", "ray")
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
# Set by the sweep for each trial; a grid or setting cannot hold them.
CONTROLLED = frozenset({"data", "task", "method", "out", "train_split", "eval_split", "quiet"})
# Keys of the sweep mapping itself; every other key is a setting shared by all trials.
SWEEP_KEYS = frozenset({"data", "out", "tasks", "methods", "grid_name", "grid", "vary", "seeds", "select",
                        "launcher", "workers", "ray_address", "cpus_per_trial", "gpus_per_trial"})


@dataclass
class TaskSpec:
    name: str
    group: str | None = None


@dataclass
class MethodSpec:
    """One method of a sweep: its fixed settings, the grid chosen over and the ablation axes."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    vary: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class SweepSpec:
    """A whole sweep. `settings` are shared by all trials (training settings and method options)."""

    data: str
    out: str
    tasks: list[TaskSpec]
    methods: list[MethodSpec]
    settings: dict[str, Any] = field(default_factory=dict)
    seeds: int = 3
    select: str = "last-epoch"
    launcher: str = "local"
    workers: int = 1
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


def build_spec(values: dict[str, Any]) -> SweepSpec:
    """A checked SweepSpec from the sweep mapping (see the module docstring).

    Raises VptuneError naming the bad key or value.
    """
    values = {key.replace("-", "_"): value for key, value in values.items()}
    for key in ("data", "tasks", "methods"):
        if not values.get(key):
            raise VptuneError(f"a sweep needs {key} (flags --data, --task, --method or keys in --config)")
    common = _settings({k: v for k, v in values.items() if k not in SWEEP_KEYS}, "settings")
    grid_name = values.get("grid_name", "default")
    grid = _axes(values.get("grid") or {}, "grid")
    vary = _axes(values.get("vary") or {}, "vary")
    spec = SweepSpec(
        data=str(Path(values["data"]).expanduser().absolute()),
        out=str(Path(values.get("out") or "sweeps/sweep").expanduser().absolute()),
        tasks=[_task(t) for t in _as_list(values["tasks"], "tasks")],
        methods=[_method(name, own or {}, common, grid_name, grid, vary)
                 for name, own in _methods(values["methods"]).items()],
        settings=common,
        seeds=values.get("seeds", 3),
        select=values.get("select", "last-epoch"),
        launcher=values.get("launcher", "local"),
        workers=values.get("workers", 1),
        ray_address=values.get("ray_address"),
        cpus_per_trial=values.get("cpus_per_trial", 1.0),
        gpus_per_trial=values.get("gpus_per_trial", 0.0),
    )
    _check(spec)
    return spec


def split_options(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, method options) of a flat settings mapping."""
    options = dict(values.get("method_options") or {})
    fields = {k: v for k, v in values.items() if k in TRAIN_FIELDS and k != "method_options"}
    options.update({k: v for k, v in values.items() if k not in TRAIN_FIELDS})
    return fields, options


def _check(spec: SweepSpec) -> None:
    if isinstance(spec.seeds, bool) or not isinstance(spec.seeds, int) or spec.seeds < 1:
        raise VptuneError(f"--seeds must be a whole number >= 1, got {spec.seeds!r}")
    if spec.select not in SELECT_RULES:
        raise VptuneError(f"--select '{spec.select}' is not one of: {', '.join(SELECT_RULES)}")
    if spec.launcher not in LAUNCHERS:
        raise VptuneError(f"--launcher '{spec.launcher}' is not one of: {', '.join(LAUNCHERS)}")
    if isinstance(spec.workers, bool) or not isinstance(spec.workers, int) or spec.workers < 1:
        raise VptuneError(f"--workers must be a whole number >= 1, got {spec.workers!r}")
    names = [t.name for t in spec.tasks]
    if len(set(names)) != len(names):
        raise VptuneError(f"tasks are listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    for method in spec.methods:
        _, options = split_options({**spec.settings, **method.settings})
        for key, values in {**method.grid, **method.vary}.items():
            if key not in TRAIN_FIELDS:
                options[key] = values[0]
        base, implied = get_method(method.name)
        base.parse_options({**implied, **options})  # MethodError for an option the method lacks


def _settings(values: dict[str, Any], where: str) -> dict[str, Any]:
    bad = sorted(set(values) & CONTROLLED)
    if bad:
        raise VptuneError(f"{', '.join(bad)} in {where} is set by the sweep for each trial; remove it")
    if isinstance(values.get("deep_blocks"), str):
        values = {**values, "deep_blocks": parse_block_range(values["deep_blocks"])}
    return dict(values)


def _axes(values: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(values, dict):
        raise VptuneError(f"{where} must map a setting to a list of values, e.g. {{lr: [0.01, 0.001]}}")
    if "seed" in values:
        raise VptuneError(f"seed in {where}: seeds are not tuned; the final runs use --seeds")
    axes = {}
    for key, options in _settings(values, where).items():
        options = options if isinstance(options, list) else [options]
        if key == "deep_blocks":
            # One range given as [i, j], or ranges written I-J.
            options = [options] if options and isinstance(options[0], int) else [parse_block_range(o) for o in options]
        if not options:
            raise VptuneError(f"{where} '{key}' has no values")
        axes[key] = options
    return axes


def _task(value: Any) -> TaskSpec:
    if isinstance(value, str):
        return TaskSpec(value)
    if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) <= {"name", "group"}:
        return TaskSpec(value["name"], value.get("group"))
    raise VptuneError(f"a task is a name or {{name: ..., group: ...}}, got {value!r}")


def _methods(value: Any) -> dict[str, dict[str, Any] | None]:
    if isinstance(value, dict):
        return value
    names = _as_list(value, "methods")
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise VptuneError(f"methods must be distinct names, got {names!r}")
    return {name: {} for name in names}


def _method(name: str, own: dict[str, Any], common: dict, grid_name: str, grid: dict, vary: dict) -> MethodSpec:
    """A method's settings and axes. A setting fixed in `common` or `own` replaces the named grid's
    axis and settings for it; explicit grid and vary values replace both."""
    if not isinstance(own, dict):
        raise VptuneError(f"method '{name}' maps to its settings (e.g. {{num_prompts: 50}}), got {own!r}")
    get_method(name)  # MethodError with a suggestion for an unknown name
    own = {key.replace("-", "_"): value for key, value in own.items()}
    grid_settings, named = named_grid(grid_name, name)
    settings = _settings({k: v for k, v in own.items() if k not in ("grid", "vary")}, f"method '{name}'")
    fixed_anywhere = set(common) | set(settings)
    method_vary = {**vary, **_axes(own.get("vary") or {}, f"method '{name}' vary")}
    method_grid = {k: v for k, v in named.items() if k not in fixed_anywhere | set(method_vary)}
    method_grid.update({**grid, **_axes(own.get("grid") or {}, f"method '{name}' grid")})
    both = sorted(set(method_grid) & set(method_vary))
    if both:
        raise VptuneError(f"{', '.join(both)} is both tuned (grid) and varied (vary) for '{name}'; keep one")
    fixed = sorted(set(settings) & (set(method_grid) | set(method_vary)))
    if fixed:
        raise VptuneError(f"{', '.join(fixed)} of method '{name}' is fixed and also in its grid; keep one")
    grid_settings = {k: v for k, v in grid_settings.items() if k not in fixed_anywhere}
    return MethodSpec(name, {**grid_settings, **settings}, method_grid, method_vary)


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return value
    raise VptuneError(f"{where} must be a list, got {value!r}")
