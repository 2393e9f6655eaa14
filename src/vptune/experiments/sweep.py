"""Grid sweeps over training settings, each point judged on the validation split."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from ..engine import TrainConfig, train
from ..errors import VptuneError


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def run_grid(base: TrainConfig, grid: dict[str, list[Any]], out: str | Path) -> list[dict[str, Any]]:
    """Train `base` at every grid point into `out/trial-NNN`; return each point's validation top-1.

    Head-only methods compute the frozen features once for the whole grid (see
    `TrainConfig.cache_features`).
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
