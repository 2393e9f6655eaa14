"""Settings of the HTTP service; the `vptune serve` flags fill this dataclass.

Every number declares its range once (`limit`), and `ServeConfig` checks them all when it is
built, so a value that cannot mean anything (NaN, infinity, 0 images per batch, a wait of
years) is refused before anything loads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..errors import VptuneError
from ..hub.tasks import parse_hub_uri
from .sources import is_hub
from .tier import Limits

ADMIN_TOKEN_ENV = "VPTUNE_ADMIN_TOKEN"
PRECISIONS = ("fp32", "bf16")


def limit(default: float, low: float, high: float) -> Any:
    """A numeric setting's default and its range [low, high]."""
    return field(default=default, metadata={"range": (low, high)})


@dataclass(frozen=True)
class ServeConfig:
    """How the service loads tasks, batches requests and limits input.

    `tasks_dir` holds one `<task>.safetensors` per task, or is `hf://OWNER/NAME[@REVISION]`,
    a Hub repository of task files (read-only, listed again every `hub_refresh_seconds`, 0:
    never); `backbone` defaults to the one the first task
    file records. `max_loaded_tasks` / `max_task_memory_mb` bound the tasks in memory (loaded
    on first request, least recently used evicted). `precision` bf16 runs batches under bf16
    autocast; `decode_threads` threads decode and prepare images while batches run. `admin_token` None turns the admin routes off. `max_pixels`
    bounds the pixels decoded for one request, all its images together.
    """

    tasks_dir: Path | str
    backbone: str | None = None
    device: str = "cpu"
    max_batch: int = limit(32, 1, 4096)
    max_wait_ms: float = limit(5.0, 0, 10_000)
    max_queue: int = limit(256, 1, 1_000_000)
    watch_seconds: float = limit(2.0, 0.1, 86_400)
    hub_refresh_seconds: float = limit(300.0, 0, 86_400)
    # At least a KiB: a limit that rounds to a few bytes would refuse every request.
    max_body_mb: float = limit(20.0, 0.001, 1024)
    max_upload_mb: float = limit(200.0, 0.001, 16_384)
    max_pixels: int = limit(40_000_000, 1, 1_000_000_000)
    # The tier: None leaves it unbounded (every task loaded at start).
    max_loaded_tasks: int | None = limit(None, 1, 10_000_000)
    max_task_memory_mb: float | None = limit(None, 0.001, 16_777_216)
    precision: str = "fp32"
    decode_threads: int = limit(2, 1, 256)
    admin_token: str | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            if "range" in spec.metadata and getattr(self, spec.name) is not None:
                kind = int if str(spec.type).startswith("int") else float
                check_number(spec.name, getattr(self, spec.name), kind, *spec.metadata["range"])
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise VptuneError(f"--precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")
        if self.admin_token is not None and not self.admin_token.strip():
            raise VptuneError("--admin-token is empty; give a secret, or leave it out to keep admin routes off")
        if is_hub(self.tasks_dir):
            parse_hub_uri(str(self.tasks_dir))
            return
        folder = Path(self.tasks_dir)
        if not folder.is_dir():
            what = "is a file" if folder.exists() else "does not exist"
            raise VptuneError(f"--tasks '{self.tasks_dir}' {what}; pass the folder that holds the <task>.safetensors "
                              "files")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise VptuneError(f"--tasks '{self.tasks_dir}' cannot be read; check its permissions")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def tier_limits(self) -> Limits:
        memory = None if self.max_task_memory_mb is None else int(self.max_task_memory_mb * 2**20)
        return Limits(self.max_loaded_tasks, memory)


def check_number(name: str, value: Any, kind: type, low: float, high: float) -> None:
    """VptuneError naming the flag unless `value` is a finite `kind` in [low, high]."""
    flag = f"--{name.replace('_', '-')}"
    interval = f"[{low:g}, {high:g}]"
    word = "a whole number" if kind is int else "a finite number"
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float))
    if wrong_type or not math.isfinite(value) or value < low or value > high:
        raise VptuneError(f"{flag} must be {word} in {interval}, got {value!r}")


def check_device(name: str) -> torch.device:
    """The torch device `name` if this machine has it; VptuneError otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise VptuneError(f"--device '{name}' is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VptuneError(f"--device '{name}' asked for, but this machine has no usable GPU; use --device cpu")
        if device.index is not None and device.index >= count:
            raise VptuneError(f"--device '{name}': this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise VptuneError(f"--device '{name}' is not served; use cpu, cuda or cuda:N")
    return device


def admin_token_from_env(given: str | None) -> str | None:
    """The admin token: the given one, else the environment variable, else None (admin off)."""
    return given if given is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
