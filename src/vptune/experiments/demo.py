"""The offline demo: Linear vs VPT-Deep on Fashion-MNIST with the offline DINOv2 backbone."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import prepare_task
from ..engine import TrainConfig, evaluate_run, train
from ..engine.evaluate import TASK_FILE
from ..engine.train_state import CHECKPOINT

TASK = "fashion-mnist"

# Chosen on train800 -> val200 (never on test); docs/results.md has the runs behind them.
DEMO_IMG_SIZE = 70
DEMO_RUNS: dict[str, dict] = {
    "linear": dict(method="linear", epochs=20, lr=1e-2, weight_decay=1e-4, batch_size=64),
    "vpt-deep": dict(method="vpt-deep", epochs=15, lr=1e-2, weight_decay=1e-4, batch_size=32,
                     method_options={"num_prompts": 10}),
}


@dataclass
class DemoRow:
    method: str
    top1: float
    tuned_parameters: int
    task_bytes: int
    seconds: float
    reused: bool


def run_demo(out: str | Path, *, img_size: int = DEMO_IMG_SIZE, seed: int = 0, quiet: bool = False,
             backbone: str = "dinov2-s14-imgfocus") -> list[DemoRow]:
    """Prepare the task, train each demo method on train800val200, evaluate on test.

    Finished runs in `out` are reused and interrupted ones resumed.
    """
    out = Path(out)
    data_root = out / "data"
    if not (data_root / TASK / "test.txt").is_file():
        prepare_task(TASK, data_root, seed=seed, overwrite=True)
    rows = []
    for name, settings in DEMO_RUNS.items():
        run_dir = out / f"{name}-{img_size}px-seed{seed}"
        started = time.time()
        reused = (run_dir / TASK_FILE).is_file()
        if not reused:
            config = TrainConfig(
                data=str(data_root), task=TASK, out=str(run_dir), train_split="train800val200", eval_split="",
                backbone=backbone, img_size=img_size, seed=seed, quiet=quiet, **settings,
            )
            if not quiet:
                print(f"== {name}: training on {TASK} train800val200 ({config.epochs} epochs)", flush=True)
            train(config, resume=(run_dir / CHECKPOINT).is_file())
        metrics = evaluate_run(run_dir, "test", quiet=quiet)
        info = json.loads((run_dir / "summary.json").read_text())
        rows.append(DemoRow(name, metrics["top1"], info["tuned_parameters"], (run_dir / TASK_FILE).stat().st_size,
                            time.time() - started, reused))
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """The demo's result table."""
    lines = [f"{'method':<10} {'test top-1':>10} {'tuned params':>13} {'bytes/task':>11} {'wall time':>10}"]
    for row in rows:
        lines.append(f"{row.method:<10} {row.top1:>10.4f} {row.tuned_parameters:>13,} {row.task_bytes:>11,} "
                     f"{row.seconds:>9.0f}s" + (" (finished earlier; evaluation only)" if row.reused else ""))
    return "\n".join(lines)
