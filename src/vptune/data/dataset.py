"""A map-style dataset over a `TaskSplit`, with optional bad-image skipping and caching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from PIL import Image
from torch.utils.data import Dataset

from vptune.data.formats import TaskSplit
from vptune.data.transforms import ImageTransform
from vptune.errors import DataError


class ImageDataset(Dataset):
    """Images of a `TaskSplit` as `(tensor, label)` pairs, decoded as RGB.

    Args:
        split: the samples and class names.
        transform: an `ImageTransform` (from `build_transform`) or any callable
            taking an RGB PIL image.
        cache_images: keep the output of the transform's deterministic `prepare`
            step (the resized uint8 image) in memory, so each image is decoded
            once; random augmentation still runs every epoch. DataLoader workers
            each hold their own cache: call `preload()` before creating the
            loader (forked workers then share it) or use `persistent_workers`.
        skip_bad_images: decode every image once up front and drop those that
            fail (listed in `skipped`) instead of raising.

    Raises:
        DataError: an image cannot be read (without `skip_bad_images`), or none is left.
    """

    def __init__(
        self,
        split: TaskSplit,
        transform: ImageTransform | Callable[[Image.Image], Any],
        *,
        cache_images: bool = False,
        skip_bad_images: bool = False,
    ) -> None:
        self.split = split
        # A plain callable has no cacheable step: cache the decoded image instead.
        self.transform = transform if isinstance(transform, ImageTransform) else ImageTransform(_identity, transform)
        self.cache_images = cache_images
        self.skipped: list[Path] = []
        self.samples = list(split.samples)
        if skip_bad_images:
            self.samples = [(path, label) for path, label in self.samples if self._is_readable(path)]
            if not self.samples:
                raise DataError(f"every image of split '{split.split}' failed to decode (first: {self.skipped[0]})")
        self._cache: dict[int, Any] = {}

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.split.class_names

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        prepared = self._cache.get(index)
        if prepared is None:
            prepared = self.transform.prepare(load_rgb(path))
            if self.cache_images:
                self._cache[index] = prepared
        return self.transform.finish(prepared), label

    def preload(self) -> None:
        """Fill the cache now (in this process) so that forked loader workers share it."""
        if not self.cache_images:
            raise DataError("preload() needs ImageDataset(..., cache_images=True)")
        for index, (path, _) in enumerate(self.samples):
            if index not in self._cache:
                self._cache[index] = self.transform.prepare(load_rgb(path))

    def _is_readable(self, path: Path) -> bool:
        try:
            # verify() catches damage that decoding can let through (PNG chunk
            # CRCs); it leaves the file unusable, so load_rgb opens it again.
            with Image.open(path) as image:
                image.verify()
            load_rgb(path)
        except Exception:  # Pillow and load_rgb signal damage with many types
            self.skipped.append(path)
            return False
        return True


def load_rgb(path: Path | BinaryIO) -> Image.Image:
    """Decode an image file (a path or an open binary file) fully, as RGB.

    Raises:
        DataError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as err:
        raise DataError(
            f"image {path} does not exist; fix the split list or pass skip_bad_images=True (--skip-bad-images)"
        ) from err
    # Pillow reports damaged files with many exception types (OSError, SyntaxError, ValueError, ...).
    except Exception as err:
        raise DataError(
            f"image {path} cannot be decoded ({type(err).__name__}: {err}); "
            "replace it or pass skip_bad_images=True (--skip-bad-images)"
        ) from err


def _identity(image: Image.Image) -> Image.Image:
    return image
