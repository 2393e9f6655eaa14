"""What a run folder records besides its checkpoints: environment, per-epoch metrics, progress bars."""

from __future__ import annotations

import csv
import json
import logging
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
from ..files import atomic_path, atomic_write

T = TypeVar("T")
logger = logging.getLogger("vptune")


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
        "cpu_native_bf16": cpu_native_bf16(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX flags in `cpuinfo`); None if unknown.

    Without it torch emulates bf16 arithmetic, which is slower than fp32.
    """
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return None
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def warn_if_slow_bf16(device: torch.device, precision: str) -> None:
    """Log a warning when bf16 is asked for on a CPU that has to emulate it."""
    if precision == "bf16" and device.type == "cpu" and cpu_native_bf16() is False:
        logger.warning("--precision bf16 on this CPU is emulated (no AVX512-BF16 or AMX) and runs slower "
                       "than fp32; use --precision fp32 here")


def write_json(values: dict[str, Any], path: Path) -> None:
    atomic_write(path, json.dumps(values, indent=2) + "\n")


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
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
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
