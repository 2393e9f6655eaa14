"""Mini VTAB: the paper's protocol on the offline tasks, small enough for a 2-core CPU.

Prepares the offline tasks in two groups (natural: fashion-mnist, digits; structured:
dsprites-location, dsprites-orientation, shapes-count, shapes-distance), keeps a seeded,
smaller subset of each split, then runs `vptune sweep` (tune every lr on train800 -> val200,
retrain the chosen one on train800val200, score on test) for the methods of
benchmarks/mini_vtab.yaml (Linear, Full, Bias, Partial-1, Adapter, Adapter+, AdaptFormer, LoRA,
VPT-Shallow, VPT-Deep, VFPT, E2VPT; `--methods` takes a subset) on the offline DINOv2 ViT-S/14
at 56 px. Then
`vptune report` (Markdown + CSV), `vptune plot` (the prompt-length ablation, a second small
VPT-Deep sweep) and a `vptune tsne` panel (Linear vs VPT-Deep, first task) into the results
folder. benchmarks/mini_vtab.yaml is the main sweep as a `vptune sweep --config` file (on
the full-size splits).

    python benchmarks/mini_vtab.py --dry-run            # print the commands and the time estimate
    python benchmarks/mini_vtab.py --quick              # 2 tasks, 3 methods, 1 lr, 1 seed, 2 epochs
    python benchmarks/mini_vtab.py                      # the full form

Time estimate, from the full form's measured run (docs/results.md): each method's seconds per
image pass (a training image in one epoch, or one evaluated image) are the mean wall time of
its final trials there (3 epochs on 300 images, then 300 test images) / 1200, with torch on
one thread while the other core of the 2-core CPU ran benchmarks/seg_offline.py; Linear
embeds each image once, so its figure is per embedded image; plus 1 s per trial. Against
that run's tuning trials (3 epochs on 200 images, 100 validation images each epoch) the
model is within about 15% per method. VFPT, E2VPT, Adapter+ and AdaptFormer were measured the
same way in their own runs (`--methods`, docs/results.md) on a 2-core Intel Xeon under similar
load. `--dry-run` prints what the model gives: 2.0 hours for the full form (main sweep and the
prompt-length ablation) and 0.05 hours for `--quick`.
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
# Seconds per image pass of each method (see the docstring); other methods count as VPT-Deep.
IMAGE_SECONDS = {"adapter": 0.01751, "bias": 0.01759, "full": 0.02744, "linear": 0.00750, "lora": 0.01836,
                 "partial-1": 0.00710, "vpt-deep": 0.01846, "vpt-shallow": 0.02447,
                 "vfpt": 0.01488, "e2vpt": 0.01930, "adapter-plus": 0.01817, "adaptformer": 0.01677}
TRIAL_SECONDS = 1.0
# Images kept per split and task (train800val200 = the kept train800 + val200).
SPLIT_SIZES = {"train800": 200, "val200": 100, "test": 300}
# A second, VPT-Deep-only sweep (1 seed, first lr, the first task of each group) for the prompt-length figure.
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
    batch_size: int
    img_size: int
    backbone: str
    split_sizes: dict[str, int]  # train800, val200, test images kept per task
    ablation: dict[str, list] = field(default_factory=dict)  # VPT-Deep setting -> values, swept with VPT-Deep's first lr
    ablation_tasks: list[str] = field(default_factory=list)  # the tasks the ablation sweeps run on


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
        seeds=config["seeds"], epochs=config["epochs"], batch_size=config["batch_size"], img_size=config["img_size"],
        backbone=config["backbone"], split_sizes=SPLIT_SIZES, ablation=ABLATION,
        ablation_tasks=[members[0] for members in groups.values()],
    )
    return form, groups


def quick_form(form: Form, groups: dict[str, list[str]]) -> Form:
    """2 tasks (one per group), Linear / Full / VPT-Deep at their first lr, 1 seed, 2 epochs, no ablation."""
    methods = ["linear", "full", "vpt-deep"]
    return replace(form, tasks=[members[0] for members in groups.values()][:2], methods=methods,
                   lrs={m: form.lrs[m][:1] for m in methods}, seeds=1, epochs=min(form.epochs, 2), ablation={})


def subset_form(form: Form, methods: str | None, epochs: int | None, parser: argparse.ArgumentParser) -> Form:
    """`form` restricted to `methods` (no ablation then) and trained for `epochs`; a bad value is a usage error."""
    if methods is not None:
        chosen = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in form.methods]
        if not chosen or unknown:
            parser.error(f"--methods: {', '.join(unknown) or 'no method given'}; choose from {', '.join(form.methods)}")
        form = replace(form, methods=chosen, ablation={} if chosen != form.methods else form.ablation)
    if epochs is not None:
        if epochs < 1:
            parser.error("--epochs must be at least 1")
        form = replace(form, epochs=epochs)
    return form


def sweep_command(form: Form, data: Path, out: Path, *, methods: list[str] | None = None,
                  lrs: dict[str, list[float]] | None = None, vary: dict[str, list] | None = None,
                  seeds: int | None = None, tasks: list[str] | None = None) -> list[str]:
    """The `vptune sweep` command line of one sweep of `form` (the only place that builds one).

    `vary` holds ablation axes: each value is tuned and retrained on its own.
    """
    methods = methods or form.methods
    lrs = lrs or form.lrs
    grids = [f"{m}:lr=" + ",".join(map(str, lrs[m])) for m in methods]
    grids.append("weight_decay=" + ",".join(map(str, form.weight_decays)))
    return [
        sys.executable, "-m", "vptune", "sweep", "--data", str(data), "--task", ",".join(tasks or form.tasks),
        "--method", ",".join(methods), "--backbone", form.backbone,
        "--img-size", str(form.img_size), "--epochs", str(form.epochs), "--batch-size", str(form.batch_size),
        "--seeds", str(seeds or form.seeds),
        *(arg for grid in grids for arg in ("--grid", grid)),
        *(arg for key, values in (vary or {}).items() for arg in ("--vary", f"{key}={','.join(map(str, values))}")),
        "--out", str(out), "--quiet",
    ]


def ablation_sweeps(form: Form, data: Path, out: Path) -> list[list[str]]:
    """One VPT-Deep sweep per ablation setting, 1 seed, the first lr."""
    return [sweep_command(form, data, out / f"ablation-{key}", methods=["vpt-deep"],
                          lrs={"vpt-deep": form.lrs["vpt-deep"][:1]}, seeds=1,
                          vary={key: values}, tasks=form.ablation_tasks) for key, values in form.ablation.items()]


def estimate_hours(form: Form) -> float:
    """The cost model of the docstring for `form`'s sweeps, in hours."""
    n_train, n_val, n_test = (form.split_sizes[s] for s in ("train800", "val200", "test"))

    def trial(method: str, train: int, evaluated: int, per_epoch_eval: bool) -> float:
        seconds = IMAGE_SECONDS.get(method, IMAGE_SECONDS["vpt-deep"])
        if method == "linear":  # features once per image, whatever the epochs
            return (train + evaluated) * seconds + TRIAL_SECONDS
        passes = form.epochs * train + (form.epochs if per_epoch_eval else 1) * evaluated
        return passes * seconds + TRIAL_SECONDS

    def sweep(tasks: list[str], methods: list[str], grid_points: dict[str, int], seeds: int) -> float:
        per_task = sum(grid_points[m] * trial(m, n_train, n_val, True)
                       + seeds * trial(m, n_train + n_val, n_test, False) for m in methods)
        return len(tasks) * per_task

    total = sweep(form.tasks, form.methods, {m: len(form.lrs[m]) for m in form.methods}, form.seeds)
    for values in form.ablation.values():
        total += len(values) * sweep(form.ablation_tasks, ["vpt-deep"], {"vpt-deep": 1}, 1)
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
    parser.add_argument("--methods", help="comma-separated subset of mini_vtab.yaml's methods (default: all of "
                        "them); a subset runs no prompt-length ablation")
    parser.add_argument("--epochs", type=int, help="training epochs per run (default: mini_vtab.yaml's)")
    parser.add_argument("--name", help="the run's folder name under --work and --results "
                        "(default: mini-vtab, or mini-vtab-quick with --quick)")
    args = parser.parse_args()

    form, groups = full_form()
    if args.quick:
        form = quick_form(form, groups)
    form = subset_form(form, args.methods, args.epochs, parser)
    name = args.name or ("mini-vtab-quick" if args.quick else "mini-vtab")
    work, results = Path(args.work) / name, Path(args.results) / name
    data, mini = work / "data", work / "data-mini"
    print(f"{name}: {len(form.tasks)} tasks x {len(form.methods)} methods x {max(len(v) for v in form.lrs.values())} lr x {form.seeds} seeds, "
          f"{form.epochs} epochs at {form.img_size} px; estimated {estimate_hours(form):.2f} h on one core of a 2-core CPU")

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
    if not {"linear", "vpt-deep"} <= set(form.methods):
        return
    runs = ["<final run of linear, seed 0>", "<final run of vpt-deep, seed 0>"] if args.dry_run \
        else tsne_runs(sweep / "results.jsonl", form.tasks[0])
    run([*vptune, "tsne", *runs, "--out", str(results / f"tsne-{form.tasks[0]}.png"), "--max-images", "1000"],
        args.dry_run)


if __name__ == "__main__":
    main()
