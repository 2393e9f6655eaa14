"""Train in-process (under torchrun or not) and save each rank's final tuned tensors to OUT/rank<r>.pt.

Usage: python ddp_tuned_tensors.py DATA_ROOT OUT BATCH_SIZE
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vptune.engine import trainer

from conftest import tiny_train_config

# Deterministic given the data order: no prompt dropout, no validation-based selection.
CONFIG = dict(method="vpt-deep", method_options={"num_prompts": 2, "prompt_dropout": 0.0}, optimizer="sgd", lr=0.05,
              epochs=1, eval_split="", seed=7)


def train_and_dump(root: Path, out: Path, batch_size: int) -> None:
    finish = trainer._Run._finish

    def dumping(run, seconds):
        summary = finish(run, seconds)
        torch.save(run.model.tuned_state_dict(), out / f"rank{run.ctx.rank}.pt")
        return summary

    trainer._Run._finish = dumping
    try:
        trainer.train(tiny_train_config(root, out / "run", batch_size=batch_size, **CONFIG))
    finally:
        trainer._Run._finish = finish


if __name__ == "__main__":
    train_and_dump(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
