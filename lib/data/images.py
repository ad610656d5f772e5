"""Decode one image file (or bytes) into a single grey uint8 channel.

Every image the project sees goes through :func:`load_grey`: training data, evaluation data and uploads
in the app. It accepts whatever PIL can read — JPEG, PNG (8- and 16-bit), RGB(A), palette, CMYK, TIFF, GIF —
and DICOM (through pydicom), and always returns an ``H×W`` ``numpy.uint8`` array, or raises
:class:`ImageError` with a message that names the file and says what to do.

What an upload can be, and what it becomes:

* DICOM (``DICM`` marker at byte 128, or a ``.dcm``/``.dicom`` name): modality LUT (Rescale Slope/Intercept),
  then the file's own VOI window (Window Center/Width, or its VOI LUT), MONOCHROME1 inverted so bone is
  bright, colour (RGB/YBR/palette) turned to grey; multi-frame files give their middle frame.
  :func:`dicom_info` says which window was used.
* Photos and exports: EXIF orientation is applied, so a phone photo of a film taken sideways comes out
  upright; animated GIFs and multi-page TIFFs give their first frame; alpha is composited onto black.
* Refused with :class:`ImageError`: empty files, files over :data:`MAX_FILE_BYTES` (checked before reading),
  anything that is not an image, truncated or corrupt files (never decoded partially), images with more than
  :data:`MAX_PIXELS` pixels (checked from the header, before decoding) or a side under :data:`MIN_SIDE`.

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
from collections.abc import Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import XcxrValueError
from .common import DICOM_SUFFIXES  # the one list of suffixes lives in lib.data.common; re-exported here

__all__ = ["ImageError", "load_grey", "to_grey_array", "dicom_info", "is_dicom",
           "MAX_PIXELS", "MIN_SIDE", "MAX_FILE_BYTES", "DICOM_SUFFIXES"]

#: Images larger than this are refused: a decompression bomb would otherwise eat the machine's memory.
MAX_PIXELS = 64_000_000
#: A side shorter than this carries no picture to classify.
MIN_SIDE = 8
#: Files larger than this are refused before they are read (an upload could otherwise be any size).
MAX_FILE_BYTES = 50 * 1024 * 1024

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageError(XcxrValueError):
    """An image could not be used; the message names the file and the problem."""


def _name(src: Source) -> str:
    return "<uploaded bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _size_text(n: int) -> str:
    """``52428800`` -> ``'50 MB'``, ``1000`` -> ``'1 KB'``."""
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} KB"


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
                orientation = _exif_orientation(img)
                if target is not None and img.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller:
                    # the single largest saving for full-resolution X-rays (~2000 px). EXIF orientations
                    # 5-8 swap width and height, so the request is swapped too.
                    img.draft("L", (target[0], target[1]) if orientation >= 5 else (target[1], target[0]))
                img.load()  # the first frame of an animated GIF / multi-page TIFF
                if orientation > 1:
                    img = ImageOps.exif_transpose(img)  # a sideways phone photo of a film comes out upright
                arr = to_grey_array(img, name)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({e}); downscale the image") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image file this app can read (expected PNG, JPEG, TIFF, BMP, GIF "
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


def _dicom_windowed(ds, arr: np.ndarray, frame: int) -> tuple[np.ndarray, dict]:
    """Modality LUT, then VOI window/LUT, then MONOCHROME1 inversion, to uint8. Returns the array and what was used."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    info: dict = {}
    # 1. Modality LUT: stored values -> physical units (e.g. Hounsfield).
    if ds.get("ModalityLUTSequence"):
        x = apply_modality_lut(arr, ds).astype(np.float64)
        info["rescale"] = "Modality LUT sequence"
    else:
        src = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else _frame_item(
            ds, frame, "PixelValueTransformationSequence")
        slope = _first(src.get("RescaleSlope")) if src is not None else None
        intercept = _first(src.get("RescaleIntercept")) if src is not None else None
        slope = 1.0 if slope is None or slope == 0 else slope
        intercept = 0.0 if intercept is None else intercept
        x = arr.astype(np.float64) * slope + intercept
        info["rescale_slope"], info["rescale_intercept"] = slope, intercept
    if not np.all(np.isfinite(x)):
        x = np.where(np.isfinite(x), x, np.nan)
        if np.all(np.isnan(x)):
            raise ImageError("the DICOM pixel data contains only NaN or infinite values")
        x = np.nan_to_num(x, nan=float(np.nanmin(x)))

    # 2. VOI: the window the file asks for; else its VOI LUT; else the full pixel range.
    voi = ds if "WindowCenter" in ds and "WindowWidth" in ds else _frame_item(ds, frame, "FrameVOILUTSequence")
    center = _first(voi.get("WindowCenter")) if voi is not None else None
    width = _first(voi.get("WindowWidth")) if voi is not None else None
    function = str(voi.get("VOILUTFunction", "LINEAR") or "LINEAR").upper() if voi is not None else "LINEAR"
    out = None
    if center is not None and width is not None and width > 0 and not (function == "LINEAR" and width < 1):
        if function == "SIGMOID":
            out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700, 700)))
        elif function == "LINEAR_EXACT":
            out = ((x - center) / width + 0.5) * 255.0
        else:  # LINEAR, DICOM PS3.3 C.11.2.1.2.1
            function = "LINEAR"
            if width == 1:
                out = np.where(x <= center - 0.5, 0.0, 255.0)
            else:
                out = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
        info.update(window_center=center, window_width=width, voi_lut_function=function,
                    window_source="WindowCenter/WindowWidth in the file")
    elif ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        lut = apply_voi(np.round(x).astype(np.int64), ds, index=0).astype(np.float64)
        depth = int(item.LUTDescriptor[2]) if "LUTDescriptor" in item else 16
        top = float(2 ** depth - 1) if depth in range(8, 17) else float(lut.max() or 1)
        out = lut * (255.0 / top)
        info.update(window_center=None, window_width=None, voi_lut_function="VOI LUT sequence",
                    window_source="VOI LUT sequence in the file")
    if out is None:
        lo, hi = float(x.min()), float(x.max())
        out = np.zeros_like(x) if hi <= lo else (x - lo) * (255.0 / (hi - lo))
        info.update(window_center=(lo + hi) / 2, window_width=hi - lo, voi_lut_function="LINEAR",
                    window_source="full pixel range (the file has no window)")
    grey = np.round(np.clip(out, 0.0, 255.0)).astype(np.uint8)
    # 3. MONOCHROME1: the lowest value is white; invert so the output looks like MONOCHROME2 (bone bright).
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        grey = 255 - grey
        info["inverted"] = True
    else:
        info["inverted"] = False
    return grey, info


def _dicom_colour_to_grey(ds, arr: np.ndarray) -> np.ndarray:
    """An RGB (already converted from YBR / palette by pydicom) DICOM frame to grey uint8 (ITU-R 601 luma)."""
    rgb = arr.astype(np.float64)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    if arr.dtype == np.uint8:
        return np.round(luma).astype(np.uint8)
    top = float(2 ** int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16) - 1)
    return np.round(np.clip(luma * (255.0 / top), 0, 255)).astype(np.uint8)


def _load_dicom(fp, name: str, force: bool) -> tuple[np.ndarray, dict]:
    """Decode a DICOM file to grey uint8 plus a description of what was done (see :func:`dicom_info`)."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels import apply_color_lut, get_decoder
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
    except ImportError as e:  # pragma: no cover - pydicom is in requirements.txt
        raise ImageError(f"{name}: is a DICOM file, but pydicom is not installed; run `pip install pydicom`") from e

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
    try:
        ds.pixel_array_options(index=frame if frames > 1 else None)
        arr = ds.pixel_array
    except Exception as e:
        raise ImageError(f"{name}: the DICOM pixel data could not be decoded — truncated or corrupt "
                         f"({type(e).__name__}: {e}); export the image again") from e
    arr = np.asarray(arr)
    try:
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel", 1) or 1) > 1 \
                or photometric == "PALETTE COLOR":
            grey = _dicom_colour_to_grey(ds, arr[..., :3])
            info = {"window_center": None, "window_width": None, "voi_lut_function": None, "inverted": False,
                    "window_source": "none (colour image converted to grey)"}
        elif arr.ndim == 2:
            grey, info = _dicom_windowed(ds, arr, frame)
        else:
            raise ImageError(f"{name}: unexpected DICOM pixel array shape {arr.shape} "
                             f"(PhotometricInterpretation {photometric})")
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
