"""Decoding untrusted image bytes: whole, RGB, and never more pixels than allowed."""

from __future__ import annotations

import io

from PIL import Image

from .http_errors import ImageError, ImageTooLargeError


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """The RGB image in `data`.

    The size is read from the header and checked against `max_pixels` before any pixel is
    decoded, so a small file that expands to a huge image (a decompression bomb) is refused.

    Raises:
        ImageError: empty, not an image, or truncated/damaged.
        ImageTooLargeError: more than `max_pixels` pixels.
    """
    if not data:
        raise ImageError("the request has no image: send image bytes as the body or a multipart field 'image'")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:  # Pillow's own limit, twice Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"image refused: {err}") from err
    except Exception as err:  # Pillow signals unknown formats with several exception types
        raise ImageError(f"body is not an image Pillow can read ({type(err).__name__})") from err
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}; send a smaller image"
        )
    try:
        image.load()
        return image.convert("RGB")
    except Exception as err:  # truncated and damaged files raise OSError, SyntaxError, ValueError, ...
        raise ImageError(f"image cannot be decoded ({type(err).__name__}: {err})") from err
