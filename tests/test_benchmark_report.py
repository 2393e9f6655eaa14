"""From an archive to the community's numbers: `vptune data import` of a NOAH-layout zip, the shipped
VTAB-1k sweep config at a tiny size, then `vptune report` with both VTAB-1k averages, PPT, the
normalisation and PETL_Vision's files.

One task is real (kitti, trained end to end); the other 18 VTAB-1k tasks are synthetic finished rows
added through the typed results-row API, so that the 19-task averages exist.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from vptune.cli.main import main
from vptune.data.benchmark_tasks import VTAB_GROUPS, VTAB_TASKS
from vptune.experiments.results_table import ResultRow, ResultsTable, read_rows

from benchmark_archives import noah_vtab_files, write_zip
from conftest import TINY_CLI

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SEEDS = (0, 1)


def synthetic_rows(real: list[ResultRow]) -> list[ResultRow]:
    """Finished final rows of the 18 other tasks, made up: top-1 0.30 + 0.02 x task index (+0.05 for vpt-deep),
    with the parameter counts and configuration of the method's real kitti rows."""
    like = {r.method: r for r in real if r.stage == "final"}
    rows = []
    for index, task in enumerate(VTAB_TASKS):
        if task.name == "kitti":
            continue
        for method, source in like.items():
            for seed in SEEDS:
                top1 = 0.30 + 0.02 * index + 0.05 * (method == "vpt-deep")
                rows.append(ResultRow(task=task.name, group=task.group, method=method, stage="final", seed=seed,
                                      split="test", top1=top1, n=task.split_sizes["test"],
                                      tuned_params=source.tuned_params, head_params=source.head_params,
                                      backbone_params=source.backbone_params, setting=source.setting,
                                      config=source.config, trial=f"synthetic-{task.name}-{method}-{seed}"))
    return rows


def test_import_sweep_report_with_both_averages_ppt_and_petl_vision_files(tmp_path, capsys):
    archive = write_zip(tmp_path / "vtab-1k.zip", noah_vtab_files("kitti"))
    assert main(["data", "import", str(archive), "--out", str(tmp_path / "data")]) == 0
    sweep = tmp_path / "sweep"
    # The shipped config (paper grid, protocol, normalisation); flags make it tiny: one task, two methods,
    # one lr and weight decay, two prompt lengths, two seeds, one epoch, a 32 px random ViT.
    assert main(["sweep", "--config", str(BENCHMARKS / "vtab1k.yaml"), "--task", "kitti", "--data",
                 str(tmp_path / "data"), "--out", str(sweep), "--method", "linear", "--method", "vpt-deep",
                 "--grid", "lr=0.05", "--grid", "weight_decay=0", "--grid", "vpt-deep:num_prompts=1,5",
                 "--seeds", str(len(SEEDS)), "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "128",
                 *TINY_CLI, "--device", "cpu", "--num-workers", "0", "--quiet"]) == 0
    real = read_rows(sweep / "results.jsonl")
    assert {(r.method, r.stage) for r in real} == {(m, s) for m in ("linear", "vpt-deep") for s in ("tune", "final")}
    assert all(r.config["normalize"] == "imagenet" and r.head_params for r in real)

    combined = tmp_path / "combined"
    combined.mkdir()
    ResultsTable(combined).rewrite(real + synthetic_rows(real))
    petl = tmp_path / "petl"
    capsys.readouterr()
    assert main(["report", str(combined), "--petl-dir", str(petl)]) == 0
    text = capsys.readouterr().out

    # Both averages, recomputed here from the per-task means: kitti's over its real seeds.
    final = [r for r in real + synthetic_rows(real) if r.stage == "final"]
    for method in ("linear", "vpt-deep"):
        means = {t.name: statistics.fmean(r.top1 for r in final if r.method == method and r.task == t.name)
                 for t in VTAB_TASKS}
        of_tasks = statistics.fmean(means.values())
        of_groups = statistics.fmean(statistics.fmean(means[t.name] for t in VTAB_TASKS if t.group == g)
                                     for g in VTAB_GROUPS)
        assert f"| {method} | {100 * of_tasks:.2f} | {100 * of_groups:.2f} |  |" in text
        # PPT, V-PETL Bench's equation: M x exp(-log10(P / 10^7 + 1)), P without the head.
        source = next(r for r in real if r.method == method and r.stage == "final")
        params = source.tuned_params - source.head_params
        ppt = of_tasks * math.exp(-math.log10(params / 1e7 + 1))
        assert f"| {params:,} | {ppt:.2f} |" in text
    assert "Mean of the 19 tasks" in text and "Mean of the 3 group means" in text
    assert "All rows: ImageNet mean/std (`--normalize imagenet`)." in text

    # PETL_Vision's files for the real task, read as that harness reads them.
    folder = petl / "processed_vtab" / "kitti" / "vpt-deep"
    with open(folder / "tune_summary.csv", newline="") as f:
        header, *tune_summary = list(csv.reader(f))
    assert header[0] == "param_set" and header[5] == "val_top1"
    assert sorted(eval(row[0])["num_prompts"] for row in tune_summary) == [1, 5]  # noqa: S307 - as the harness
    with open(folder / "final_summary.csv", newline="") as f:
        assert [int(r["run_idx"]) for r in csv.DictReader(f)] == list(SEEDS)
    result = json.loads((folder / "final_result.json").read_text())
    chosen = next(r.setting for r in real if r.method == "vpt-deep" and r.stage == "tune" and r.selected)
    assert result["best_tune"] == chosen
    kitti = [r.top1 for r in real if r.method == "vpt-deep" and r.stage == "final"]
    assert abs(result["avg_acc"] - 100 * statistics.fmean(kitti)) < 1e-3
    deep = next(r for r in real if r.method == "vpt-deep" and r.stage == "final")
    assert result["inserted_parameters"] == deep.tuned_params - deep.head_params
