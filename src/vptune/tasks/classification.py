"""Classification: one class per image, cross-entropy, top-1 (top-5, ROC-AUC) on VTAB-1k, FGVC or class folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, InputSpec, TaskSplit, carve_val, load_split
from ..data.formats import detect_format, resolve_task_dir
from ..data.transforms import PROTOCOLS
from .base import Meter, TaskType, register

DEFAULT_SPLITS = {"vtab": ("train800", "val200"), "fgvc": ("train", "val"), "folders": ("train", "val")}
# The whole training set once settings are chosen: VTAB-1k's 1000 images, or train and val together.
FULL_TRAIN_SPLITS = {"vtab": "train800val200", "fgvc": "train+val", "folders": "train+val"}


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of a whole split from its logits `(N, C)` and labels `(N,)`: top-1, top-5 where classes > 5,
    ROC-AUC for binary tasks.

    top-k: the label is among the k highest logits, tied logits ranking the higher class
    index first. auc: ROC-AUC of the softmax probability of class 1 (tied scores count half).
    """
    num_classes = logits.shape[1]
    metrics = {"n": int(labels.numel()), "top1": _topk(logits, labels, 1)}
    if num_classes > 5:
        metrics["top5"] = _topk(logits, labels, 5)
    if num_classes == 2 and labels.unique().numel() == 2:
        from sklearn.metrics import roc_auc_score

        scores = torch.softmax(logits.float(), dim=1)[:, 1]
        metrics["auc"] = float(roc_auc_score(labels.numpy(), scores.numpy()))
    return metrics


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    # Tied scores rank the higher class index first, as scikit-learn's top_k_accuracy_score does.
    top = logits.argsort(dim=1, stable=True).flip(1)[:, :k]
    return float((top == labels[:, None]).any(dim=1).double().mean())


def load_fraction(data: str, task: str, split: str, fraction: float, seed: int) -> TaskSplit:
    """`split`, or a seeded, class-stratified `fraction` of it (at least one image per class).

    FGVC tasks that ship the subset as `<split>_<pct>.json` (e.g. `train_10.json`) use that file.
    """
    if fraction >= 1.0:
        return load_split(data, task, split, seed=seed)
    task_dir = resolve_task_dir(data, task)
    if detect_format(task_dir) == "fgvc":
        for name in (f"{split}_{fraction * 100:g}", f"{split}_{fraction:g}"):
            if (task_dir / f"{name}.json").is_file():
                return load_split(data, task, name, seed=seed)
    whole = load_split(data, task, split, seed=seed)
    kept, _ = carve_val(whole.samples, whole.num_classes, 1.0 - fraction, seed)
    return dataclasses.replace(whole, samples=kept)


class ClassificationMeter(Meter):
    """Keeps every sample's logits and label; `compute` gives `classification_metrics` of the split."""

    def process(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.add(logits=outputs, labels=targets)

    def compute(self, results: dict[str, torch.Tensor]) -> dict[str, Any]:
        return classification_metrics(results["logits"], results["labels"])


@register
class Classification(TaskType):
    name = "classification"
    summary = "one class per image: VTAB-1k lists, FGVC json or class folders"
    heads = "classification"
    default_head = "linear"
    recipe = dict(optimizer="adamw", weight_decay=1e-4, warmup_epochs=1.0, schedule="cosine", head_lr_multiplier=1.0)
    metrics = ("top1", "top5", "auc")
    selection_metric = "top1"
    train_accuracy = "top1"
    protocols = PROTOCOLS
    scores_classes = True
    fallback = True

    def find_layout(self, task_dir: Path) -> str:
        return detect_format(task_dir)

    def default_splits(self, layout: str) -> tuple[str, str]:
        return DEFAULT_SPLITS[layout]

    def full_train_split(self, layout: str) -> str:
        return FULL_TRAIN_SPLITS[layout]

    def load_split(self, data: str, task: str, split: str, *, seed: int) -> TaskSplit:
        return load_split(data, task, split, seed=seed)

    def dataset(
        self, data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
        fraction: float = 1.0,
    ) -> ImageDataset:
        """Resized images are cached: each is decoded once per run."""
        task_split = load_fraction(data, task, split, fraction, seed)
        return ImageDataset(task_split, spec.transform(train=train), cache_images=True,
                            skip_bad_images=skip_bad_images)

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)

    def hits(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
        return int((outputs.argmax(1) == targets).sum()), targets.numel()

    def meter(self, num_classes: int) -> ClassificationMeter:
        return ClassificationMeter(num_classes)
