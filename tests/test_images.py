"""DICOM decoding and upload robustness of ``lib.data.images.load_grey`` (synthetic files only, no data set)."""
from __future__ import annotations

import io
import warnings

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
