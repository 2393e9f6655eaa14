"""The configuration of one training run; the CLI and YAML files fill the same dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import VptuneError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly")
PRECISIONS = ("fp32", "bf16")
# Optimizer and schedule defaults per task type, used for the fields a run leaves unset.
# Classification: the runs in docs/results.md. Segmentation: SETR's ADE20K configs in
# mmsegmentation (SGD, momentum 0.9, lr 1e-3, no weight decay, decoders at 10x, PolyLR power
# 0.9 to eta_min 1e-4 without warm-up); min_lr is then lr / 10.
RECIPES: dict[str, dict[str, Any]] = {
    "classification": dict(optimizer="adamw", lr=5e-3, weight_decay=1e-4, warmup_epochs=1.0, schedule="cosine",
                           head_lr_multiplier=1.0),
    "segmentation": dict(optimizer="sgd", lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, schedule="poly",
                         head_lr_multiplier=10.0),
}


@dataclass
class TrainConfig:
    """Everything that decides a run's result; optimizer and schedule fields left None take RECIPES' values."""

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
    # None: "linear" for classification data, "setr-pup" for segmentation data.
    head: str | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    # None: the task type's recipe (RECIPES), filled in by `fill_recipe` once the data is known.
    optimizer: str | None = None
    lr: float | None = None
    scale_lr: bool = False
    weight_decay: float | None = None
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

    def validate(self) -> None:
        """Raise VptuneError for values no run can use (recipe fields left None are checked once filled)."""
        if not self.data or not self.task:
            raise VptuneError("a run needs --data ROOT and --task NAME")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise VptuneError(f"optimizer '{self.optimizer}' is not one of: {', '.join(OPTIMIZERS)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise VptuneError(f"schedule '{self.schedule}' is not one of: {', '.join(SCHEDULES)}")
        if self.poly_power <= 0 or _below(self.min_lr, 0) or _below(self.head_lr_multiplier, 0, strict=True):
            raise VptuneError("--poly-power and --head-lr-multiplier must be > 0 and --min-lr >= 0")
        if self.precision not in PRECISIONS:
            raise VptuneError(f"precision '{self.precision}' is not one of: {', '.join(PRECISIONS)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if _below(value, 0, strict=True):
                raise VptuneError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if _below(self.weight_decay, 0) or _below(self.warmup_epochs, 0):
            raise VptuneError("--weight-decay and --warmup-epochs must be >= 0")

    def fill_recipe(self, segmentation: bool) -> None:
        """Fill the recipe fields left None with the task type's values from RECIPES."""
        recipe = RECIPES["segmentation" if segmentation else "classification"]
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.min_lr is None:
            self.min_lr = self.lr / 10 if segmentation else 0.0
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


def _below(value: float | None, bound: float, *, strict: bool = False) -> bool:
    """Whether a set value is below `bound` (or at it, with `strict`); None is not."""
    return value is not None and (value <= bound if strict else value < bound)


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
    return {key.replace("-", "_"): value for key, value in values.items()}


def write_yaml(values: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
