"""Image transforms of the VPT protocols, split into a cacheable and a random part.

Every transform works on uint8 CHW tensors: `prepare` (decode-time resize,
deterministic) turns an RGB PIL image into one, `finish` (augmentation,
scaling to [0, 1], normalisation) turns that into the model input. A dataset
may therefore cache the output of `prepare` across epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vptune.errors import DataError

PROTOCOLS = ("vtab", "fgvc", "folders")


@dataclass(frozen=True)
class ImageTransform:
    """A transform in two steps: `prepare` is deterministic (safe to cache), `finish` may be random."""

    prepare: Callable[[Image.Image], Any]
    finish: Callable[[Any], torch.Tensor]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.finish(self.prepare(image))


def build_transform(
    protocol: str, img_size: int, mean: Sequence[float], std: Sequence[float], train: bool
) -> ImageTransform:
    """Transform of a protocol: 'vtab', 'fgvc' or 'folders' (same as 'fgvc').

    vtab: bilinear resize to exactly `img_size` square, no augmentation, as
    the VPT authors' `tf.image.resize` (no antialiasing). fgvc: resize the
    shorter side to `img_size * 256 // 224` (224 -> 256, 384 -> 438, 448 -> 512
    as the authors' table), then random crop + horizontal flip for training,
    centre crop otherwise. Both end with scaling to [0, 1] and Normalize.

    Raises:
        DataError: unknown protocol, non-positive size, mean/std not 3 values.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")
    if img_size <= 0:
        raise DataError(f"img_size={img_size} must be a positive number of pixels, e.g. 224")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DataError(f"mean={list(mean)} / std={list(std)} must be 3 values each (RGB) with std > 0")
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    if protocol == "vtab":
        return ImageTransform(partial(_resize_square, size=img_size), normalise)
    short_side = img_size * 256 // 224
    if train:
        augment = v2.Compose([v2.RandomCrop(img_size), v2.RandomHorizontalFlip(0.5), normalise])
        return ImageTransform(partial(_resize_short_side, size=short_side, crop=None), augment)
    return ImageTransform(partial(_resize_short_side, size=short_side, crop=img_size), normalise)


# Module-level functions bound with functools.partial (not closures) keep the
# transform picklable for DataLoader workers started with "spawn".
def _resize_square(image: Image.Image, size: int) -> torch.Tensor:
    # antialias=False reproduces tf.image.resize, which the VTAB pipeline used.
    return F.resize(F.pil_to_tensor(image), [size, size], antialias=False)


def _resize_short_side(image: Image.Image, size: int, crop: int | None) -> torch.Tensor:
    # Antialiased, like the PIL Resize in the authors' torchvision pipeline.
    tensor = F.resize(F.pil_to_tensor(image), [size], antialias=True)
    return F.center_crop(tensor, [crop, crop]) if crop else tensor
