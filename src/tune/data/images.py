"""One image file to the pixels a model sees, the same way for training and prediction.

`read_image` decodes a file of any mode PIL reads, turns it upright (EXIF orientation), makes
it RGB (transparent parts on white) and resizes it bilinearly. The data scan
(`tune.data.scan`) caches its output for training; `tune.predict` calls it per file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

from tune.errors import ImageError

WHITE = (255, 255, 255, 255)  # what transparent pixels are composited on
MAX_PIXELS = 50_000_000  # default of data.max_image_pixels: width x height of the stored image
_ORIENTATION = 0x0112  # EXIF tag; values 5..8 store the image turned by 90 degrees
# What PIL raises on a file it cannot decode (struct.error: a corrupt TIFF header).
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` upright (EXIF orientation applied) and in mode RGB.

    Transparent pixels (RGBA, LA, PA, or a palette or colour key with transparency) are
    composited on white; 16-bit grayscale is scaled to 8 bits; L, P, CMYK, YCbCr and 1-bit
    images are converted by PIL.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit PNG grayscale
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def _reason(err: Exception) -> str:
    """The first line of `err`'s message, or its type when it has none."""
    if isinstance(err, Image.UnidentifiedImageError):
        return "not an image PIL can identify"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _draft(image: Image.Image, size: Tuple[int, int]) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale, still at least `size` (height, width) once upright."""
    if image.format != "JPEG":
        return
    height, width = size
    if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # stored turned by 90 degrees
        height, width = width, height
    image.draft("RGB", (width, height))


def _decode(path: Path, size: Tuple[int, int], max_pixels: int) -> Image.Image:
    """Open, size-check, fully decode (so truncation shows) and convert one file to RGB."""
    with Image.open(path) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(path, f"{width}x{height} pixels is above data.max_image_pixels={max_pixels}")
        _draft(image, size)
        image.load()
        return to_rgb(image)


def read_image(path: Path, size: Tuple[int, int], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image file as model input.

    Args:
        path: a JPEG, PNG, BMP, GIF (first frame), WebP, TIFF or other file PIL reads.
        size: (height, width) in pixels of the result.
        max_pixels: the largest width x height accepted, in pixels of the stored image.

    Returns:
        uint8 `(height, width, 3)`, RGB in [0, 255]: upright, transparent parts white,
        resized bilinearly.

    Raises:
        ImageError: the file is missing, unreadable, truncated, not an image, or above
            `max_pixels`.
    """
    try:
        rgb = _decode(Path(path), size, max_pixels)
    except ImageError:
        raise
    except _UNREADABLE as err:
        raise ImageError(path, _reason(err)) from None
    height, width = size
    return np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
