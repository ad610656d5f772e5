"""Decode one image file (or bytes) into a single grey uint8 channel.

Every image the project sees goes through :func:`load_grey`: training data, evaluation data and uploads
in the app. It accepts whatever PIL can read — JPEG, PNG (8- and 16-bit), RGB(A), palette, CMYK, TIFF, GIF,
WebP — and DICOM (through pydicom), and always returns an ``H×W`` ``numpy.uint8`` array, or raises
:class:`ImageError` with a message that names the file and says what to do.

What an upload can be, and what it becomes:

* DICOM (``DICM`` marker at byte 128, or a ``.dcm``/``.dicom`` name): modality LUT (Rescale Slope/Intercept),
  then the file's own VOI window (Window Center/Width, or its VOI LUT), MONOCHROME1 inverted so bone is
  bright, colour (RGB/YBR/palette) turned to grey; multi-frame files give their middle frame.
  :func:`dicom_info` says which window was used.
* Photos and exports: EXIF orientation is applied, so a phone photo of a film taken sideways comes out
  upright; animated GIFs and WebPs and multi-page TIFFs give their first frame; alpha is composited onto black.
* Refused with :class:`ImageError`: empty files, files over :data:`MAX_FILE_BYTES` (checked before reading),
  anything that is not an image, truncated or corrupt files (never decoded partially), images with more than
  :data:`MAX_PIXELS` pixels or whose decoded size is over :data:`MAX_DECODED_BYTES` (both read from the header,
  before anything is allocated) or a side under :data:`MIN_SIDE`.

Memory budgets (a public app decodes what anyone uploads, many at once, on a 16 GB machine):

* **One image**: at most :data:`MAX_PIXELS` = 40 Mpx a frame, and at most :data:`MAX_DECODED_BYTES` = 80 MB for the
  decoder's own buffer — width × height × bytes a pixel × frames held in memory, read from the header: DICOM
  Rows × Columns × SamplesPerPixel × ⌈BitsAllocated/8⌉ × (NumberOfFrames for uncompressed data, all of which is
  in memory; 1 for compressed data, of which only the middle frame is decoded); Pillow's size × the bytes a pixel
  of its mode takes (1 for L/P, 2 for 16-bit, 4 for RGB(A), CMYK, 32-bit and anything converted to RGBA for its
  transparency). So 40 Mpx of 8- or 16-bit grey, 26 Mpx of 8-bit colour DICOM, 20 Mpx of colour PNG/JPEG. The
  conversion to grey never holds a float64 image: 8- and 16-bit stored values go through a 64 K-entry look-up table
  (computed in float64, so the result is exactly what converting every pixel in float64 gives), anything else is
  converted in float32 slices of :data:`_CHUNK_PIXELS` pixels (colour, YBR and alpha too). Measured peak RSS of
  one decode: 2.2-3.4× the decoded size — 40 Mpx of 16-bit grey: PNG 228 MB, RLE DICOM 194 MB, deflated DICOM
  273 MB (float64 took 1.0, 1.3 and 1.5 GB; the 8000×8000 RLE DICOM of issue #10 took 2.1 GB and 6 s, and is now
  refused in a millisecond). A deflated DICOM is refused once it inflates past the same budget (plus 16 MB for its
  other elements), before pydicom inflates it whole; RLE DICOM goes through a bounded decoder
  (:mod:`lib.data.dicom_rle`); a JPEG inside a DICOM must be the size its header says.
* **All images at once**: decodes over :data:`LARGE_DECODE_BYTES` (16 MB; an ordinary 3000×2500 X-ray is 7.5 MB)
  share a process-wide budget of :data:`DECODE_BUDGET_BYTES` (160 MB: two images of the largest size at a time);
  one that does not fit waits up to :data:`DECODE_WAIT_S` seconds for the others to finish, then gets a
  :class:`DecodeBusyError` (an :class:`ImageError`) saying the server is busy. Smaller decodes never wait.

Example:
    >>> arr = load_grey("../shared/data/chest_xray/test/NORMAL/IM-0011-0001.jpeg", size=224)
    >>> arr.shape, arr.dtype
    ((224, 224), dtype('uint8'))
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import warnings
import zlib
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import XcxrValueError
from .common import DICOM_SUFFIXES  # the one list of suffixes lives in lib.data.common; re-exported here

__all__ = ["ImageError", "DecodeBusyError", "load_grey", "to_grey_array", "dicom_info", "is_dicom",
           "decoding_bytes_in_use", "MAX_PIXELS", "MIN_SIDE", "MAX_FILE_BYTES", "MAX_DECODED_BYTES", "DECODE_BUDGET_BYTES",
           "LARGE_DECODE_BYTES", "DECODE_WAIT_S", "DICOM_SUFFIXES"]

#: Images (frames) with more pixels than this are refused, from the header, before decoding: a decompression bomb
#: would otherwise eat the machine's memory. 40 Mpx is a 6300×6300 scan, above any detector's full resolution.
MAX_PIXELS = 40_000_000
#: The most bytes the decoder's buffer for one image may take (see the module docstring for how it is counted):
#: 40 Mpx of 16-bit grey. Checked from the header before decoding; peak memory is about 2.5× this.
MAX_DECODED_BYTES = 80 * 2**20
#: Process-wide: the decoded bytes of all large decodes in progress at once (two of the largest images). Keeps a
#: class (or an attacker) uploading huge images in parallel from multiplying the memory of one decode.
DECODE_BUDGET_BYTES = 2 * MAX_DECODED_BYTES
#: Decodes needing less than this never wait for :data:`DECODE_BUDGET_BYTES` (every ordinary X-ray is smaller).
LARGE_DECODE_BYTES = 16 * 2**20
#: How long a large decode waits for room in :data:`DECODE_BUDGET_BYTES` before it is refused as "server busy"
#: (one of the largest decodes takes ~1 s, so a wait this long only runs out when many large images queue up).
DECODE_WAIT_S = 10.0
#: A side shorter than this carries no picture to classify.
MIN_SIDE = 8
#: Files larger than this are refused before they are read (an upload could otherwise be any size).
MAX_FILE_BYTES = 50 * 1024 * 1024

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageError(XcxrValueError):
    """An image could not be used; the message names the file and the problem."""


class DecodeBusyError(ImageError):
    """A large image found no room in :data:`DECODE_BUDGET_BYTES` in time: not the file's fault, try it again later."""


def _name(src: Source) -> str:
    return "<uploaded bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _size_text(n: int) -> str:
    """``52428800`` -> ``'50 MB'``, ``1000`` -> ``'1 KB'``."""
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} KB"


# --- memory budgets -----------------------------------------------------------------------------------------------

#: Pixels converted per step where a whole-image float array would otherwise be needed (4 MB of float32 a step).
_CHUNK_PIXELS = 1 << 20


def _row_slices(rows: int, cols: int) -> list[slice]:
    """Row ranges of about :data:`_CHUNK_PIXELS` pixels each, covering ``rows`` rows of ``cols`` pixels."""
    step = max(1, _CHUNK_PIXELS // max(1, cols))
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def _check_decoded_size(name: str, w: int, h: int, bytes_per_pixel: int, frames: int = 1) -> int:
    """Refuse an image whose decoded buffer would exceed :data:`MAX_DECODED_BYTES`; return that size in bytes."""
    n = int(w) * int(h) * int(bytes_per_pixel) * max(1, int(frames))
    if n > MAX_DECODED_BYTES:
        what = f"{w}×{h} pixels" + (f" × {frames} frames" if frames > 1 else "") + f" × {bytes_per_pixel} bytes"
        raise ImageError(
            f"{name}: {what} needs {_size_text(n)} to decode, more than the {_size_text(MAX_DECODED_BYTES)} one "
            f"image may use (e.g. {MAX_PIXELS / 1e6:g} Mpx of 16-bit grey, fewer in colour); downscale the image "
            "or save it as 8-bit grey first")
    return n


class _DecodeBudget:
    """Process-wide count of the bytes that large decodes in progress hold; see :data:`DECODE_BUDGET_BYTES`.

    A condition variable rather than a semaphore: images differ in size, so a budget in bytes lets several medium
    images through at once while two of the largest fill it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.used = 0

    @contextlib.contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the ``with`` block (nothing below :data:`LARGE_DECODE_BYTES`).

        Raises:
            ImageError: no room within :data:`DECODE_WAIT_S` seconds (the server is busy with other large images).
        """
        if nbytes < LARGE_DECODE_BYTES:
            yield
            return
        nbytes = min(int(nbytes), DECODE_BUDGET_BYTES)  # a single image never waits for more than the whole budget
        deadline = time.monotonic() + DECODE_WAIT_S
        with self._cond:
            while self.used + nbytes > DECODE_BUDGET_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodeBusyError(
                        f"{name}: the server is busy decoding other large images; try again in a moment (this "
                        f"image needs {_size_text(nbytes)}; images under {_size_text(LARGE_DECODE_BYTES)} never "
                        "wait)")
                self._cond.wait(left)
            self.used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


_BUDGET = _DecodeBudget()


def decoding_bytes_in_use() -> int:
    """Bytes of :data:`DECODE_BUDGET_BYTES` held by large decodes in progress right now (0 when none runs)."""
    return _BUDGET.used


def _open_source(src: Source) -> tuple[str, "io.BytesIO | str", bytes, str]:
    """Check a path or bytes before anything is decoded: exists, not empty, not over MAX_FILE_BYTES.

    Returns ``(name, file-like or path, first 132 bytes, lower-case suffix)``.
    """
    name = _name(src)
    limit = _size_text(MAX_FILE_BYTES)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if len(data) == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); upload a PNG, JPEG or DICOM image")
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{name}: {_size_text(len(data))} is more than the {limit} allowed; "
                             "downscale or compress the image (e.g. export it as JPEG/PNG) first")
        return name, io.BytesIO(data), data[:132], ""
    path = Path(src)
    if not path.is_file():
        raise ImageError(f"{name}: no such file")
    n = path.stat().st_size
    if n == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes); re-export or remove it")
    if n > MAX_FILE_BYTES:
        raise ImageError(f"{name}: {_size_text(n)} is more than the {limit} allowed; "
                         "downscale or compress the image (e.g. export it as JPEG/PNG) first")
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e.strerror or e})") from e
    return name, str(path), head, path.suffix.lower()


def _has_dicm_marker(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def is_dicom(src: Source) -> bool:
    """True when ``src`` has the DICOM ``DICM`` marker at byte 128 or a DICOM file name (``.dcm`` …)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _has_dicm_marker(bytes(src[:132]))
    path = Path(src)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return _has_dicm_marker(f.read(132))
    except OSError:
        return False


def to_grey_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """Convert an opened PIL image of any mode to one grey channel, uint8, full range kept.

    16-bit greyscale (modes ``I;16``, ``I``) is rescaled by its own min/max — a 12-bit X-ray stored in 16-bit
    would otherwise come out almost black. Alpha is composited onto black (transparent = no signal).
    Memory: never a float64 copy of the image (see the module docstring).
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _min_max_to_uint8(np.asarray(img), name)
    if _has_alpha(img):
        return _composited_on_black(img)
    grey = img if mode == "L" else img.convert("L")  # ITU-R 601 luma; a grey image stored as RGB is unchanged
    out = np.asarray(grey)
    return out if out.flags.writeable else out.copy()  # writable: torch.from_numpy warns on read-only arrays


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _pil_bytes_per_pixel(img: Image.Image) -> int:
    """Bytes a pixel of ``img`` takes once decoded and on its way to grey (Pillow keeps 3- and 4-band pixels in 4
    bytes; transparent images are converted to RGBA)."""
    if img.mode in ("1", "L", "P") and not _has_alpha(img):
        return 1
    return 2 if img.mode.startswith("I;16") else 4


def _composited_on_black(img: Image.Image) -> np.ndarray:
    """Grey of ``img`` composited onto opaque black: luma × alpha / 255, rounded (one uint16 slice at a time)."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    grey, alpha = np.asarray(rgba.convert("L")), np.asarray(rgba.getchannel("A"))
    out = np.empty(grey.shape, dtype=np.uint8)
    for s in _row_slices(*grey.shape):
        out[s] = (grey[s].astype(np.uint16) * alpha[s] + 127) // 255
    return out


def _min_max_to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """Rescale a one-channel 16/32-bit integer or float image by its own min/max to uint8 (round half to even).

    Unsigned 8/16-bit images go through a 64 K-entry table computed in float64, so the result equals converting the
    whole image to float64, at 1 byte a pixel; other types are converted in float32 slices.
    """
    if not a.dtype.isnative:  # I;16B: big-endian samples
        a = a.astype(a.dtype.newbyteorder("="))
    slices = _row_slices(*a.shape)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
        lo, hi = int(a.min()), int(a.max())
        if hi <= lo:
            return np.zeros(a.shape, dtype=np.uint8)
        values = np.arange(1 << (8 * a.dtype.itemsize), dtype=np.float64)
        table = np.clip(np.round((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
        out = np.empty(a.shape, dtype=np.uint8)
        for s in slices:
            out[s] = table[a[s]]
        return out
    lo, hi = np.inf, -np.inf
    for s in slices:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice
            lo, hi = min(lo, float(np.nanmin(a[s]))), max(hi, float(np.nanmax(a[s])))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ImageError(f"{name}: the image contains NaN or infinite values")
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    scale = 255.0 / (hi - lo)
    out = np.empty(a.shape, dtype=np.uint8)
    for s in slices:
        # integers: subtract in int64 first, so float32 never has to hold a large value next to a small difference
        x = (a[s].astype(np.int64) - int(lo)).astype(np.float32) if a.dtype.kind in "iu" else \
            a[s].astype(np.float32) - np.float32(lo)
        out[s] = np.clip(np.round(np.nan_to_num(x * np.float32(scale), nan=0.0)), 0, 255)
    return out


def load_grey(src: Source, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file or bytes and return one grey uint8 channel, optionally resized.

    Args:
        src: a path or the raw bytes of an image file.
        size: ``None`` keeps the size; an int or ``(height, width)`` resizes (bilinear, antialiased). The aspect
            ratio is not kept: the course data were squashed to 224×224 the same way.

    DICOM files are windowed with their own VOI settings and reduced to their middle frame (see
    :func:`dicom_info`); other images get their EXIF orientation applied and give their first frame.

    Raises:
        ImageError: empty, truncated or unreadable file, a file over :data:`MAX_FILE_BYTES`, an image too small
            or too large (decompression bomb), a DICOM without pixel data or whose compression needs a
            decoder that is not installed.
    """
    name, fp, head, suffix = _open_source(src)
    target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    if _has_dicm_marker(head) or suffix in DICOM_SUFFIXES:
        arr, _ = _load_dicom(fp, name, force=not _has_dicm_marker(head))
        if target is not None and arr.shape != target:
            arr = np.array(Image.fromarray(arr).resize((target[1], target[0]), Image.BILINEAR, reducing_gap=None))
        return arr
    _refuse_truncated_images()
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
                # only the first frame of an animated GIF/WebP or a multi-page TIFF is ever decoded
                _check_decoded_size(name, w, h, _pil_bytes_per_pixel(img))
                orientation = _exif_orientation(img)
                if target is not None and img.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller:
                    # the single largest saving for full-resolution X-rays (~2000 px). EXIF orientations
                    # 5-8 swap width and height, so the request is swapped too.
                    img.draft("L", (target[0], target[1]) if orientation >= 5 else (target[1], target[0]))
                dw, dh = img.size  # after draft(): what libjpeg will really decode
                with _BUDGET.reserve(dw * dh * _pil_bytes_per_pixel(img), name):
                    img.load()
                    arr = to_grey_array(img, name)
                    if orientation > 1:  # a sideways phone photo of a film comes out upright; turned once grey
                        arr = np.array(Image.fromarray(arr).transpose(_EXIF_TRANSPOSE[orientation]))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({e}); downscale the image") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image file this app can read (expected PNG, JPEG, TIFF, BMP, GIF, WebP "
                         "or DICOM); check that you uploaded the image itself") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name}: the image is truncated or corrupt ({e}); re-export or remove it") from e
    if target is not None and arr.shape != target:
        arr = np.array(Image.fromarray(arr).resize((target[1], target[0]), Image.BILINEAR, reducing_gap=None))
    return arr


def _refuse_truncated_images() -> None:
    """Make sure PIL raises on a truncated file instead of returning a partly grey image.

    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is process-wide; if some other library switched it on, it is switched
    back off (with a warning): a half-decoded X-ray must never reach the classifier silently.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        warnings.warn("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; lib.data.images reset it to False so that "
                      "truncated images are refused instead of decoded partially", RuntimeWarning, stacklevel=3)


#: EXIF orientation -> the transpose that makes the image upright (as ``PIL.ImageOps.exif_transpose`` does).
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                   7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 = upright) of an opened image, 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not make an otherwise fine image unusable
        return 1
    return value if 1 <= value <= 8 else 1


# --- DICOM ------------------------------------------------------------------------------------------------------

_DECODER_HINT = {
    "gdcm": "python-gdcm",
    "pylibjpeg": "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg",
    "pyjpegls": "pyjpegls",
    "pillow": "pillow (with its JPEG / JPEG 2000 support)",
}


def _first(value):
    """A DICOM value that may be multi-valued (e.g. several windows): its first value, as float."""
    if value is None:
        return None
    try:
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            return float(value[0])
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _frame_item(ds, frame: int, sequence: str):
    """The item of a functional-group ``sequence`` (per-frame first, then shared) of an enhanced multi-frame DICOM."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > i and sequence in seq[i] and len(seq[i][sequence].value) > 0:
            return seq[i][sequence].value[0]
    return None


def _dicom_modality(ds, frame: int, info: dict) -> Callable[[np.ndarray, type], np.ndarray]:
    """The modality LUT (stored values -> physical units, e.g. Hounsfield) as ``f(values, float type)``; what it
    is goes into ``info``."""
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        info["rescale"] = "Modality LUT sequence"
        return lambda v, dtype: apply_modality_lut(v, ds).astype(dtype)
    src = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else _frame_item(
        ds, frame, "PixelValueTransformationSequence")
    slope = _first(src.get("RescaleSlope")) if src is not None else None
    intercept = _first(src.get("RescaleIntercept")) if src is not None else None
    slope = 1.0 if slope is None or slope == 0 else slope
    intercept = 0.0 if intercept is None else intercept
    info["rescale_slope"], info["rescale_intercept"] = slope, intercept
    return lambda v, dtype: v.astype(dtype) * dtype(slope) + dtype(intercept)


def _dicom_windowed(ds, arr: np.ndarray, frame: int) -> tuple[np.ndarray, dict]:
    """Modality LUT, then VOI window/LUT, then MONOCHROME1 inversion, to uint8. Returns the array and what was used.

    8- and 16-bit stored values (every X-ray and CT): the chain is computed once for each of the 256 / 65 536 values
    the type can hold, in float64 as for a single pixel, and the image becomes one table look-up — exactly the
    result of converting the whole image in float64, at 1 byte a pixel instead of 8 (or 24 with the temporaries).
    Other types (32-bit, float pixel data) are converted in float32 slices of :data:`_CHUNK_PIXELS`.
    """
    from pydicom.pixels import apply_voi

    info: dict = {}
    modality = _dicom_modality(ds, frame, info)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    slices = _row_slices(*arr.shape)
    tabulated = arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2
    if tabulated:
        unsigned = np.dtype(f"u{arr.dtype.itemsize}")
        index = arr.view(unsigned)  # each pixel's row in the table (an int16 -1 is row 65535)
        present = np.zeros(1 << (8 * arr.dtype.itemsize), dtype=bool)
        for s in slices:
            present[index[s]] = True
        x_table = modality(np.arange(present.size, dtype=unsigned).view(arr.dtype), np.float64)
        used = x_table[present]
        used = used[np.isfinite(used)]
        lo, hi = (float(used.min()), float(used.max())) if used.size else (np.inf, -np.inf)
    else:
        lo, hi = np.inf, -np.inf
        for s in slices:
            x = modality(arr[s], np.float32)
            x = x[np.isfinite(x)]
            if x.size:
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    if not np.isfinite(lo):
        raise ImageError("the DICOM pixel data contains only NaN or infinite values")

    def physical(x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, lo)  # NaN / inf pixels become the lowest finite value

    # 2. VOI: the window the file asks for; else its VOI LUT; else the full pixel range.
    voi = ds if "WindowCenter" in ds and "WindowWidth" in ds else _frame_item(ds, frame, "FrameVOILUTSequence")
    center = _first(voi.get("WindowCenter")) if voi is not None else None
    width = _first(voi.get("WindowWidth")) if voi is not None else None
    function = str(voi.get("VOILUTFunction", "LINEAR") or "LINEAR").upper() if voi is not None else "LINEAR"
    window: Callable[[np.ndarray], np.ndarray]
    if center is not None and width is not None and width > 0 and not (function == "LINEAR" and width < 1):
        if function == "SIGMOID":
            # exp(±80) already gives 0 / 255 after rounding, and stays finite in float32 (no overflow warning)
            window = lambda x: 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -80, 80)))  # noqa: E731
        elif function == "LINEAR_EXACT":
            window = lambda x: ((x - center) / width + 0.5) * 255.0  # noqa: E731
        else:  # LINEAR, DICOM PS3.3 C.11.2.1.2.1
            function = "LINEAR"
            if width == 1:
                window = lambda x: np.where(x <= center - 0.5, 0.0, 255.0)  # noqa: E731
            else:
                window = lambda x: ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0  # noqa: E731
        info.update(window_center=center, window_width=width, voi_lut_function=function,
                    window_source="WindowCenter/WindowWidth in the file")
    elif ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]

        def voi_lut(x: np.ndarray) -> np.ndarray:
            return apply_voi(np.round(x).astype(np.int64), ds, index=0).astype(x.dtype)

        depth = int(item.LUTDescriptor[2]) if "LUTDescriptor" in item else 16
        if depth in range(8, 17):
            top = float(2 ** depth - 1)
        elif tabulated:  # an odd LUT depth: the largest output over the image's own pixels
            top = float(voi_lut(physical(x_table))[present].max() or 1)
        else:
            top = float(max(voi_lut(physical(modality(arr[s], np.float32))).max() for s in slices) or 1)
        window = lambda x: voi_lut(x) * (255.0 / top)  # noqa: E731
        info.update(window_center=None, window_width=None, voi_lut_function="VOI LUT sequence",
                    window_source="VOI LUT sequence in the file")
    else:
        window = (lambda x: np.zeros_like(x)) if hi <= lo else (lambda x: (x - lo) * (255.0 / (hi - lo)))
        info.update(window_center=(lo + hi) / 2, window_width=hi - lo, voi_lut_function="LINEAR",
                    window_source="full pixel range (the file has no window)")
    # 3. MONOCHROME1: the lowest value is white; invert so the output looks like MONOCHROME2 (bone bright).
    inverted = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1"
    info["inverted"] = inverted

    def to_grey(x: np.ndarray) -> np.ndarray:
        grey = np.round(np.clip(window(physical(x)), 0.0, 255.0)).astype(np.uint8)
        return 255 - grey if inverted else grey

    grey = np.empty(arr.shape, dtype=np.uint8)
    if tabulated:
        table = to_grey(x_table)
        for s in slices:
            grey[s] = table[index[s]]
    else:
        for s in slices:
            grey[s] = to_grey(modality(arr[s], np.float32))
    return grey, info


def _dicom_colour_to_grey(ds, arr: np.ndarray, ybr: str | None = None, bits: int | None = None) -> np.ndarray:
    """An RGB DICOM frame (or a palette's colour table) to grey uint8 (ITU-R 601 luma), in float32 slices.

    ``ybr``: the frame is still in that YBR colour space (decoded with ``raw=True``); it is converted to RGB one
    slice at a time with pydicom's own conversion, instead of pydicom converting the whole frame in float32.
    ``bits``: the depth of the values (default: BitsStored); uint8 values are taken as they are.
    """
    from pydicom.pixels import convert_color_space

    flat = arr.reshape(-1, arr.shape[-1])
    bits = bits or int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    scale = None if arr.dtype == np.uint8 else 255.0 / float(2 ** bits - 1)
    out = np.empty(flat.shape[0], dtype=np.uint8)
    for i in range(0, flat.shape[0], _CHUNK_PIXELS):
        part = flat[i: i + _CHUNK_PIXELS, :3]
        if ybr is not None:
            part = convert_color_space(part, ybr, "RGB")
        rgb = part.astype(np.float32)
        luma = rgb[:, 0] * 0.299 + rgb[:, 1] * 0.587 + rgb[:, 2] * 0.114
        out[i: i + _CHUNK_PIXELS] = np.round(luma if scale is None else np.clip(luma * scale, 0, 255))
    return out.reshape(arr.shape[:-1])


def _dicom_palette_to_grey(ds, arr: np.ndarray) -> np.ndarray:
    """A PALETTE COLOR frame to grey: the palette itself is turned to grey, then the image is one table look-up
    (never an RGB copy of the frame)."""
    from pydicom.pixels import apply_color_lut

    # The palette's entries are 8- or 16-bit (its descriptor's third value), whatever BitsStored of the indices is:
    # scaling 16-bit entries by an 8-bit BitsStored turned every palette image white.
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    bits = int(descriptor[2]) if descriptor is not None and len(descriptor) > 2 and int(descriptor[2]) in (8, 16) \
        else None
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2 and arr.dtype.isnative:
        rgb = apply_color_lut(np.arange(1 << (8 * arr.dtype.itemsize), dtype=arr.dtype), ds)
        table = _dicom_colour_to_grey(ds, rgb, bits=bits)
        grey = np.empty(arr.shape, dtype=np.uint8)
        for s in _row_slices(*arr.shape):
            grey[s] = table[arr[s]]
        return grey
    return _dicom_colour_to_grey(ds, apply_color_lut(arr, ds), bits=bits)


#: The transfer syntax whose data set pydicom inflates whole, in memory, while reading the file.
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
#: Explicit VRs with a 4-byte length (after 2 reserved bytes), DICOM PS3.5 7.1.2.
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
#: What a deflated data set may inflate to beyond :data:`MAX_DECODED_BYTES` (its non-pixel elements).
_INFLATED_SLACK = 16 * 2**20


def _deflated_offset(f) -> int | None:
    """Where the data set starts when the file's transfer syntax is Deflated Explicit VR Little Endian, else None.

    Reads the file meta group (0002,xxxx) — always Explicit VR Little Endian — element by element, as pydicom
    does, so a long element cannot hide the transfer syntax from the check.

    Raises:
        ImageError: a file meta group of more than 1000 elements (real ones have about ten; pydicom would read
            millions of tiny ones from a 50 MB file for many seconds).
    """
    f.seek(0)
    pos = 132 if _has_dicm_marker(f.read(132)) else 0
    f.seek(pos)
    ts = None
    for _ in range(1000):
        head = f.read(8)
        if len(head) < 8 or head[:2] != b"\x02\x00":
            break
        if head[4:6] in _LONG_VRS:
            more = f.read(4)
            if len(more) < 4:
                break
            size, skip = int.from_bytes(more, "little"), 12
        else:
            size, skip = int.from_bytes(head[6:8], "little"), 8
        if head[2:4] == b"\x10\x00":  # (0002,0010) Transfer Syntax UID: a UID is at most 64 characters
            ts = f.read(min(size, 1024))
        pos += skip + size
        f.seek(pos)
    else:
        raise ImageError("the DICOM file meta information has more than 1000 elements; this is not an image file")
    return pos if ts is not None and ts.rstrip(b"\0 ") == _DEFLATED_UID else None


def _check_inflated_size(fp, name: str) -> None:
    """Refuse a deflated DICOM that inflates past :data:`MAX_DECODED_BYTES` (+16 MB), by inflating it in 4 MB steps
    that are thrown away: pydicom itself inflates the whole rest of the file in memory before reading any element,
    and zlib packs up to ~1000:1, so a 50 MB upload could ask for 50 GB."""
    f = open(fp, "rb") if isinstance(fp, str) else fp
    try:
        try:
            offset = _deflated_offset(f)
        except ImageError as e:
            raise ImageError(f"{name}: {e}") from e
        if offset is None:
            return
        f.seek(offset)
        limit = MAX_DECODED_BYTES + _INFLATED_SLACK
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not inflater.eof:
            data = f.read(1 << 20)
            if not data:
                break
            while data:
                total += len(inflater.decompress(data, 1 << 22))
                if total > limit:
                    raise ImageError(f"{name}: the deflated DICOM data set inflates to more than {_size_text(limit)}, "
                                     f"more than one image may use; export it uncompressed or as PNG")
                data = inflater.unconsumed_tail
    except (OSError, zlib.error):
        return  # unreadable or corrupt: pydicom reports it
    finally:
        if f is fp:
            f.seek(0)
        else:
            f.close()


def _check_compressed_frame(ds, frame: int, frames: int, rows: int, cols: int, name: str) -> None:
    """Refuse a JPEG / JPEG 2000 frame whose own header disagrees with Rows×Columns.

    Pillow (pydicom's JPEG decoder here) decodes a frame at the size *its* header says, and pydicom compares that
    with Rows×Columns only afterwards: a 20000×20000 JPEG behind an 8×8 DICOM header would be decoded first.
    Reading the frame's header costs a few bytes; a frame Pillow cannot read is left to the decoder.
    """
    from pydicom.encaps import get_frame

    try:
        data = get_frame(ds.PixelData, frame, number_of_frames=frames)
    except Exception:  # noqa: BLE001 - broken encapsulation: the decoder will say so
        return
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "JPEG2000")) as im:
            size = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        size = None
    except Exception:  # noqa: BLE001 - not a format Pillow reads (JPEG-LS …): the decoder checks it
        return
    if size != (cols, rows):
        said = f"is {size[0]}×{size[1]} pixels" if size else "is far larger than that (a decompression bomb?)"
        raise ImageError(f"{name}: the DICOM header says {cols}×{rows} pixels, but the compressed image inside it "
                         f"{said}; export the image again")


def _load_dicom(fp, name: str, force: bool) -> tuple[np.ndarray, dict]:
    """Decode a DICOM file to grey uint8 plus a description of what was done (see :func:`dicom_info`)."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels import get_decoder
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
    except ImportError as e:  # pragma: no cover - pydicom is in requirements.txt
        raise ImageError(f"{name}: is a DICOM file, but pydicom is not installed; run `pip install pydicom`") from e

    _check_inflated_size(fp, name)
    try:
        ds = pydicom.dcmread(fp, force=force)
    except InvalidDicomError as e:
        raise ImageError(f"{name}: looks like DICOM but is not a valid DICOM file ({e}); "
                         "export the image again from the viewer or PACS") from e
    except Exception as e:  # truncated header, garbage after a .dcm name, …
        raise ImageError(f"{name}: the DICOM file is truncated or corrupt ({type(e).__name__}: {e}); "
                         "export the image again") from e
    identified = any(k in ds for k in ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID", "PatientID"))
    if force and not identified:
        raise ImageError(f"{name}: has a DICOM file name but is not a DICOM file; upload a DICOM, PNG or JPEG image")
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        why = ("the file is probably cut short, or a header-only export; export the image again" if "Rows" in ds
               else "it is probably a report, structured report or presentation state rather than an image, "
                    "or the file is cut short; upload the image itself")
        raise ImageError(f"{name}: the DICOM file has no pixel data (PixelData element missing) — {why}")
    missing = [k for k in ("Rows", "Columns") if k not in ds]
    if missing:
        raise ImageError(f"{name}: the DICOM file lacks {' and '.join(missing)}; it cannot be decoded")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"{name}: {cols}×{rows} pixels is more than the {MAX_PIXELS:,} allowed; "
                         "downscale the image before using it")
    if min(rows, cols) < MIN_SIDE:
        raise ImageError(f"{name}: {cols}×{rows} pixels is too small to classify (need ≥ {MIN_SIDE} px a side)")

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:  # a bare dataset without file meta (old files)
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ts = ImplicitVRLittleEndian if implicit in (True, None) else (
            ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian)
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = ts
    ts = ds.file_meta.TransferSyntaxUID
    ts_name = getattr(ts, "name", str(ts)) or str(ts)
    if "PixelData" in ds:
        decoder = get_decoder(ts)
        if decoder is None:
            raise ImageError(f"{name}: the DICOM transfer syntax '{ts_name}' ({ts}) is not supported by pydicom; "
                             "export the image uncompressed (Explicit VR Little Endian) or as PNG")
        if not decoder.is_available:
            wanted = sorted({_DECODER_HINT.get(m.split(" ", 1)[0], m.split(" ", 1)[0])
                             for m in decoder.missing_dependencies})
            raise ImageError(f"{name}: the DICOM pixel data is compressed as '{ts_name}' ({ts}), and no decoder for "
                             f"it is installed; install one of: {'; '.join('pip install ' + w for w in wanted)} — "
                             "or export the image uncompressed or as PNG")

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame = frames // 2
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    try:
        encapsulated = bool(ts.is_encapsulated)
    except ValueError:  # not a transfer syntax pydicom knows: it cannot decode it anyway (refused below)
        encapsulated = False
    # Uncompressed data: all frames are in memory (read, or inflated); compressed: only the middle frame is decoded.
    nbytes = _check_decoded_size(name, cols, rows, samples * max(1, (bits + 7) // 8), 1 if encapsulated else frames)
    plugin = ""
    if ts == RLELossless:
        from . import dicom_rle  # bounded and fast; pydicom's own RLE decoder is neither (see lib.data.dicom_rle)

        dicom_rle.register()
        plugin = dicom_rle.PLUGIN
    elif encapsulated and "PixelData" in ds:
        _check_compressed_frame(ds, frame, frames, rows, cols, name)
    with _BUDGET.reserve(nbytes, name):
        try:
            decoder = get_decoder(ts)
            if decoder is None:
                raise NotImplementedError(f"no pixel data decoder for '{ts_name}'")
            # raw: YBR stays YBR here and is converted slice by slice below (pydicom would convert the whole frame
            # in float32); view_only: uncompressed pixels are only read, so pydicom need not copy them.
            arr, props = decoder.as_array(ds, index=frame if frames > 1 else None, raw=True, view_only=True,
                                          decoding_plugin=plugin)
        except Exception as e:
            raise ImageError(f"{name}: the DICOM pixel data could not be decoded — truncated or corrupt "
                             f"({type(e).__name__}: {e}); export the image again") from e
        arr = np.asarray(arr)
        colour_space = str(props.get("photometric_interpretation", photometric)).strip().upper()
        try:
            if photometric == "PALETTE COLOR":
                grey = _dicom_palette_to_grey(ds, arr)
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and samples > 1:
                grey = _dicom_colour_to_grey(ds, arr, colour_space if colour_space.startswith("YBR_FULL") else None)
            elif arr.ndim == 2:
                grey, info = _dicom_windowed(ds, arr, frame)
            else:
                raise ImageError(f"{name}: unexpected DICOM pixel array shape {arr.shape} "
                                 f"(PhotometricInterpretation {photometric})")
            if photometric == "PALETTE COLOR" or arr.ndim == 3:
                info = {"window_center": None, "window_width": None, "voi_lut_function": None, "inverted": False,
                        "window_source": "none (colour image converted to grey)"}
        except ImageError as e:
            raise ImageError(str(e) if str(e).startswith(name) else f"{name}: {e}") from e
        except Exception as e:
            raise ImageError(f"{name}: the DICOM pixel values could not be converted to grey "
                             f"({type(e).__name__}: {e})") from e
    info.update(photometric_interpretation=photometric, modality=str(ds.get("Modality", "")) or None,
                rows=rows, columns=cols, number_of_frames=frames, frame_used=frame,
                transfer_syntax=ts_name, bits_stored=ds.get("BitsStored"))
    return grey, info


def dicom_info(src: Source) -> dict:
    """What :func:`load_grey` did with a DICOM file — for the app to show "the window settings".

    Decodes the image (the fallback window is the pixel range, which needs the pixels). Keys: ``window_center``,
    ``window_width`` (in modality units, after Rescale Slope/Intercept; ``None`` for a VOI LUT or a colour image),
    ``voi_lut_function`` (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``, ``VOI LUT sequence`` or ``None``),
    ``window_source`` (where the window came from), ``rescale_slope``/``rescale_intercept``, ``inverted``
    (MONOCHROME1), ``photometric_interpretation``, ``modality``, ``rows``, ``columns``, ``number_of_frames``,
    ``frame_used`` (0-based; the middle frame of a multi-frame file), ``transfer_syntax``, ``bits_stored``.

    Raises:
        ImageError: ``src`` is not a DICOM file, or any reason :func:`load_grey` would refuse it.
    """
    name, fp, head, suffix = _open_source(src)
    if not (_has_dicm_marker(head) or suffix in DICOM_SUFFIXES):
        raise ImageError(f"{name}: not a DICOM file (no 'DICM' marker at byte 128)")
    return _load_dicom(fp, name, force=not _has_dicm_marker(head))[1]
