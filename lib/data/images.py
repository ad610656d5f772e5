"""Decode one image file (or bytes) into a single grey uint8 channel.

Every image the project sees goes through :func:`load_grey`: training data, evaluation data and uploads
in the app. It accepts whatever PIL can read — JPEG, PNG (8- and 16-bit), RGB(A), palette, CMYK, TIFF —
and always returns an ``H×W`` ``numpy.uint8`` array, or raises :class:`ImageError` with a message that
names the file and says what to do.

Example:
    >>> arr = load_grey("../shared/data/chest_xray/test/NORMAL/IM-0011-0001.jpeg", size=224)
    >>> arr.shape, arr.dtype
    ((224, 224), dtype('uint8'))
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageError", "load_grey", "to_grey_array", "MAX_PIXELS", "MIN_SIDE"]

#: Images larger than this are refused: a decompression bomb would otherwise eat the machine's memory.
MAX_PIXELS = 64_000_000
#: A side shorter than this carries no picture to classify.
MIN_SIDE = 8

Source = Union[str, os.PathLike, bytes]


class ImageError(ValueError):
    """An image could not be used; the message names the file and the problem."""


def _name(src: Source) -> str:
    return "<uploaded bytes>" if isinstance(src, (bytes, bytearray)) else str(src)


def to_grey_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """Convert an opened PIL image of any mode to one grey channel, uint8, full range kept.

    16-bit greyscale (modes ``I;16``, ``I``) is rescaled by its own min/max — a 12-bit X-ray stored in 16-bit
    would otherwise come out almost black. Alpha is composited onto black (transparent = no signal).
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if not np.isfinite(lo) or not np.isfinite(hi):
            raise ImageError(f"{name}: the image contains NaN or infinite values")
        if hi <= lo:
            return np.zeros(a.shape, dtype=np.uint8)
        return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    if mode == "1":
        img = img.convert("L")
    # ITU-R 601 luma for colour images; a grey image stored as RGB (equal channels) is unchanged.
    return np.array(img.convert("L"), dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only


def load_grey(src: Source, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file or bytes and return one grey uint8 channel, optionally resized.

    Args:
        src: a path or the raw bytes of an image file.
        size: ``None`` keeps the size; an int or ``(height, width)`` resizes (bilinear, antialiased). The aspect
            ratio is not kept: the course data were squashed to 224×224 the same way.

    Raises:
        ImageError: empty, truncated or unreadable file, an image too small or too large (decompression bomb).
    """
    name = _name(src)
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); upload a PNG, JPEG or DICOM image")
        fp: io.BytesIO | str = io.BytesIO(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); re-export or remove it")
        fp = str(path)
    target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: {w}×{h} pixels is more than the {MAX_PIXELS:,} allowed; "
                        "downscale the image before using it")
                if min(w, h) < MIN_SIDE:
                    raise ImageError(f"{name}: {w}×{h} pixels is too small to classify (need ≥ {MIN_SIDE} px a side)")
                if target is not None and img.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller:
                    # the single largest saving for full-resolution X-rays (~2000 px).
                    img.draft("L", (target[1], target[0]))
                img.load()
                arr = to_grey_array(img, name)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({e}); downscale the image") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image PIL can read (expected PNG, JPEG, TIFF, BMP…)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: the image is truncated or corrupt ({e}); re-export or remove it") from e
    if target is not None and arr.shape != target:
        arr = np.asarray(Image.fromarray(arr).resize((target[1], target[0]), Image.BILINEAR, reducing_gap=None))
    return arr
