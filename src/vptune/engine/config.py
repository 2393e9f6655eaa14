"""The configuration of one training run; the CLI and YAML files fill the same dataclass."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import VptuneError
from ..methods import get_method

OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything that decides a run's result.

    `lr` None means the method's default (`default_lr`), resolved by the engine and recorded
    in the run's config.yaml. `train_fraction` < 1 trains on a seeded, class-stratified share
    of the training split (the data-scale study).
    """

    data: str = ""
    task: str = ""
    out: str = "runs/run"
    train_split: str | None = None
    eval_split: str | None = None
    protocol: str | None = None
    backbone: str = "dinov2-s14-imgfocus"
    arch: str | None = None
    pretrained: bool = True
    allow_keys: list[str] = field(default_factory=list)
    method: str = "vpt-deep"
    method_options: dict[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float | None = None
    scale_lr: bool = False
    weight_decay: float = 1e-4
    train_fraction: float = 1.0
    decay_tuned_tokens: bool = False
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    grad_clip: float | None = None
    precision: str = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    cache_features: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    skip_bad_images: bool = False
    quiet: bool = False

    def validate(self) -> None:
        """Raise VptuneError for values no run can use."""
        if not self.data or not self.task:
            raise VptuneError("a run needs --data ROOT and --task NAME")
        if self.optimizer not in OPTIMIZERS:
            raise VptuneError(f"optimizer '{self.optimizer}' is not one of: {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise VptuneError(f"precision '{self.precision}' is not one of: {', '.join(PRECISIONS)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise VptuneError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise VptuneError("--weight-decay and --warmup-epochs must be >= 0")
        if not 0.0 < self.train_fraction <= 1.0:
            raise VptuneError(f"--train-fraction must lie in (0, 1], got {self.train_fraction}")
        if self.img_size is not None and self.img_size <= 0:
            raise VptuneError(f"--img-size must be > 0, got {self.img_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise VptuneError naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VptuneError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        return cls(**values)


# Default peak learning rates (AdamW), by registered method name. Methods that train only new
# tensors (prompts, heads, a side network) take larger steps than methods that move pretrained
# weights; README "Default learning rates" gives the runs behind these values.
DEFAULT_LR = {
    "linear": 5e-3, "mlp-k": 5e-3, "vpt-shallow": 5e-3, "vpt-deep": 5e-3, "vpt-deep+bias": 5e-3, "sidetune": 5e-3,
    "full": 1e-4, "partial-k": 1e-4, "bias": 1e-3, "adapter": 1e-3, "lora": 1e-3, "ssf": 1e-3,
}


def default_lr(method: str) -> float:
    """The default peak learning rate of `method` (e.g. 'partial-4' reads the 'partial-k' entry)."""
    return DEFAULT_LR[get_method(method)[0].name]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Key/value mapping from a YAML config file (keys are TrainConfig field names)."""
    path = Path(path)
    if not path.is_file():
        raise VptuneError(f"config file '{path}' does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise VptuneError(f"config file '{path}' is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(values, dict):
        raise VptuneError(f"config file '{path}' must hold a mapping of option: value")
    return {key.replace("-", "_"): _numbers(value) for key, value in values.items()}


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value: Any) -> Any:
    """Floats YAML 1.1 leaves as text (`1e-4`; it wants `1.0e-4`), also inside lists and mappings."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def write_yaml(values: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
