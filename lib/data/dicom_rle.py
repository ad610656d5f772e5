"""A bounded, C-speed decoder for DICOM RLE Lossless frames, plugged into pydicom (used by :mod:`lib.data.images`).

pydicom's own RLE decoder (``pydicom.pixels.decoders.rle``) is pure Python and decodes each segment to its end
before checking its length. A hostile upload can exploit both: a 1 MB segment of two-byte "repeat 128 times" runs
expands to 64 MB whatever Rows×Columns say, so a 50 MB file with an 8×8 header asks for 3.2 GB, and a long segment
keeps a Python loop busy for seconds. DICOM RLE segments are PackBits streams (DICOM PS3.5 Annex G), and Pillow's
C PackBits decoder writes into an image of a fixed size and ignores whatever would overrun it, so here each segment
costs exactly ``Rows × Columns`` bytes and a few milliseconds, and a short segment is an error, as in pydicom.

The module follows pydicom's decoder-plugin protocol (``is_available``, ``DECODER_DEPENDENCIES``, a frame function
taking ``(src, runner)``); :func:`register` adds it under :data:`PLUGIN` once per process, and
:mod:`lib.data.images` asks for it by name, so nobody else's pydicom decoding changes.

Example:
    >>> register()
    >>> arr, meta = get_decoder(RLELossless).as_array(ds, decoding_plugin=PLUGIN)  # doctest: +SKIP
"""
from __future__ import annotations

import threading
from struct import unpack

from PIL import Image
from pydicom.uid import RLELossless

__all__ = ["PLUGIN", "register", "decode_frame", "is_available", "DECODER_DEPENDENCIES"]

#: The label this decoder is registered under in pydicom's RLE Lossless decoder.
PLUGIN = "xcxr-bounded"
#: pydicom's plugin protocol: no extra packages are needed (Pillow is a requirement of the project).
DECODER_DEPENDENCIES: dict[str, tuple[str, ...]] = {RLELossless: ()}

_lock = threading.Lock()


def is_available(uid: str) -> bool:
    """pydicom's plugin protocol: this plugin decodes RLE Lossless only."""
    return uid in DECODER_DEPENDENCIES


def register() -> None:
    """Add this decoder to pydicom's RLE Lossless decoder as :data:`PLUGIN` (once; thread-safe)."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(RLELossless)
    with _lock:  # pydicom's add_plugin is not thread-safe, and a second add of the same label raises
        if PLUGIN not in decoder.available_plugins:
            decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))


def _segment(src: bytes, n: int) -> bytes:
    """One PackBits segment decoded to exactly ``n`` bytes (extra output is dropped; too little raises ValueError)."""
    # One row of n bytes: a run may then never be cut at a row end (DICOM forbids runs across rows, but some encoders
    # ignore that), and Pillow stops at n bytes however long the input is.
    return Image.frombytes("L", (n, 1), src, "packbits", "L").tobytes()


def decode_frame(src: bytes, runner) -> bytearray:
    """Decode one RLE frame like ``pydicom.pixels.decoders.rle._decode_frame``: little endian, planar configuration 1.

    Raises:
        ValueError: a bad RLE header, a wrong number of segments, or a segment too short for Rows×Columns.
    """
    rows, columns = int(runner.rows), int(runner.columns)
    samples, bits = int(runner.samples_per_pixel), int(runner.bits_allocated)
    if bits % 8:
        raise NotImplementedError(f"Unable to decode RLE encoded pixel data with {bits} bits allocated")
    if len(src) < 64:
        raise ValueError("The RLE header can only be 64 bytes long")
    nr_segments = unpack("<L", src[:4])[0]
    if nr_segments > 15:
        raise ValueError(f"The RLE header specifies an invalid number of segments ({nr_segments})")
    offsets = list(unpack(f"<{nr_segments}L", src[4: 4 * (nr_segments + 1)])) + [len(src)]
    bytes_per_sample = bits // 8
    if nr_segments != samples * bytes_per_sample:
        raise ValueError("The number of RLE segments in the pixel data doesn't match the expected amount "
                         f"({nr_segments} vs. {samples * bytes_per_sample} segments)")
    n = rows * columns
    big_endian = runner.get_option("rle_segment_order", ">") == ">"
    decoded = bytearray(n * samples * bytes_per_sample)
    stride = bytes_per_sample * n
    for sample in range(samples):
        for k in range(bytes_per_sample):  # segment k of a sample: its most significant byte first (big endian)
            segment = _segment(src[offsets[sample * bytes_per_sample + k]: offsets[sample * bytes_per_sample + k + 1]],
                               n)
            byte = bytes_per_sample - 1 - k if big_endian else k  # where the byte goes in a little-endian sample
            start = byte + sample * stride
            decoded[start: start + stride: bytes_per_sample] = segment
    runner.set_option("planar_configuration", 1)  # the layout above, so pydicom reshapes it correctly
    return decoded
