"""Decoding image files into ``[H, W, 3]`` uint8 RGB arrays, whatever their mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded (missing, empty, truncated or corrupt)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read image {path}: {reason}")


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Converts any PIL mode to uint8 RGB.

    16-bit and 32-bit integer images are scaled to 8 bits (not clipped); float images
    are taken as ``[0, 1]``; alpha (RGBA, LA, palette transparency) is composited over
    a white background.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255)
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_rgb(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads an image file as ``[H, W, 3]`` uint8 RGB at its full size.

    EXIF orientation is applied, unless ``expected_size = (width, height)`` (as a COCO
    annotation states it) matches the stored pixels and not the rotated ones: COCO's
    annotations were drawn on the stored pixels.

    Raises:
        UnreadableImageError: the file is missing, empty, truncated or not an image.
    """
    return decode_image(path, expected_size)[0]


def decode_image(
    path: str | Path,
    expected_size: tuple[int, int] | None = None,
    min_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Reads an image file as ``[h, w, 3]`` uint8 RGB, and its full ``(width, height)``
    (after orientation, as :func:`load_rgb` applies it): the frame annotations refer to.

    With ``min_size = (H, W)``, a JPEG is decoded at reduced scale (libjpeg's DCT scaling
    by 1/2, 1/4 or 1/8, through PIL's ``Image.draft``) as long as both sides stay at least
    ``max(H, W)``: a 640x480 photo for a 160x160 working resolution is decoded at 320x240,
    about 2x faster than at full size, and the resize to the working size that follows
    starts from a quarter of the pixels. Other formats are decoded at full size.

    Raises:
        UnreadableImageError: the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableImageError(path, "the file is empty (0 bytes)")
        with Image.open(path) as img:
            stored = img.size
            if min_size is not None and img.format == "JPEG":
                side = max(int(s) for s in min_size)
                img.draft("RGB", (side, side))  # keeps both sides >= side
            img.load()
            upright = ImageOps.exif_transpose(img)
            # orientations 5-8 turn the image a quarter: the full size swaps too (decided by
            # the tag, not by sizes: a reduced image may come out square)
            turned = upright is not img and img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            full = stored[::-1] if turned else stored
            if expected_size is not None and full != tuple(expected_size):
                if stored == tuple(expected_size):
                    upright, full = img, stored
            return _to_rgb(upright), full
    except UnreadableImageError:
        raise
    except FileNotFoundError as err:
        raise UnreadableImageError(path, "no such file") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(path, f"{type(err).__name__}: {err}") from err
