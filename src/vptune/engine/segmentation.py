"""Training loss and evaluation loop of segmentation runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..data import IGNORE_INDEX, SegTransform
from .distributed import Dist, sum_over_ranks
from .loaders import InputSpec
from .runinfo import progress
from .seg_inference import default_stride, segment


def seg_loss(
    logits: torch.Tensor, aux_logits: Sequence[torch.Tensor], masks: torch.Tensor, aux_weight: float
) -> torch.Tensor:
    """Pixel cross-entropy of the main decoder plus `aux_weight` x that of each auxiliary one.

    Ignored pixels add 0 and still count in the mean, as mmseg's CrossEntropyLoss
    (avg_non_ignore=False): a crop of ignored pixels only gives loss 0, not NaN.
    """
    loss = _pixel_ce(logits, masks)
    for extra in aux_logits:
        loss = loss + aux_weight * _pixel_ce(extra, masks)
    return loss


def pixel_hits(logits: torch.Tensor, masks: torch.Tensor) -> tuple[int, int]:
    """(correct, labelled) pixel counts of a batch; ignored pixels count in neither."""
    labelled = masks != IGNORE_INDEX
    return int(((logits.argmax(1) == masks) & labelled).sum()), int(labelled.sum())


@torch.no_grad()
def confusion_matrix(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    crop: int,
    device: torch.device,
    ctx: Dist,
    *,
    show: bool,
    desc: str,
    stride: int | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """`(num_classes, num_classes)` counts of (true class, predicted class) over the labelled pixels, all ranks.

    Each image is segmented with sliding windows (`segment`) at its mask's size.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long)
    for images, masks in progress(loader, desc, enabled=show):
        for image, mask in zip(images, masks):
            scores = segment(model, image.to(device), tuple(mask.shape), crop, stride or default_stride(crop),
                             scales=scales, flip=flip)
            labelled = mask != IGNORE_INDEX
            pairs = mask[labelled] * num_classes + scores.argmax(0).cpu()[labelled]
            counts += torch.bincount(pairs, minlength=num_classes * num_classes)
    model.train(was_training)
    return torch.tensor(sum_over_ranks(counts.tolist(), ctx), dtype=torch.long).view(num_classes, num_classes)


def segmentation_scores(counts: torch.Tensor) -> dict[str, float]:
    """aAcc, mIoU and mAcc from a confusion matrix, as mmseg's IoUMetric (classes absent from
    both truth and prediction are left out of the means)."""
    counts = counts.double()
    intersect = counts.diag()
    union = counts.sum(0) + counts.sum(1) - intersect
    labelled = counts.sum(1)
    return {
        "aAcc": float(intersect.sum() / counts.sum().clamp(min=1)),
        "mIoU": float((intersect / union).nanmean()),
        "mAcc": float((intersect / labelled).nanmean()),
    }


def class_iou(counts: torch.Tensor, class_names: Sequence[str]) -> dict[str, float | None]:
    """IoU of each class by name; None for a class neither present nor predicted."""
    counts = counts.double()
    intersect = counts.diag()
    union = counts.sum(0) + counts.sum(1) - intersect
    return {name: (float(i / u) if u > 0 else None) for name, i, u in zip(class_names, intersect, union)}


@torch.no_grad()
def predict_mask(model: nn.Module, image: Image.Image, spec: InputSpec, device: torch.device) -> np.ndarray:
    """Class ids `(H, W)` of an RGB image at its own size: evaluation transform, single-scale sliding windows."""
    prepared = SegTransform(spec.img_size, spec.mean, spec.std, train=False).eval_image(image)
    was_training = model.training
    model.eval()
    scores = segment(model, prepared.to(device), (image.height, image.width), spec.img_size,
                     default_stride(spec.img_size))
    model.train(was_training)
    return scores.argmax(0).cpu().numpy().astype(np.uint8)


def _pixel_ce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="none").mean()
