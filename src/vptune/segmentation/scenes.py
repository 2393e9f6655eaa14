"""Offline segmentation tasks: Fashion-MNIST items composited into scenes, and procedural shapes.

Each scene stacks a few items on a canvas; later items occlude earlier ones,
so a pixel's class is that of the top-most item covering it (0 = background).
Splits: 800 train, 200 val and `n_test` (default 500) test scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..data.real_tasks import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from ..data.synthetic_tasks import BACKGROUND, CLEVR_COLOURS, SHAPES_SIZE, draw_shape
from ..errors import DataError

SEG_SPLITS = ("train", "val", "test")
SEG_SPLIT_SIZES = {"train": 800, "val": 200, "test": 500}
SCENE_SIZE = 112
ITEMS_MIN, ITEMS_MAX = 3, 5
ITEM_SIZE_MIN, ITEM_SIZE_MAX = 28, 56
# A garment pixel belongs to the item where its Fashion-MNIST intensity exceeds this (the rest is see-through).
ITEM_THRESHOLD = 40
SHAPE_KINDS = ("circle", "square", "triangle")
SHAPES_MIN, SHAPES_MAX = 3, 6


@dataclass
class SegArrays:
    """uint8 (N, H, W, 3) images and (N, H, W) masks per split, with the class names."""

    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]


@dataclass
class Layer:
    """One item of a scene: its pixels and coverage, placed with its top-left corner at (top, left)."""

    top: int
    left: int
    covers: np.ndarray  # (h, w) bool
    rgb: np.ndarray  # (h, w, 3) uint8
    label: int


def compose(size: int, background: tuple[int, int, int], layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Paint `layers` in order onto a `size` x `size` canvas; the mask takes each covered pixel's top-most label."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = background
    mask = np.zeros((size, size), np.uint8)
    for layer in layers:
        h, w = layer.covers.shape
        rows, cols = slice(layer.top, layer.top + h), slice(layer.left, layer.left + w)
        image[rows, cols][layer.covers] = layer.rgb[layer.covers]
        mask[rows, cols][layer.covers] = layer.label
    return image, mask


def fashion_scenes(rng: np.random.Generator, n_test: int | None) -> SegArrays:
    """3-5 tinted Fashion-MNIST items at random positions and sizes (28-56 px) on a dark 112 px canvas.

    Classes: background + the 10 garments. Train/val items come from the 60k
    training file, test items from t10k.
    """
    sizes = _split_sizes(n_test)
    train_x, train_y = fashion_mnist_arrays("train")
    test_x, test_y = fashion_mnist_arrays("t10k")
    parts = {}
    for split, n in sizes.items():
        items, labels = (test_x, test_y) if split == "test" else (train_x, train_y)
        parts[split] = _stack([_fashion_scene(items, labels, rng) for _ in range(n)])
    return SegArrays(parts, ["background", *FASHION_MNIST_CLASSES])


def shapes_seg(rng: np.random.Generator, n_test: int | None) -> SegArrays:
    """3-6 overlapping circles, squares and triangles in Clevr colours on a grey 128 px canvas.

    Classes: background + the three shape kinds; colour does not decide the class.
    """
    sizes = _split_sizes(n_test)
    parts = {split: _stack([_shapes_scene(rng) for _ in range(n)]) for split, n in sizes.items()}
    return SegArrays(parts, ["background", *SHAPE_KINDS])


def _split_sizes(n_test: int | None) -> dict[str, int]:
    n_test = SEG_SPLIT_SIZES["test"] if n_test is None else n_test
    if n_test <= 0:
        raise DataError(f"n_test={n_test} must be a positive number of test scenes, e.g. 500")
    return {**SEG_SPLIT_SIZES, "test": n_test}


def _stack(scenes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def _fashion_scene(items: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    background = tuple(int(c) for c in rng.integers(0, 40, size=3))
    layers = []
    for _ in range(rng.integers(ITEMS_MIN, ITEMS_MAX + 1)):
        index = int(rng.integers(len(items)))
        side = int(rng.integers(ITEM_SIZE_MIN, ITEM_SIZE_MAX + 1))
        grey = np.asarray(Image.fromarray(items[index]).resize((side, side), Image.BILINEAR))
        tint = rng.integers(80, 256, size=3)
        rgb = (grey[..., None].astype(np.float64) * tint / 255).round().astype(np.uint8)
        top, left = (int(v) for v in rng.integers(0, SCENE_SIZE - side + 1, size=2))
        layers.append(Layer(top, left, grey > ITEM_THRESHOLD, rgb, int(labels[index]) + 1))
    return compose(SCENE_SIZE, background, layers)


def _shapes_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    layers = []
    for _ in range(rng.integers(SHAPES_MIN, SHAPES_MAX + 1)):
        kind = int(rng.integers(len(SHAPE_KINDS)))
        r = rng.uniform(8, 24)
        x, y = rng.uniform(0, SHAPES_SIZE, size=2)
        canvas = Image.new("L", (SHAPES_SIZE, SHAPES_SIZE), 0)
        draw_shape(ImageDraw.Draw(canvas), kind, x, y, r, 255, angle=rng.uniform(0, 2 * np.pi))
        colour = np.array(CLEVR_COLOURS[rng.integers(len(CLEVR_COLOURS))], np.uint8)
        rgb = np.broadcast_to(colour, (SHAPES_SIZE, SHAPES_SIZE, 3))
        layers.append(Layer(0, 0, np.asarray(canvas) > 0, rgb, kind + 1))
    return compose(SHAPES_SIZE, BACKGROUND, layers)
