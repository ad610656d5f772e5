"""lib.data: layouts, formats, patient ids and splits, class weights, the decode cache, bad-data errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CHEST_XRAY, SHARED_DATA, make_xray_folder, needs_data
from lib.data import (Augment, DataError, ImageError, Preprocess, available_splits, clear_memory_cache, load_grey,
                      load_npz, load_split, patient_id, patient_split)
from lib.data import datasets as ds_module


# ---------------------------------------------------------------------------------------------- real data
@needs_data
def test_real_chest_xray_train_split():
    ds = load_split(CHEST_XRAY, "train", img_size=224, progress=False)
    assert ds.images.shape == (3491, 1, 224, 224) and ds.images.dtype == torch.uint8
    assert ds.classes == ["NORMAL", "PNEUMONIA"]
    assert ds.class_counts() == [935, 2556]  # the counts in ../shared/data/README.md
    assert all(pid is not None for pid in ds.patient_ids)
    assert len(set(ds.patient_ids)) < len(ds)  # several images per patient exist
    assert available_splits(CHEST_XRAY) == ["train", "val", "test"]


@needs_data
def test_real_splits_are_patient_disjoint():
    ids = {s: set(load_split(CHEST_XRAY, s, img_size=32, progress=False).patient_ids) for s in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]


@needs_data
def test_pneumoniamnist_npz():
    ds = load_npz(SHARED_DATA / "pneumoniamnist.npz", "test")
    assert ds.images.shape == (624, 1, 28, 28)
    assert ds.class_counts() == [234, 390]
    up = load_split(SHARED_DATA / "pneumoniamnist.npz", "val", img_size=64)
    assert up.images.shape == (524, 1, 64, 64)


@needs_data
def test_single_split_folder_layout_fullres():
    root = SHARED_DATA / "chest_xray_fullres"
    ds = load_split(root, None, img_size=96, progress=False)
    assert ds.class_counts() == [100, 100] and ds.images.shape[-2:] == (96, 96)
    assert available_splits(root) == []


# ---------------------------------------------------------------------------------------------- patient ids
@pytest.mark.parametrize("name,expected", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("IM-0011-0001-0002.jpeg", "IM-0011"),
    ("IM-0011-0001.jpeg", "IM-0011"),
    ("NORMAL2-IM-0011-0001.jpeg", "NORMAL2-IM-0011"),
    ("/some/dir/NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
    ("scan_17.png", None),
])
def test_patient_id(name, expected):
    assert patient_id(name) == expected


def test_patient_split_is_disjoint_deterministic_and_sized():
    paths = [f"person{p}_bacteria_{i}.jpeg" for p in range(50) for i in range(p % 3 + 1)] + ["odd.png"]
    a = patient_split(paths, (0.8, 0.1, 0.1), seed=3)
    assert a == patient_split(paths, (0.8, 0.1, 0.1), seed=3)
    assert sorted(i for part in a for i in part) == list(range(len(paths)))
    groups = [{patient_id(paths[i]) or paths[i] for i in part} for part in a]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    assert abs(len(a[0]) / len(paths) - 0.8) < 0.1
    with pytest.raises(ValueError, match="sum to 1"):
        patient_split(paths, (0.5, 0.1))


# ---------------------------------------------------------------------------------------------- class weights
def test_class_weights_inverse_frequency(tmp_path):
    root = make_xray_folder(tmp_path / "d", n_per_class=4, splits=None)
    for f in sorted((root / "NORMAL").iterdir())[1:]:
        f.unlink()  # 1 NORMAL, 4 PNEUMONIA
    ds = load_split(root, None, img_size=16, cache=False)
    assert ds.class_counts() == [1, 4]
    assert torch.allclose(ds.class_weights(), torch.tensor([5 / (2 * 1), 5 / (2 * 4)]))
    assert torch.allclose(ds.pos_weight(), torch.tensor([1 / 4]))


# ---------------------------------------------------------------------------------------------- formats
def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_formats_all_become_one_grey_uint8_channel(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    rgb = np.stack([grey] * 3, -1)
    files = {
        "grey.png": Image.fromarray(grey),
        "rgb.jpeg": Image.fromarray(rgb),
        "rgb.png": Image.fromarray(rgb),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "cmyk.jpeg": Image.fromarray(rgb).convert("CMYK"),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((64, 64), 255, np.uint8)])),
    }
    for name, img in files.items():
        arr = load_grey(_save(tmp_path, name, img))
        assert arr.shape == (64, 64) and arr.dtype == np.uint8, name
        assert np.abs(arr.astype(int) - grey).max() <= (12 if name.endswith("jpeg") else 1), name
    # equal RGB channels are exactly the grey image
    assert np.array_equal(load_grey(tmp_path / "rgb.png"), grey)


def test_16bit_png_uses_the_full_range(tmp_path):
    a = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)  # a 12-bit detector in a 16-bit file
    p = _save(tmp_path, "x16.png", Image.fromarray(a))
    assert Image.open(p).mode.startswith("I")
    out = load_grey(p)
    assert out.min() == 0 and out.max() == 255
    assert out[0, 0] < out[10, 0] < out[20, 0]  # order kept (row r starts at value 64·r)


def test_rgba_alpha_is_composited_onto_black(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:16, :, 3] = 255  # top half opaque, bottom half transparent
    out = load_grey(_save(tmp_path, "a.png", Image.fromarray(rgba)))
    assert out[0, 0] == 200 and out[31, 0] == 0


def test_resize_and_bytes_input(tmp_path):
    p = _save(tmp_path, "g.png", Image.fromarray(np.full((40, 60), 77, np.uint8)))
    assert load_grey(p, size=16).shape == (16, 16)
    assert load_grey(p.read_bytes(), size=(8, 12)).shape == (8, 12)


# ---------------------------------------------------------------------------------------------- errors
def test_unreadable_image_names_the_file(tmp_path):
    root = make_xray_folder(tmp_path / "d", n_per_class=3, splits=None)
    bad = root / "NORMAL" / "IM-9999-0001.png"
    bad.write_text("this is not a png")
    with pytest.raises(ImageError, match="IM-9999-0001.png"):
        load_split(root, None, img_size=16, cache=False)


def test_truncated_jpeg_and_empty_file(tmp_path):
    p = _save(tmp_path, "t.jpeg", Image.fromarray(np.full((64, 64), 9, np.uint8)))
    (tmp_path / "cut.jpeg").write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.jpeg.*(truncated|corrupt)"):
        load_grey(tmp_path / "cut.jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_grey(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="empty"):
        load_grey(b"")


def test_tiny_and_huge_images_are_refused(tmp_path):
    with pytest.raises(ImageError, match="too small"):
        load_grey(_save(tmp_path, "one.png", Image.new("L", (1, 1))))
    with pytest.raises(ImageError, match="(more than|decompression bomb)"):
        load_grey(_save(tmp_path, "bomb.png", Image.new("1", (9000, 9000))))  # 81 Mpx, a few KB on disk


def test_empty_class_folder_and_missing_split(tmp_path):
    root = make_xray_folder(tmp_path / "d", n_per_class=2, splits=("train", "val"))
    with pytest.raises(DataError, match="no 'test' split.*train"):
        load_split(root, "test", img_size=16)
    for f in (root / "val" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="NORMAL.*no images"):
        load_split(root, "val", img_size=16)
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_split(tmp_path / "d" / "train" / "NORMAL", None)
    with pytest.raises(DataError, match="no such folder"):
        load_split(tmp_path / "nowhere", "train")


def test_npz_with_wrong_keys(tmp_path):
    f = tmp_path / "bad.npz"
    np.savez(f, images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(DataError, match="train_images.*found \\['images', 'labels'\\]"):
        load_npz(f, "train")
    np.savez(f, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([[0], [5]], np.uint8))
    with pytest.raises(DataError, match="labels must be in 0..1"):
        load_npz(f, "train")


# ---------------------------------------------------------------------------------------------- decode cache
def test_images_are_decoded_once_and_cache_follows_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XCXR_CACHE_DIR", str(tmp_path / "cache"))
    root = make_xray_folder(tmp_path / "d", n_per_class=3, splits=None)
    calls = []
    real = ds_module.load_grey
    monkeypatch.setattr(ds_module, "load_grey", lambda p, s: calls.append(p) or real(p, s))
    first = load_split(root, None, img_size=24)
    assert len(calls) == 6
    load_split(root, None, img_size=24)          # memory cache
    clear_memory_cache()
    again = load_split(root, None, img_size=24)  # disk cache
    assert len(calls) == 6 and torch.equal(first.images, again.images)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    # a changed file (new content, new mtime) is decoded again
    f = sorted((root / "NORMAL").iterdir())[0]
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(f)
    os.utime(f, ns=(1, 10**18))
    clear_memory_cache()
    changed = load_split(root, None, img_size=24)
    assert len(calls) == 12 and int(changed.images[0].max()) == 0
    # another size is another cache entry
    assert load_split(root, None, img_size=12).images.shape[-1] == 12


# ---------------------------------------------------------------------------------------------- transforms
def test_preprocess_normalises_resizes_and_repeats_channels():
    pre = Preprocess(img_size=8, mean=(0.5,), std=(0.25,), in_chans=1)
    x = pre(torch.full((2, 1, 16, 16), 255, dtype=torch.uint8))
    assert x.shape == (2, 1, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))
    pre3 = Preprocess(img_size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), in_chans=3)
    y = pre3(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y[0, :, 0, 0], -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225]))
    with pytest.raises(ValueError, match="grey images"):
        pre(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_augment_is_reproducible_in_range_and_does_not_flip_by_default():
    x = torch.rand(4, 1, 32, 32)
    aug = Augment()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert aug.hflip == 0.0
    # with no geometric change and no jitter, hflip=1 is an exact mirror
    mirror = Augment(degrees=0, scale=0, shift=0, brightness=0, contrast=0, hflip=1.0)
    assert torch.allclose(mirror(x, torch.Generator().manual_seed(0)), x.flip(-1), atol=1e-5)
