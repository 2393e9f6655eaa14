"""`vptune report`'s community numbers: both VTAB-1k averages, parameter share, V-PETL Bench's PPT and the
normalisation, checked against V-PETL Bench's published VTAB-1k table (VPT-Deep and Linear probing rows)."""

from __future__ import annotations

import json

import pytest

from vptune.data.benchmark_tasks import VTAB_TASKS
from vptune.experiments.comparison import ppt
from vptune.experiments.report import build_report, to_csv, to_json, to_markdown

from results_rows import row

# V-PETL Bench's README, VTAB-1k table (ViT-B/16 ImageNet-21k), in the VPT paper's task order.
VPT_DEEP = [78.8, 90.8, 65.8, 98.0, 88.3, 78.1, 49.6, 81.8, 96.1, 83.4, 68.4,
            68.5, 60.0, 46.5, 72.8, 73.6, 47.9, 32.9, 37.8]
LINEAR = [63.4, 85.0, 63.2, 97.0, 86.3, 36.6, 51.0, 78.5, 87.5, 68.6, 74.0,
          34.3, 30.6, 33.2, 55.4, 12.5, 20.0, 9.6, 19.2]
BACKBONE, HEAD = 85_800_000, 1_000


def vtab_rows(scores: dict[str, list[float]], *, without: str | None = None, normalize: str = "imagenet") -> list:
    """Final rows, one seed per task, with the tuned parameters each method adds (head included)."""
    added = {"vpt-deep": 560_000, "linear": 0}
    return [row(task.name, method, 0, top1 / 100, tuned_params=added[method] + HEAD, head_params=HEAD,
                backbone_params=BACKBONE, config={"normalize": normalize})
            for method, values in scores.items() for task, top1 in zip(VTAB_TASKS, values) if task.name != without]


def test_both_vtab_averages_match_the_paper():
    report = build_report(vtab_rows({"vpt-deep": VPT_DEEP, "linear": LINEAR}))
    deep = report.comparison.vtab["vpt-deep"]
    assert deep.mean_of_tasks == pytest.approx(0.6943, abs=5e-5)  # the VPT paper's 69.43
    natural, specialized, structured = sum(VPT_DEEP[:7]) / 7, sum(VPT_DEEP[7:11]) / 4, sum(VPT_DEEP[11:]) / 8
    assert deep.mean_of_groups == pytest.approx((natural + specialized + structured) / 300)
    assert round(100 * deep.mean_of_groups, 2) == 71.97
    assert report.comparison.vtab["linear"].mean_of_tasks == pytest.approx(0.5294, abs=5e-5)
    text = to_markdown(report)
    assert "| vpt-deep | 69.43 | 71.97 |  |" in text and "Mean of the 19 tasks" in text


def test_ppt_is_v_petl_benchs():
    report = build_report(vtab_rows({"vpt-deep": VPT_DEEP, "linear": LINEAR}))
    # V-PETL Bench's table: VPT-Deep 0.56M parameters -> PPT 0.68; Linear probing 0M -> 0.53.
    assert round(report.comparison.ppt["vpt-deep"], 2) == 0.68
    assert round(report.comparison.ppt["linear"], 2) == 0.53
    assert report.comparison.params_without_head == {"vpt-deep": 560_000, "linear": 0}
    assert ppt(0.492, 12_600_000) == pytest.approx(0.345, abs=5e-3)  # their Partial-1 on COCO: 0.35
    assert report.comparison.share["vpt-deep"] == pytest.approx(561_000 / BACKBONE)
    assert "| vpt-deep | 0.654 | 560,000 | 0.68 |" in to_markdown(report)


def test_averages_are_refused_with_the_reason_when_a_task_is_missing():
    report = build_report(vtab_rows({"vpt-deep": VPT_DEEP}, without="kitti"))
    deep = report.comparison.vtab["vpt-deep"]
    assert (deep.mean_of_tasks, deep.mean_of_groups, deep.missing) == (None, None, ["kitti"])
    assert "| vpt-deep | — | — | 1 of the 19 tasks missing (kitti) |" in to_markdown(report)
    csv_rows = [line for line in to_csv(report).splitlines() if line.startswith("vtab,")]
    assert csv_rows == ["vtab,vpt-deep,mean_of_19_tasks,,,18", "vtab,vpt-deep,mean_of_group_means,,,3"]


def test_a_table_without_vtab_tasks_has_no_vtab_section():
    report = build_report([row("cub", "linear", 0, 0.8, head_params=10)])
    assert report.comparison.vtab is None and "VTAB-1k averages" not in to_markdown(report)


def test_the_normalisation_of_the_rows_is_stated():
    same = build_report(vtab_rows({"vpt-deep": VPT_DEEP}))
    assert "All rows: ImageNet mean/std (`--normalize imagenet`)." in to_markdown(same)
    mixed = build_report(vtab_rows({"vpt-deep": VPT_DEEP}) + vtab_rows({"linear": LINEAR}, normalize="none"))
    assert "Per method: linear: no normalisation (pixels in [0, 1]); vpt-deep: ImageNet mean/std." in to_markdown(mixed)
    # Rows of earlier versions carry no rule in their config: they normalised with the backbone's own statistics.
    assert build_report([row("cub", "linear", 0, 0.8)]).comparison.normalize == {"linear": ["backbone"]}


def test_tables_without_head_params_give_no_ppt_and_say_why():
    report = build_report([row("cub", "linear", 0, 0.8)])
    assert report.comparison.ppt == {"linear": None}
    assert "PPT needs each row's `head_params`" in to_markdown(report)
    assert json.loads(to_json(report))["comparison"]["ppt"] == {"linear": None}
