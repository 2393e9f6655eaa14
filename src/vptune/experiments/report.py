"""The paper's result tables from a sweep's results: test top-1 per task and group, wins over
Full, tuned parameters with the "Total params" multiple, the setting each task chose, and the
numbers the PETL community compares (`comparison.py`: both VTAB-1k averages, share, PPT, normalisation).

`build_report(rows, groups)` computes everything; `to_markdown`, `to_csv` and `to_json` write it.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from ..accounting import total_multiple
from . import comparison
from .markdown import markdown_table, pct
from .results_table import ResultRow, ResultsError
from .seeds import STD_RULE, SeedScores, over_seeds
from .task_groups import group_title, task_groups

FULL, LINEAR = "full", "linear"
AVERAGING_RULE = (
    "Group mean: mean over the group's tasks of each task's mean over seeds. Mean of groups: mean of "
    "the group means. Mean of tasks: plain mean over all tasks. A mean is left out when the method "
    "lacks a task it covers."
)
TOTAL_PARAMS_RULE = (
    "Total params for T tasks: (backbone + T x tuned params per task) / backbone; Full shares nothing, "
    "so T x its tuned params / backbone. Tuned params include the head."
)


@dataclass
class Report:
    """Everything `vptune report` prints; top-1 values are fractions as the sweep stores them."""

    tasks: list[str]
    groups: dict[str, list[str]]
    methods: list[str]
    scores: dict[str, dict[str, SeedScores]]  # method -> task -> test top-1 over seeds
    group_means: dict[str, dict[str, float | None]]  # method -> group -> mean
    mean_of_groups: dict[str, float | None]
    mean_of_tasks: dict[str, float | None]
    wins: dict[str, dict[str, list[int]]] | None  # method -> group -> [wins, tasks compared]; None without Full
    backbone_params: int | None
    tuned_params: dict[str, dict[str, int]]  # method -> task -> tuned params
    total_params: dict[str, float | None]  # method -> multiple for len(tasks) tasks
    settings: dict[str, dict[str, list[dict[str, Any]]]]  # task -> method -> chosen settings with their seeds
    comparison: comparison.Comparison  # VTAB-1k averages, parameter share, PPT, normalisation


def build_report(rows: list[ResultRow], groups: dict[str, list[str]] | None = None) -> Report:
    """Compute the report of a sweep's rows (see `results_table.load_results`).

    Final-stage rows give the test scores; tune rows with `selected` give the chosen settings.
    A method whose final rows hold several values of a setting for one task and seed (an
    ablation) is reported once per value, labelled e.g. `vpt-deep (num_prompts=10)`.
    Raises ResultsError when no final rows exist or rows mix backbones of different sizes.
    """
    final = [row for row in rows if row.stage == "final"]
    if not final:
        raise ResultsError("the table holds no final-stage rows yet; a sweep writes them after tuning each task")
    labels = method_labels(final)
    per_seed: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    params: dict[str, dict[str, int]] = defaultdict(dict)
    for row, label in zip(final, labels):
        per_seed[label][row.task].append(row.top1)
        if row.tuned_params is not None:
            params[label][row.task] = row.tuned_params
    grouped = task_groups(final, groups)
    tasks = [task for members in grouped.values() for task in members]
    methods = _method_order(labels)
    scores = {m: {t: over_seeds(v) for t, v in per_seed[m].items()} for m in methods}
    group_means = {m: {g: _mean_if_all(scores[m], members) for g, members in grouped.items()} for m in methods}
    backbone = _backbone_params(rows)
    mean_of_tasks = {m: _mean_if_all(scores[m], tasks) for m in methods}
    return Report(
        tasks=tasks,
        groups=grouped,
        methods=methods,
        scores=scores,
        group_means=group_means,
        mean_of_groups={m: _mean_or_none(list(group_means[m].values())) for m in methods},
        mean_of_tasks=mean_of_tasks,
        wins=_wins(scores, grouped) if FULL in scores else None,
        backbone_params=backbone,
        tuned_params={m: dict(params[m]) for m in methods if params[m]},
        total_params={m: _total_params(m, params[m], backbone, len(tasks)) for m in methods},
        settings=_chosen_settings(rows),
        comparison=comparison.compare(final, labels, scores, mean_of_tasks, backbone),
    )


def method_labels(final: list[ResultRow], rows: list[ResultRow] | None = None) -> list[str]:
    """Each row of `rows` (default: `final`) labelled by its method, with the settings that vary within
    one task x method x seed of the `final` rows (an ablation's axis) appended."""
    values: dict[tuple, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in final:
        for key, value in row.setting.items():
            values[(row.method, row.task, row.seed)][key].add(json.dumps(value))
    varying: dict[str, set[str]] = defaultdict(set)
    for (method, _, _), keys in values.items():
        varying[method] |= {key for key, seen in keys.items() if len(seen) > 1}
    labels = []
    for row in final if rows is None else rows:
        keys = sorted(varying[row.method])
        suffix = ", ".join(f"{k}={format_value(row.setting.get(k))}" for k in keys)
        labels.append(f"{row.method} ({suffix})" if keys else row.method)
    return labels


def is_full(label: str) -> bool:
    """Whether a method label (`full`, or `full (setting=...)` in an ablation) is Full."""
    return label.partition(" (")[0] == FULL


def _method_order(labels: list[str]) -> list[str]:
    # Full and Linear first, as in the paper's tables; the rest as the sweep wrote them.
    seen = list(dict.fromkeys(labels))
    return [m for m in (FULL, LINEAR) if m in seen] + [m for m in seen if m not in (FULL, LINEAR)]


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def _mean_if_all(scores: dict[str, SeedScores], tasks: list[str]) -> float | None:
    return _mean_or_none([scores[t].mean if t in scores else None for t in tasks])


def _wins(scores: dict[str, dict[str, SeedScores]], groups: dict[str, list[str]]) -> dict[str, dict[str, list[int]]]:
    full = scores[FULL]
    wins = {}
    for method in scores:
        if method == FULL:
            continue
        wins[method] = {}
        for group, members in groups.items():
            both = [t for t in members if t in full and t in scores[method]]
            wins[method][group] = [sum(scores[method][t].mean > full[t].mean for t in both), len(both)]
    return wins


def _backbone_params(rows: list[ResultRow]) -> int | None:
    sizes = {row.backbone_params for row in rows if row.backbone_params is not None}
    if len(sizes) > 1:
        raise ResultsError(
            f"rows come from backbones of different sizes ({', '.join(map(str, sorted(sizes)))} parameters); "
            "report one backbone's sweep at a time"
        )
    return sizes.pop() if sizes else None


def _total_params(method: str, params: dict[str, int], backbone: int | None, tasks: int) -> float | None:
    if not params or backbone is None:
        return None
    per_task = statistics.fmean(params.values())
    return total_multiple(backbone, per_task, tasks, shares_backbone=not is_full(method))


def _chosen_settings(rows: list[ResultRow]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    chosen: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row.stage == "tune" and row.selected:
            key = json.dumps(row.setting, sort_keys=True)
            entry = chosen[row.task][row.method].setdefault(key, {"setting": row.setting, "seeds": []})
            entry["seeds"].append(row.seed)
    return {t: {m: [{**e, "seeds": sorted(set(e["seeds"]))} for e in by.values()] for m, by in ms.items()}
            for t, ms in chosen.items()}


# ---------------------------------------------------------------- output


def format_value(value: Any) -> str:
    """A setting value as tables and axes show it: block ranges as `i-j`, others as written."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}-{value[1]}"
    return str(value)


def best_values(values: dict[str, float | None]) -> set[str]:
    """The non-Full methods holding the highest value (all of them on ties)."""
    candidates = {m: v for m, v in values.items() if v is not None and not is_full(m)}
    top = max(candidates.values(), default=None)
    return {m for m, v in candidates.items() if v == top}


def _column(report: Report, values: dict[str, float | None]) -> dict[str, str]:
    best = best_values(values)
    return {m: f"**{pct(values[m])}**" if m in best else pct(values[m]) for m in report.methods}


def to_markdown(report: Report) -> str:
    """The report as Markdown tables, top-1 in percent, the best non-Full value per column in bold."""
    lines = ["## Test top-1 (%) per task", "", "Cells: mean ± std over seeds (n: number of seeds). " + STD_RULE + ".",
             ""]
    for group, members in report.groups.items():
        columns = [_column(report, {m: _task_mean(report, m, t) for m in report.methods}) for t in members]
        mean_column = _column(report, {m: report.group_means[m][group] for m in report.methods})
        rows = []
        for m in report.methods:
            cells = [_task_cell(report, m, t, col[m]) for t, col in zip(members, columns)]
            rows.append([m, *cells, mean_column[m]])
        lines += [f"### {group_title(group)} ({len(members)} task{'s' * (len(members) > 1)})", ""]
        lines += markdown_table(["Method", *members, "Mean"], rows)
    lines += _summary_markdown(report)
    lines += comparison.markdown(report.comparison, report.methods, report.backbone_params)
    if report.wins is not None:
        header = ["Method", *(f"{group_title(g)}" for g in report.groups)]
        rows = [[m, *(f"{w} of {n}" for w, n in report.wins[m].values())] for m in report.wins]
        lines += ["## Tasks where each method beats Full", ""] + markdown_table(header, rows)
    lines += _params_markdown(report)
    lines += _settings_markdown(report)
    return "\n".join(lines).rstrip() + "\n"


def _task_mean(report: Report, method: str, task: str) -> float | None:
    score = report.scores[method].get(task)
    return score.mean if score else None


def _task_cell(report: Report, method: str, task: str, mean_text: str) -> str:
    score = report.scores[method].get(task)
    if score is None:
        return "—"
    std = "" if score.std is None else f" ± {100 * score.std:.2f}"
    return f"{mean_text}{std} (n={score.n})"


def _summary_markdown(report: Report) -> list[str]:
    group_columns = [_column(report, {m: report.group_means[m][g] for m in report.methods}) for g in report.groups]
    of_groups = _column(report, report.mean_of_groups)
    of_tasks = _column(report, report.mean_of_tasks)
    header = ["Method", f"Total params (T={len(report.tasks)})",
              *(group_title(g) for g in report.groups), "Mean of groups", "Mean of tasks"]
    rows = [[m, _multiple(report.total_params[m]), *(c[m] for c in group_columns), of_groups[m], of_tasks[m]]
            for m in report.methods]
    return ["## Summary: test top-1 (%)", ""] + markdown_table(header, rows) + [AVERAGING_RULE, "", TOTAL_PARAMS_RULE, ""]


def _multiple(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _params_markdown(report: Report) -> list[str]:
    if not report.tuned_params:
        return []
    rows = [[m, *(str(report.tuned_params.get(m, {}).get(t, "—")) for t in report.tasks),
             _multiple(report.total_params[m])] for m in report.methods]
    backbone = "unknown" if report.backbone_params is None else f"{report.backbone_params:,}"
    return [f"## Tuned parameters per task (backbone: {backbone})", ""] + markdown_table(
        ["Method", *report.tasks, f"Total params (T={len(report.tasks)})"], rows)


def _settings_markdown(report: Report) -> list[str]:
    if not report.settings:
        return []
    rows = [[task, method, _setting_text(e["setting"]), ", ".join(map(str, e["seeds"]))]
            for task, methods in report.settings.items() for method, entries in methods.items() for e in entries]
    return ["## Chosen settings (tuning stage, best validation top-1)", ""] + markdown_table(
        ["Task", "Method", "Setting", "Seeds"], rows)


def _setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in setting.items()) or "(defaults)"


CSV_FIELDS = ("section", "method", "name", "value", "std", "count")


def csv_rows(report: Report) -> list[dict[str, Any]]:
    """The report as tidy rows: `section` says what `value` is (top-1 as a fraction, parameters, wins)."""
    out: list[dict[str, Any]] = []
    for m in report.methods:
        for t, s in report.scores[m].items():
            out.append(dict(section="task", method=m, name=t, value=s.mean, std=s.std, count=s.n))
        for g, v in report.group_means[m].items():
            out.append(dict(section="group", method=m, name=g, value=v, std=None, count=len(report.groups[g])))
        out.append(dict(section="overall", method=m, name="mean_of_groups", value=report.mean_of_groups[m],
                        std=None, count=len(report.groups)))
        out.append(dict(section="overall", method=m, name="mean_of_tasks", value=report.mean_of_tasks[m],
                        std=None, count=len(report.tasks)))
        for t, p in report.tuned_params.get(m, {}).items():
            out.append(dict(section="tuned_params", method=m, name=t, value=p, std=None, count=None))
        out.append(dict(section="total_params", method=m, name=f"T={len(report.tasks)}",
                        value=report.total_params[m], std=None, count=len(report.tasks)))
        for g, (w, n) in (report.wins or {}).get(m, {}).items():
            out.append(dict(section="wins_over_full", method=m, name=g, value=w, std=None, count=n))
    for task, methods in report.settings.items():
        for method, entries in methods.items():
            for e in entries:
                out.append(dict(section="setting", method=method, name=task, value=json.dumps(e["setting"]),
                                std=None, count=len(e["seeds"])))
    return out + comparison.rows_for_csv(report.comparison)


def to_csv(report: Report) -> str:
    """The report as CSV with columns section, method, name, value, std, count."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buffer.getvalue()


def to_json(report: Report) -> str:
    """The report as one JSON object (top-1 as fractions) with the averaging rules."""
    data = asdict(report)
    data["rules"] = {"std": STD_RULE, "averaging": AVERAGING_RULE, "total_params": TOTAL_PARAMS_RULE,
                     "vtab_averages": comparison.VTAB_AVERAGES_RULE, "share_and_ppt": comparison.SHARE_RULE}
    return json.dumps(data, indent=2) + "\n"


FORMATS = {"markdown": to_markdown, "csv": to_csv, "json": to_json}
