"""Grids of training settings and method options: named grids, `KEY=V1,V2` parsing, expansion."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import yaml

from ...engine import TrainConfig, train
from ...errors import VptuneError
from ...methods import get_method, parse_block_range

# The authors' grid (shared/vpt-notes.md): SGD with momentum 0.9, lr scaled by batch/256.
PAPER_LRS = [50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05]
PAPER_WEIGHT_DECAYS = [0.01, 0.001, 0.0001, 0.0]
# A reduced AdamW grid that a CPU can afford (README "Sweeps" has the runs behind it): each
# method's own `lr_grid` x these weight decays.
DEFAULT_WEIGHT_DECAYS = [1e-4, 0.0]

GRID_NAMES = ("default", "paper")


def named_grid(name: str, method: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(settings, grid) of the named grid for `method`: `default` (AdamW, reduced) or `paper`."""
    if name == "paper":
        return {"optimizer": "sgd", "momentum": 0.9, "scale_lr": True}, {
            "lr": list(PAPER_LRS), "weight_decay": list(PAPER_WEIGHT_DECAYS)}
    if name == "default":
        lrs = get_method(method)[0].lr_grid
        return {"optimizer": "adamw"}, {"lr": list(lrs), "weight_decay": list(DEFAULT_WEIGHT_DECAYS)}
    raise VptuneError(f"unknown grid '{name}'; named grids: {', '.join(GRID_NAMES)}")


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order (the first key varies slowest)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def parse_value(text: str) -> Any:
    """A grid value from the command line: int, float (1e-4 too), then YAML (true, [1, 6], add)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_grid_item(item: str) -> tuple[str | None, str, list[Any]]:
    """'[METHOD:]KEY=V1,V2' -> (method or None, key, values); `deep_blocks` values read as I-J."""
    target, sep, values = item.partition("=")
    method, _, key = target.rpartition(":")
    key = key.strip().replace("-", "_")
    if not sep or not key or not values.strip():
        raise VptuneError(f"grid values take [METHOD:]KEY=V1,V2 (e.g. lr=0.01,0.001), got '{item}'")
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if key == "deep_blocks":
        parsed = [parse_block_range(v) for v in parsed]
    return method or None, key, parsed


def run_grid(base: TrainConfig, grid: dict[str, list[Any]], out: str | Path) -> list[dict[str, Any]]:
    """Train `base` at every grid point into `out/trial-NNN`; return each point's best validation top-1.

    Head-only methods compute the frozen features once for the whole grid (see
    `TrainConfig.cache_features`). `vptune sweep` (experiments.sweep.run_sweep) runs the
    whole protocol; this is the bare loop over one task and method.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(grid) - fields)
    if unknown:
        raise VptuneError(f"grid keys {', '.join(unknown)} are not training settings")
    if not base.eval_split and base.eval_split is not None:
        raise VptuneError("a sweep needs a validation split to judge its points; set eval_split")
    results = []
    for index, point in enumerate(grid_points(grid)):
        config = dataclasses.replace(base, out=str(Path(out) / f"trial-{index:03d}"), **point)
        summary = train(config)
        results.append({**point, "val_top1": summary["val_top1"], "selected_epoch": summary["selected_epoch"]})
    return results


def best_point(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The grid point with the highest validation top-1 (the first one on ties)."""
    return max(results, key=lambda r: r["val_top1"])
