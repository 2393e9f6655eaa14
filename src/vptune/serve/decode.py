"""Decoding untrusted image bytes: whole, RGB, and never more pixels than allowed."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from .http_errors import ImageError, ImageTooLargeError


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """The RGB image in `data`, refused before decoding when it has more than `max_pixels` pixels.

    The size is read from the header first, so a small file that expands to a huge image (a
    decompression bomb) is refused without decoding a pixel.

    Raises:
        ImageError: empty, not an image, or truncated/damaged.
        ImageTooLargeError: more than `max_pixels` pixels.
    """
    return decode_images([data], max_pixels)[0]


def decode_images(datas: Sequence[bytes], max_pixels: int, names: Sequence[str] | None = None) -> list[Image.Image]:
    """The RGB images of one request, whose pixels together may not pass `max_pixels`.

    Every header is read and the total checked before any image is decoded. `names` label
    each image in errors (e.g. `items[3]`). Raises ImageError or ImageTooLargeError.
    """
    names = names or [""] * len(datas)
    opened = [_open(data, name) for data, name in zip(datas, names)]
    sizes = [image.size[0] * image.size[1] for image in opened]
    for image, name, pixels in zip(opened, names, sizes):
        if pixels > max_pixels:
            width, height = image.size
            raise ImageTooLargeError(f"{_label(name)}image is {width}x{height} = {pixels} pixels, over the limit of "
                                     f"{max_pixels}; send a smaller image")
    if sum(sizes) > max_pixels:
        raise ImageTooLargeError(f"the request's {len(datas)} images hold {sum(sizes)} pixels together, over the "
                                 f"limit of {max_pixels} per request; send fewer or smaller images")
    return [_decoded(image, name) for image, name in zip(opened, names)]


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise ImageError(f"{_label(name)}the request has no image: send image bytes as the body or a multipart "
                         "field 'image'")
    try:
        return Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:  # Pillow's own limit, twice Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"{_label(name)}image refused: {err}") from err
    except Exception as err:  # Pillow signals unknown formats with several exception types
        raise ImageError(f"{_label(name)}body is not an image Pillow can read ({type(err).__name__})") from err


def _decoded(image: Image.Image, name: str) -> Image.Image:
    try:
        image.load()
        return image.convert("RGB")
    except Exception as err:  # truncated and damaged files raise OSError, SyntaxError, ValueError, ...
        raise ImageError(f"{_label(name)}image cannot be decoded ({type(err).__name__}: {err})") from err


def _label(name: str) -> str:
    return f"{name}: " if name else ""
