"""The interface every task type implements: its data, head and recipe, loss, metrics and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.transforms import InputSpec
from ..errors import VptuneError
from ..registry import Registry


TASK_TYPES: Registry["TaskType"] = Registry("task type", VptuneError)
register = TASK_TYPES.register


class Meter(ABC):
    """Scores a split: `process` each batch's predictions and targets, `compute` the metrics once.

    As mmsegmentation's IoUMetric, `process` keeps per-sample results (`add`: tensors whose first
    dimension is the sample) and `compute` reduces them; a distributed evaluation gathers
    every process's `results()` before `compute`.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._parts: dict[str, list[torch.Tensor]] = {}

    def add(self, **values: torch.Tensor) -> None:
        """Keep per-sample results under their names."""
        for name, value in values.items():
            self._parts.setdefault(name, []).append(value)

    def results(self) -> dict[str, torch.Tensor]:
        """Everything `add` kept, concatenated along the samples."""
        return {name: torch.cat(parts) for name, parts in self._parts.items()}

    @abstractmethod
    def process(self, outputs: Any, targets: Any) -> None:
        """Keep what one batch's predictions (`TaskType.predict`) and targets contribute."""

    @abstractmethod
    def compute(self, results: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The split's metrics from every sample's results, with `n`, the number of samples."""


@dataclass(frozen=True)
class Scoring:
    """How a split is scored: on `device`, inputs of `img_size`, with the task type's evaluation `options`."""

    device: torch.device
    img_size: int
    options: dict[str, Any] = field(default_factory=dict)


class TaskType(ABC):
    """A kind of task (classification, segmentation, ...): everything the engine does not know about it.

    Class attributes: `heads`, the `task_type` of the heads it trains (heads/) and
    `default_head`; `recipe`, its optimizer and schedule defaults (TrainConfig field: value),
    `recipe_lr` its learning rate (None: the method's `default_lr`); `metrics`, the validation
    metrics each epoch logs (`val_<name>`), `selection_metric` the one (higher is better) that
    picks the kept epoch, `train_accuracy` the accuracy training logs (`train_<name>`);
    `protocols`, the input pipelines its data takes; `eval_options`, the evaluation options it
    understands; `scores_classes`, whether a model of it gives each image class scores (prediction
    and serving); `fallback`, whether it claims task folders no other task type claims.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    heads: ClassVar[str]
    default_head: ClassVar[str]
    recipe: ClassVar[dict[str, Any]]
    recipe_lr: ClassVar[float | None] = None
    metrics: ClassVar[tuple[str, ...]]
    selection_metric: ClassVar[str]
    train_accuracy: ClassVar[str]
    protocols: ClassVar[tuple[str, ...]]
    eval_options: ClassVar[tuple[str, ...]] = ()
    scores_classes: ClassVar[bool] = False
    fallback: ClassVar[bool] = False
    # Batches of its datasets (None: torch's default collate).
    collate: ClassVar[Callable | None] = None

    # ------------------------------------------------------------ data

    @abstractmethod
    def find_layout(self, task_dir: Path) -> str | None:
        """The name of this task type's layout `task_dir` is stored in, or None (the fallback raises DataError)."""

    @abstractmethod
    def default_splits(self, layout: str) -> tuple[str, str]:
        """(train, validation) split names of a layout."""

    @abstractmethod
    def full_train_split(self, layout: str) -> str | None:
        """The split final models train on once settings are chosen (tuning and validation images together),
        or None when the layout has none."""

    def default_protocol(self, layout: str) -> str:
        """The input pipeline a layout's data takes unless --protocol says otherwise."""
        return layout

    @abstractmethod
    def load_split(self, data: str, task: str, split: str, *, seed: int) -> Any:
        """One split's samples and class names (`num_classes`, `class_names`), without decoding images."""

    @abstractmethod
    def dataset(
        self, data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
        fraction: float = 1.0,
    ) -> Dataset:
        """The transformed samples of one split (or a seeded `fraction` of it): a dataset with `num_classes`,
        `class_names`, `skipped` and `split.split`."""

    # ------------------------------------------------------------ training

    def forward(self, net: nn.Module, images: torch.Tensor) -> Any:
        """What the training loss reads: the network's output on a batch."""
        return net(images)

    @abstractmethod
    def loss(self, model: nn.Module, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (`model`: the TunedModel, for what its head declares)."""

    @abstractmethod
    def hits(self, outputs: Any, targets: torch.Tensor) -> tuple[int, int]:
        """(correct, counted) of a batch, for the training accuracy."""

    def min_lr(self, lr: float) -> float:
        """The learning rate the schedule ends at, unless --min-lr is given."""
        return 0.0

    # ------------------------------------------------------------ scoring

    @abstractmethod
    def meter(self, num_classes: int) -> Meter:
        """A fresh meter for one split."""

    def predict(self, net: nn.Module, model: nn.Module, images: Any, targets: Any, scoring: Scoring) -> Any:
        """What the meter reads of one batch: here the logits of `net` (the trained module: a head on cached
        features, or the whole model), on the CPU."""
        return net(images.to(scoring.device)).float().cpu()

    def report(self, metrics: dict[str, Any], class_names: list[str], skipped: int,
               options: dict[str, Any]) -> dict[str, Any]:
        """What `vptune eval` reports of a split after its name and data: here the metrics and the
        number of images skipped as unreadable."""
        return {**metrics, "skipped_images": skipped}

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class scores of logits `(..., C)` for prediction: softmax probabilities here."""
        return logits.float().softmax(dim=-1)
