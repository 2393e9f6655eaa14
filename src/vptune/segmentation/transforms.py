"""Joint image + mask transforms for segmentation, after mmsegmentation's ADE20K pipeline.

Training: random keep-ratio resize to 0.5-2.0 x a base scale, random crop of
`img_size` in which no class covers more than `cat_max_ratio` of the labelled
pixels (up to 10 tries), horizontal flip, photometric distortion of the image,
normalisation, padding to the crop size (image 0, mask `IGNORE_INDEX`).
Evaluation: keep-ratio resize of the image to the base scale; the mask keeps
its original size, where the metrics are computed. Masks are always resized
with nearest-neighbour, so their values stay class ids. Random draws come from
the `generator` passed in, or torch's global generator (seeded per epoch by the
engine) when none is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..data.transforms import SEG_LONG_SIDE_FACTOR
from ..errors import DataError
from .formats import IGNORE_INDEX

CROP_TRIES = 10
# mmseg PhotoMetricDistortion: brightness delta, contrast and saturation ranges, hue delta (OpenCV's 0..180 hue).
BRIGHTNESS_DELTA, CONTRAST_RANGE, SATURATION_RANGE, HUE_DELTA = 32, (0.5, 1.5), (0.5, 1.5), 18


@dataclass(frozen=True)
class SegTransform:
    """Turn an RGB image and its (H, W) uint8 mask into a normalised float image and a long mask.

    Args:
        img_size: the square training crop (and the short side of the base scale).
        base_scale: (long side, short side) that images are resized to fit;
            default (4 * img_size, img_size), mmseg's (2048, 512) at 512 px.
        train: random resize/crop/flip/photometric distortion, else resize only.
    """

    img_size: int
    mean: Sequence[float]
    std: Sequence[float]
    train: bool
    base_scale: tuple[int, int] | None = None
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if self.img_size <= 0:
            raise DataError(f"img_size={self.img_size} must be a positive number of pixels, e.g. 512")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DataError(f"mean={list(self.mean)} / std={list(self.std)} must be 3 values each (RGB) with std > 0")

    @property
    def scale(self) -> tuple[int, int]:
        return self.base_scale or (SEG_LONG_SIDE_FACTOR * self.img_size, self.img_size)

    def __call__(
        self, image: Image.Image, mask: np.ndarray, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
        if not self.train:
            return self.eval_image(image), labels.long()
        pixels = F.pil_to_tensor(image)
        ratio = _uniform(*self.ratio_range, generator)
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        pixels, labels = resize_keep_ratio(pixels, scale), resize_keep_ratio(labels[None], scale, nearest=True)[0]
        pixels, labels = random_crop(pixels, labels, self.img_size, self.cat_max_ratio, self.ignore_index, generator)
        if _uniform(0.0, 1.0, generator) < self.flip_prob:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        image_out = self._normalise(photometric_distortion(pixels, generator))
        return pad_to(image_out, labels, self.img_size, self.ignore_index)

    def eval_image(self, image: Image.Image) -> torch.Tensor:
        """The evaluation input of an image (resized to the base scale, normalised), with or without a mask."""
        return self._normalise(resize_keep_ratio(F.pil_to_tensor(image), self.scale))

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(pixels.float() / 255.0, list(self.mean), list(self.std))


def resize_keep_ratio(tensor: torch.Tensor, scale: tuple[int, int], *, nearest: bool = False) -> torch.Tensor:
    """Resize (C, H, W) as large as fits within (long, short) `scale`, keeping the aspect ratio (mmseg keep_ratio).

    Images are resized bilinearly without antialiasing, as mmseg's OpenCV resize; masks with nearest.
    """
    height, width = tensor.shape[-2:]
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    size = [max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))]
    mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
    return F.resize(tensor, size, interpolation=mode, antialias=False)


def random_crop(
    pixels: torch.Tensor, labels: torch.Tensor, size: int, cat_max_ratio: float, ignore_index: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop at most `size` x `size`; retry up to 10 times until no class covers `cat_max_ratio` or more of the crop.

    The share is counted over labelled (non-ignored) pixels and a crop must
    hold two classes or more to pass, as mmseg's RandomCrop; after 10 failed
    tries the next crop is kept as it is.
    """
    height, width = labels.shape
    top, left = _crop_origin(height, width, size, generator)
    if cat_max_ratio < 1.0:
        for _ in range(CROP_TRIES):
            window = labels[top : top + size, left : left + size]
            counts = torch.bincount(window.flatten().long(), minlength=256)
            counts[ignore_index] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            top, left = _crop_origin(height, width, size, generator)
    return pixels[:, top : top + size, left : left + size], labels[top : top + size, left : left + size]


def photometric_distortion(pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """mmseg's PhotoMetricDistortion on a uint8 (3, H, W) image; each step happens with probability 0.5.

    Brightness adds a delta, contrast multiplies, hue shifts in HSV; saturation
    uses torchvision's blend with the grey image where mmseg scales HSV's S.
    Contrast comes before or after saturation and hue at random, as in mmseg.
    """
    image = pixels.float() / 255.0
    if _coin(generator):
        image = (image + _uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, generator) / 255.0).clamp(0, 1)
    contrast_first = _coin(generator)
    if contrast_first and _coin(generator):
        image = (image * _uniform(*CONTRAST_RANGE, generator)).clamp(0, 1)
    if _coin(generator):
        image = F.adjust_saturation(image, _uniform(*SATURATION_RANGE, generator))
    if _coin(generator):
        image = F.adjust_hue(image, int(torch.randint(-HUE_DELTA, HUE_DELTA + 1, (), generator=generator)) / 180.0)
    if not contrast_first and _coin(generator):
        image = (image * _uniform(*CONTRAST_RANGE, generator)).clamp(0, 1)
    return (image * 255.0).round().to(torch.uint8)


def pad_to(
    image: torch.Tensor, labels: torch.Tensor, size: int, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom and right to `size` x `size`: the image with 0, the mask with `ignore_index`."""
    pad_h, pad_w = size - image.shape[-2], size - image.shape[-1]
    image = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    labels = torch.nn.functional.pad(labels, (0, pad_w, 0, pad_h), value=ignore_index)
    return image, labels.long()


def _crop_origin(height: int, width: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    top = int(torch.randint(max(height - size, 0) + 1, (1,), generator=generator))
    left = int(torch.randint(max(width - size, 0) + 1, (1,), generator=generator))
    return top, left


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _coin(generator: torch.Generator | None) -> bool:
    return bool(torch.randint(2, (), generator=generator))
