"""Time a 40-point Linear grid with features reused across trials against naive trials.

Naive trials run the frozen backbone on every image in every epoch of every trial,
as a loop of independent training scripts would. Both use the same engine and
settings; only `cache_features` differs. Prints times and their ratio.

    python benchmarks/sweep.py --quick    # naive: a few trials, extrapolated to 40
    python benchmarks/sweep.py            # naive: all 40 trials
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from vptune.data import prepare_task
from vptune.engine import TrainConfig
from vptune.experiments.sweep import grid_points, run_grid

GRID = {
    "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
    "batch_size": [32, 64],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="run 3 naive trials and extrapolate")
    parser.add_argument("--backbone", default="dinov2-s14-imgfocus")
    parser.add_argument("--task", default="digits")
    parser.add_argument("--img-size", type=int, default=56)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare_task(args.task, root / "data")
        base = TrainConfig(data=str(root / "data"), task=args.task, backbone=args.backbone, img_size=args.img_size,
                           method="linear", epochs=args.epochs, quiet=True)
        points = grid_points(GRID)

        started = time.perf_counter()
        reused = run_grid(base, GRID, root / "reused")
        reused_seconds = time.perf_counter() - started

        naive_count = 3 if args.quick else len(points)
        started = time.perf_counter()
        naive = []
        for index, point in enumerate(points[:naive_count]):
            naive += run_grid(dataclasses.replace(base, cache_features=False),
                              {key: [value] for key, value in point.items()}, root / f"naive-{index}")
        naive_seconds = (time.perf_counter() - started) * len(points) / naive_count

    same = sum(abs(a["val_top1"] - b["val_top1"]) < 1e-9 for a, b in zip(reused, naive))
    print(f"{len(points)}-point Linear grid on {args.task} ({args.backbone}, {args.img_size}px, {args.epochs} epochs)")
    print(f"  reused features: {reused_seconds:8.1f} s")
    label = f"naive ({naive_count} trials run, x{len(points) / naive_count:.1f})" if args.quick else "naive"
    print(f"  {label}: {naive_seconds:8.1f} s")
    print(f"  speed-up: {naive_seconds / reused_seconds:.1f}x; identical val top-1 on {same}/{len(naive)} compared trials")


if __name__ == "__main__":
    main()
