"""Settings of the HTTP service; the `vptune serve` flags fill this dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import VptuneError

ADMIN_TOKEN_ENV = "VPTUNE_ADMIN_TOKEN"


@dataclass(frozen=True)
class ServeConfig:
    """How the service loads tasks, batches requests and limits input.

    `tasks_dir` holds one `<task>.safetensors` per task; `backbone` defaults to the one the
    first task file records. `admin_token` None turns the admin routes off.
    """

    tasks_dir: Path
    backbone: str | None = None
    device: str = "cpu"
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    watch_seconds: float = 2.0
    max_body_mb: float = 20.0
    max_upload_mb: float = 200.0
    max_pixels: int = 40_000_000
    admin_token: str | None = None

    def __post_init__(self) -> None:
        if not Path(self.tasks_dir).is_dir():
            raise VptuneError(f"tasks folder '{self.tasks_dir}' does not exist; create it or pass another --tasks")
        for name in ("max_batch", "max_queue", "max_pixels"):
            if getattr(self, name) < 1:
                raise VptuneError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "watch_seconds", "max_body_mb", "max_upload_mb"):
            if getattr(self, name) < 0 or (name != "max_wait_ms" and getattr(self, name) == 0):
                raise VptuneError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


def admin_token_from_env(given: str | None) -> str | None:
    """The admin token: the given one, else the environment variable, else None (admin off)."""
    return given or os.environ.get(ADMIN_TOKEN_ENV) or None
