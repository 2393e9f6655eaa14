"""Semantic segmentation: a class per pixel, SETR's recipe and losses, mmsegmentation's mIoU by sliding windows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.transforms import InputSpec
from ..errors import DataError, VptuneError
from ..segmentation.dataset import SegDataset, seg_collate
from ..segmentation.formats import (DEFAULT_SEG_SPLITS, IGNORE_INDEX, SEG_FORMATS, SegSplit, find_seg_layout,
                                    load_seg_split)
from ..segmentation.inference import MULTI_SCALES, default_stride, segment
from ..segmentation.loss import segmentation_loss
from ..segmentation.metrics import intersect_and_union, metrics_from_areas
from ..segmentation.transforms import SegTransform
from .base import Meter, Scoring, TaskType, register


def pixel_hits(logits: torch.Tensor, masks: torch.Tensor) -> tuple[int, int]:
    """(correct, labelled) pixel counts of a batch; ignored pixels count in neither."""
    labelled = masks != IGNORE_INDEX
    return int(((logits.argmax(1) == masks) & labelled).sum()), int(labelled.sum())


def by_class(values: Sequence[float], class_names: Sequence[str]) -> dict[str, float | None]:
    """Per-class values by name; None for NaN (a class neither present nor predicted)."""
    return {name: None if math.isnan(v) else v for name, v in zip(class_names, values)}


class SegmentationMeter(Meter):
    """Keeps each image's per-class areas (intersection, union, prediction, label); `compute` sums them over the
    split into aAcc, mIoU, mAcc and per-class IoU / Acc (see segmentation/metrics.py)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(num_classes)
        self.ignore_index = ignore_index

    def process(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> None:
        """Add each image's predicted class map `(H, W)` (argmax of its scores) and its mask `(H, W)`."""
        for pred, label in zip(outputs, targets):
            if pred.shape != label.shape:
                raise VptuneError(f"predictions {tuple(pred.shape)} and labels {tuple(label.shape)} differ in shape")
            self.add(areas=torch.stack(intersect_and_union(pred, label, self.num_classes, self.ignore_index))[None])

    def compute(self, results: dict[str, torch.Tensor]) -> dict[str, Any]:
        areas = results["areas"]
        return metrics_from_areas(areas.sum(0), len(areas))


@register
class Segmentation(TaskType):
    name = "segmentation"
    summary = "a class per pixel: ADE20K, Pascal VOC, Cityscapes or image/mask folder pairs"
    heads = "segmentation"
    default_head = "setr-pup"
    # SETR's ADE20K configs in mmsegmentation: SGD (momentum 0.9), lr 1e-3, no weight decay, decoders
    # at 10x, PolyLR power 0.9 to eta_min 1e-4 (lr / 10, `min_lr`) without warm-up.
    recipe = dict(optimizer="sgd", weight_decay=0.0, warmup_epochs=0.0, schedule="poly", head_lr_multiplier=10.0)
    recipe_lr = 1e-3
    metrics = ("aAcc", "mIoU", "mAcc")
    selection_metric = "mIoU"
    # Over labelled pixels.
    train_accuracy = "aAcc"
    protocols = SEG_FORMATS
    eval_options = ("multi_scale",)
    collate = staticmethod(seg_collate)

    def find_layout(self, task_dir: Path) -> str | None:
        found = find_seg_layout(task_dir)
        return found[0] if found else None

    def default_splits(self, layout: str) -> tuple[str, str]:
        return DEFAULT_SEG_SPLITS[layout]

    def full_train_split(self, layout: str) -> None:
        """None: segmentation layouts hold no union of their training and validation images."""
        return None

    def load_split(self, data: str, task: str, split: str, *, seed: int) -> SegSplit:
        return load_seg_split(data, task, split)

    def dataset(
        self, data: str, task: str, split: str, spec: InputSpec, *, train: bool, seed: int, skip_bad_images: bool,
        fraction: float = 1.0,
    ) -> SegDataset:
        """Each pair is decoded every epoch: the random resize starts from the full image (an ADE20K or
        Cityscapes split would not fit in memory)."""
        if skip_bad_images:
            raise DataError("--skip-bad-images applies to classification data; fix or remove the bad image/mask pairs")
        transform = SegTransform(spec.img_size, spec.mean, spec.std, train=train)
        return SegDataset(load_seg_split(data, task, split), transform)

    def forward(self, net: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The main decoder's logits and the auxiliary decoders', from one forward."""
        return net(images, aux=True)

    def loss(self, model: nn.Module, outputs: tuple[torch.Tensor, list[torch.Tensor]],
             targets: torch.Tensor) -> torch.Tensor:
        logits, aux_logits = outputs
        return segmentation_loss(logits, targets, aux_logits, aux_weight=model.head.aux_weight)

    def hits(self, outputs: tuple[torch.Tensor, list[torch.Tensor]], targets: torch.Tensor) -> tuple[int, int]:
        return pixel_hits(outputs[0], targets)

    def min_lr(self, lr: float) -> float:
        return lr / 10

    def meter(self, num_classes: int) -> SegmentationMeter:
        return SegmentationMeter(num_classes)

    def predict(self, net: nn.Module, model: nn.Module, images: Sequence[torch.Tensor],
                targets: Sequence[torch.Tensor], scoring: Scoring) -> list[torch.Tensor]:
        """Each image's class map at its mask's size, by sliding windows of the model's input size; with the
        `multi_scale` option the softmax averaged over scales 0.5-1.75 and their mirror images."""
        multi_scale = bool(scoring.options.get("multi_scale"))
        crop = scoring.img_size
        return [
            segment(model, image.to(scoring.device), tuple(mask.shape), crop, default_stride(crop),
                    scales=MULTI_SCALES if multi_scale else (1.0,), flip=multi_scale).argmax(0).cpu()
            for image, mask in zip(images, targets)
        ]

    def report(self, metrics: dict[str, Any], class_names: list[str], skipped: int,
               options: dict[str, Any]) -> dict[str, Any]:
        """aAcc, mIoU, mAcc and each class's IoU by name."""
        scores = {key: metrics[key] for key in ("n", "aAcc", "mIoU", "mAcc")}
        return {"multi_scale": bool(options.get("multi_scale")), **scores, "IoU": by_class(metrics["IoU"], class_names)}
