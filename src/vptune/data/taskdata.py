"""In-memory form of an offline task before it is written in VTAB-1k layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The parts an offline task is made of; train800val200 is their union, written by prepare.
PARTS = ("train800", "val200", "test")
PART_SIZES = {"train800": 800, "val200": 200}


@dataclass
class TaskArrays:
    """uint8 images, (N, H, W) grey or (N, H, W, 3) RGB, and int labels per part."""

    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
