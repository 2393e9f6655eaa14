"""Segmentation inference as mmsegmentation runs it: sliding windows, and multi-scale + flip averaging.

`slide_logits` covers an image of any size with `crop` x `crop` windows `stride`
apart (the last window of a row or column flush with the border) and averages
the logits where windows overlap; a side shorter than `crop` is padded for the
model and cut back after. `segment` adds the resize of the logits to the
original mask size and, with several `scales` and/or `flip`, averages the
softmax over every scale and flip, as mmseg's test-time augmentation. `predict_mask`
segments one image file's worth of pixels for `vptune predict`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.transforms import InputSpec
from .transforms import SegTransform

# mmseg's ADE20K sliding window: crop 512, stride 341 (two thirds).
STRIDE_FRACTION = 2 / 3
# mmseg's multi-scale test ratios.
MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def default_stride(crop: int) -> int:
    """Two thirds of the crop, rounded down (mmseg's 341 for 512), at least 1."""
    return max(1, int(crop * STRIDE_FRACTION))


@torch.no_grad()
def slide_logits(model: nn.Module, image: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """Logits `(num_classes, H, W)` of a `(3, H, W)` image, averaged over overlapping windows."""
    height, width = image.shape[-2:]
    tops = _starts(height, crop, stride)
    lefts = _starts(width, crop, stride)
    total, count = None, torch.zeros(height, width, device=image.device)
    for top in tops:
        for left in lefts:
            window = image[:, top : top + crop, left : left + crop]
            h, w = window.shape[-2:]
            padded = F.pad(window, (0, crop - w, 0, crop - h))
            logits = model(padded[None])[0, :, :h, :w].float()
            if total is None:
                total = torch.zeros(logits.shape[0], height, width, device=image.device)
            total[:, top : top + h, left : left + w] += logits
            count[top : top + h, left : left + w] += 1
    return total / count


@torch.no_grad()
def segment(
    model: nn.Module,
    image: torch.Tensor,
    size: tuple[int, int],
    crop: int,
    stride: int,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Per-pixel class scores `(num_classes, *size)` for a prepared `(3, H, W)` image.

    One scale without flip gives the window-averaged logits resized bilinearly
    to `size` (the mask's); otherwise the mean of the softmax over each scale
    (the image resized by that ratio) and, with `flip`, its mirror image.
    """
    single = len(scales) == 1 and scales[0] == 1.0 and not flip
    total = None
    for scale in scales:
        scaled = image if scale == 1.0 else _rescale(image, scale)
        for mirrored in (False, True) if flip else (False,):
            logits = slide_logits(model, scaled.flip(-1) if mirrored else scaled, crop, stride)
            logits = logits.flip(-1) if mirrored else logits
            logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
            if single:
                return logits
            probs = logits.softmax(0)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


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


def _starts(length: int, crop: int, stride: int) -> list[int]:
    """Window starts along one side, as mmseg's slide_inference: the last window ends at the border."""
    grids = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(grids)]


def _rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    height, width = image.shape[-2:]
    size = [max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))]
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
