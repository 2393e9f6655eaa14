"""Procedural offline tasks: dSprites regenerated from its factors, 2D Clevr-like count and distance.

Labels are drawn balanced per part (each class appears equally often in
train800, val200 and test, up to rounding); the image is then rendered from
the label's factors with the remaining factors random.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from vptune.data.taskdata import PART_SIZES, TaskArrays
from vptune.errors import DataError

DEFAULT_N_TEST = 1000

# dSprites factors (Matthey et al. 2017): 3 shapes x 6 scales x 40 orientations x 32 x 32 positions.
DSPRITES_SIZE = 64
DSPRITES_SCALES = np.linspace(0.5, 1.0, 6)
DSPRITES_ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
DSPRITES_POSITIONS = np.linspace(0.0, 1.0, 32)
# Outline radius at scale 1 and the span of shape centres, in pixels: the
# largest shape stays inside the canvas at every position.
_SPRITE_RADIUS = 10.0
_CENTRE_MIN, _CENTRE_SPAN = 10.0, 43.0

# Clevr's colour palette; the background is a light grey that none of them matches.
CLEVR_COLOURS = [
    (87, 87, 87), (173, 35, 35), (42, 75, 215), (29, 105, 20),
    (129, 74, 25), (129, 38, 192), (41, 208, 208), (255, 238, 51),
]
SHAPES_SIZE = 128
BACKGROUND = (210, 210, 210)
COUNT_MIN, COUNT_MAX = 3, 10
# VTAB clevr(task="closest_object_distance"): label i when thrs[i] < depth <= thrs[i + 1].
DISTANCE_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])
# Scene depths span [7, 13]; the closest object lies in [7, 11], which clips the
# open-ended first and last bins to [7, 8] and [10, 11].
_DEPTH_NEAR, _CLOSEST_FAR, _DEPTH_FAR = 7.0, 11.0, 13.0
# Perspective constants in pixels: depth 7 stands at row 124, depth 13 at row 74;
# one 0.5-wide depth bin spans about 4 rows.
_HORIZON, _GROUND_SCALE, _SIZE_SCALE = 16.0, 756.0, 90.0


def dsprites_location(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """VTAB dsprites(label_x_position, num_classes=16): class = x index * 16 // 32."""
    return _synthetic_parts(rng, n_test, [str(i) for i in range(16)], lambda y: _dsprites(y, "location", rng))


def dsprites_orientation(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """VTAB dsprites(label_orientation, num_classes=16): class = orientation index * 16 // 40."""
    return _synthetic_parts(rng, n_test, [str(i) for i in range(16)], lambda y: _dsprites(y, "orientation", rng))


def shapes_count(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """3..10 non-overlapping circles/squares/triangles; class = count - 3."""
    names = [str(c) for c in range(COUNT_MIN, COUNT_MAX + 1)]
    return _synthetic_parts(rng, n_test, names, lambda y: np.stack([_count_scene(c + COUNT_MIN, rng) for c in y]))


def shapes_distance(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """Objects on a ground plane seen in perspective; class = VTAB's bin of the closest depth."""
    names = [f"{lo:g}-{hi:g}" for lo, hi in zip(DISTANCE_THRESHOLDS[:-1], DISTANCE_THRESHOLDS[1:])]
    return _synthetic_parts(rng, n_test, names, lambda y: np.stack([_distance_scene(c, rng) for c in y]))


def _synthetic_parts(
    rng: np.random.Generator, n_test: int | None, class_names: list[str], render: Callable[[np.ndarray], np.ndarray]
) -> TaskArrays:
    n_test = DEFAULT_N_TEST if n_test is None else n_test
    if n_test <= 0:
        raise DataError(f"n_test={n_test} must be a positive number of test images, e.g. 1000")
    sizes = {**PART_SIZES, "test": n_test}
    parts = {}
    for part, size in sizes.items():
        labels = balanced_labels(size, len(class_names), rng)
        parts[part] = (render(labels), labels)
    return TaskArrays(parts, class_names)


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """n labels, each class n // num_classes or one more times, in seeded random order."""
    return rng.permutation(np.arange(n) % num_classes)


# ---------------------------------------------------------------- dSprites


def _dsprites(labels: np.ndarray, attribute: str, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    shape = rng.integers(3, size=n)
    scale = rng.integers(len(DSPRITES_SCALES), size=n)
    pos_y = rng.integers(len(DSPRITES_POSITIONS), size=n)
    # The predicted factor is drawn among the indices that fall in the label's bin, the others uniformly.
    if attribute == "location":
        pos_x = _index_in_bin(labels, len(DSPRITES_POSITIONS), rng)
        orientation = rng.integers(len(DSPRITES_ORIENTATIONS), size=n)
    else:
        pos_x = rng.integers(len(DSPRITES_POSITIONS), size=n)
        orientation = _index_in_bin(labels, len(DSPRITES_ORIENTATIONS), rng)
    factors = zip(shape, scale, orientation, pos_x, pos_y)
    return np.stack([render_sprite(*(int(f) for f in fs)) for fs in factors])


def _index_in_bin(labels: np.ndarray, num_values: int, rng: np.random.Generator, num_bins: int = 16) -> np.ndarray:
    bins = np.arange(num_values) * num_bins // num_values
    return np.array([rng.choice(np.flatnonzero(bins == label)) for label in labels])


def render_sprite(shape: int, scale: int, orientation: int, pos_x: int, pos_y: int) -> np.ndarray:
    """A 64x64 binary (0/255) dSprites image from factor indices (shape: 0 square, 1 ellipse, 2 heart)."""
    outline = _SPRITE_OUTLINES[shape] * (_SPRITE_RADIUS * DSPRITES_SCALES[scale])
    angle = DSPRITES_ORIENTATIONS[orientation]
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = _CENTRE_MIN + _CENTRE_SPAN * DSPRITES_POSITIONS[[pos_x, pos_y]]
    points = outline @ rotation.T + centre
    canvas = Image.new("L", (DSPRITES_SIZE, DSPRITES_SIZE), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=255)
    return np.asarray(canvas)


def _unit_outline(points: np.ndarray) -> np.ndarray:
    """Centre an outline on its bounding box and scale its farthest point to radius 1."""
    points = points - (points.min(0) + points.max(0)) / 2
    return points / np.linalg.norm(points, axis=1).max()


def _sprite_outlines() -> list[np.ndarray]:
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    ellipse = np.stack([np.cos(t), 0.5 * np.sin(t)], axis=1)
    # The classic parametric heart; y is negated because image rows grow downwards.
    heart = np.stack(
        [16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], axis=1
    )
    return [_unit_outline(s) for s in (square, ellipse, heart)]


_SPRITE_OUTLINES = _sprite_outlines()


# ---------------------------------------------------------------- Clevr-like scenes


# Distance from the centre of a shape's enclosing circle to its lowest point,
# for an upright circle, square and base-down triangle.
_BOTTOM_OFFSET = (1.0, 1 / np.sqrt(2), 0.5)
_UPRIGHT_ANGLE = (0.0, 0.0, np.pi)


def draw_shape(
    draw: ImageDraw.ImageDraw, kind: int, x: float, y: float, r: float, colour: int | tuple[int, int, int], angle: float
) -> None:
    """Circle (kind 0), square (1) or triangle (2) inscribed in the circle (x, y, r), rotated by `angle`."""
    if kind == 0:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        return
    corners = 4 if kind == 1 else 3
    # At angle 0 the square's sides are axis-parallel and the triangle points down.
    theta = angle + np.pi / 2 + (np.pi / 4 if kind == 1 else 0.0) + 2 * np.pi * np.arange(corners) / corners
    draw.polygon([(x + r * np.cos(a), y + r * np.sin(a)) for a in theta], fill=colour)


def _count_scene(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` shapes whose enclosing circles keep a 3-pixel gap, so none touch."""
    placed: list[tuple[float, float, float]] = []
    while len(placed) < count:
        r = rng.uniform(5, 11)
        x, y = rng.uniform(r + 1, SHAPES_SIZE - r - 1, size=2)
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 3) ** 2 for px, py, pr in placed):
            placed.append((x, y, r))
    image = Image.new("RGB", (SHAPES_SIZE, SHAPES_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for x, y, r in placed:
        colour = CLEVR_COLOURS[rng.integers(len(CLEVR_COLOURS))]
        draw_shape(draw, int(rng.integers(3)), x, y, r, colour, angle=rng.uniform(0, 2 * np.pi))
    return np.asarray(image)


def _distance_scene(label: int, rng: np.random.Generator) -> np.ndarray:
    """3..6 upright objects standing on a ground plane; the closest one's depth falls in bin `label`.

    An object at depth z touches the ground at row horizon + k / z and has
    radius s / z (times a small/large factor), so nearer objects sit lower and
    look bigger; objects are drawn far to near so the closest is never hidden.
    """
    lo = max(DISTANCE_THRESHOLDS[label], _DEPTH_NEAR)
    hi = min(DISTANCE_THRESHOLDS[label + 1], _CLOSEST_FAR)
    closest = rng.uniform(lo, hi)
    depths = np.concatenate([[closest], rng.uniform(closest, _DEPTH_FAR, size=rng.integers(2, 6))])
    image = Image.new("RGB", (SHAPES_SIZE, SHAPES_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for z in sorted(depths, reverse=True):
        r = _SIZE_SCALE / z * rng.choice([0.6, 1.0])
        x = rng.uniform(r, SHAPES_SIZE - r)
        kind = int(rng.integers(3))
        centre_y = _HORIZON + _GROUND_SCALE / z - r * _BOTTOM_OFFSET[kind]
        colour = CLEVR_COLOURS[rng.integers(len(CLEVR_COLOURS))]
        draw_shape(draw, kind, x, centre_y, r, colour, angle=_UPRIGHT_ANGLE[kind])
    return np.asarray(image)
