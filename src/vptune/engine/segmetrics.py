"""Semantic segmentation metrics as mmsegmentation's IoUMetric defines them: aAcc, mIoU, mAcc.

Per class, the areas (pixel counts) of intersection, union, prediction and label are summed
over the whole split, pixels labelled `ignore_index` left out; then IoU = intersection /
union and Acc = intersection / label area per class. A class with union 0 (in neither the
predictions nor the labels of the split) has IoU NaN and is left out of the mean; a class
only predicted has IoU 0. aAcc is the total intersection over the total label area.
Values are fractions (mmsegmentation prints them x100, rounded to two decimals).
"""

from __future__ import annotations

import torch

from ..data import IGNORE_INDEX
from ..errors import VptuneError


def intersect_and_union(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class areas `(intersect, union, pred, label)` (int64, shape `(num_classes,)`) of class maps.

    `pred` and `label` are class indices of the same shape (one image or a batch). Values
    outside `0..num_classes-1` other than `ignore_index` count in no class.
    """
    valid = label != ignore_index
    pred, label = pred[valid].long(), label[valid].long()
    area_intersect = _histogram(pred[pred == label], num_classes)
    area_pred = _histogram(pred, num_classes)
    area_label = _histogram(label, num_classes)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def _histogram(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values.flatten().cpu(), minlength=num_classes)


class SegmentationMeter:
    """Accumulates the per-class areas of a split batch by batch; `compute()` gives the metrics."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.areas = torch.zeros(4, num_classes, dtype=torch.int64)
        self.images = 0

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add predicted class maps `(B, H, W)` (argmax of the logits) and their labels `(B, H, W)`."""
        if pred.shape != label.shape:
            raise VptuneError(f"predictions {tuple(pred.shape)} and labels {tuple(label.shape)} differ in shape")
        self.areas += torch.stack(intersect_and_union(pred, label, self.num_classes, self.ignore_index))
        self.images += pred.shape[0] if pred.dim() == 3 else 1

    def compute(self) -> dict[str, float | int | list[float]]:
        """`aAcc`, `mIoU`, `mAcc` (NaN-skipping means), per-class `IoU` and `Acc` lists, and `n` images."""
        intersect, union, _, label = self.areas.double()
        iou = intersect / union
        acc = intersect / label
        return {
            "n": self.images,
            "aAcc": float(intersect.sum() / label.sum()),
            "mIoU": float(iou.nanmean()),
            "mAcc": float(acc.nanmean()),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
        }
