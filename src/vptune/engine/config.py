"""The configuration of one training run; the CLI and YAML files fill the same dataclass."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..backbones import MAX_IMG_SIZE
from ..data.transforms import NORMALIZATIONS
from ..errors import VptuneError
from ..files import atomic_write
from ..methods import options_from_text
from ..values import coerce_fields, json_shaped, non_finite

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly")
PRECISIONS = ("fp32", "bf16")
FLOAT32_MAX = 3.4028234663852886e38  # optimizers keep their settings as float32 numbers


@dataclass
class TrainConfig:
    """Everything that decides a run's result.

    Fields left None (splits, protocol, head, optimizer and schedule) are decided by
    `engine.resolve.resolve_config` from the task type of the data (its recipe; `lr` the
    recipe's or else the method's `default_lr`) before the run starts, and recorded in the
    run's config.yaml. `train_fraction` < 1 trains on a seeded, class-stratified share
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
    # None: the task type's default head ("linear" for classification, "setr-pup" for segmentation).
    head: str | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    # Mean/std the input pipeline normalises with: the backbone's, ImageNet's (VPT's code) or none.
    normalize: str = "backbone"
    epochs: int = 10
    batch_size: int = 32
    optimizer: str | None = None
    lr: float | None = None
    scale_lr: bool = False
    weight_decay: float | None = None
    train_fraction: float = 1.0
    decay_tuned_tokens: bool = False
    momentum: float = 0.9
    warmup_epochs: float | None = None
    schedule: str | None = None
    poly_power: float = 0.9
    # None: 0 for classification; lr / 10 for segmentation (1e-4 at SETR's lr 1e-3, its PolyLR eta_min).
    min_lr: float | None = None
    head_lr_multiplier: float | None = None
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

    def __post_init__(self) -> None:
        """Raise VptuneError for a value of the wrong type (an int may stand for a float)."""
        for name, value in coerce_fields(TrainConfig, vars(self), text=False).items():
            setattr(self, name, value)

    def validate(self) -> None:
        """Raise VptuneError for values no run can use."""
        if not self.data or not self.task:
            raise VptuneError("a run needs --data ROOT and --task NAME")
        if self.arch is not None and not Path(self.backbone).exists():
            raise VptuneError(f"--arch names the architecture of a checkpoint file given as --backbone, but "
                              f"'{self.backbone}' is no file; drop --arch or give the checkpoint's path")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise VptuneError(f"optimizer '{self.optimizer}' is not one of: {', '.join(OPTIMIZERS)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise VptuneError(f"schedule '{self.schedule}' is not one of: {', '.join(SCHEDULES)}")
        if self.poly_power <= 0 or (self.min_lr or 0) < 0 or (self.head_lr_multiplier is not None
                                                               and self.head_lr_multiplier <= 0):
            raise VptuneError("--poly-power and --head-lr-multiplier must be > 0 and --min-lr >= 0")
        if self.normalize not in NORMALIZATIONS:
            raise VptuneError(f"normalize '{self.normalize}' is not one of: {', '.join(NORMALIZATIONS)}")
        if self.precision not in PRECISIONS:
            raise VptuneError(f"precision '{self.precision}' is not one of: {', '.join(PRECISIONS)}")
        numbers = {**vars(self), **{f"method option {k}": v for k, v in self.method_options.items()}}
        for name in non_finite(numbers):
            raise VptuneError(f"{_flag(name)} must be a finite number, got {numbers[name]}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise VptuneError(f"{_flag(name)} must be a whole number >= 1, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise VptuneError(f"--lr must be > 0, got {self.lr}")
        if max(self.lr or 0.0, self.weight_decay or 0.0) > FLOAT32_MAX:
            raise VptuneError(f"--lr and --weight-decay must be at most {FLOAT32_MAX:.3g} (the float32 range), "
                              f"got {max(self.lr or 0.0, self.weight_decay or 0.0)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise VptuneError(f"--train-fraction must lie in (0, 1], got {self.train_fraction}")
        for name in ("weight_decay", "warmup_epochs", "num_workers"):
            if (getattr(self, name) or 0) < 0:
                raise VptuneError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise VptuneError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise VptuneError(f"--grad-clip must be > 0 (a gradient norm), got {self.grad_clip}; "
                              "leave it unset for no clipping")
        if not 0 <= self.seed < 2**32:
            raise VptuneError(f"--seed must be a whole number in [0, 2**32), got {self.seed}")
        if self.img_size is not None and not 1 <= self.img_size <= MAX_IMG_SIZE:
            raise VptuneError(f"--img-size must be in [1, {MAX_IMG_SIZE}] (a multiple of the backbone's patch "
                              f"size), got {self.img_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping read from text (YAML, flags): values are parsed to each field's type.

        Unknown keys raise VptuneError naming the valid ones; values that do not parse name the key.
        """
        if not isinstance(values, dict):
            raise VptuneError(f"a config is a mapping of key: value, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VptuneError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        typed = coerce_fields(cls, values, text=True)
        if typed.get("method_options"):
            options = options_from_text(typed.get("method", cls.method), typed["method_options"])
            typed["method_options"] = json_shaped(options)
        return cls(**typed)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Key/value mapping from a YAML config file (keys are TrainConfig field names)."""
    path = Path(path)
    if not path.is_file():
        raise VptuneError(f"config file '{path}' {'is a folder' if path.is_dir() else 'does not exist'}; "
                          "pass a YAML file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VptuneError(f"config file '{path}' is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(values, dict):
        raise VptuneError(f"config file '{path}' must hold a mapping of option: value")
    bad = [key for key in values if not isinstance(key, str)]
    if bad:
        raise VptuneError(f"config file '{path}' has key {bad[0]!r}; keys are option names such as batch_size")
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


def _flag(name: str) -> str:
    return name if " " in name else f"--{name.replace('_', '-')}"


def write_yaml(values: dict[str, Any], path: Path) -> None:
    atomic_write(path, yaml.safe_dump(values, sort_keys=False))
