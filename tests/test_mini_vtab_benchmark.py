"""benchmarks/mini_vtab.py without running it: its forms, sweep commands, split subsets and dry run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from vptune.data.formats import load_split

from conftest import SMALL_SPLITS, load_benchmark

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "mini_vtab.py"
mini_vtab = load_benchmark(SCRIPT)


def test_forms_follow_the_yaml_and_quick_takes_one_task_per_group():
    form, groups = mini_vtab.full_form()
    config = yaml.safe_load(mini_vtab.CONFIG.read_text())
    assert form.tasks == [t["name"] for t in config["tasks"]] and form.methods == list(config["methods"])
    assert groups == {"natural": ["fashion-mnist", "digits"],
                      "structured": ["dsprites-location", "dsprites-orientation", "shapes-count", "shapes-distance"]}
    quick = mini_vtab.quick_form(form, groups)
    assert quick.tasks == ["fashion-mnist", "dsprites-location"]
    assert (len(quick.methods), quick.seeds, quick.ablation) == (3, 1, {})
    assert quick.lrs == {m: form.lrs[m][:1] for m in quick.methods} and form.lrs["full"] == [0.0001, 0.0002]
    assert quick.epochs <= 2
    assert mini_vtab.estimate_hours(form) < 3 and mini_vtab.estimate_hours(quick) < 0.25


def test_sweep_commands_carry_every_setting():
    form, _ = mini_vtab.full_form()
    command = mini_vtab.sweep_command(form, Path("data"), Path("out"))
    flags = dict(zip(command[4::2], command[5::2]))
    assert command[1:4] == ["-m", "vptune", "sweep"]
    assert flags["--task"].split(",") == form.tasks and flags["--method"].split(",") == form.methods
    assert (flags["--img-size"], flags["--seeds"], flags["--epochs"], flags["--batch-size"]) == ("56", "3", "3", "16")
    grids = [command[i + 1] for i, arg in enumerate(command) if arg == "--grid"]
    assert grids == [f"{m}:lr={','.join(map(str, form.lrs[m]))}" for m in form.methods] + ["weight_decay=0.0001"]
    (ablation,) = mini_vtab.ablation_sweeps(form, Path("data"), Path("work"))
    assert ablation[ablation.index("--vary") + 1] == "num_prompts=1,5,10"
    assert ablation[ablation.index("--out") + 1] == str(Path("work") / "ablation-num_prompts")
    assert ablation[ablation.index("--task") + 1] == "fashion-mnist,dsprites-location"  # first task of each group


def test_mini_splits_are_seeded_subsets_and_train800val200_their_union(small_digits_root, tmp_path):
    sizes = {"train800": 30, "val200": 10, "test": 20}
    mini_vtab.mini_splits(small_digits_root / "digits", tmp_path / "digits", sizes)
    loaded = {s: load_split(tmp_path, "digits", s).samples for s in (*sizes, "train800val200")}
    assert {s: len(loaded[s]) for s in sizes} == sizes
    assert loaded["train800val200"] == loaded["train800"] + loaded["val200"]
    full_test = {(p.name, label) for p, label in load_split(small_digits_root, "digits", "test").samples}
    assert {(p.name, label) for p, label in loaded["test"]} <= full_test and len(full_test) == SMALL_SPLITS["test"]


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--quick", "--work", str(tmp_path / "w"),
                          "--results", str(tmp_path / "r")], capture_output=True, text=True, check=True).stdout
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert [c.split()[4] for c in commands] == ["sweep", "report", "report", "tsne"]
    assert "estimated" in out.splitlines()[0]
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()
