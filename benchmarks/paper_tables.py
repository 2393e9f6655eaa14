"""VPT's VTAB-1k and FGVC tables on a GPU machine or a Ray cluster: download, sweep, report, and a cost estimate.

    python benchmarks/paper_tables.py vtab-1k --dry-run          # the commands and the estimated GPU time
    python benchmarks/paper_tables.py vtab-1k                    # download, sweep (one GPU), report
    python benchmarks/paper_tables.py vtab-1k --launcher ray --ray-address HOST:PORT
    python benchmarks/paper_tables.py fgvc --images CUB_200_2011.tgz --images nabirds.tar.gz ...

The sweep is benchmarks/vtab1k.yaml or benchmarks/fgvc.yaml, unchanged. The time estimate is a
model, not a measurement: for every trial the sweep will run (the grid of each method, then the
retraining with each seed), it counts the FLOPs of the training steps (forward and backward, every
epoch), the per-epoch validation (tuning trials) and the final test pass, using torch's
FlopCounterMode on the real vptune models at the sweep's size (built on the meta device: shapes
only, nothing is computed). Methods that train only a head compute the frozen features once per
trial, and Partial-1 its cached tokens once plus the last block each epoch, as the engine does. The
sum is divided by --tflops (default 25 TFLOP/s: half the fp32 matrix-multiply peak, 51 TFLOP/s,
measured on an H100, docs/performance.md) and --trial-seconds (default 10 s of start-up per trial) is
added. Data loading, the Python loop and GPU under-use at small sizes are left out; measure one trial
(`vptune train ... --epochs 1`) on your GPU and pass --tflops accordingly.
"""

from __future__ import annotations

import argparse
import functools
import math
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vptune
from vptune.data.benchmark_tasks import FGVC, VTAB_1K, benchmark_tasks, find_task
from vptune.engine.config import read_yaml
from vptune.experiments.sweep import build_spec, grid_points
from vptune.experiments.sweep.spec import TRAIN_FIELDS, split_options
from vptune.methods import get_method

CONFIGS = {VTAB_1K: Path(__file__).with_name("vtab1k.yaml"), FGVC: Path(__file__).with_name("fgvc.yaml")}
# Methods whose trials compute the frozen backbone's output once and then train a head on it.
HEAD_ONLY = frozenset({"linear", "mlp-k"})
# The tuning and final splits of each benchmark's layout.
STAGES = {VTAB_1K: ("train800", "val200", "train800val200", "test"), FGVC: ("train", "val", "train+val", "test")}


@functools.lru_cache(maxsize=None)
def image_flops(backbone: str, img_size: int, method: str, options: tuple) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs for one image of a training-mode model (FlopCounterMode, meta device).

    Counted with a 100-class head: a head's FLOPs are a rounding error beside the backbone's.
    """
    with torch.device("meta"):
        model = vptune.create(backbone, method, 100, pretrained=False, img_size=img_size, **dict(options))
    model.train()
    image = torch.empty(1, 3, img_size, img_size, device="meta")
    with FlopCounterMode(display=False) as forward:
        model(image)
    with FlopCounterMode(display=False) as both:
        model(image).sum().backward()
    return forward.get_total_flops(), both.get_total_flops()


def trial_flops(method: str, options: dict, settings: dict, n_train: int, n_eval: int, per_epoch_eval: bool) -> float:
    """FLOPs of one trial: `epochs` passes over n_train images, and the evaluation of n_eval images."""
    forward, step = image_flops(settings["backbone"], settings["img_size"], method, tuple(sorted(options.items())))
    epochs, family = settings["epochs"], get_method(method)[0].name
    if family in HEAD_ONLY:
        return forward * (n_train + n_eval)
    if family == "partial-k":
        # The tokens entering the tuned blocks are cached once; each epoch trains the tail, whose
        # forward and backward are about 1.5x the backward the counter saw (step - forward).
        return forward * (n_train + n_eval) + epochs * n_train * 1.5 * (step - forward)
    return epochs * n_train * step + (epochs if per_epoch_eval else 1) * n_eval * forward


def estimate(benchmark: str, tflops: float, trial_seconds: float) -> list[dict]:
    """Per task and method: the trials of the benchmark's sweep and their estimated GPU seconds."""
    spec = build_spec(read_yaml(CONFIGS[benchmark]))
    tune_train, tune_eval, final_train, test = STAGES[benchmark]
    rows = []
    for task_spec in spec.tasks:
        task = find_task(benchmark, task_spec.name)
        n = {"train+val": task.split_sizes.get("train", 0) + task.split_sizes.get("val", 0), **task.split_sizes}
        for method in spec.methods:
            fields, options = split_options({**spec.settings, **method.settings})
            settings = {"img_size": 224, **fields}
            points = grid_points({**method.grid, **method.vary}) or [{}]
            tune, final = 0.0, 0.0
            for point in points:
                point_options = {**options, **{k: v for k, v in point.items() if k not in TRAIN_FIELDS}}
                cost = functools.partial(trial_flops, method.name, point_options, settings)
                tune += cost(n[tune_train], n[tune_eval], per_epoch_eval=True)
                final += cost(n[final_train], n[test], per_epoch_eval=False)
            # Which point is chosen is not known ahead: its retraining costs the grid's mean, per seed and arm.
            arms = math.prod(len(values) for values in method.vary.values())
            trials = len(points) + spec.seeds * arms
            flops = tune + spec.seeds * arms * final / len(points)
            rows.append({"task": task.name, "group": task.group, "method": method.name, "trials": trials,
                         "seconds": flops / (tflops * 1e12) + trials * trial_seconds})
    return rows


def print_estimate(rows: list[dict], tflops: float) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"Estimated GPU-hours at {tflops:g} TFLOP/s (a model, not a measurement; see this script's docstring):")
    print(f"  {'task':<22}{'trials':>7}" + "".join(f"{m:>12}" for m in methods) + f"{'total':>10}")
    total = 0.0
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        hours = [r["seconds"] / 3600 for r in mine]
        total += sum(hours)
        print(f"  {task:<22}{sum(r['trials'] for r in mine):>7}" + "".join(f"{h:>12.1f}" for h in hours)
              + f"{sum(hours):>10.1f}")
    print(f"  all {len(tasks)} tasks: {total:,.0f} GPU-hours")


def commands(args: argparse.Namespace) -> list[list[str]]:
    vptune_cli = [sys.executable, "-m", "vptune"]
    download = [*vptune_cli, "data", "download", args.benchmark, "--out", args.data]
    if args.benchmark == FGVC:
        download += [arg for task in benchmark_tasks(FGVC) for arg in ("--task", task.name)]
        download += [arg for image in args.images for arg in ("--images", image)]
    sweep = [*vptune_cli, "sweep", "--config", str(CONFIGS[args.benchmark]), "--data", args.data, "--out", args.out]
    if args.launcher == "ray":
        sweep += ["--launcher", "ray", "--gpus-per-trial", "1"]
        sweep += ["--ray-address", args.ray_address] if args.ray_address else []
    report = [*vptune_cli, "report", args.out, "--out", str(Path(args.out) / "report.md"),
              "--petl-dir", str(Path(args.out) / "petl")]
    steps = [sweep, report]
    if args.dry_run or not all((Path(args.data) / t.name).is_dir() for t in benchmark_tasks(args.benchmark)):
        steps.insert(0, download)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=sorted(CONFIGS), help="vtab-1k or fgvc")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and the estimate, run nothing")
    parser.add_argument("--data", help="data root (default: the config's data)")
    parser.add_argument("--out", help="sweep folder (default: the config's out)")
    parser.add_argument("--images", action="append", default=[], help="FGVC image archives you hold (repeatable)")
    parser.add_argument("--launcher", choices=("local", "ray"), default="local", help="sweep launcher (local)")
    parser.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--tflops", type=float, default=25.0, help="sustained TFLOP/s assumed per GPU (25)")
    parser.add_argument("--trial-seconds", type=float, default=10.0, help="start-up seconds per trial (10)")
    args = parser.parse_args()
    config = read_yaml(CONFIGS[args.benchmark])
    args.data, args.out = args.data or config["data"], args.out or config["out"]

    print_estimate(estimate(args.benchmark, args.tflops, args.trial_seconds), args.tflops)
    for command in commands(args):
        print("$ " + " ".join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
