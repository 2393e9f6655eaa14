"""Image files beyond 8-bit RGB: 16-bit and float greyscale keep their values; other modes are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vptune.data import load_rgb
from vptune.errors import DataError


def ramp(low: float, high: float, dtype) -> np.ndarray:
    return np.linspace(low, high, 16 * 16).reshape(16, 16).astype(dtype)


def assert_grey_rgb(image: Image.Image, expected: np.ndarray) -> None:
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


def test_16_bit_greyscale_png_is_scaled_by_255_over_65535(tmp_path):
    values = ramp(0, 65535, np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert_grey_rgb(load_rgb(path), expected)
    assert len(np.unique(expected)) == 256  # the full range, neither all white nor all black


def test_float_tiff_in_0_1_is_scaled_by_255(tmp_path):
    values = ramp(0.0, 1.0, np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    assert_grey_rgb(load_rgb(path), np.rint(values.astype(np.float64) * 255).astype(np.uint8))


def test_float_tiff_outside_0_1_is_refused_naming_the_file_and_range(tmp_path):
    path = tmp_path / "hdr.tif"
    Image.fromarray(ramp(0.0, 4.5, np.float32)).save(path)
    with pytest.raises(DataError, match=rf"image {path} is float greyscale \(mode F\) with values 0\.\.4\.5.*\[0, 1\]"):
        load_rgb(path)


def test_a_mode_without_a_faithful_rgb_reading_is_refused_naming_file_and_mode(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (8, 8), (50, 10, 10)).save(path)
    with pytest.raises(DataError, match=rf"image {path} has pixel mode 'LAB'"):
        load_rgb(path)


def test_8_bit_images_convert_as_pillow_does(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "rgb.png")), rgb)
    assert_grey_rgb(load_rgb(tmp_path / "grey.png"), grey)
