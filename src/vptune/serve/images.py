"""Images as a task's evaluation prepared them, and top-k predictions from logits."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from PIL import Image

from ..data import load_rgb
from ..data.transforms import InputSpec
from ..errors import DataError, VptuneError

ImageInput = Union[str, os.PathLike, bytes, Image.Image, torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes: its name, index and score (its task type's: a softmax probability,
    or for multi-label tasks the class's own sigmoid probability)."""

    label: str
    index: int
    score: float


def prepare_image(image: ImageInput, spec: InputSpec) -> torch.Tensor:
    """The model input `(3, img_size, img_size)` of one image, prepared as evaluation prepared it.

    `image` is a path, encoded bytes, a PIL image, a uint8 CHW tensor (resized and normalised
    like a decoded file), or a float CHW tensor already prepared at `img_size` (used as is).
    Raises DataError for anything else, or an image that cannot be decoded.
    """
    transform = spec.transform(train=False)
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise DataError(f"an image tensor must be CHW with 3 channels, got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            return transform.finish(transform.prepare(image))
        if not image.is_floating_point() or tuple(image.shape[1:]) != (spec.img_size, spec.img_size):
            raise DataError(
                f"a {image.dtype} tensor of shape {tuple(image.shape)} is neither a uint8 image nor a prepared "
                f"float input of shape (3, {spec.img_size}, {spec.img_size})"
            )
        return image
    if isinstance(image, Image.Image):
        return transform(image.convert("RGB"))
    if isinstance(image, (bytes, bytearray)):
        return transform(load_rgb(io.BytesIO(image)))
    if isinstance(image, (str, os.PathLike)):
        return transform(load_rgb(Path(image)))
    raise DataError(f"cannot read an image from {type(image).__name__}; pass a path, bytes, a PIL image or a CHW tensor")


def best_classes(scores: torch.Tensor, class_names: list[str], k: int) -> list[Prediction]:
    """The `k` best-scored classes of one score vector (`TaskType.scores`), best first; VptuneError unless k >= 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise VptuneError(f"top_k must be a whole number >= 1, got {k!r}")
    best = scores.topk(min(k, scores.shape[-1]))
    return [Prediction(class_names[i], i, p) for p, i in zip(best.values.tolist(), best.indices.tolist())]
