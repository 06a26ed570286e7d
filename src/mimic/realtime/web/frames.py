"""Images a client sends the web server (the page's camera frames, the photos it captures), decoded only when they
fit: `image_size` reads a JPEG's or PNG's size from its header, so `decode` refuses an image over ``ui.max_pixels``
before decoding a pixel of it (a 1.5 MB JPEG can hold 100 megapixels: gigabytes once decoded), and decodes a large one
straight to at most ``ui.max_side`` pixels on its longer side (libjpeg decodes at 1/2, 1/4 or 1/8 scale for a
fraction of the time), the size detection needs, before any other work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class TooLarge(ValueError):
    """An image over the pixel limit (HTTP 413)."""


@dataclass(frozen=True)
class Decoded:
    """A decoded image and how it relates to the one sent: ``width`` and ``height`` are the sent image's (after its
    EXIF orientation), ``scale`` the decoded image's size over it (1.0: not shrunk)."""

    image: np.ndarray
    width: int
    height: int
    scale: float


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's or a JPEG's header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame: precision, height, width
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def decode(data: bytes, max_pixels: int, max_side: int) -> Decoded:
    """A JPEG or PNG -> BGR image of at most ``max_side`` pixels on its longer side; `TooLarge` for one of more than
    ``max_pixels`` pixels, `ValueError` saying why for anything else that does not decode. The header is read first."""
    size = image_size(data)
    if size is None:
        raise ValueError("not a JPEG or PNG image")
    width, height = size
    if width * height > max_pixels:
        raise TooLarge(
            f"a {width}x{height} image has more than the {max_pixels:,} pixels allowed (ui.max_pixels): "
            "send a smaller one"
        )
    if not width or not height:
        raise ValueError(f"a {width}x{height} image has no pixels")
    reduce = 1
    while reduce < 8 and max(width, height) > reduce * max_side:
        reduce *= 2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[reduce])
    if image is None:
        raise ValueError("the image does not decode (damaged or cut short?)")
    turned = (image.shape[0] > image.shape[1]) != (height > width)  # an EXIF orientation of 90 or 270 degrees
    width, height = (height, width) if turned else (width, height)
    h, w = image.shape[:2]
    if max(h, w) > max_side:  # thin strips: over 8 times max_side long
        f = max_side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return Decoded(image, width, height, image.shape[1] / width)
