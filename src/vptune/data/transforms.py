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

import timm.data
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vptune.errors import DataError

PROTOCOLS = ("vtab", "fgvc", "folders")
# Segmentation layouts; their images are prepared by segmentation/transforms.py, evaluation keeping
# the aspect ratio within (SEG_LONG_SIDE_FACTOR * img_size, img_size): mmseg's (2048, 512) at 512.
SEG_PROTOCOLS = ("ade20k", "voc", "cityscapes", "seg-folders")
SEG_LONG_SIDE_FACTOR = 4
# How pixels scaled to [0, 1] are normalised: with the backbone's own mean/std (its pretrained
# config), with ImageNet's (what the VPT authors' code and NOAH do for every backbone), or not at all.
NORMALIZATIONS = ("backbone", "imagenet", "none")


@dataclass(frozen=True)
class InputSpec:
    """How images are turned into model inputs: the protocol's resize rule, size and normalisation."""

    protocol: str
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Everything that reproduces evaluation-time preparation, as a per-task file records it."""
        return {
            "protocol": self.protocol,
            "img_size": self.img_size,
            **eval_resize(self.protocol, self.img_size),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> "InputSpec":
        """The spec a per-task file recorded; DataError when this version cannot reproduce it."""
        try:
            spec = cls(recorded["protocol"], int(recorded["img_size"]), tuple(recorded["mean"]), tuple(recorded["std"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"recorded input pipeline {recorded!r} lacks protocol, img_size, mean or std") from err
        if spec.protocol not in PROTOCOLS + SEG_PROTOCOLS or spec.to_dict() != recorded:
            raise DataError(
                f"recorded input pipeline {recorded!r} is not one this vptune version prepares "
                f"(protocols: {', '.join(PROTOCOLS + SEG_PROTOCOLS)}); upgrade vptune"
            )
        return spec

    def transform(self, train: bool = False) -> "ImageTransform":
        """The protocol's transform (evaluation unless `train`); see `build_transform`."""
        return build_transform(self.protocol, self.img_size, self.mean, self.std, train=train)


def input_spec(backbone: nn.Module, protocol: str, normalize: str = "backbone") -> InputSpec:
    """Image size from the backbone; mean/std by `normalize` (one of NORMALIZATIONS): the backbone's
    pretrained config, ImageNet's (timm's IMAGENET_DEFAULT_MEAN/STD), or none (mean 0, std 1).

    Raises:
        DataError: an unknown `normalize`.
    """
    if normalize not in NORMALIZATIONS:
        raise DataError(f"normalize '{normalize}' is not one of: {', '.join(NORMALIZATIONS)}")
    config = timm.data.resolve_model_data_config(backbone)
    patch_embed = getattr(backbone, "patch_embed", None)
    size = patch_embed.img_size[0] if patch_embed is not None and patch_embed.img_size else config["input_size"][-1]
    mean, std = {
        "backbone": (config["mean"], config["std"]),
        "imagenet": (timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD),
        "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    }[normalize]
    return InputSpec(protocol, int(size), tuple(float(m) for m in mean), tuple(float(s) for s in std))


def eval_resize(protocol: str, img_size: int) -> dict[str, Any]:
    """The evaluation-time resize of a protocol: `resize` (a [h, w] square or a short-side length),
    `crop` (centre crop size or None), `interpolation` and `antialias`; segmentation adds `keep_ratio`
    (`resize` is then the [long, short] box the image is fitted into)."""
    if protocol in SEG_PROTOCOLS:
        return {"resize": [SEG_LONG_SIDE_FACTOR * img_size, img_size], "keep_ratio": True, "crop": None,
                "interpolation": "bilinear", "antialias": False}
    if protocol == "vtab":
        # antialias=False reproduces tf.image.resize, which the VTAB pipeline used.
        return {"resize": [img_size, img_size], "crop": None, "interpolation": "bilinear", "antialias": False}
    # Antialiased, like the PIL Resize in the authors' torchvision pipeline.
    return {"resize": img_size * 256 // 224, "crop": img_size, "interpolation": "bilinear", "antialias": True}


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
    """Transform of a protocol: 'vtab', 'fgvc' or 'folders' (same as 'fgvc'), on RGB PIL images or uint8 CHW tensors.

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
    rule = eval_resize(protocol, img_size)
    size = rule["resize"] if isinstance(rule["resize"], list) else [rule["resize"]]
    if protocol != "vtab" and train:
        augment = v2.Compose([v2.RandomCrop(img_size), v2.RandomHorizontalFlip(0.5), normalise])
        return ImageTransform(partial(_resize, size=size, antialias=rule["antialias"], crop=None), augment)
    return ImageTransform(partial(_resize, size=size, antialias=rule["antialias"], crop=rule["crop"]), normalise)


# A module-level function bound with functools.partial (not a closure) keeps the
# transform picklable for DataLoader workers started with "spawn".
def _resize(image: Image.Image | torch.Tensor, size: list[int], antialias: bool, crop: int | None) -> torch.Tensor:
    # An RGB PIL image or a uint8 CHW tensor (bilinear, F.resize's default).
    tensor = image if isinstance(image, torch.Tensor) else F.pil_to_tensor(image)
    tensor = F.resize(tensor, size, antialias=antialias)
    return F.center_crop(tensor, [crop, crop]) if crop else tensor
