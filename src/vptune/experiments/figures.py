"""The paper's ablation figures from a sweep's results: prompt length, depth, location,
final output and training-data fraction, one panel per task group.

Figures are built on `matplotlib.figure.Figure` (no pyplot state) and saved as PNG and SVG.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from matplotlib.figure import Figure

from ..files import atomic_path, filled_folder
from .report import FULL, LINEAR, format_value
from .results_table import ResultRow, ResultsError
from .seeds import over_seeds
from .task_groups import group_title, task_groups

# Ablation settings in the order the paper shows them, with their axis titles.
ABLATIONS = {
    "num_prompts": "Prompt length (tokens)",
    "deep_blocks": "Prompt depth (blocks i-j)",
    "location": "Prompt location",
    "output": "Final output",
    "train_fraction": "Training data fraction",
}
REFERENCES = {LINEAR: ("Linear", "--", "tab:gray"), FULL: ("Full", ":", "black")}
ERROR_RULE = "error bars: std over seeds, averaged over the group's tasks"


def varying_ablations(rows: list[ResultRow]) -> list[str]:
    """The ablation settings that take more than one value among the rows (Linear and Full aside)."""
    values: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.method not in REFERENCES:
            for key in ABLATIONS:
                if key in row.setting:
                    values[key].add(json.dumps(row.setting[key]))
    return [key for key in ABLATIONS if len(values[key]) > 1]


def ablation_figure(rows: list[ResultRow], key: str, groups: dict[str, list[str]] | None = None) -> Figure:
    """One figure for ablation `key`: a panel per task group, a line per method, y = mean top-1.

    Uses the final-stage (test) rows when `key` varies among them, else the tuning-stage
    (validation) rows; the y label says which. Where a method tried other settings too
    (e.g. several lr) at one value of `key`, each task counts its best setting by mean over
    seeds. Linear and Full rows, where present, are horizontal reference lines.
    """
    stage = "final" if key in varying_ablations([r for r in rows if r.stage == "final"]) else "tune"
    staged = [r for r in rows if r.stage == stage]
    if key not in varying_ablations(staged):
        raise ResultsError(f"setting '{key}' does not vary in the table; ablations that do: "
                           f"{', '.join(varying_ablations(rows)) or 'none'}")
    grouped = task_groups(staged, groups)
    best = _best_per_value(staged, key)
    # Numbers in increasing order; block ranges, locations and outputs as the sweep wrote them.
    x_values = sorted(dict.fromkeys(x for (method, _, x) in best if method not in REFERENCES), key=_sort_key)
    methods = list(dict.fromkeys(m for (m, _, _) in best if m not in REFERENCES))
    split = "test" if stage == "final" else "validation"

    fig = Figure(figsize=(4.6 * len(grouped) + 0.8, 4.2), layout="constrained")
    axes = fig.subplots(1, len(grouped), squeeze=False)[0]
    positions = range(len(x_values))
    for ax, (group, members) in zip(axes, grouped.items()):
        for method in methods:
            points = [_group_point(best, method, members, x) for x in x_values]
            shown = [(p, mean, err) for p, (mean, err) in zip(positions, points) if mean is not None]
            if shown:
                pos, means, errs = zip(*shown)
                yerr = None if any(e is None for e in errs) else [100 * e for e in errs]
                ax.errorbar(pos, [100 * m for m in means], yerr=yerr, marker="o", capsize=3, label=method)
        for method, (label, style, colour) in REFERENCES.items():
            mean, _ = _group_point(best, method, members, None)
            if mean is not None:
                ax.axhline(100 * mean, linestyle=style, color=colour, label=label)
        ax.set_xticks(list(positions), [format_value(json.loads(x)) for x in x_values])
        ax.set_xlabel(ABLATIONS[key])
        ax.set_ylabel(f"Mean {split} top-1 (%)")
        ax.set_title(f"{group_title(group)} ({len(members)} task{'s' * (len(members) > 1)})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{ABLATIONS[key].split(' (')[0]}: mean {split} top-1 over each group's tasks\n({ERROR_RULE})",
                 fontsize="small")
    return fig


def _best_per_value(rows: list[ResultRow], key: str) -> dict[tuple[str, str, str | None], tuple[float, float | None]]:
    """(method, task, value of key) -> (mean, std) over seeds of the best other settings."""
    scores: dict[tuple[str, str, str | None], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        setting = dict(row.setting)
        x = json.dumps(setting.pop(key)) if key in setting else None
        if x is None and row.method not in REFERENCES:
            continue
        scores[(row.method, row.task, x)][json.dumps(setting, sort_keys=True)].append(row.top1)
    best = {}
    for point, by_setting in scores.items():
        seeds = max((over_seeds(values) for values in by_setting.values()), key=lambda s: s.mean)
        best[point] = (seeds.mean, seeds.std)
    return best


def _group_point(best: dict, method: str, members: list[str], x: str | None) -> tuple[float | None, float | None]:
    found = [best[(method, task, x)] for task in members if (method, task, x) in best]
    if method in REFERENCES:
        # A reference has no ablated setting: its rows count whatever their value of the key.
        found = [v for (m, t, _), v in best.items() if m == method and t in members]
    if not found:
        return None, None
    stds = [s for _, s in found]
    return statistics.fmean(m for m, _ in found), None if None in stds else statistics.fmean(stds)


def _sort_key(x: str) -> float:
    value = json.loads(x)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` to `path` in the format its suffix names (150 dpi), whole or not at all."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format=path.suffix[1:].lower())
    return path


def plot_ablations(rows: list[ResultRow], out: str | Path, groups: dict[str, list[str]] | None = None) -> list[Path]:
    """Save `ablation-<setting>.png/.svg` in the folder `out` (created if missing) for every ablation
    setting that varies. Every figure is drawn before the first file is written."""
    keys = varying_ablations(rows)
    if not keys:
        raise ResultsError(f"no ablation setting ({', '.join(ABLATIONS)}) takes several values in the table; "
                           "sweep one of them to plot it")
    figures = {key: ablation_figure(rows, key, groups) for key in keys}
    with filled_folder(Path(out)) as folder:
        return [save_figure(fig, folder / f"ablation-{key}{suffix}")
                for key, fig in figures.items() for suffix in (".png", ".svg")]
