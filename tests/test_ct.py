"""lib.data.volumes (CT volumes → central slices per patient), per-patient training, train.make_synthetic_ct.

All data are tiny synthetic volumes written by the tests (16–32 px): run with
``python -m pytest -q tests/test_ct.py -x``.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from conftest import ROOT, make_xray_folder
from lib.data import (DataError, ImageSet, available_splits, central_slices, clear_volume_cache, load_ct_split,
                      load_split, load_volume, read_ct_description, to_uint8)
from lib.data import volumes
from lib.metrics import evaluate_predictions, optimal_thresholds, patient_means
from train.make_synthetic_ct import make_synthetic_ct, main as make_ct_main, synthetic_volume, write_volume


# ------------------------------------------------------------------------------------------------ central slices
@pytest.mark.parametrize("n_total, n, expected", [
    (24, 10, [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]),
    (10, 1, [5]),
    (11, 1, [5]),
    (10, 2, [4, 5]),   # even in even: exactly centred on 4.5
    (11, 2, [4, 5]),   # even in odd: half a slice low, deterministically
    (10, 3, [4, 5, 6]),
    (11, 3, [4, 5, 6]),
    (12, 10, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    (3, 10, [0, 1, 2]),
    (10, 10, list(range(10))),
    (1, 1, [0]),
])
def test_central_slices_exact_values(n_total, n, expected):
    assert central_slices(n_total, n) == expected


def test_central_slices_refuses_nonsense():
    with pytest.raises(ValueError, match="n ≥ 1"):
        central_slices(10, 0)


def test_to_uint8_lung_window_minmax_and_uint8_unchanged():
    assert to_uint8(np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0])).tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(np.array([0.0, 50.0, 100.0]), window=(50, 100)).tolist() == [0, 128, 255]
    u8 = np.array([[3, 200]], np.uint8)
    assert to_uint8(u8, None) is u8
    assert to_uint8(u8.astype(np.float32), None).tolist() == [[3, 200]]  # slice images read as float stay put
    assert to_uint8(np.array([-1000.0, 0.0, 1000.0]), None).tolist() == [0, 128, 255]  # min–max


# ------------------------------------------------------------------------------------------------------ formats
def test_nifti_slices_come_back_inferior_to_superior_also_with_a_flipped_affine(tmp_path):
    z = 7
    data = np.broadcast_to(np.arange(z, dtype=np.float32) * 10, (16, 12, z)).copy()  # value = 10 · stored z index
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "ras.nii.gz"))
    vol = load_volume(tmp_path / "ras.nii.gz")
    assert vol.shape == (z, 12, 16) and vol.dtype == np.float32
    assert vol[:, 0, 0].tolist() == [10.0 * k for k in range(z)]
    # z axis stored superior → inferior: canonical reorientation must reverse it
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, -1.0, 1.0])), str(tmp_path / "flipped.nii"))
    vol = load_volume(tmp_path / "flipped.nii")
    assert vol[:, 0, 0].tolist() == [10.0 * k for k in reversed(range(z))]


def test_nifti_round_trip_keeps_the_in_plane_orientation(tmp_path):
    vol = np.full((5, 16, 20), -1000.0, np.float32)
    vol[:, 2, 3] = 500.0  # a marker near the top left: anterior, patient's right
    vol[4, 10, 15] = 100.0
    path = write_volume(vol, tmp_path / "p1", "nifti")
    assert path.name == "p1.nii.gz"
    np.testing.assert_array_equal(load_volume(path), vol)


def test_dicom_series_shuffled_on_disk_comes_back_sorted_in_hounsfield_units(tmp_path):
    vol = np.stack([np.full((16, 16), -1000.0 + 100 * k, np.float32) for k in range(8)])
    folder = write_volume(vol, tmp_path / "dcm", "dicom", shuffle_seed=3)
    ds = pydicom.dcmread(folder / "slice_1.dcm")
    assert ds.InstanceNumber != 1 and float(ds.RescaleIntercept) == -1024  # the names really are shuffled
    np.testing.assert_array_equal(load_volume(folder), vol)
    # without geometry, InstanceNumber decides
    for f in folder.iterdir():
        d = pydicom.dcmread(f)
        del d.ImagePositionPatient
        d.save_as(f)
    np.testing.assert_array_equal(load_volume(folder), vol)


def test_dicom_folder_with_two_series_or_no_pixel_data_is_refused(tmp_path):
    vol = np.zeros((2, 16, 16), np.float32)
    folder = write_volume(vol, tmp_path / "mixed", "dicom", series_uid="1.2.3.1")
    d = pydicom.dcmread(folder / "slice_1.dcm")
    d.SeriesInstanceUID = "1.2.3.2"
    d.save_as(folder / "other.dcm")
    with pytest.raises(DataError, match=r"mixed.*2 DICOM series"):
        load_volume(folder)
    folder = write_volume(vol, tmp_path / "nopix", "dicom")
    d = pydicom.dcmread(folder / "slice_1.dcm")
    del d.PixelData
    d.save_as(folder / "slice_1.dcm")
    with pytest.raises(DataError, match=r"slice_1\.dcm.*no pixel data"):
        load_volume(folder)


def test_slice_image_folder_is_sorted_naturally(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k in range(1, 13):  # slice2.png must come before slice10.png
        Image.fromarray(np.full((16, 16), 10 * k, np.uint8)).save(folder / f"slice{k}.png")
    vol = load_volume(folder)
    assert vol.shape == (12, 16, 16) and vol[:, 0, 0].tolist() == [10.0 * k for k in range(1, 13)]


def test_unreadable_volume_names_the_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="broken.nii.gz"):
        load_volume(bad)
    with pytest.raises(DataError, match="no such file"):
        load_volume(tmp_path / "missing.nii")


# ------------------------------------------------------------------------------------------------- descriptions
def _write_patients(root, names, slices=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        write_volume(synthetic_volume(rng, slices, size, severe=False), root / name, "nifti")


def _yaml(path, text):
    path.write_text(text)
    return path


def test_csv_labels_with_a_split_column(tmp_path):
    _write_patients(tmp_path / "vols", ["a1", "a2", "b1", "b2", "c1"])
    (tmp_path / "labels.csv").write_text("patient,label,split\na1,mild,train\na2,severe,train\nb1,mild,val\n"
                                         "b2,severe,val\nc1,severe,test\n")
    desc = _yaml(tmp_path / "ct.yaml", "kind: ct\nroot: vols\nlabels: labels.csv\nclasses: [mild, severe]\n"
                                       "n_slices: 4\n")
    d = read_ct_description(desc)
    assert d.patients == ["a1", "a2", "b1", "b2", "c1"] and d.labels == [0, 1, 0, 1, 1]
    assert d.splits == ["train", "train", "val", "val", "test"]
    assert available_splits(desc) == ["train", "val", "test"]


def test_class_folders_class_map_skips_unmapped_classes_and_splits_stratified(tmp_path, caplog):
    for grade, n in (("CT-0", 6), ("CT-1", 4), ("CT-2", 6), ("CT-4", 2)):
        _write_patients(tmp_path / "studies" / grade, [f"{grade}_p{i}" for i in range(n)])
    desc = _yaml(tmp_path / "ct.yaml", "kind: ct\nroot: studies\nclass_map: {CT-0: mild, CT-1: mild, CT-2: severe}\n"
                                       "classes: [mild, severe]\nsplit: [0.5, 0.25, 0.25]\nseed: 1\n")
    with caplog.at_level(logging.INFO, logger="lib.data.volumes"):
        d = read_ct_description(desc)
    assert "skipped 2 patient(s)" in caplog.text and "CT-4: 2" in caplog.text
    assert len(d.patients) == 16 and d.labels.count(0) == 10 and d.labels.count(1) == 6
    for split, (mild, severe) in {"train": (5, 3), "val": ((2, 3), (1, 2)), "test": ((2, 3), (1, 2))}.items():
        got = [d.labels[i] for i in d.split_indices(split)]
        assert got.count(0) in np.atleast_1d(mild) and got.count(1) in np.atleast_1d(severe), (split, got)
    assert read_ct_description(desc).splits == d.splits  # deterministic


def test_a_small_set_still_gets_both_classes_in_every_split():
    splits = volumes._stratified_split([0] * 4 + [1] * 6, (0.7, 0.15, 0.15), seed=0)
    for name in ("train", "val", "test"):
        assert {y for y, s in zip([0] * 4 + [1] * 6, splits) if s == name} == {0, 1}, (name, splits)


@pytest.mark.parametrize("text, files, match", [
    ("kind: ct\nroot: vols\nn_slice: 3\n", {}, r"unknown key\(s\) \['n_slice'\]"),
    ("root: vols\n", {}, "'kind' must be 'ct'"),
    ("kind: ct\nroot: nowhere\n", {}, "'root' 'nowhere'"),
    ("kind: ct\nroot: vols\nlabels: missing.csv\n", {}, "missing.csv"),
    ("kind: ct\nroot: vols\nlabels: l.csv\n", {"l.csv": "patient,label\np0,mild\nghost,severe\n"},
     r"line 3: patient 'ghost' has no volume"),
    ("kind: ct\nroot: vols\nlabels: l.csv\nclasses: [mild, severe]\n", {"l.csv": "patient,label\np0,mild\np1,huge\n"},
     r"\['huge'\] are not in classes"),
    ("kind: ct\nroot: vols\nlabels: l.csv\n", {"l.csv": "patient,grade\np0,mild\n"}, "needs the columns"),
    ("kind: ct\nroot: vols\nwindow: [-600]\n", {}, "'window' must be"),
    ("kind: ct\nroot: vols\nn_slices: 0\n", {}, "'n_slices' must be"),
    ("kind: ct\nroot: vols\nsplit: [0.5, 0.5]\n", {}, "'split' must be three fractions"),
    ("kind: ct\nroot: vols\nlabels: l.csv\n", {"l.csv": "patient,label,split\np0,mild,train\np1,severe,test\n"},
     "needs 'train' and 'val'"),
])
def test_bad_descriptions_say_what_is_wrong(tmp_path, text, files, match):
    _write_patients(tmp_path / "vols", ["p0", "p1"], slices=2)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=match):
        read_ct_description(_yaml(tmp_path / "ct.yaml", text))


# ------------------------------------------------------------------------------------------------ load_ct_split
@pytest.fixture(scope="module")
def ct_set(tmp_path_factory):
    """20 synthetic patients (8 mild, 12 severe), 12 slices of 32 px, NIfTI; the description asks for 4 slices."""
    out = tmp_path_factory.mktemp("ct")
    desc = make_synthetic_ct(out, patients=20, slices=12, size=32, seed=0, n_slices=4)
    return desc


def test_load_ct_split_one_slice_for_train_n_for_val_and_test(ct_set):
    d = read_ct_description(ct_set)
    for split, n in (("train", 1), ("val", 4), ("test", 4)):
        ds = load_split(ct_set, split, img_size=16)
        patients = [d.patients[i] for i in d.split_indices(split)]
        assert isinstance(ds, ImageSet) and ds.labelled_per_patient
        assert ds.images.shape == (n * len(patients), 1, 16, 16) and ds.images.dtype == torch.uint8
        assert ds.patient_ids == [p for p in patients for _ in range(n)]
        slices = central_slices(12, n)
        assert ds.paths == [f"{p}#slice{k}" for p in patients for k in slices]
        assert ds.labels.tolist() == [d.labels[i] for i in d.split_indices(split) for _ in range(n)]
        assert ds.classes == ["mild", "severe"]
    sub = ds.subset([0, 1])
    assert sub.labelled_per_patient and sub.patient_ids == ds.patient_ids[:2]
    with pytest.warns(DeprecationWarning, match="labelled_per_patient"):
        assert sub.patient_level  # the attribute's old name still reads


def test_slices_are_the_windowed_resized_central_slices_and_are_cached(ct_set, monkeypatch):
    d = read_ct_description(ct_set)
    i = d.split_indices("val")[0]
    ds = load_ct_split(ct_set, "val", img_size=32)
    vol = load_volume(d.paths[i])
    np.testing.assert_array_equal(ds.images[:4, 0].numpy(), to_uint8(vol[central_slices(12, 4)]))
    calls = []
    monkeypatch.setattr(volumes, "_read", lambda p: calls.append(p))  # a second read would fail loudly
    again = load_ct_split(ct_set, "val", img_size=32)
    assert calls == [] and torch.equal(again.images, ds.images)


def test_a_thin_volume_gives_all_its_slices_with_a_warning(tmp_path, caplog):
    _write_patients(tmp_path / "vols" / "mild", ["m0", "m1"], slices=3)
    _write_patients(tmp_path / "vols" / "severe", ["s0", "s1"], slices=3)
    (tmp_path / "l.csv").write_text("patient,label,split\nm0,mild,train\ns0,severe,train\nm1,mild,val\n"
                                    "s1,severe,val\n")
    desc = _yaml(tmp_path / "ct.yaml", "kind: ct\nroot: vols\nlabels: l.csv\nn_slices: 10\n")
    with caplog.at_level(logging.WARNING, logger="lib.data.volumes"):
        val = load_ct_split(desc, "val", 16)
    assert len(val) == 6 and "only 3 slice(s)" in caplog.text
    assert available_splits(desc) == ["train", "val"]


def test_patient_average_is_the_mean_of_the_slice_probabilities(ct_set):
    val = load_ct_split(ct_set, "val", img_size=16)
    rng = np.random.default_rng(0)
    prob = rng.uniform(size=len(val))
    y, p, ids = patient_means(val.labels.numpy(), prob, val.patient_ids)
    pids = np.array(val.patient_ids)
    order = list(dict.fromkeys(val.patient_ids))
    assert ids == order
    np.testing.assert_allclose(p, [prob[pids == q].mean() for q in order])
    np.testing.assert_array_equal(y, [val.labels.numpy()[pids == q][0] for q in order])
    report = evaluate_predictions(val.labels.numpy(), prob, 0.5, val.patient_ids)["per_patient"]
    assert report["n_patients"] == len(order)
    assert report["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y))


# ------------------------------------------------------------------------------------------------------ training
def test_fit_on_ct_is_patient_level_and_its_threshold_comes_from_patient_means(ct_set, tmp_path):
    from lib.data import Preprocess
    from lib.models import get_config, load_model, positive_probability
    from lib.training import TrainConfig, fit

    out = tmp_path / "run"
    metrics = fit(TrainConfig(model="pneumonia_cnn", data=str(ct_set), out=str(out), epochs=2, batch_size=4,
                              img_size=32, lr=3e-3, progress=False, device="cpu"))
    assert metrics["level"] == "patient"
    history = json.loads((out / "history.json").read_text())
    assert all("val_auc" in h and "val_auc_image" in h for h in history)
    assert metrics["test"]["per_patient"]["n_patients"] == len(set(load_ct_split(ct_set, "test", 32).patient_ids))
    # recompute the threshold from the saved model's per-patient validation probabilities
    model = load_model(out)
    val = load_ct_split(ct_set, "val", img_size=32)
    with torch.no_grad():
        prob = positive_probability(model(Preprocess.from_config(get_config(model))(val.images))).numpy()
    y_p, p_p, _ = patient_means(val.labels.numpy(), prob, val.patient_ids)
    assert metrics["threshold"] == pytest.approx(optimal_thresholds(y_p, p_p)["youden"], abs=1e-5)
    assert get_config(model)["threshold"] == metrics["threshold"]
    card = (out / "README.md").read_text()
    assert "per patient" in card and "### Per image" in card


def test_patient_level_flag_on_an_xray_folder(tmp_path):
    # --patient-level (the CLI kept its spelling) sets TrainConfig.decide_per_patient
    from train.__main__ import main as train_main

    data = make_xray_folder(tmp_path / "xray", n_per_class=6, size=32)
    out = tmp_path / "run"
    assert train_main(["pneumonia_cnn", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                       "--img-size", "32", "--device", "cpu", "--no-progress", "--patient-level"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["level"] == "patient"
    assert metrics["val"]["per_patient"]["n_patients"] == 6  # 12 images, two per patient
    assert "val_auc_image" in json.loads((out / "history.json").read_text())[0]
    assert json.loads((out / "train_args.json").read_text())["decide_per_patient"] is True
    assert "--patient-level" in (out / "README.md").read_text()


# ------------------------------------------------------------------------------------------- make_synthetic_ct
@pytest.mark.parametrize("fmt", ["nifti", "dicom", "png"])
def test_make_synthetic_ct_writes_a_readable_set(tmp_path, fmt):
    out = tmp_path / fmt
    args = [str(out), "--patients", "10", "--slices", "12", "--size", "16", "--format", fmt, "--seed", "2"]
    if fmt == "nifti":  # once through the real command line
        r = subprocess.run([sys.executable, "-m", "train.make_synthetic_ct", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    else:
        assert make_ct_main(args) == 0
    desc = out / "ct.yaml"
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"]
    clear_volume_cache()
    train, val = load_ct_split(desc, "train", 16), load_ct_split(desc, "val", 16)
    assert len(train) == len(set(train.patient_ids)) and len(val) == 10 * len(set(val.patient_ids))
    assert set(train.labels.tolist()) == {0, 1}
    # severe patients (bright ground glass) are brighter in the central slice than mild ones, in every format
    mean = train.images.float().mean(dim=(1, 2, 3))
    assert mean[train.labels == 1].mean() > mean[train.labels == 0].mean()
