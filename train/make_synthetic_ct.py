"""Write a small synthetic CT data set laid out like MosMedData, for demos and tests (no real CT needed).

    python -m train.make_synthetic_ct runs/ct_demo                                  # 40 patients, NIfTI
    python -m train.make_synthetic_ct runs/ct_dcm --format dicom --patients 20 --slices 16 --size 48
    python -m train.make_synthetic_ct runs/ct_png --format png --seed 1
    python -m train pneumonia_cnn --data runs/ct_demo/ct.yaml --img-size 64 --epochs 5 --out runs/ct_cnn

Layout (as MosMedData ``studies/CT-0 … CT-4``)::

    OUT/ct.yaml                                 # the description: CT-0/1 → mild, CT-2/3/4 → severe
    OUT/studies/CT-k/study_0001.nii.gz          # --format nifti (Hounsfield units, RAS affine)
    OUT/studies/CT-k/study_0001/slice_1.dcm …   # --format dicom (one series, stored = HU + 1024)
    OUT/studies/CT-k/study_0001/slice1.png …    # --format png (lung window; names need natural sorting)

Each volume is a body ellipse (soft tissue, 40 HU) with two lungs (−850 HU) in air (−1000 HU) plus noise.
"Severe" patients (CT-2 … CT-4) get bright ground-glass blobs (≈ −250 HU) in the lungs around the central
slices, "mild" ones (CT-0, CT-1) at most one faint small blob, so the classes are learnable from the central slice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from lib.errors import XcxrError, XcxrValueError

__all__ = ["make_synthetic_ct", "synthetic_volume", "write_volume", "CT_CLASS_MAP", "main"]

#: The course's choice, stated in the description: CT-0/CT-1 are "mild", CT-2/3/4 "severe".
CT_CLASS_MAP = {"CT-0": "mild", "CT-1": "mild", "CT-2": "severe", "CT-3": "severe", "CT-4": "severe"}
FORMATS = ("nifti", "dicom", "png")


def synthetic_volume(rng: np.random.Generator, slices: int, size: int, severe: bool, hard: bool = False) -> np.ndarray:
    """One synthetic chest CT, float32 ``(Z, H, W)`` in Hounsfield units, slice 0 = most inferior.

    Example:
        >>> v = synthetic_volume(np.random.default_rng(0), 12, 32, severe=True)
        >>> v.shape, v.dtype
        ((12, 32, 32), dtype('float32'))
    """
    z, y, x = np.mgrid[:slices, :size, :size].astype(np.float32)
    cy, cx, cz = (size - 1) / 2, (size - 1) / 2, (slices - 1) / 2
    vol = np.full((slices, size, size), -1000.0, np.float32)
    body = ((y - cy) / (0.38 * size)) ** 2 + ((x - cx) / (0.46 * size)) ** 2 <= 1
    vol[body] = 40.0
    for side in (-1, 1):
        lung = ((y - cy) / (0.28 * size)) ** 2 + ((x - cx - side * 0.2 * size) / (0.15 * size)) ** 2 <= 1
        vol[lung] = -850.0
    n_blobs, hu, sigma = (int(rng.integers(2, 5)), 600.0, size / 10) if severe else (int(rng.integers(0, 2)), 250.0,
                                                                                   size / 16)
    z_spread, z_sigma, noise = 0.1, 0.3, 30.0
    if hard:
        # Hard: fewer, fainter, thinner lesions scattered along z (the central slice may miss them), "mild" lungs with
        # faint lesions too, more noise — one slice is weak evidence, ten averaged slices are better (Study 3).
        n_blobs = int(rng.integers(1, 4)) if severe else int(rng.integers(0, 3))
        hu = float(rng.uniform(250, 450)) if severe else float(rng.uniform(100, 250))
        sigma, z_spread, z_sigma, noise = size / 14, 0.3, 0.08, 120.0
    for _ in range(n_blobs):
        side = rng.choice([-1, 1])
        by = cy + rng.uniform(-0.18, 0.18) * size
        bx = cx + side * 0.2 * size + rng.uniform(-0.08, 0.08) * size
        bz = cz + rng.uniform(-z_spread, z_spread) * slices
        blob = np.exp(-((y - by) ** 2 + (x - bx) ** 2) / (2 * sigma ** 2)
                      - (z - bz) ** 2 / (2 * (z_sigma * slices) ** 2))
        vol += hu * blob * (vol < -500)  # ground glass lies in the lung, not in the body wall
    vol += rng.normal(0, noise, vol.shape).astype(np.float32)
    return vol.astype(np.float32)


def write_volume(vol: np.ndarray, path: Path, fmt: str, patient: str = "synthetic", series_uid: str | None = None,
                 shuffle_seed: int | None = None) -> Path:
    """Write a HU volume ``(Z, H, W)`` (slice 0 inferior) as ``path.nii.gz``, a DICOM folder or a PNG folder.

    Returns the written file or folder. ``shuffle_seed`` writes the DICOM files in a shuffled naming order (their
    positions still say where each slice belongs) — to test that readers sort by geometry, not by file name.

    Example:
        >>> write_volume(np.zeros((4, 16, 16), np.float32) - 1000, Path("/tmp/p1"), "nifti")   # doctest: +SKIP
        PosixPath('/tmp/p1.nii.gz')
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        import nibabel as nib

        # data[x, y, z] in RAS+: x toward the patient's Left→Right, y Posterior→Anterior, z Inferior→Superior.
        # The (z, row, col) image has anterior at the top and the patient's right on the left, so undo that.
        data = np.ascontiguousarray(vol[:, ::-1, ::-1].transpose(2, 1, 0))
        img = nib.Nifti1Image(data.astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0]))
        img.header.set_xyzt_units("mm")
        out = path.with_name(path.name + ".nii.gz")
        nib.save(img, str(out))
        return out
    path.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        from PIL import Image

        from lib.data.volumes import to_uint8

        for k, s in enumerate(to_uint8(vol)):
            Image.fromarray(s).save(path / f"slice{k + 1}.png")  # unpadded numbers: readers must sort naturally
        return path
    if fmt != "dicom":
        raise XcxrValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    order = list(range(vol.shape[0]))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    for name_k, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", patient, patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(2.5 * k)]  # LPS: +z is superior
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.5
        ds.Rows, ds.Columns = vol.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        stored = np.clip(np.round(vol[k]) + 1024, 0, 4095).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(path / f"slice_{name_k + 1}.dcm", enforce_file_format=True)
    return path


def make_synthetic_ct(out: str | Path, patients: int = 40, slices: int = 24, size: int = 64, fmt: str = "nifti",
                      seed: int = 0, n_slices: int = 10, hard: bool = False) -> Path:
    """Write ``patients`` synthetic studies under ``out/studies/CT-k/`` and ``out/ct.yaml``; returns the YAML path.

    Patients cycle through CT-0 … CT-4 (so 2/5 mild, 3/5 severe); everything follows from ``seed``.

    Example:
        >>> yaml_file = make_synthetic_ct("/tmp/ct_demo", patients=10, slices=12, size=32)   # doctest: +SKIP
        >>> load_ct_split(yaml_file, "val", 32).labelled_per_patient                          # doctest: +SKIP
        True
    """
    if fmt not in FORMATS:
        raise XcxrValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if patients < 5 or slices < 1 or size < 8:
        raise XcxrValueError("need patients ≥ 5 (one per CT class at least), slices ≥ 1 and size ≥ 8")
    out = Path(out)
    rng = np.random.default_rng(seed)
    grades = list(CT_CLASS_MAP)
    for i in range(patients):
        grade = grades[i % len(grades)]
        vol = synthetic_volume(rng, slices, size, severe=CT_CLASS_MAP[grade] == "severe", hard=hard)
        write_volume(vol, out / "studies" / grade / f"study_{i + 1:04d}", fmt, patient=f"study_{i + 1:04d}")
    mapping = ", ".join(f"{k}: {v}" for k, v in CT_CLASS_MAP.items())
    description = out / "ct.yaml"
    description.write_text(f"""# Synthetic MosMedData-style CT set (python -m train.make_synthetic_ct, seed {seed}); see docs/ct.md
kind: ct
root: studies
class_map: {{{mapping}}}   # a choice made here, as in the course
classes: [mild, severe]   # index 1 = positive
n_slices: {n_slices}
train_slices: 1
window: [-600, 1500]
split: [0.7, 0.15, 0.15]
seed: {seed}
""")
    return description


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.make_synthetic_ct", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", help="output folder (gets studies/ and ct.yaml)")
    p.add_argument("--patients", type=int, default=40, help="number of patients (cycling through CT-0 … CT-4)")
    p.add_argument("--slices", type=int, default=24, help="axial slices per volume")
    p.add_argument("--size", type=int, default=64, help="slice side in pixels")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="nifti", help="how each volume is stored")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--hard", action="store_true",
                   help="faint lesions scattered along z and in mild lungs too: one slice is weak evidence")
    a = p.parse_args(argv)
    try:
        path = make_synthetic_ct(a.out, a.patients, a.slices, a.size, a.fmt, a.seed, hard=a.hard)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        p.exit(2, f"error: {e}\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
