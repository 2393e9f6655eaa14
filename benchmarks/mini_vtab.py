"""Mini VTAB: the paper's protocol on the offline tasks, small enough for a 2-core CPU.

Prepares the offline tasks in two groups (natural: fashion-mnist, digits; structured:
dsprites-location, dsprites-orientation, shapes-count, shapes-distance), keeps a seeded,
smaller subset of each split, then runs `vptune sweep` (tune every lr on train800 -> val200,
retrain the chosen one on train800val200, score on test) for Linear, Full, Bias, Partial-1,
Adapter, LoRA, VPT-Shallow and VPT-Deep on the offline DINOv2 ViT-S/14 at 56 px. Then
`vptune report` (Markdown + CSV), `vptune plot` (the prompt-length ablation, a second small
VPT-Deep sweep) and a `vptune tsne` panel (Linear vs VPT-Deep, first task) into the results
folder. benchmarks/mini_vtab.yaml is the main sweep as a `vptune sweep --config` file (on
the full-size splits).

    python benchmarks/mini_vtab.py --dry-run            # print the commands and the time estimate
    python benchmarks/mini_vtab.py --quick              # 2 tasks, 3 methods, 1 lr, 1 seed, 2 epochs
    python benchmarks/mini_vtab.py                      # the full form

Time estimate. One measurement on a shared 2-core CPU (load average about 10, i.e. five
runnable processes per core) with `vptune train --img-size 56 --batch-size 32 --epochs 1` on
fashion-mnist (800 train + 200 val images): VPT-Deep took 273 s; Full had not finished its
epoch after 572 s. The cost model below reads that as 273 / 2600 s per image forward pass
(a training image counts 3 passes, forward and backward), divided by 5 for an unloaded
2-core CPU, and Full costing 2.1x VPT-Deep per training image, Partial-1 0.45x, Linear one
forward pass per image (its features are computed once), the other methods 1x, plus 3 s of
start-up per trial. `--dry-run` prints what the model gives for the chosen form: 2.50 hours
for the full form (main sweep and prompt-length ablation; 100 train / 50 val / 200 test images
per task, 2 epochs) and 0.08 hours (5 minutes) for `--quick`. On a loaded machine, multiply
by the load per core. Measured on an unloaded 2-core AMD EPYC: the full form 20 min 15 s,
`--quick` 1 min 23 s (docs/results.md), so the model is pessimistic by a factor of 4-7.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from vptune.data import prepare_task

CONFIG = Path(__file__).with_name("mini_vtab.yaml")
# Seconds per image forward pass on an unloaded 2-core CPU at 56 px (see the docstring).
FORWARD_SECONDS = 273 / 2600 / 5
TRAIN_COST = {"full": 2.1, "partial-1": 0.45, "linear": 0.0}  # per training image, relative to VPT-Deep
STARTUP_SECONDS = 3.0
# Images kept per split and task (train800val200 = the kept train800 + val200).
SPLIT_SIZES = {"train800": 100, "val200": 50, "test": 200}
# A second, VPT-Deep-only sweep (1 seed, first lr) for the prompt-length figure.
ABLATION = {"num_prompts": [1, 5, 10]}


@dataclass(frozen=True)
class Form:
    """One size of the benchmark: what the sweep runs and on how many images per split."""

    tasks: list[str]
    methods: list[str]
    lrs: dict[str, list[float]]  # method -> the learning rates its grid tries
    weight_decays: list[float]
    seeds: int
    epochs: int
    img_size: int
    backbone: str
    split_sizes: dict[str, int]  # train800, val200, test images kept per task
    ablation: dict[str, list] = field(default_factory=dict)  # VPT-Deep setting -> values, swept with VPT-Deep's first lr


def full_form() -> tuple[Form, dict[str, list[str]]]:
    """The full form and the task groups, read from mini_vtab.yaml."""
    config = yaml.safe_load(CONFIG.read_text())
    groups: dict[str, list[str]] = {}
    for task in config["tasks"]:
        groups.setdefault(task["group"], []).append(task["name"])
    form = Form(
        tasks=[task["name"] for task in config["tasks"]], methods=list(config["methods"]),
        lrs={name: own["grid"]["lr"] for name, own in config["methods"].items()},
        weight_decays=config["grid"]["weight_decay"],
        seeds=config["seeds"], epochs=config["epochs"], img_size=config["img_size"], backbone=config["backbone"],
        split_sizes=SPLIT_SIZES, ablation=ABLATION,
    )
    return form, groups


def quick_form(form: Form, groups: dict[str, list[str]]) -> Form:
    """2 tasks (one per group), Linear / Full / VPT-Deep at their first lr, 1 seed, 2 epochs, no ablation."""
    methods = ["linear", "full", "vpt-deep"]
    return replace(form, tasks=[members[0] for members in groups.values()][:2], methods=methods,
                   lrs={m: form.lrs[m][:1] for m in methods}, seeds=1, epochs=min(form.epochs, 2), ablation={})


def sweep_command(form: Form, data: Path, out: Path, *, methods: list[str] | None = None,
                  lrs: dict[str, list[float]] | None = None, vary: dict[str, list] | None = None,
                  seeds: int | None = None) -> list[str]:
    """The `vptune sweep` command line of one sweep of `form` (the only place that builds one).

    `vary` holds ablation axes: each value is tuned and retrained on its own.
    """
    methods = methods or form.methods
    lrs = lrs or form.lrs
    grids = [f"{m}:lr=" + ",".join(map(str, lrs[m])) for m in methods]
    grids.append("weight_decay=" + ",".join(map(str, form.weight_decays)))
    return [
        sys.executable, "-m", "vptune", "sweep", "--data", str(data), "--task", ",".join(form.tasks),
        "--method", ",".join(methods), "--backbone", form.backbone,
        "--img-size", str(form.img_size), "--epochs", str(form.epochs), "--seeds", str(seeds or form.seeds),
        *(arg for grid in grids for arg in ("--grid", grid)),
        *(arg for key, values in (vary or {}).items() for arg in ("--vary", f"{key}={','.join(map(str, values))}")),
        "--out", str(out), "--quiet",
    ]


def ablation_sweeps(form: Form, data: Path, out: Path) -> list[list[str]]:
    """One VPT-Deep sweep per ablation setting, 1 seed, the first lr."""
    return [sweep_command(form, data, out / f"ablation-{key}", methods=["vpt-deep"],
                          lrs={"vpt-deep": form.lrs["vpt-deep"][:1]}, seeds=1,
                          vary={key: values}) for key, values in form.ablation.items()]


def estimate_hours(form: Form) -> float:
    """The cost model of the docstring for `form`'s sweeps, in hours."""
    n_train, n_val, n_test = (form.split_sizes[s] for s in ("train800", "val200", "test"))

    def trials(methods: list[str], grid_points: int, seeds: int) -> float:
        seconds = 0.0
        for method in methods:
            cost = TRAIN_COST.get(method, 1.0)
            if cost == 0.0:  # features once per image, whatever the grid
                passes = 2 * (n_train + n_val) + n_test
            else:
                tune = form.epochs * (3 * n_train * cost + n_val)
                final = form.epochs * 3 * (n_train + n_val) * cost + n_test
                passes = grid_points * tune + final
            seconds += passes * FORWARD_SECONDS + (grid_points + 1) * STARTUP_SECONDS
        return len(form.tasks) * seeds * seconds

    total = trials(form.methods, max(len(v) for v in form.lrs.values()), form.seeds)
    total += sum(trials(["vpt-deep"], len(values), 1) for values in form.ablation.values())
    return total / 3600


def mini_splits(source: Path, target: Path, sizes: dict[str, int], seed: int = 0) -> None:
    """Copy a prepared VTAB-1k task with seeded subsets of its split lists (images are linked)."""
    rng = np.random.default_rng(seed)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / "images").symlink_to((source / "images").resolve())
    shutil.copy(source / "classes.txt", target / "classes.txt")
    kept = {}
    for split, n in sizes.items():
        lines = (source / f"{split}.txt").read_text().splitlines()
        kept[split] = [lines[i] for i in sorted(rng.permutation(len(lines))[:n])]
        (target / f"{split}.txt").write_text("\n".join(kept[split]) + "\n")
    (target / "train800val200.txt").write_text("\n".join(kept["train800"] + kept["val200"]) + "\n")


def tsne_runs(results: Path, task: str, methods: tuple[str, ...] = ("linear", "vpt-deep")) -> list[str]:
    """Run folders of the seed-0 final runs of `methods` on `task`, from a sweep's results.jsonl."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    found = {r["method"]: r["run_dir"] for r in rows
             if r["stage"] == "final" and r["task"] == task and r["seed"] == 0 and r["method"] in methods}
    return [found[m] for m in methods if m in found]


def run(command: list[str], dry_run: bool) -> None:
    print("$ " + " ".join(command), flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 tasks, 3 methods, 1 lr, 1 seed, 2 epochs")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and the estimate, run nothing")
    parser.add_argument("--work", default="runs", help="folder for data, sweeps and runs")
    parser.add_argument("--results", default="docs/results", help="folder for the report and figures")
    args = parser.parse_args()

    form, groups = full_form()
    if args.quick:
        form = quick_form(form, groups)
    name = "mini-vtab-quick" if args.quick else "mini-vtab"
    work, results = Path(args.work) / name, Path(args.results) / name
    data, mini = work / "data", work / "data-mini"
    print(f"{name}: {len(form.tasks)} tasks x {len(form.methods)} methods x {max(len(v) for v in form.lrs.values())} lr x {form.seeds} seeds, "
          f"{form.epochs} epochs at {form.img_size} px; estimated {estimate_hours(form):.2f} h on an unloaded 2-core CPU")

    if not args.dry_run:
        for task in form.tasks:
            if not (data / task).is_dir():
                prepare_task(task, data)
            mini_splits(data / task, mini / task, form.split_sizes)
        results.mkdir(parents=True, exist_ok=True)
        used = {g: [t for t in members if t in form.tasks] for g, members in groups.items()}
        (work / "groups.yaml").write_text(yaml.safe_dump({g: m for g, m in used.items() if m}))
    else:
        print(f"# prepare {', '.join(form.tasks)} into {data}, keep {form.split_sizes} images in {mini}")

    sweep = work / "sweep"
    run(sweep_command(form, mini, sweep), args.dry_run)
    for command in ablation_sweeps(form, mini, work):
        run(command, args.dry_run)
    vptune = [sys.executable, "-m", "vptune"]
    groups_flag = ["--groups", str(work / "groups.yaml")]
    run([*vptune, "report", str(sweep), *groups_flag, "--out", str(results / "report.md")], args.dry_run)
    run([*vptune, "report", str(sweep), *groups_flag, "--format", "csv", "--out", str(results / "report.csv")],
        args.dry_run)
    for key in form.ablation:
        # The main sweep adds the Linear and Full reference lines.
        run([*vptune, "plot", str(work / f"ablation-{key}"), str(sweep), *groups_flag, "--out", str(results / "figures")],
            args.dry_run)
    runs = ["<final run of linear, seed 0>", "<final run of vpt-deep, seed 0>"] if args.dry_run \
        else tsne_runs(sweep / "results.jsonl", form.tasks[0])
    run([*vptune, "tsne", *runs, "--out", str(results / f"tsne-{form.tasks[0]}.png"), "--max-images", "1000"],
        args.dry_run)


if __name__ == "__main__":
    main()
