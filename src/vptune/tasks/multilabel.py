"""Multi-label classification: any number of classes per image, sigmoid + binary cross-entropy, mAP.

Layout (VTAB-like, marked by an empty file named `multilabel`):

    <task>/multilabel      marker: the split lists hold label lists
    <task>/classes.txt     class names, one per line, in label order
    <task>/train.txt       one image per line: `<image path> <id>,<id>,...` (`-` for none); also val.txt, test.txt

Image paths are relative to the task folder; `a+b` names the union of splits `a` and `b`.
A label is predicted when its sigmoid score exceeds 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, InputSpec, TaskSplit, resolve_task_dir
from ..data.transforms import PROTOCOLS
from ..errors import DataError
from .base import Meter, TaskType, register

MARKER = "multilabel"
NO_LABELS = "-"


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one class: the sum over score thresholds (high to low) of the recall gained
    times the precision there, tied scores forming one threshold (scikit-learn's definition)."""
    order = scores.argsort(descending=True, stable=True)
    ranked, hits = scores[order], positives[order].double()
    true_pos, false_pos = hits.cumsum(0), (1 - hits).cumsum(0)
    last_of_tie = torch.ones_like(ranked, dtype=torch.bool)
    last_of_tie[:-1] = ranked[1:] != ranked[:-1]
    true_pos, false_pos = true_pos[last_of_tie], false_pos[last_of_tie]
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / true_pos[-1]
    gained = recall - torch.cat([recall.new_zeros(1), recall[:-1]])
    return float((gained * precision).sum())


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """`mAP`, the mean over the classes present in `targets` `(N, C)` of their average precision, and
    `label_acc`, the share of (image, class) decisions (sigmoid > 0.5) that are right."""
    present = [c for c in range(targets.shape[1]) if targets[:, c].any()]
    per_class = [average_precision(logits[:, c].float(), targets[:, c] > 0.5) for c in present]
    return {
        "n": int(targets.shape[0]),
        "mAP": float(np.mean(per_class)) if per_class else float("nan"),
        "label_acc": float(((logits > 0) == (targets > 0.5)).double().mean()),
    }


class MultiLabelMeter(Meter):
    """Keeps every sample's logits and label vector; `compute` gives `multilabel_metrics` of the split."""

    def process(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.add(logits=outputs, targets=targets)

    def compute(self, results: dict[str, torch.Tensor]) -> dict[str, Any]:
        return multilabel_metrics(results["logits"], results["targets"])


def load_multilabel_split(data: str, task: str, split: str, *, fraction: float = 1.0, seed: int = 0) -> TaskSplit:
    """`split` of a multi-label task: absolute image paths with multi-hot float label vectors.

    A `fraction` < 1 keeps a seeded share of the images (at least one), in their order.
    Raises DataError for a missing split or classes.txt, a malformed line, or a label outside the classes.
    """
    task_dir = resolve_task_dir(data, task)
    names_file = task_dir / "classes.txt"
    if not names_file.is_file():
        raise DataError(f"{names_file} is missing; list the class names there, one per line, in label order")
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    samples = []
    for part in split.split("+"):
        entries = _read_list(task_dir, part, len(names))
        samples += [(task_dir / rel, _multi_hot(ids, len(names))) for rel, ids in entries]
    if not samples:
        raise DataError(f"split '{split}' of {task_dir} holds no images; add some or pick another split")
    if fraction < 1.0:
        keep = np.random.default_rng(seed).permutation(len(samples))[:max(1, round(fraction * len(samples)))]
        samples = [samples[i] for i in sorted(keep)]
    return TaskSplit(samples, names, len(names), MARKER, split)


def _read_list(task_dir: Path, split: str, num_classes: int) -> list[tuple[str, list[int]]]:
    path = task_dir / f"{split}.txt"
    if not path.is_file() or split == "classes":
        available = sorted(p.stem for p in task_dir.glob("*.txt") if p.stem != "classes")
        raise DataError(f"split '{split}' not found in {task_dir}; available splits: {', '.join(available) or 'none'}")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(maxsplit=1)
        ids = None
        if len(fields) == 2:
            ids = [] if fields[1] == NO_LABELS else _ids(fields[1])
        if ids is None:
            raise DataError(f"{path}:{number}: expected '<image path> <id>,<id>,...' (or '-' for none), "
                            f"got {line.strip()!r}")
        bad = next((i for i in ids if not 0 <= i < num_classes), None)
        if bad is not None:
            raise DataError(f"{path}:{number}: label {bad} is outside [0, {num_classes}) set by classes.txt; "
                            "add the missing class names or fix the label")
        entries.append((fields[0], ids))
    return entries


def _ids(text: str) -> list[int] | None:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        return None


def _multi_hot(ids: list[int], num_classes: int) -> torch.Tensor:
    labels = torch.zeros(num_classes)
    labels[ids] = 1.0
    return labels


@register
class MultiLabel(TaskType):
    name = "multilabel"
    summary = "any number of classes per image (split lists of `path id,id,...`, marked by a `multilabel` file)"
    heads = "classification"
    default_head = "linear"
    recipe = dict(optimizer="adamw", weight_decay=1e-4, warmup_epochs=1.0, schedule="cosine", head_lr_multiplier=1.0)
    metrics = ("mAP", "label_acc")
    selection_metric = "mAP"
    train_accuracy = "label_acc"
    protocols = PROTOCOLS
    scores_classes = True

    def find_layout(self, task_dir: Path) -> str | None:
        return MARKER if (task_dir / MARKER).is_file() else None

    def default_splits(self, layout: str) -> tuple[str, str]:
        return "train", "val"

    def full_train_split(self, layout: str) -> str:
        return "train+val"

    def default_protocol(self, layout: str) -> str:
        return "vtab"  # resize, no augmentation

    def load_split(self, data: str, task: str, split: str, *, seed: int) -> TaskSplit:
        return load_multilabel_split(data, task, split)

    def dataset(
        self, data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
        fraction: float = 1.0,
    ) -> ImageDataset:
        task_split = load_multilabel_split(data, task, split, fraction=fraction, seed=seed)
        return ImageDataset(task_split, spec.transform(train=train), cache_images=True,
                            skip_bad_images=skip_bad_images)

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.float(), targets)

    def hits(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
        return int(((outputs > 0) == (targets > 0.5)).sum()), targets.numel()

    def meter(self, num_classes: int) -> MultiLabelMeter:
        return MultiLabelMeter(num_classes)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class sigmoid probabilities: each label is predicted on its own."""
        return logits.float().sigmoid()
