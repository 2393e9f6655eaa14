"""Atomic per-epoch training checkpoints: tuned tensors, optimizer state, progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import VptuneError
from ..files import atomic_path

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` so that a crash leaves either the old or the new file, never half of one."""
    path = run_dir / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise VptuneError(f"nothing to resume in '{run_dir}': no {CHECKPOINT}; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise VptuneError(f"cannot read '{path}' to resume: {exc}") from exc
