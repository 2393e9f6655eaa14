"""benchmarks/vtab1k.yaml and fgvc.yaml: the paper's tasks, groups and grid, a tiny end-to-end run, the cost model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vptune.cli.main import main
from vptune.data.benchmark_tasks import FGVC_TASKS, VTAB_TASKS
from vptune.engine.config import read_yaml
from vptune.experiments.sweep import build_spec
from vptune.experiments.sweep.grid import PAPER_LRS, PAPER_WEIGHT_DECAYS

from benchmark_archives import noah_vtab_files, write_zip
from conftest import TINY_CLI, load_benchmark

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
PAPER_METHODS = ["full", "linear", "partial-1", "mlp-3", "sidetune", "bias", "adapter", "vpt-shallow", "vpt-deep"]


@pytest.mark.parametrize("name,tasks,protocol", [("vtab1k", VTAB_TASKS, "vtab"), ("fgvc", FGVC_TASKS, "fgvc")])
def test_configs_hold_the_paper_tasks_methods_and_grid(name, tasks, protocol):
    spec = build_spec(read_yaml(BENCHMARKS / f"{name}.yaml"))
    assert [(t.name, t.group) for t in spec.tasks] == [(t.name, t.group) for t in tasks]
    assert [m.name for m in spec.methods] == PAPER_METHODS
    for method in spec.methods:
        assert method.grid["lr"] == PAPER_LRS and method.grid["weight_decay"] == PAPER_WEIGHT_DECAYS
        assert method.settings == {"optimizer": "sgd", "momentum": 0.9, "scale_lr": True}
    assert spec.methods[-1].grid["num_prompts"] == [1, 5, 10, 50, 100, 200]
    assert (spec.seeds, spec.select) == (3, "last-epoch")
    keys = ("backbone", "img_size", "normalize", "protocol", "epochs", "batch_size")
    assert {k: spec.settings[k] for k in keys} == {
        "backbone": "vit_base_patch16_224.orig_in21k", "img_size": 224, "normalize": "imagenet", "protocol": protocol,
        "epochs": 100, "batch_size": 128}


def test_import_then_the_vtab1k_sweep_at_a_tiny_size(tmp_path, capsys):
    archive = write_zip(tmp_path / "vtab-1k.zip", noah_vtab_files("kitti", distinct=True))
    assert main(["data", "import", str(archive), "--out", str(tmp_path / "data")]) == 0
    out = tmp_path / "sweep"
    # The config's tasks, grid and protocol; flags make it tiny: one method, lr and seed, one epoch, a 32 px model.
    assert main(["sweep", "--config", str(BENCHMARKS / "vtab1k.yaml"), "--task", "kitti", "--data",
                 str(tmp_path / "data"), "--out", str(out), "--method", "linear", "--grid", "lr=0.05",
                 "--grid", "weight_decay=0", "--seeds", "1", "--epochs", "1", "--warmup-epochs", "0",
                 "--batch-size", "128", *TINY_CLI, "--device", "cpu", "--num-workers", "0", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    (tune,) = [r for r in rows if r["stage"] == "tune"]
    (final,) = [r for r in rows if r["stage"] == "final"]
    assert (tune["split"], tune["n"], final["split"], final["n"]) == ("val200", 200, "test", 711)
    config = final["config"]
    settings = (config["optimizer"], config["momentum"], config["scale_lr"], config["protocol"])
    assert settings == ("sgd", 0.9, True, "vtab")  # from the config's paper grid
    assert config["train_split"] == "train800val200" and config["lr"] == 0.05
    assert config["normalize"] == "imagenet"  # the VPT authors' input pipeline


def test_the_cost_model_counts_every_trial(monkeypatch):
    paper_tables = load_benchmark(BENCHMARKS / "paper_tables.py")
    forward, step = 3e9, 7e9  # FLOPs per image, stand-ins for the counted ones
    monkeypatch.setattr(paper_tables, "image_flops", lambda *args: (forward, step))
    rows = {(r["task"], r["method"]): r for r in paper_tables.estimate("vtab-1k", tflops=1.0, trial_seconds=2.0)}
    linear, deep = rows[("kitti", "linear")], rows[("kitti", "vpt-deep")]
    assert (linear["trials"], deep["trials"]) == (40 + 3, 240 + 3)
    # Linear embeds each image once per trial; VPT-Deep trains 100 epochs and validates every tuning epoch.
    assert linear["seconds"] == pytest.approx((40 * forward * 1000 + 3 * forward * 1711) / 1e12 + 43 * 2.0)
    tune = 100 * 800 * step + 100 * 200 * forward
    final = 100 * 1000 * step + 711 * forward
    assert deep["seconds"] == pytest.approx((240 * tune + 3 * final) / 1e12 + 243 * 2.0)
    assert sum(r["trials"] for r in rows.values() if r["task"] == "kitti") == 867
