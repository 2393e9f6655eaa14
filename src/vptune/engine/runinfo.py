"""What a run folder records besides its checkpoints: environment, per-epoch metrics, progress bars."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import timm
import torch
from tqdm import tqdm

from .._version import __version__

T = TypeVar("T")


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    """Versions and hardware, for the run folder."""
    info = {
        "vptune": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "world_size": world_size,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_json(values: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n")


class MetricsLog:
    """Per-epoch metrics as CSV (always) and TensorBoard (when installed)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.csv"
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            pass

    def append(self, row: dict[str, Any]) -> None:
        rows = self.read()
        rows = [r for r in rows if int(r["epoch"]) < row["epoch"]] + [row]
        fields = list(dict.fromkeys(key for r in rows for key in r))
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        if self._writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self._writer.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open() as handle:
            return list(csv.DictReader(handle))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def progress(items: Iterable[T], desc: str, *, enabled: bool, total: int | None = None) -> Iterable[T]:
    """A tqdm bar on an interactive terminal; silent when quiet, redirected or not rank 0."""
    return tqdm(items, desc=desc, total=total, leave=False, disable=not enabled or not sys.stderr.isatty())
