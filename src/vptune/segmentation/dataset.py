"""A map-style dataset over a `SegSplit`: (image, mask) pairs, decoded images optionally cached."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .formats import SegSplit, load_pair
from .transforms import SegTransform


class SegDataset(Dataset):
    """Samples of a `SegSplit` as `(image, mask)`: a normalised (3, H, W) float and an (H, W) long tensor.

    Args:
        split: the (image, mask) paths and class names.
        transform: the joint transform (`SegTransform`).
        cache: keep decoded images and masks in memory, so each file is read once.

    Raises:
        DataError (on access): unreadable files, sizes that differ, labels outside the classes.
    """

    def __init__(self, split: SegSplit, transform: SegTransform, *, cache: bool = False) -> None:
        self.split = split
        self.transform = transform
        self.cache = cache
        self._decoded: dict[int, tuple[Image.Image, np.ndarray]] = {}

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.split.class_names

    @property
    def skipped(self) -> list:
        """Always empty: a bad image or mask raises instead of being skipped."""
        return []

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self._decoded.get(index)
        if pair is None:
            pair = load_pair(*self.split.samples[index], self.split)
            if self.cache:
                self._decoded[index] = pair
        return self.transform(*pair)


def seg_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor | list, torch.Tensor | list]:
    """Stack images and masks when all share one size (training crops), else keep lists (evaluation)."""
    images, masks = zip(*batch)
    same = len({tuple(i.shape) for i in images}) == 1 and len({tuple(m.shape) for m in masks}) == 1
    return (torch.stack(images), torch.stack(masks)) if same else (list(images), list(masks))
