"""Colour renderings of predicted masks: a palette PNG of the class ids and an overlay on the image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .formats import IGNORE_INDEX

OVERLAY_ALPHA = 0.5


def palette(num_colours: int = 256) -> np.ndarray:
    """The Pascal VOC colour map: class 0 black, then distinct colours from the bits of the class id."""
    colours = np.zeros((num_colours, 3), np.uint8)
    for index in range(num_colours):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[index] = (r, g, b)
    colours[IGNORE_INDEX] = (255, 255, 255)
    return colours


def colour_mask(mask: np.ndarray) -> Image.Image:
    """An (H, W) mask of class ids as a palette ("P") PNG image: its pixels are the ids, shown in colour."""
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.astype(np.uint8).tobytes())
    image.putpalette(palette().flatten().tolist())
    return image


def overlay(image: Image.Image, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The RGB image blended with the mask's colours (`alpha` of colour)."""
    colours = palette()[mask.astype(np.uint8)].astype(np.float64)
    blended = (1 - alpha) * np.asarray(image.convert("RGB"), np.float64) + alpha * colours
    return Image.fromarray(blended.round().astype(np.uint8))
