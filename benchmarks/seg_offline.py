"""Segmentation results on the offline scene tasks, small enough for a 2-core CPU.

Prepares fashion-scenes and shapes-seg, keeps a seeded subset of each split (200 train,
100 val, 200 test scenes), then for Head only (`linear` method), Bias, VPT-Deep, VPT+Bias
(`vpt-deep+bias`) and Full, all with a setr-pup head (64 channels instead of SETR's 256, so
that the decoder does not dominate on a CPU), on the offline DINOv2 ViT-S/14 at 84 px, batch 8,
4 epochs:

1. trains seed 0 at every learning rate of the grid on train, scored on val (`vptune train`
   keeps the epoch with the best val mIoU); the lr with the best val mIoU is chosen (the test
   split is never looked at while choosing);
2. trains seeds 0-2 at that lr (seed 0's tuning run is reused) and scores each on test
   (`vptune eval --split test`);
3. prints a Markdown table for docs/results.md: test mIoU mean ± std over seeds (population
   std, x100), val mIoU of the chosen lr, tuned parameters and wall time of all the method's
   runs, with the command, the machine and the versions.

Every run uses the segmentation recipe of `vptune train` (SGD, momentum 0.9, no weight decay,
head lr x10, poly schedule to lr/10, no warm-up) with the grid's lr.

    python benchmarks/seg_offline.py --dry-run     # print the commands and the time estimate
    python benchmarks/seg_offline.py --quick       # 1 task, 1 seed, 1 lr, 1 epoch, 32/16/16 scenes
    python benchmarks/seg_offline.py               # the full form

Time estimate, from the full form's measured run (docs/results.md: 3701 s, torch on one thread
while the other core of the 2-core CPU ran benchmarks/mini_vtab.py): a training scene costs
0.080 s per epoch with VPT-Deep (a validation or test scene a third of that), Head only 0.83x,
Full 1.17x, the other methods 1x, plus 8 s of start-up per run or evaluation. `--dry-run`
prints what that gives: 1.03 hours for the full form (2 tasks x 5 methods x (2 lrs + 2 more
seeds), 4 epochs on 200 train / 100 val scenes, 3 tests on 200) and 0.03 hours for `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vptune.data import prepare_task

METHODS = {"Head only": "linear", "Bias": "bias", "VPT-Deep": "vpt-deep", "VPT+Bias": "vpt-deep+bias", "Full": "full"}
# Seconds per training scene and epoch at 84 px, batch 8 (see the docstring), and the per-method factors.
SCENE_SECONDS = 0.080
METHOD_COST = {"linear": 0.83, "full": 1.17}
STARTUP_SECONDS = 8.0
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Form:
    """One size of the benchmark."""

    tasks: list[str]
    methods: dict[str, str]  # table label -> vptune method
    lrs: list[float]
    seeds: int
    epochs: int
    sizes: dict[str, int]  # scenes kept per split
    img_size: int = 112
    batch_size: int = 16
    backbone: str = "dinov2-s14-imgfocus"
    head: str = "setr-pup"
    channels: int = 64


FULL = Form(tasks=["fashion-scenes", "shapes-seg"], methods=METHODS, lrs=[1e-3, 1e-2], seeds=3, epochs=4,
            sizes={"train": 200, "val": 100, "test": 200}, img_size=84, batch_size=8)
QUICK = replace(FULL, tasks=FULL.tasks[:1], lrs=FULL.lrs[1:], seeds=1, epochs=1,
                sizes={"train": 32, "val": 16, "test": 16})


def train_command(form: Form, data: Path, task: str, method: str, lr: float | str, seed: int, out: Path) -> list[str]:
    """The `vptune train` command of one run (the only place that builds one)."""
    return [
        sys.executable, "-m", "vptune", "train", "--data", str(data), "--task", task, "--backbone", form.backbone,
        "--img-size", str(form.img_size), "--method", method, "--head", form.head,
        "--head-option", f"channels={form.channels}", "--epochs", str(form.epochs),
        "--batch-size", str(form.batch_size), "--lr", str(lr), "--seed", str(seed), "--out", str(out), "--quiet",
    ]


def eval_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "vptune", "eval", str(run_dir), "--split", "test", "--quiet"]


def run_dir(out: Path, task: str, method: str, lr: float, seed: int) -> Path:
    return out / "runs" / task / method / f"lr{lr:g}-seed{seed}"


def estimate_seconds(form: Form) -> float:
    """The docstring's cost model for `form`."""
    n_train, n_val, n_test = (form.sizes[s] for s in SPLITS)
    total = 0.0
    for method in form.methods.values():
        runs = len(form.lrs) + form.seeds - 1
        per_run = form.epochs * (n_train + n_val / 3) * SCENE_SECONDS * METHOD_COST.get(method, 1.0)
        tests = form.seeds * (n_test / 3 * SCENE_SECONDS * METHOD_COST.get(method, 1.0) + STARTUP_SECONDS)
        total += runs * (per_run + STARTUP_SECONDS) + tests
    return total * len(form.tasks)


def subset_task(source: Path, target: Path, sizes: dict[str, int], seed: int = 0) -> None:
    """Link a seeded subset of each split of a prepared image/mask task into `target`."""
    rng = np.random.default_rng(seed)
    target.mkdir(parents=True, exist_ok=True)
    (target / "classes.txt").write_text((source / "classes.txt").read_text())
    for split in SPLITS:
        images = sorted((source / "images" / split).iterdir())
        kept = sorted(rng.choice(len(images), size=min(sizes[split], len(images)), replace=False))
        for kind in ("images", "masks"):
            (target / kind / split).mkdir(parents=True, exist_ok=True)
        for index in kept:
            image = images[index]
            mask = source / "masks" / split / f"{image.stem}.png"
            (target / "images" / split / image.name).symlink_to(image.resolve())
            (target / "masks" / split / mask.name).symlink_to(mask.resolve())


def run(command: list[str]) -> str:
    """Run a command (its progress silenced) and return its stdout; stop on failure."""
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {shlex.join(command)}\n{result.stderr.strip()}")
    return result.stdout


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def method_rows(form: Form, data: Path, out: Path, task: str) -> list[str]:
    """Tune, retrain over seeds and test every method of one task; one Markdown row each."""
    rows = []
    for label, method in form.methods.items():
        started = time.time()
        val = {}
        for lr in form.lrs:
            folder = run_dir(out, task, method, lr, 0)
            run(train_command(form, data, task, method, lr, 0, folder))
            val[lr] = summary_of(folder)["val_mIoU"]
        best = max(form.lrs, key=lambda lr: val[lr])
        tests = []
        for seed in range(form.seeds):
            folder = run_dir(out, task, method, best, seed)
            if seed:
                run(train_command(form, data, task, method, best, seed, folder))
            tests.append(json.loads(run(eval_command(folder)).splitlines()[-1])["mIoU"])
        params = summary_of(run_dir(out, task, method, best, 0))["tuned_parameters"]
        rows.append(f"| {task} | {label} | {100 * np.mean(tests):.2f} ± {100 * np.std(tests):.2f} | "
                    f"{100 * val[best]:.2f} | {best:g} | {params:,} | {time.time() - started:.0f} s |")
        print(rows[-1], flush=True)
    return rows


def environment() -> str:
    import timm
    import torch

    import vptune

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.platform()}, {os.cpu_count()} CPU cores (load average {load:.1f} at start), "
            f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"vptune {getattr(vptune, '__version__', 'source')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/seg_offline"))
    parser.add_argument("--quick", action="store_true", help="1 task, 1 seed, 1 lr, 1 epoch, few scenes")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and the time estimate")
    args = parser.parse_args()
    form = QUICK if args.quick else FULL
    out = args.out.resolve()
    data = out / "data"
    print(f"estimated time: {estimate_seconds(form) / 3600:.2f} hours on the measured machine")
    if args.dry_run:
        for task in form.tasks:
            print(f"{sys.executable} -m vptune data prepare {task} --out {out / 'prepared'}  "
                  f"# then {form.sizes} scenes linked into {data / task}")
            for method in form.methods.values():
                for lr in form.lrs:
                    print(shlex.join(train_command(form, data, task, method, lr, 0,
                                                   run_dir(out, task, method, lr, 0))))
                for seed in range(1, form.seeds):
                    print(shlex.join(train_command(form, data, task, method, "BEST_LR", seed,
                                                   out / "runs" / task / method / f"lrBEST_LR-seed{seed}")))
                print(shlex.join(eval_command(out / "runs" / task / method / "lrBEST_LR-seedN")))
        return
    header = environment()
    started = time.time()
    rows = []
    for task in form.tasks:
        if not (data / task).is_dir():
            prepare_task(task, out / "prepared")
            subset_task(out / "prepared" / task, data / task, form.sizes)
        rows += method_rows(form, data, out, task)
    print()
    print(f"`python benchmarks/seg_offline.py{' --quick' if args.quick else ''}` "
          f"({time.time() - started:.0f} s in all); {header}.")
    print(f"{form.backbone} at {form.img_size} px, {form.head} head ({form.channels} channels), "
          f"{form.epochs} epoch(s), batch {form.batch_size}, scenes per split {form.sizes}, lr grid {form.lrs}, "
          f"{form.seeds} seed(s).")
    print()
    print("| task | method | test mIoU (mean ± std) | val mIoU | lr | tuned params | wall time |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
