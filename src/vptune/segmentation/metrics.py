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

from .formats import IGNORE_INDEX


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


def metrics_from_areas(areas: torch.Tensor, images: int) -> dict[str, float | int | list[float]]:
    """`aAcc`, `mIoU`, `mAcc` (NaN-skipping means), per-class `IoU` and `Acc` lists and `n` images, from the
    split's summed areas `(4, num_classes)` (intersection, union, prediction, label)."""
    intersect, union, _, label = areas.double()
    iou = intersect / union
    acc = intersect / label
    return {
        "n": images,
        "aAcc": float(intersect.sum() / label.sum()),
        "mIoU": float(iou.nanmean()),
        "mAcc": float(acc.nanmean()),
        "IoU": iou.tolist(),
        "Acc": acc.tolist(),
    }
