"""Evaluation loop and prediction of segmentation models, and the training pixel accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..data import IGNORE_INDEX, InputSpec, SegTransform
from .distributed import Dist, sum_over_ranks
from .runinfo import progress
from .seg_inference import default_stride, segment
from .segmetrics import SegmentationMeter


def pixel_hits(logits: torch.Tensor, masks: torch.Tensor) -> tuple[int, int]:
    """(correct, labelled) pixel counts of a batch; ignored pixels count in neither."""
    labelled = masks != IGNORE_INDEX
    return int(((logits.argmax(1) == masks) & labelled).sum()), int(labelled.sum())


@torch.no_grad()
def evaluate_segmentation(
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
) -> dict:
    """aAcc, mIoU, mAcc, per-class IoU/Acc lists and `n` images of a split, summed over all ranks.

    Each image is segmented with sliding windows (`segment`) at its mask's size.
    """
    was_training = model.training
    model.eval()
    meter = SegmentationMeter(num_classes, IGNORE_INDEX)
    for images, masks in progress(loader, desc, enabled=show):
        for image, mask in zip(images, masks):
            scores = segment(model, image.to(device), tuple(mask.shape), crop, stride or default_stride(crop),
                             scales=scales, flip=flip)
            meter.update(scores.argmax(0).cpu(), mask)
    model.train(was_training)
    if ctx.enabled:
        totals = sum_over_ranks([*meter.areas.flatten().tolist(), meter.images], ctx)
        meter.areas = torch.tensor(totals[:-1], dtype=torch.int64).view_as(meter.areas)
        meter.images = int(totals[-1])
    return meter.compute()


def by_class(values: Sequence[float], class_names: Sequence[str]) -> dict[str, float | None]:
    """Per-class values by name; None for NaN (a class neither present nor predicted)."""
    return {name: None if math.isnan(v) else v for name, v in zip(class_names, values)}


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
