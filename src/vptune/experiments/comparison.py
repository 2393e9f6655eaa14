"""The numbers the PETL community compares: both VTAB-1k averages, the parameter share, V-PETL Bench's
performance-parameter trade-off (PPT), and the input normalisation the rows were trained with.

`compare(rows, scores, tasks)` computes them per method label; `report.py` prints them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ..data.benchmark_tasks import VTAB_GROUPS, VTAB_TASKS
from ..data.formats import canonical_task_name
from .markdown import markdown_table, pct
from .results_table import ResultRow
from .seeds import SeedScores

# V-PETL Bench (Xin et al., "V-PETL Bench: A Unified Visual Parameter-Efficient Transfer Learning
# Benchmark", NeurIPS 2024 Datasets and Benchmarks): PPT = M x exp(-log10(P / C + 1)), M the top-1
# (as a fraction), P the trainable parameters without the classification head (Linear probing counts
# 0 there), C = 10^7 the paper's normalisation constant. Their published tables follow from it, e.g.
# VPT-Deep on VTAB-1k: M 69.43 %, P 0.56M -> 0.68; Partial-1 on COCO: M 49.2 %, P 12.60M -> 0.35.
PPT_C = 1e7
VTAB_AVERAGES_RULE = (
    "VTAB-1k, shown only for a method holding all 19 tasks: mean of the 19 tasks (the VPT paper's average: "
    "69.43 for VPT-Deep) and mean of the Natural, Specialized and Structured group means."
)
SHARE_RULE = ("Share: tuned parameters per task (head included, mean over tasks) / backbone parameters. "
              "PPT (V-PETL Bench): M x exp(-log10(P / 10^7 + 1)), M the mean of tasks as a fraction, "
              "P the tuned parameters per task without the head.")
NORMALIZE_WORDS = {"backbone": "the backbone's own mean/std", "imagenet": "ImageNet mean/std",
                   "none": "no normalisation (pixels in [0, 1])"}


@dataclass
class VtabAverages:
    """Both VTAB-1k averages of one method, or why they are not given (`missing` tasks)."""

    mean_of_tasks: float | None
    mean_of_groups: float | None
    missing: list[str]


@dataclass
class Comparison:
    """Per method label: VTAB-1k averages (None when the table holds no VTAB-1k task), parameter share,
    tuned parameters without the head, PPT, and the normalisation rules its rows used."""

    vtab: dict[str, VtabAverages] | None
    share: dict[str, float | None]
    params_without_head: dict[str, float | None]
    ppt: dict[str, float | None]
    normalize: dict[str, list[str]]


def ppt(top1: float, params_without_head: float) -> float:
    """V-PETL Bench's PPT of a top-1 fraction and a trainable parameter count without the head."""
    return top1 * math.exp(-math.log10(params_without_head / PPT_C + 1))


def compare(final: list[ResultRow], labels: list[str], scores: dict[str, dict[str, SeedScores]],
            mean_of_tasks: dict[str, float | None], backbone: int | None) -> Comparison:
    """The comparison numbers of a report: `final` rows with their method `labels`, the per-task
    `scores` and `mean_of_tasks` per label, and the backbone's parameter count."""
    tuned: dict[str, dict[str, int]] = {label: {} for label in scores}
    heads: dict[str, dict[str, int | None]] = {label: {} for label in scores}
    rules: dict[str, set[str]] = {label: set() for label in scores}
    for row, label in zip(final, labels):
        if row.tuned_params is not None:
            tuned[label][row.task] = row.tuned_params
            heads[label][row.task] = row.head_params
        rules[label].add((row.config or {}).get("normalize", "backbone"))  # earlier versions: the backbone's
    share, without_head, trade_off = {}, {}, {}
    for label in scores:
        per_task = list(tuned[label].values())
        share[label] = statistics.fmean(per_task) / backbone if per_task and backbone else None
        own = [tuned[label][t] - h for t, h in heads[label].items() if h is not None]
        without_head[label] = statistics.fmean(own) if own and len(own) == len(per_task) else None
        mean = mean_of_tasks.get(label)
        trade_off[label] = ppt(mean, without_head[label]) if mean is not None and without_head[label] is not None \
            else None
    return Comparison(vtab=_vtab_averages(scores), share=share, params_without_head=without_head, ppt=trade_off,
                      normalize={label: sorted(found) for label, found in rules.items()})


def _vtab_averages(scores: dict[str, dict[str, SeedScores]]) -> dict[str, VtabAverages] | None:
    names = {task.name for task in VTAB_TASKS}
    if not any(canonical_task_name(t) in names for tasks in scores.values() for t in tasks):
        return None
    averages = {}
    for label, by_task in scores.items():
        means = {canonical_task_name(t): s.mean for t, s in by_task.items()}
        missing = [task.name for task in VTAB_TASKS if task.name not in means]
        if missing:
            averages[label] = VtabAverages(None, None, missing)
            continue
        groups = [statistics.fmean(means[t.name] for t in VTAB_TASKS if t.group == g) for g in VTAB_GROUPS]
        averages[label] = VtabAverages(statistics.fmean(means[t.name] for t in VTAB_TASKS),
                                       statistics.fmean(groups), [])
    return averages


# ---------------------------------------------------------------- output


def markdown(comparison: Comparison, methods: list[str], backbone: int | None) -> list[str]:
    """The comparison as Markdown lines: VTAB-1k averages, parameter share and PPT, normalisation."""
    lines: list[str] = []
    if comparison.vtab is not None:
        rows = [[m, pct(a.mean_of_tasks), pct(a.mean_of_groups), _why_not(a.missing)]
                for m, a in comparison.vtab.items()]
        lines += ["## VTAB-1k averages: test top-1 (%)", ""]
        lines += markdown_table(["Method", "Mean of the 19 tasks", "Mean of the 3 group means", "Not given because"], rows)
        lines += [VTAB_AVERAGES_RULE, ""]
    backbone_text = "unknown" if backbone is None else f"{backbone:,}"
    rows = [[m, _share(comparison.share[m]), _count(comparison.params_without_head[m]), _ratio(comparison.ppt[m])]
            for m in methods]
    lines += [f"## Parameter share and PPT (backbone: {backbone_text} parameters)", ""]
    lines += markdown_table(["Method", "Share of backbone (%)", "Tuned params without head", "PPT"], rows)
    lines += [SHARE_RULE, ""]
    if any(comparison.params_without_head[m] is None and comparison.share[m] is not None for m in methods):
        lines += ["PPT needs each row's `head_params` (the head's part of the tuned parameters), which tables "
                  "written by earlier vptune versions lack: —.", ""]
    lines += ["## Input normalisation", "", normalize_text({m: comparison.normalize[m] for m in methods}), ""]
    return lines


def normalize_text(rules: dict[str, list[str]]) -> str:
    """One sentence naming the normalisation of every method (`--normalize`)."""
    found = {tuple(r) for r in rules.values()}
    if len(found) == 1:
        (only,) = found
        return f"All rows: {_rules(list(only))} (`--normalize {' / '.join(only)}`)."
    return "Per method: " + "; ".join(f"{m}: {_rules(r)}" for m, r in rules.items()) + "."


def rows_for_csv(comparison: Comparison) -> list[dict[str, Any]]:
    """Tidy rows (section, method, name, value, std, count) of the comparison, top-1 as fractions."""
    out: list[dict[str, Any]] = []
    for m, a in (comparison.vtab or {}).items():
        out.append(dict(section="vtab", method=m, name="mean_of_19_tasks", value=a.mean_of_tasks, std=None,
                        count=19 - len(a.missing)))
        out.append(dict(section="vtab", method=m, name="mean_of_group_means", value=a.mean_of_groups, std=None,
                        count=len(VTAB_GROUPS)))
    for m in comparison.share:
        out.append(dict(section="share", method=m, name="tuned/backbone", value=comparison.share[m], std=None,
                        count=None))
        out.append(dict(section="ppt", method=m, name="ppt", value=comparison.ppt[m], std=None, count=None))
        out.append(dict(section="normalize", method=m, name="rule", value=",".join(comparison.normalize[m]),
                        std=None, count=None))
    return out


def _rules(rules: list[str]) -> str:
    return " and ".join(NORMALIZE_WORDS.get(r, r) for r in rules)


def _why_not(missing: list[str]) -> str:
    if not missing:
        return ""
    shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
    return f"{len(missing)} of the 19 tasks missing ({shown})"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.3g}"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
