"""DICOM decoding and upload robustness of ``lib.data.images.load_grey`` (synthetic files only, no data set)."""
from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import lib.data.images as images
from lib.data.images import ImageError, dicom_info, is_dicom, load_grey

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid  # noqa: E402


# --- DICOM helpers ------------------------------------------------------------------------------------------------

def make_dicom(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", signed: bool = False, bits_stored: int = 12,
               ts=ExplicitVRLittleEndian, pixel_data: bool = True, **attrs) -> bytes:
    """A minimal DX DICOM file (bytes) holding ``pixels``: (rows, cols), (frames, rows, cols) or (rows, cols, 3)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset("synthetic.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    colour = photometric in ("RGB", "YBR_FULL")
    if colour:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        raw = pixels.astype(np.uint8).tobytes()
    else:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.SamplesPerPixel = 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        raw = pixels.astype("<i2" if signed else "<u2").tobytes()
    ds.PhotometricInterpretation = photometric
    if pixel_data:
        ds.PixelData = raw
    for key, value in attrs.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def linear_window(x: float, center: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 'LINEAR' to 0..255, written out the long way."""
    if x <= center - 0.5 - (width - 1) / 2:
        return 0
    if x > center - 0.5 + (width - 1) / 2:
        return 255
    return int(np.round(((x - (center - 0.5)) / (width - 1) + 0.5) * 255))


def _grid(values, shape=(16, 16)) -> np.ndarray:
    """An image whose first pixels are ``values`` (row-major); the rest repeat the last value."""
    flat = np.full(shape[0] * shape[1], values[-1], dtype=np.int64)
    flat[: len(values)] = values
    return flat.reshape(shape)


# --- DICOM --------------------------------------------------------------------------------------------------------

def test_dicom_detection(tmp_path):
    data = make_dicom(_grid([0, 100]))
    assert data[128:132] == b"DICM" and is_dicom(data)
    (tmp_path / "img.bin").write_bytes(data)
    assert is_dicom(tmp_path / "img.bin")
    assert not is_dicom(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)


def test_monochrome2_window_matches_hand_computed_values(tmp_path):
    values = [0, 700, 800, 801, 1000, 1100, 1199, 1200, 4095]
    center, width = 1000, 400
    data = make_dicom(_grid(values), WindowCenter=center, WindowWidth=width)
    (tmp_path / "x.dcm").write_bytes(data)
    out = load_grey(tmp_path / "x.dcm")
    assert out.dtype == np.uint8 and out.shape == (16, 16)
    got = out.ravel()[: len(values)].tolist()
    # Written out: 800 is the bottom of the window, 1199 the top, 1000 -> (0.5/399 + 0.5)*255 = 127.8.
    assert got == [0, 0, 0, 1, 128, 192, 255, 255, 255]
    assert got == [linear_window(v, center, width) for v in values]
    info = dicom_info(data)
    assert info["window_center"] == 1000 and info["window_width"] == 400
    assert info["photometric_interpretation"] == "MONOCHROME2" and info["modality"] == "DX"
    assert (info["rows"], info["columns"]) == (16, 16) and info["inverted"] is False


def test_multivalued_window_uses_the_first(tmp_path):
    data = make_dicom(_grid([800, 1000, 1199]), WindowCenter=[1000, 50], WindowWidth=[400, 10])
    assert load_grey(data).ravel()[:3].tolist() == [0, 128, 255]


def test_monochrome1_is_inverted():
    values = [0, 800, 1000, 1100, 4095]
    m2 = load_grey(make_dicom(_grid(values), WindowCenter=1000, WindowWidth=400))
    m1 = load_grey(make_dicom(_grid(values), photometric="MONOCHROME1", WindowCenter=1000, WindowWidth=400))
    assert np.array_equal(m1, 255 - m2)
    assert m1.ravel()[:5].tolist() == [255, 255, 127, 63, 0]
    assert dicom_info(make_dicom(_grid(values), photometric="MONOCHROME1"))["inverted"] is True


def test_rescale_slope_intercept_applied_before_window():
    # stored -> HU = 2*stored - 1024; window in HU: center 0, width 1001 (bottom -500.5, top 499.5).
    stored = [262, 512, 612, 762]  # HU -500, 0, 200, 500
    data = make_dicom(_grid(stored), RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=1001)
    got = load_grey(data).ravel()[:4].tolist()
    assert got == [linear_window(2 * s - 1024, 0, 1001) for s in stored] == [0, 128, 179, 255]
    info = dicom_info(data)
    assert info["rescale_slope"] == 2 and info["rescale_intercept"] == -1024


def test_signed_pixels_and_no_window_uses_full_range():
    data = make_dicom(_grid([-1000, 0, 1000]), signed=True)
    out = load_grey(data)
    assert out.ravel()[:3].tolist() == [0, 128, 255]
    info = dicom_info(data)
    assert info["window_center"] == 0 and info["window_width"] == 2000
    assert "no window" in info["window_source"]


def test_sigmoid_voi_function():
    data = make_dicom(_grid([1000, 0, 4095]), WindowCenter=1000, WindowWidth=400, VOILUTFunction="SIGMOID")
    out = load_grey(data).ravel()[:3].tolist()
    assert out[0] in (127, 128) and out[1] == 0 and out[2] == 255


def test_bytes_and_path_give_the_same_array(tmp_path):
    data = make_dicom(np.arange(32 * 24).reshape(24, 32) * 5, WindowCenter=2000, WindowWidth=3000)
    (tmp_path / "a.dcm").write_bytes(data)
    (tmp_path / "no_suffix").write_bytes(data)
    a = load_grey(data)
    assert a.shape == (24, 32)
    assert np.array_equal(a, load_grey(tmp_path / "a.dcm"))
    assert np.array_equal(a, load_grey(tmp_path / "no_suffix"))  # found by the DICM marker
    assert load_grey(bytearray(data), size=(12, 8)).shape == (12, 8)


def test_multiframe_takes_the_middle_frame():
    frames = np.stack([np.full((16, 16), v) for v in (0, 1000, 2000, 3000, 4000)])
    data = make_dicom(frames, WindowCenter=2000, WindowWidth=4001)
    out = load_grey(data)
    assert out.shape == (16, 16)
    assert np.all(out == linear_window(2000, 2000, 4001))
    info = dicom_info(data)
    assert info["number_of_frames"] == 5 and info["frame_used"] == 2


def test_rgb_dicom_becomes_grey():
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    out = load_grey(make_dicom(rgb, photometric="RGB"))
    assert out.shape == (16, 16) and np.all(out == round(200 * 0.299 + 100 * 0.587 + 50 * 0.114))


def test_ybr_dicom_becomes_grey():
    ybr = np.zeros((16, 16, 3), dtype=np.uint8)
    ybr[..., 0] = np.arange(16, dtype=np.uint8)[None, :] * 16  # Y ramp, no chroma (Cb = Cr = 128)
    ybr[..., 1:] = 128
    out = load_grey(make_dicom(ybr, photometric="YBR_FULL"))
    assert np.abs(out.astype(int) - ybr[..., 0]).max() <= 1


def test_dicom_without_pixel_data():
    with pytest.raises(ImageError, match=r"<uploaded bytes>: .*no pixel data \(PixelData element missing\)"):
        load_grey(make_dicom(_grid([0]), pixel_data=False))


def test_compressed_dicom_without_decoder_names_transfer_syntax():
    data = make_dicom(_grid([0]), ts=JPEGLSLossless, pixel_data=False, PixelData=encapsulate([b"\xff\xd8\xff\xd9"]))
    from pydicom.pixels import get_decoder
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(ImageError, match=r"JPEG-LS Lossless.*pip install"):
        load_grey(data)


def test_truncated_dicom_and_fake_dcm(tmp_path):
    data = make_dicom(_grid([0, 4095], shape=(64, 64)))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_grey(data[: len(data) - 1000])
    (tmp_path / "notes.dcm").write_text("this is a radiology report, not an image\n" * 5)
    with pytest.raises(ImageError, match="notes.dcm: has a DICOM file name but is not a DICOM file"):
        load_grey(tmp_path / "notes.dcm")
    with pytest.raises(ImageError, match="not a DICOM"):
        dicom_info(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)


def test_dicom_size_limits(monkeypatch):
    with pytest.raises(ImageError, match="too small"):
        load_grey(make_dicom(np.zeros((4, 4))))
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match="more than the 100 allowed"):
        load_grey(make_dicom(np.zeros((16, 16))))


# --- robustness of the PIL path -----------------------------------------------------------------------------------

def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def _photo(w=64, h=48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").resize((w * 4, h * 4))


@pytest.mark.parametrize("data", [b"hello, this is a text file\n" * 10, bytes(np.random.default_rng(1).integers(
    0, 256, 5000, dtype=np.uint8))])
def test_not_an_image(tmp_path, data):
    with pytest.raises(ImageError, match="<uploaded bytes>: not an image file"):
        load_grey(data)
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(ImageError, match="x.png: not an image file"):
        load_grey(tmp_path / "x.png")


def test_empty_and_tiny(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        load_grey(b"")
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="e.jpg: the file is empty"):
        load_grey(tmp_path / "e.jpg")
    with pytest.raises(ImageError, match="1×1 pixels is too small"):
        load_grey(_png(Image.new("L", (1, 1))))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_raise_even_if_someone_enabled_load_truncated(fmt):
    data = _png(_photo(), format=fmt)
    cut = data[: len(data) // 2]
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_grey(cut)
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        with pytest.warns(RuntimeWarning, match="LOAD_TRUNCATED_IMAGES"):
            with pytest.raises(ImageError, match="truncated or corrupt"):
                load_grey(cut)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_dimensions_checked_before_decoding(monkeypatch):
    data = _png(Image.new("L", (20, 20)))
    monkeypatch.setattr(images, "MAX_PIXELS", 100)

    def no_decode(self):
        raise AssertionError("decoded before the size check")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageError, match="20×20 pixels is more than the 100 allowed"):
        load_grey(data)


def test_file_size_limit_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    big = _png(_photo())
    assert len(big) > 1000
    (tmp_path / "big.png").write_bytes(big)
    with pytest.raises(ImageError, match=r"big.png: [0-9.]+ KB is more than the 0.977 KB allowed; downscale"):
        load_grey(tmp_path / "big.png")
    with pytest.raises(ImageError, match="more than the .* allowed"):
        load_grey(big)
    monkeypatch.undo()
    assert images.MAX_FILE_BYTES == 50 * 1024 * 1024
    assert images._size_text(images.MAX_FILE_BYTES) == "50 MB"


def test_cmyk_jpeg_and_palette_png():
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    cmyk = Image.fromarray(grey, "L").convert("RGB").convert("CMYK")
    out = load_grey(_png(cmyk, format="JPEG", quality=95))
    assert out.shape == (32, 64) and np.abs(out.astype(int) - grey).max() <= 8
    pal = Image.fromarray(grey, "L").convert("P")
    assert pal.mode == "P"
    assert np.array_equal(load_grey(_png(pal)), grey)


def test_animated_gif_and_multipage_tiff_give_first_frame():
    frames = [Image.new("L", (16, 16), 50), Image.new("L", (16, 16), 200)]
    gif = _png(frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    tif = _png(frames[0], format="TIFF", save_all=True, append_images=frames[1:])
    for data in (gif, tif):
        with Image.open(io.BytesIO(data)) as im:
            assert getattr(im, "n_frames", 1) == 2
        out = load_grey(data)
        assert out.shape == (16, 16) and np.all(out == 50)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt):
    # A 64-wide, 32-high "film" with a bright block top-left, saved sideways with orientation 6 (rotate 90° CW).
    arr = np.zeros((32, 64), dtype=np.uint8)
    arr[:16, :16] = 255
    img = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_grey(_png(img, format=fmt, exif=exif.tobytes()))
    assert out.shape == (64, 32)  # upright: rotated 90° clockwise
    assert out[:16, -16:].mean() > 200 and out[16:, :].mean() < 20 and out[:, :16].mean() < 20
    assert load_grey(_png(img, format=fmt, exif=exif.tobytes()), size=(40, 20)).shape == (40, 20)
    plain = load_grey(_png(img, format=fmt))
    assert plain.shape == (32, 64)


def test_load_grey_warns_nothing_on_a_normal_image():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_grey(_png(_photo(), format="JPEG"), size=32).shape == (32, 32)


def test_legacy_dicom_without_preamble_read_by_suffix(tmp_path):
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.1.1", "CR"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.arange(256, dtype="<u2") * 100).tobytes()
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=True, little_endian=True)  # no preamble, no 'DICM', no file meta
    (tmp_path / "old.dcm").write_bytes(buf.getvalue())
    out = load_grey(tmp_path / "old.dcm")
    assert out.shape == (16, 16) and out[0, 0] == 0 and out[-1, -1] == 255
    assert dicom_info(tmp_path / "old.dcm")["transfer_syntax"] == "Implicit VR Little Endian"


# --- memory budgets (issue #10): refuse by decoded size before allocating, decode without float64 copies -----------

def _packbits_run(byte: int, n: int) -> bytes:
    """``n`` copies of ``byte`` as PackBits (DICOM RLE) runs of at most 128."""
    out = bytearray()
    while n > 0:
        k = min(n, 128)
        out += bytes([0, byte]) if k == 1 else bytes([257 - k, byte])
        n -= k
    return bytes(out)


def _rle_dicom(segments: list[bytes], rows: int, cols: int, **attrs) -> bytes:
    """A 16-bit RLE Lossless DICOM whose one frame holds ``segments`` (most significant byte first)."""
    import struct

    from pydicom import dcmread
    from pydicom.uid import RLELossless

    offsets, pos = [], 64
    for seg in segments:
        offsets.append(pos)
        pos += len(seg)
    frame = struct.pack("<16L", len(segments), *offsets, *([0] * (15 - len(segments)))) + b"".join(segments)
    ds = dcmread(io.BytesIO(make_dicom(np.zeros((8, 8)), **attrs)))
    ds.Rows, ds.Columns = rows, cols
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_rle_dicom(rows: int, cols: int) -> bytes:
    """A valid 16-bit RLE DICOM of a vertical 12-bit ramp (each row one value), built in milliseconds at any size:
    8000×8000 is a 2 MB file (the shape of the 16 MB upload measured in issue #10)."""
    values = (np.arange(rows) * 4095 // max(1, rows - 1)).astype(np.uint16)
    msb = b"".join(_packbits_run(int(v) >> 8, cols) for v in values)
    lsb = b"".join(_packbits_run(int(v) & 0xFF, cols) for v in values)
    return _rle_dicom([msb, lsb], rows, cols, WindowCenter=2048, WindowWidth=4096)


def make_deflated_dicom(rows: int, cols: int, frames: int = 1) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM of zeros, compressed as a stream: 256 MB inflated is a 1 MB file."""
    import zlib

    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = dcmread(io.BytesIO(make_dicom(np.zeros((8, 8)), WindowCenter=2048, WindowWidth=4096)))
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    del ds.PixelData
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * 2 * frames
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflate.compress(body.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + n.to_bytes(4, "little"))]
    zeros = bytes(1 << 22)
    for start in range(0, n, len(zeros)):
        parts.append(deflate.compress(zeros[: min(len(zeros), n - start)]))
    parts.append(deflate.flush())
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(parts)


def make_rle_bomb(mb: int = 4) -> bytes:
    """An 8×8 RLE DICOM whose two segments are ``mb`` MB each of "repeat 128 times" runs: pydicom's own decoder
    expands each to 64× its size before it looks at Rows×Columns."""
    seg = bytes([0x81, 0x00]) * (mb * 2**20 // 2)
    return _rle_dicom([seg, seg], 8, 8, WindowCenter=1, WindowWidth=2)


def make_jpeg_dicom(img: Image.Image, rows: int | None = None, cols: int | None = None) -> bytes:
    """A grey JPEG Baseline DICOM holding ``img``; ``rows``/``cols`` override what its header says."""
    from pydicom import dcmread
    from pydicom.uid import JPEGBaseline8Bit

    ds = dcmread(io.BytesIO(make_dicom(np.zeros((img.size[1], img.size[0])), bits_stored=8)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    if rows:
        ds.Rows, ds.Columns = rows, cols
    ds.PixelData = encapsulate([_png(img, format="JPEG", quality=90)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_budget_constants_fit_together():
    assert images.MAX_PIXELS == 40_000_000 and images._size_text(images.MAX_DECODED_BYTES) == "80 MB"
    assert images.MAX_PIXELS * 2 <= images.MAX_DECODED_BYTES  # 40 Mpx of 16-bit grey is allowed
    assert images.MAX_DECODED_BYTES <= images.DECODE_BUDGET_BYTES  # the largest image fits the shared budget
    assert images.LARGE_DECODE_BYTES < images.MAX_DECODED_BYTES and images.DECODE_WAIT_S > 0
    assert images.decoding_bytes_in_use() == 0


def test_huge_rle_dicom_is_refused_quickly_naming_the_pixel_budget(tmp_path):
    data = make_rle_dicom(8000, 8000)  # 64 Mpx: passed the old 64 Mpx cap and was decoded in float64 (~2 GB, ~10 s)
    assert len(data) < 3 * 2**20
    (tmp_path / "huge.dcm").write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"huge.dcm: 8000×8000 pixels is more than the 40,000,000 allowed"):
        load_grey(tmp_path / "huge.dcm", 224)
    assert time.perf_counter() - start < 2.0
    ok = load_grey(make_rle_dicom(300, 200))  # the same construction at an allowed size is a valid image
    assert ok.shape == (300, 200) and ok[0, 0] == 0 and ok[-1, 0] == 255


def test_decoded_size_is_checked_from_the_header_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 1000)
    grey, rgb = _png(Image.new("L", (30, 30))), _png(Image.new("RGB", (20, 20)))  # 900 B; 20·20·4 = 1600 B
    small16, big16 = _png(Image.new("I;16", (20, 20))), _png(Image.new("I;16", (30, 30)))  # 800 B; 1800 B
    transparent = Image.new("P", (20, 20))
    transparent.info["transparency"] = 0  # becomes RGBA on its way to grey: 4 bytes a pixel
    assert load_grey(grey).shape == (30, 30) and load_grey(small16).shape == (20, 20)

    def no_decode(self):
        raise AssertionError("decoded before the size check")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    for data, what in ((rgb, "20×20 pixels × 4 bytes needs 1.56 KB to decode"),
                       (big16, "30×30 pixels × 2 bytes needs 1.76 KB to decode"),
                       (_png(transparent, transparency=0), "20×20 pixels × 4 bytes needs 1.56 KB to decode")):
        with pytest.raises(ImageError, match=what + r", more than the 0.977 KB one image may use"):
            load_grey(data)
    monkeypatch.undo()
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 1000)
    # DICOM: uncompressed frames all count (they are all in memory); of a compressed file only one frame is decoded
    with pytest.raises(ImageError, match=r"16×16 pixels × 3 frames × 2 bytes needs 1.5 KB to decode"):
        load_grey(make_dicom(np.zeros((3, 16, 16))))
    from pydicom import dcmread
    from pydicom.uid import RLELossless
    ds = dcmread(io.BytesIO(make_dicom(np.zeros((3, 16, 16)))))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert load_grey(buf.getvalue()).shape == (16, 16)


def test_large_allowed_images_decode_with_bounded_peak_memory(tmp_path):
    """36 Mpx of 16-bit grey (72 MB decoded), as PNG and as RLE DICOM, in a fresh process: peak RSS under 4× the
    decoded size. Decoding in float64 (before issue #10) peaked at ~900 MB for the same PNG."""
    pytest.importorskip("resource")  # Linux / macOS: the child reports its peak RSS
    side = 6000
    ramp = np.broadcast_to((np.arange(side, dtype=np.uint32)[:, None] * 4095 // (side - 1)).astype(np.uint16),
                           (side, side))
    Image.fromarray(np.ascontiguousarray(ramp)).save(tmp_path / "big16.png", compress_level=1)
    (tmp_path / "big.dcm").write_bytes(make_rle_dicom(side, side))
    del ramp
    script = f"""
import resource, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from lib.data.images import load_grey
load_grey({str(tmp_path / 'big.dcm')!r}.replace('big', 'warm'))  # imports pydicom's pixel modules first
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in ("big16.png", "big.dcm"):
    t = time.perf_counter()
    a = load_grey({str(tmp_path)!r} + "/" + name)
    assert a.shape == ({side}, {side}) and a[0, 0] == 0 and a[-1, 0] == 255, (name, a[0, 0], a[-1, 0])
    del a
    print(name, round(time.perf_counter() - t, 2), flush=True)
print("peak", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""
    (tmp_path / "warm.dcm").write_bytes(make_rle_dicom(64, 64))
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split("peak")[-1])
    assert peak < 4 * side * side * 2, (peak / 2**20, out.stdout)


def test_decode_budget_makes_large_decodes_wait_then_says_busy(monkeypatch):
    import threading

    monkeypatch.setattr(images, "LARGE_DECODE_BYTES", 1000)
    monkeypatch.setattr(images, "DECODE_BUDGET_BYTES", 5000)
    monkeypatch.setattr(images, "DECODE_WAIT_S", 0.2)
    large, small = _png(Image.new("L", (50, 50), 7)), _png(Image.new("L", (20, 20), 7))  # 2500 B, 400 B
    with images._BUDGET.reserve(4000, "another upload"):
        assert images.decoding_bytes_in_use() == 4000
        start = time.perf_counter()
        with pytest.raises(images.DecodeBusyError,
                           match=r"<uploaded bytes>: the server is busy decoding other large images; try again"):
            load_grey(large)
        assert 0.15 < time.perf_counter() - start < 1.5
        assert load_grey(small).shape == (20, 20)  # small images never wait
        assert load_grey(make_dicom(np.zeros((16, 16)))).shape == (16, 16)
    assert images.decoding_bytes_in_use() == 0 and load_grey(large).shape == (50, 50)
    # a short wait is simply waited out
    monkeypatch.setattr(images, "DECODE_WAIT_S", 5.0)
    held = threading.Event()

    def hold():
        with images._BUDGET.reserve(4000, "another upload"):
            held.set()
            time.sleep(0.3)
    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(5)
    start = time.perf_counter()
    assert load_grey(large).shape == (50, 50)
    assert time.perf_counter() - start > 0.1
    worker.join()
    # a failing decode gives its share back
    with pytest.raises(ImageError, match="truncated"):
        load_grey(large[: len(large) - 20])
    assert images.decoding_bytes_in_use() == 0


def test_deflated_dicom_bomb_is_refused_before_it_is_inflated():
    import tracemalloc

    data = make_deflated_dicom(4000, 4000, 8)  # 256 MB of pixels in a ~1 MB file; pydicom inflates it whole
    assert len(data) < 2 * 2**20
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(ImageError, match=r"the deflated DICOM data set inflates to more than 96 MB"):
            load_grey(data)
        assert time.perf_counter() - start < 2.0
        assert tracemalloc.get_traced_memory()[1] < 32 * 2**20
    finally:
        tracemalloc.stop()
    small = make_deflated_dicom(64, 48)
    assert load_grey(small).shape == (64, 48)
    assert dicom_info(small)["transfer_syntax"] == "Deflated Explicit VR Little Endian"


def test_rle_segment_bomb_decodes_in_bounded_memory():
    import tracemalloc

    data = make_rle_bomb(4)  # pydicom's decoder: 2 × 256 MB before it checks the length
    tracemalloc.start()
    try:
        out = load_grey(data)
        assert tracemalloc.get_traced_memory()[1] < 48 * 2**20
    finally:
        tracemalloc.stop()
    assert out.shape == (8, 8) and np.all(out == 0)


@pytest.mark.parametrize("kind", ["mono12", "signed", "multiframe", "rgb"])
def test_bounded_rle_decoder_equals_pydicoms(kind):
    from pydicom import dcmread
    from pydicom.pixels import get_decoder
    from pydicom.uid import RLELossless

    from lib.data import dicom_rle

    rng = np.random.default_rng(3)
    px, kw = {"mono12": (rng.integers(0, 4096, (37, 53)), {}),
              "signed": (rng.integers(-2000, 2000, (41, 29)), {"signed": True}),
              "multiframe": (rng.integers(0, 4096, (3, 20, 24)), {}),
              "rgb": (rng.integers(0, 256, (20, 30, 3)), {"photometric": "RGB"})}[kind]
    ds = dcmread(io.BytesIO(make_dicom(px, **kw)))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    dicom_rle.register()
    decoder = get_decoder(RLELossless)
    for index in (None, 1) if kind == "multiframe" else (None,):
        want = decoder.as_array(ds, index=index, decoding_plugin="pydicom")[0]
        got = decoder.as_array(ds, index=index, decoding_plugin=dicom_rle.PLUGIN)[0]
        assert got.dtype == want.dtype and np.array_equal(got, want)
    # a segment too short for Rows×Columns is an error, as in pydicom (which wraps it in a RuntimeError)
    with pytest.raises((ValueError, RuntimeError), match="not enough image data"):
        decoder.as_array(dcmread(io.BytesIO(_rle_dicom([b"\x81\x00", b"\x81\x00"], 16, 16))),
                         decoding_plugin=dicom_rle.PLUGIN)


def test_jpeg_inside_a_dicom_must_be_the_size_its_header_says():
    img = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)))
    assert load_grey(make_jpeg_dicom(img)).shape == (48, 64)
    with pytest.raises(ImageError, match=r"header says 16×16 pixels, but the compressed image inside it is 64×48"):
        load_grey(make_jpeg_dicom(img, rows=16, cols=16))


def test_palette_dicom_with_16_bit_entries_is_grey_not_white():
    from pydicom import dcmread
    from pydicom.pixels import apply_color_lut

    rng = np.random.default_rng(0)
    ds = dcmread(io.BytesIO(make_dicom(np.zeros((20, 30)), bits_stored=8)))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rng.integers(0, 256, (20, 30)).astype(np.uint8).tobytes()
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for seed, colour in enumerate(("Red", "Green", "Blue")):
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [256, 0, 16])
        ds.add_new(f"{colour}PaletteColorLookupTableData", "OW",
                   np.random.default_rng(seed).integers(0, 65536, 256).astype("<u2").tobytes())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    want = np.round((rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) * 255 / 65535)
    got = load_grey(buf.getvalue())
    assert np.abs(got.astype(int) - want).max() <= 1 and got.std() > 20


@pytest.mark.parametrize("attrs", [
    {"WindowCenter": 1000.5, "WindowWidth": 333.3, "RescaleSlope": 0.37, "RescaleIntercept": -12.5},
    {"WindowCenter": 1500, "WindowWidth": 700, "VOILUTFunction": "LINEAR_EXACT"},
    {"WindowCenter": 1500, "WindowWidth": 700, "VOILUTFunction": "SIGMOID"},
    {"photometric": "MONOCHROME1", "RescaleSlope": 2.5, "RescaleIntercept": -100},
    {"signed": True, "bits_stored": 16, "RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400},
])
def test_dicom_windowing_equals_the_float64_formula(attrs):
    """The 64 K-entry table gives exactly what converting every pixel in float64 gives (DICOM PS3.3 C.11.2.1.2)."""
    attrs = dict(attrs)
    signed = attrs.get("signed", False)
    stored = np.random.default_rng(5).integers(-3000 if signed else 0, 3000 if signed else 4096, (48, 40))
    x = stored.astype(np.float64) * float(attrs.get("RescaleSlope", 1)) + float(attrs.get("RescaleIntercept", 0))
    c, w = attrs.get("WindowCenter"), attrs.get("WindowWidth")
    function = attrs.get("VOILUTFunction", "LINEAR")
    if c is None:
        out = (x - x.min()) * (255.0 / (x.max() - x.min()))
    elif function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -700, 700)))
    elif function == "LINEAR_EXACT":
        out = ((x - c) / w + 0.5) * 255.0
    else:
        out = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    want = np.round(np.clip(out, 0, 255)).astype(np.uint8)
    if attrs.get("photometric") == "MONOCHROME1":
        want = 255 - want
    assert np.array_equal(load_grey(make_dicom(stored, **attrs)), want)


def test_16_and_32_bit_rasters_equal_the_float64_formula():
    rng = np.random.default_rng(2)
    for a, exact in ((rng.integers(100, 60000, (50, 70)).astype(np.uint16), True),
                     (rng.integers(-2**31, 2**31 - 1, (50, 70)).astype(np.int32), False),
                     (rng.normal(size=(50, 70)).astype(np.float32), False)):
        x = a.astype(np.float64)
        want = np.round((x - x.min()) * (255.0 / (x.max() - x.min())))
        got = load_grey(_png(Image.fromarray(a), format="PNG" if a.dtype == np.uint16 else "TIFF"))
        diff = np.abs(got.astype(int) - want)
        assert diff.max() == 0 if exact else diff.max() <= 1, a.dtype


def test_results_do_not_depend_on_the_slice_size(monkeypatch):
    """Every slice-by-slice conversion gives the same image with slices of 37 pixels (ragged edges everywhere)."""
    rng = np.random.default_rng(4)
    inputs = [make_dicom(rng.integers(0, 4096, (45, 33)), WindowCenter=2000, WindowWidth=1500),
              make_dicom(rng.integers(0, 256, (30, 21, 3)), photometric="YBR_FULL"),
              _png(Image.fromarray(rng.integers(0, 65536, (45, 33)).astype(np.uint16))),
              _png(Image.fromarray(rng.normal(size=(45, 33)).astype(np.float32)), format="TIFF"),
              _png(Image.fromarray(rng.integers(0, 256, (45, 33, 4)).astype(np.uint8)))]
    want = [load_grey(d) for d in inputs]
    monkeypatch.setattr(images, "_CHUNK_PIXELS", 37)
    for d, w in zip(inputs, want):
        assert np.array_equal(load_grey(d), w)


def test_webp_plain_and_animated_give_their_first_frame():
    frames = [Image.new("L", (32, 24), 60), Image.new("L", (32, 24), 220)]
    plain = _png(frames[0], format="WEBP", lossless=True)
    animated = _png(frames[0], format="WEBP", save_all=True, append_images=frames[1:], duration=100,
                    lossless=True)
    with Image.open(io.BytesIO(animated)) as im:
        assert getattr(im, "n_frames", 1) == 2
    for data in (plain, animated):
        assert np.all(load_grey(data) == 60)
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3], rgba[:12, :, 3] = 200, 255  # top half opaque, bottom half transparent
    out = load_grey(_png(Image.fromarray(rgba), format="WEBP", lossless=True))
    assert out[0, 0] == 200 and out[-1, 0] == 0


def test_a_flood_of_file_meta_elements_is_refused_quickly():
    element = b"\x02\x00\x01\x00UL\x04\x00" + b"\0\0\0\0"  # (0002,0001) again and again: real files have ~10
    data = b"\0" * 128 + b"DICM" + element * 2_000_000  # 24 MB
    start = time.perf_counter()
    with pytest.raises(ImageError, match="<uploaded bytes>: the DICOM file meta information has more than 1000"):
        load_grey(data)
    assert time.perf_counter() - start < 1.0
