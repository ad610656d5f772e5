"""CT volumes: NIfTI files, DICOM series and folders of slice images, read per patient into central axial slices.

A CT study is one *patient*: the course trains on **one central axial slice per patient** and validates / tests
on the **N central slices** (default 10) of each patient, averaging the N predicted probabilities into one
per-patient probability (:func:`lib.metrics.patient_means`). Slices of one patient are not independent samples,
and a clinician decides per patient, so the patient is the unit every headline metric and threshold refers to.

A data set is described by a small YAML file (its paths are relative to the YAML file's folder)::

    kind: ct
    root: studies                 # MosMedData: studies/CT-0 … CT-4/study_0001.nii.gz
    class_map: {CT-0: mild, CT-1: mild, CT-2: severe, CT-3: severe, CT-4: severe}
    classes: [mild, severe]       # index 1 = the positive class
    n_slices: 10                  # val/test: the N central slices of every patient
    train_slices: 1               # train: the central slice of every patient
    window: [-600, 1500]          # lung window (level, width) in HU; null = min–max per volume
    split: [0.7, 0.15, 0.15]      # patient-level, stratified, deterministic (when labels carry no split)
    seed: 0
    # labels: labels.csv          # instead of class folders: columns patient,label[,split]

Every patient entry (under ``root``, at any depth) is a ``.nii``/``.nii.gz`` file, a folder holding one DICOM
series, or a folder of 2-D slice images (png/jpg/tif…: :data:`~lib.data.common.RASTER_SUFFIXES`, natural sort by
file name: ``slice2`` before ``slice10``). Such a description is accepted wherever a data folder is
(:func:`lib.data.splits.load_split` dispatches here), so::

    python -m train.make_synthetic_ct runs/ct_demo --patients 40        # a synthetic MosMedData-style set
    python -m train pneumonia_cnn --data runs/ct_demo/ct.yaml --img-size 64 --epochs 5 --out runs/ct_cnn

The windowed, resized slices of each patient are kept in the shared bounded memory cache of decoded pixels
(:data:`lib.data.cache.MEMORY`: ``$XCXR_MEMORY_CACHE_MB``, default 512 MB, least recently used evicted first), so a
sweep reads each volume once as long as the slices fit; there is no disk cache for CT slices.

Example:
    >>> central_slices(24, 10)
    [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    >>> val = load_ct_split("runs/ct_demo/ct.yaml", "val", img_size=64)   # doctest: +SKIP
    >>> val.images.shape, val.patient_ids[:2], val.labelled_per_patient    # doctest: +SKIP
    (torch.Size([60, 1, 64, 64]), ['study_0003', 'study_0003'], True)
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import XcxrValueError
from .cache import MEMORY
from .common import DICOM_SUFFIXES, RASTER_SUFFIXES, SPLITS, DataError, ImageSet, resize_uint8
from .images import ImageError, load_grey

__all__ = [
    "load_volume", "central_slices", "to_uint8", "CTDescription", "read_ct_description", "is_ct_description",
    "ct_splits", "load_ct_split", "clear_volume_cache", "LUNG_WINDOW",
]

log = logging.getLogger(__name__)

#: The lung window (level, width) in Hounsfield units: −1350 … +150 HU maps to 0 … 255.
LUNG_WINDOW: tuple[float, float] = (-600.0, 1500.0)
#: Volume files (a CT study in one file); everything else is a folder of DICOM files or slice images.
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_KEYS = {"kind", "root", "labels", "class_map", "classes", "n_slices", "train_slices", "window", "split", "seed"}
_CACHE_TAG = "ct"  # first item of this module's keys in the shared memory cache


def clear_volume_cache() -> None:
    """Forget the decoded CT slices held in memory (X-ray images stay; :func:`lib.data.clear_memory_cache` drops all)."""
    MEMORY.discard(lambda key: key[0] == _CACHE_TAG)


# ------------------------------------------------------------------------------------------------ reading volumes
def _natural_key(name: str) -> list[Any]:
    # "slice2" < "slice10": digit runs compare as numbers, the rest case-insensitively
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _visible_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _load_nifti(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        # RAS+ orientation: axis 0 → patient Left→Right, 1 → Posterior→Anterior, 2 → Inferior→Superior, whatever
        # the scanner stored. Without this a flipped affine gives the slices upside down (wrong "central" slices
        # for an asymmetric field of view, and mirrored images).
        img = nib.as_closest_canonical(img)
        data = img.get_fdata(dtype=np.float32)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError (truncated .gz), ValueError…
        raise DataError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e}); re-export the volume") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, the NIfTI file holds shape {data.shape}")
    # (x, y, z) → (z, y, x), then flip rows and columns: anterior at the top and the patient's right on the
    # viewer's left, the radiological convention (and what a DICOM viewer shows).
    return np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])


def _slice_position(ds: Any) -> float | None:
    """Position of a DICOM slice along the slice normal (= ImagePositionPatient[2] for an axial series)."""
    ipp = ds.get("ImagePositionPatient")
    if ipp is None or len(ipp) != 3:
        return None
    iop = ds.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        if np.linalg.norm(normal) > 0.5:  # a tilted gantry: project onto the normal, not onto z
            return float(np.dot(normal, np.asarray(ipp, float)))
    return float(ipp[2])


def _load_dicom_series(folder: Path) -> np.ndarray:
    import pydicom

    files = [p for p in _visible_files(folder) if _is_dicom_file(p)]
    if not files:
        raise DataError(f"{folder}: no DICOM files in the folder")
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, force=True)
        except Exception as e:
            raise DataError(f"{f}: not a readable DICOM file ({type(e).__name__}: {e})") from e
        if "PixelData" not in ds:
            if "DirectoryRecordSequence" in ds:  # a DICOMDIR index file beside the images
                continue
            raise DataError(f"{f}: the DICOM file has no pixel data; {folder} must hold the image slices only")
        slices.append((f, ds))
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series (SeriesInstanceUID {sorted(series)}); "
                        "put each series in its own folder and keep one per patient")
    if not slices:
        raise DataError(f"{folder}: no DICOM file with pixel data in the folder")
    positions = [_slice_position(ds) for _, ds in slices]
    if all(p is not None for p in positions):
        order = sorted(range(len(slices)), key=lambda i: positions[i])
    else:  # no geometry: InstanceNumber is the scanner's own order
        order = sorted(range(len(slices)), key=lambda i: (int(slices[i][1].get("InstanceNumber", 0) or 0),
                                                         _natural_key(slices[i][0].name)))
    out = []
    for i in order:
        f, ds = slices[i]
        try:
            arr = np.asarray(ds.pixel_array, dtype=np.float32)
        except Exception as e:
            raise DataError(f"{f}: the DICOM pixel data could not be decoded ({type(e).__name__}: {e})") from e
        if arr.ndim != 2:
            raise DataError(f"{f}: expected one 2-D slice per file, got pixel data of shape {arr.shape}")
        # stored values → Hounsfield units (CT: usually slope 1, intercept −1024)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        out.append(arr * slope + intercept)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DataError(f"{folder}: the DICOM slices have different sizes {sorted(shapes)}; one series per folder")
    return np.stack(out).astype(np.float32, copy=False)


def _slice_image_files(folder: Path) -> list[Path]:
    return sorted((p for p in _visible_files(folder) if p.suffix.lower() in RASTER_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def _load_slice_images(folder: Path, files: Sequence[Path]) -> np.ndarray:
    try:
        arrays = [load_grey(f) for f in files]
    except ImageError as e:
        raise DataError(str(e)) from e
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{folder}: the slice images have different sizes {sorted(shapes)}; export them alike")
    return np.stack(arrays)  # uint8: already display values, see to_uint8


def _read(path: Path) -> tuple[np.ndarray, bool]:
    """``(volume, in_hounsfield_units)``; slice images come back as uint8."""
    if path.is_file():
        if _is_nifti(path):
            return _load_nifti(path), True
        raise DataError(f"{path}: not a CT volume; expected a .nii/.nii.gz file, a DICOM folder or a folder of "
                        "slice images")
    if path.is_dir():
        images = _slice_image_files(path)
        if images:
            return _load_slice_images(path, images), False
        return _load_dicom_series(path), True
    raise DataError(f"{path}: no such file or folder")


def load_volume(path: str | os.PathLike) -> np.ndarray:
    """Read one CT volume as float32 ``(Z, H, W)``, axial slices first, ordered inferior → superior.

    * ``.nii`` / ``.nii.gz`` (nibabel): reoriented to RAS+ with ``nib.as_closest_canonical``, so the slice axis
      is superior–inferior whatever the stored affine; values as stored (Hounsfield units for CT).
    * a folder of DICOM files (pydicom): one series; sorted by position along the slice normal
      (``ImagePositionPatient``; ``InstanceNumber`` when there is no geometry); ``RescaleSlope`` /
      ``RescaleIntercept`` applied, so the values are Hounsfield units.
    * a folder of 2-D slice images (png/jpg/tif…): natural sort by file name, read with
      :func:`lib.data.images.load_grey`; values 0…255.

    Images are shown radiologically: anterior at the top, the patient's right on the left.

    Raises:
        DataError: missing path, unreadable file, several DICOM series in one folder, no pixel data, slices of
            different sizes (the message names the file or folder).

    Example:
        >>> vol = load_volume("studies/CT-0/study_0001.nii.gz")   # doctest: +SKIP
        >>> vol.shape, vol.dtype                                 # doctest: +SKIP
        ((43, 512, 512), dtype('float32'))
    """
    return _read(Path(path))[0].astype(np.float32, copy=False)


def central_slices(n_total: int, n: int) -> list[int]:
    """The indices of the ``n`` slices centred on the middle of a volume of ``n_total`` slices.

    The middle slice is ``n_total // 2`` (for an even count: the upper of the two middle ones), and the result is
    ``range(n_total // 2 - n // 2, … + n)``. So ``n = 1`` gives ``[n_total // 2]``; an odd ``n`` is centred
    exactly on that slice; an even ``n`` with an even ``n_total`` is centred exactly on the middle of the volume,
    and with an odd ``n_total`` it reaches half a slice further down than up. ``n >= n_total`` gives every slice.

    Raises:
        ValueError: ``n < 1`` or ``n_total < 1``.

    Example:
        >>> central_slices(24, 10), central_slices(10, 1), central_slices(5, 2), central_slices(3, 10)
        ([7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [5], [1, 2], [0, 1, 2])
    """
    if n_total < 1 or n < 1:
        raise XcxrValueError(f"central_slices needs n_total ≥ 1 and n ≥ 1, got n_total={n_total}, n={n}")
    if n >= n_total:
        return list(range(n_total))
    start = n_total // 2 - n // 2
    return list(range(start, start + n))


def to_uint8(volume: np.ndarray, window: Sequence[float] | None = LUNG_WINDOW) -> np.ndarray:
    """Map a volume (or slice) to display values 0…255.

    Args:
        volume: any array; Hounsfield units when ``window`` is given.
        window: ``(level, width)``: ``level − width/2 → 0`` and ``level + width/2 → 255``, clipped (default: the
            lung window −600/1500). ``None``: a uint8 array — or one whose values are already whole numbers
            in 0…255, as slice images are — is returned unchanged; anything else is min–max scaled over the
            whole volume (one scale for all slices, so their relative brightness is kept).

    Example:
        >>> to_uint8(np.array([-1350.0, -600.0, 150.0])).tolist()
        [0, 128, 255]
    """
    v = np.asarray(volume)
    if window is None:
        if v.dtype == np.uint8:
            return v
        if v.size and np.all(np.isfinite(v)) and v.min() >= 0 and v.max() <= 255 and np.all(v == np.round(v)):
            return v.astype(np.uint8)
        v = v.astype(np.float32)
        lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if v.size else (0.0, 0.0)
        out = np.zeros_like(v) if hi <= lo else (v - lo) * (255.0 / (hi - lo))
    else:
        level, width = float(window[0]), float(window[1])
        if width <= 0:
            raise XcxrValueError(f"window width must be > 0, got {width}")
        out = (v.astype(np.float32) - (level - width / 2)) * (255.0 / width)
    return np.round(np.clip(np.nan_to_num(out, nan=0.0), 0, 255)).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- descriptions
@dataclass
class CTDescription:
    """A parsed CT data set description: one entry per usable patient (see the module docstring)."""

    file: Path
    root: Path
    classes: list[str]
    patients: list[str]
    paths: list[Path]
    labels: list[int]
    splits: list[str]
    n_slices: int = 10
    train_slices: int = 1
    window: tuple[float, float] | None = LUNG_WINDOW
    raw: dict[str, Any] = field(default_factory=dict)

    def split_indices(self, split: str) -> list[int]:
        """Indices of the patients in ``split``."""
        return [i for i, s in enumerate(self.splits) if s == split]


def is_ct_description(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a CT data set description (a ``.yaml``/``.yml`` file)."""
    return Path(path).suffix.lower() in (".yaml", ".yml")


def _patient_name(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_patient_folder(folder: Path) -> bool:
    files = _visible_files(folder)
    return any(p.suffix.lower() in RASTER_SUFFIXES or _is_dicom_file(p) for p in files)


def _find_entries(folder: Path) -> list[Path]:
    """Patient entries under ``folder`` at any depth: NIfTI files and folders holding DICOM or slice images."""
    found: list[Path] = []
    for p in sorted(folder.iterdir(), key=lambda q: _natural_key(q.name)):
        if p.name.startswith("."):
            continue
        if p.is_file() and _is_nifti(p):
            found.append(p)
        elif p.is_dir():
            found += [p] if _is_patient_folder(p) else _find_entries(p)
    return found


def _stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[str]:
    """Assign each patient to train/val/test: per class, shuffled with ``seed``, sizes by largest remainder."""
    out = [""] * len(labels)
    for cls in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == cls]
        random.Random(f"{seed}:{cls}").shuffle(members)  # per-class stream: adding a class moves no other patient
        exact = [f * len(members) for f in fractions]
        counts = [math.floor(e) for e in exact]
        for k in sorted(range(len(exact)), key=lambda k: (counts[k] - exact[k], k))[: len(members) - sum(counts)]:
            counts[k] += 1
        # Small sets: every split with a share gets at least one patient of every class when there are enough,
        # taken from the largest split — a one-class validation or test split has no AUC and no threshold.
        wanted = [k for k, f in enumerate(fractions) if f > 0]
        if len(members) >= len(wanted):
            for k in wanted:
                if counts[k] == 0:
                    counts[max(range(len(counts)), key=lambda j: counts[j])] -= 1
                    counts[k] = 1
        start = 0
        for name, c in zip(SPLITS, counts):
            for i in members[start:start + c]:
                out[i] = name
            start += c
    return out


def _as_int(raw: dict, key: str, default: int, file: Path) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{file}: '{key}' must be a whole number ≥ 1, got {value!r}")
    return value


def read_ct_description(path: str | os.PathLike) -> CTDescription:
    """Parse and check a CT description YAML; every patient is found on disk, labelled and assigned a split.

    Raises:
        DataError: unreadable YAML, an unknown key, ``kind`` not ``ct``, a missing root/labels file, a patient in
            the CSV without a volume, a label not in ``classes``, a bad ``split``/``window``, fewer than two
            classes (each message names the file or key and what to do).

    Example:
        >>> d = read_ct_description("docs/mosmeddata.yaml")     # doctest: +SKIP
        >>> d.classes, len(d.split_indices("train"))              # doctest: +SKIP
        (['mild', 'severe'], 776)
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such CT description file")
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{file}: not a readable YAML file ({e})") from e
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected a mapping with 'kind: ct', 'root: …', …; see docs/ct.md")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise DataError(f"{file}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    if raw.get("kind") != "ct":
        raise DataError(f"{file}: 'kind' must be 'ct' (got {raw.get('kind')!r}); add the line 'kind: ct'")
    if not raw.get("root"):
        raise DataError(f"{file}: 'root' is missing; give the folder with the volumes, relative to this file")
    root = (file.parent / str(raw["root"])).resolve()
    if not root.is_dir():
        raise DataError(f"{file}: 'root' {raw['root']!r} → {root} is not a folder")
    n_slices = _as_int(raw, "n_slices", 10, file)
    train_slices = _as_int(raw, "train_slices", 1, file)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{file}: 'seed' must be a whole number, got {seed!r}")
    window = raw.get("window", list(LUNG_WINDOW))
    if window is not None:
        if (not isinstance(window, (list, tuple)) or len(window) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in window) or window[1] <= 0):
            raise DataError(f"{file}: 'window' must be [level, width] with width > 0 (e.g. [-600, 1500]) or null, "
                            f"got {window!r}")
        window = (float(window[0]), float(window[1]))
    fractions = raw.get("split", [0.7, 0.15, 0.15])
    if (not isinstance(fractions, (list, tuple)) or len(fractions) != 3
            or not all(isinstance(f, (int, float)) and f >= 0 for f in fractions)
            or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0):
        raise DataError(f"{file}: 'split' must be three fractions [train, val, test] summing to 1 with train > 0, "
                        f"got {fractions!r}")
    class_map = raw.get("class_map")
    if class_map is not None and not isinstance(class_map, dict):
        raise DataError(f"{file}: 'class_map' must map raw labels to classes, e.g. {{CT-0: mild, CT-2: severe}}")
    class_map = {str(k): str(v) for k, v in (class_map or {}).items()}

    def mapped(raw_label: str) -> str | None:
        return class_map.get(raw_label) if class_map else raw_label

    entries: list[tuple[str, Path, str, str | None]] = []  # patient, path, class, split
    skipped: dict[str, int] = {}
    if raw.get("labels"):
        entries, skipped = _entries_from_csv(file, root, file.parent / str(raw["labels"]), mapped)
    else:
        folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise DataError(f"{root}: no class folders (e.g. CT-0/, CT-1/ …) and no 'labels:' CSV in {file}")
        for d in folders:
            cls = mapped(d.name)
            found = _find_entries(d)
            if cls is None:
                skipped[d.name] = skipped.get(d.name, 0) + len(found)
                continue
            entries += [(_patient_name(p), p, cls, None) for p in found]
    if skipped:
        log.info("%s: skipped %d patient(s) whose label is not in class_map: %s", file, sum(skipped.values()),
                 ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    if not entries:
        raise DataError(f"{file}: no patients found under {root} (NIfTI files, DICOM folders or slice-image folders)")
    classes = raw.get("classes")
    if classes is None:
        classes = sorted({e[2] for e in entries})
        log.info("%s: no 'classes' key; using %s (index 1 = positive)", file, classes)
    if not isinstance(classes, list) or len(classes) != 2 or len(set(map(str, classes))) != 2:
        raise DataError(f"{file}: 'classes' must list two class names, negative first (e.g. [mild, severe]); "
                        f"got {classes!r}")
    classes = [str(c) for c in classes]
    bad = sorted({e[2] for e in entries} - set(classes))
    if bad:
        raise DataError(f"{file}: label(s) {bad} are not in classes {classes}; fix the labels or add a class_map")
    seen: dict[str, Path] = {}
    for patient, p, _, _ in entries:
        if patient in seen:
            raise DataError(f"{file}: patient '{patient}' appears twice ({seen[patient]} and {p}); names must be "
                            "unique")
        seen[patient] = p
    labels = [classes.index(e[2]) for e in entries]
    if any(e[3] is not None for e in entries):
        splits = [str(e[3]) for e in entries]
        if "train" not in splits or "val" not in splits:
            raise DataError(f"{file}: the 'split' column needs 'train' and 'val' patients (found {sorted(set(splits))}); "
                            "add them, or drop the column to split automatically")
    else:
        splits = _stratified_split(labels, fractions, seed)
    desc = CTDescription(file=file, root=root, classes=classes, patients=[e[0] for e in entries],
                         paths=[e[1] for e in entries], labels=labels, splits=splits, n_slices=n_slices,
                         train_slices=train_slices, window=window, raw=dict(raw))
    return desc


def _entries_from_csv(file: Path, root: Path, csv_file: Path, mapped: Any
                      ) -> tuple[list[tuple[str, Path, str, str | None]], dict[str, int]]:
    if not csv_file.is_file():
        raise DataError(f"{file}: 'labels' file {csv_file} does not exist")
    with open(csv_file, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if not {"patient", "label"} <= columns:
        raise DataError(f"{csv_file}: needs the columns 'patient,label' (and optionally 'split'); "
                        f"found {sorted(c for c in columns if c)}")
    index: dict[str, Path] = {}
    for p in _find_entries(root):
        index.setdefault(_patient_name(p), p)
    entries, skipped = [], {}
    for n, row in enumerate(rows, start=2):
        patient, raw_label = (row["patient"] or "").strip(), (row["label"] or "").strip()
        cls = mapped(raw_label)
        if cls is None:
            skipped[raw_label] = skipped.get(raw_label, 0) + 1
            continue
        if patient not in index:
            raise DataError(f"{csv_file}, line {n}: patient '{patient}' has no volume under {root} "
                            f"(looked for {patient}.nii.gz, {patient}.nii or a folder {patient}/); "
                            "fix the name or remove the row")
        split = (row.get("split") or "").strip() or None if "split" in columns else None
        if split is not None and split not in SPLITS:
            raise DataError(f"{csv_file}, line {n}: split '{split}' must be one of {list(SPLITS)}")
        entries.append((patient, index[patient], cls, split))
    if "split" in columns and any(e[3] is None for e in entries):
        raise DataError(f"{csv_file}: the 'split' column is empty for some patients; fill it for every row")
    return entries, skipped


def ct_splits(description: str | os.PathLike) -> list[str]:
    """The split names with at least one patient, in train/val/test order."""
    present = set(read_ct_description(description).splits)
    return [s for s in SPLITS if s in present]


# ----------------------------------------------------------------------------------------------- slices → ImageSet
def _signature(path: Path) -> tuple:
    """(mtime, size) of a file, or of every file in a folder: any change means decoding again."""
    if path.is_file():
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    h = hashlib.sha256()
    for p in sorted(_visible_files(path)):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return (h.hexdigest(),)


def _patient_slices(path: Path, n: int, size: tuple[int, int], window: tuple[float, float] | None
                    ) -> tuple[list[int], np.ndarray]:
    """The ``n`` central slices of one patient, windowed and resized: ``(indices, uint8 (n, H, W))``, cached."""
    key = (_CACHE_TAG, str(path.resolve()), _signature(path), size, window, n)
    hit = MEMORY.get(key)
    if hit is not None:
        return hit
    vol, hounsfield = _read(path)
    idx = central_slices(vol.shape[0], n)
    if len(idx) < n:
        log.warning("%s: only %d slice(s), fewer than the %d asked for; using all of them", path, len(idx), n)
    # windowing applies to Hounsfield data; slice images are already display values (min–max is a no-op on them)
    chosen = to_uint8(vol[idx], window if hounsfield else None)
    t = resize_uint8(torch.from_numpy(np.ascontiguousarray(chosen)).unsqueeze(1), size)
    arr = t[:, 0].numpy()
    MEMORY.put(key, (idx, arr), nbytes=arr.nbytes)  # bounded LRU: may evict older entries, or keep nothing
    return idx, arr


def load_ct_split(description: str | os.PathLike, split: str, img_size: int | tuple[int, int] = 224,
                  progress: bool = True) -> ImageSet:
    """One split of a CT description as a patient-level :class:`ImageSet` of central axial slices.

    ``train`` gets the ``train_slices`` (default 1) central slices of each patient, ``val``/``test`` the
    ``n_slices`` (default 10) central ones; a thinner volume gives all its slices (with a warning). Every slice
    is windowed (HU data), resized to ``img_size`` (bilinear, antialiased) and stored as uint8 ``(N, 1, H, W)``;
    ``paths`` are ``"<patient>#slice<k>"`` (``k`` = the slice index in the volume), ``patient_ids`` the patient
    names, and ``labelled_per_patient`` is True so training averages the predictions per patient. Decoded slices are
    kept in the bounded memory cache (keyed by file, modification time, size, image size and window), so a sweep
    reads each volume once while they fit.

    Raises:
        DataError: a bad description (see :func:`read_ct_description`), an unknown split, an unreadable volume.

    Example:
        >>> train = load_ct_split("runs/ct_demo/ct.yaml", "train", img_size=64)   # doctest: +SKIP
        >>> len(train), len(set(train.patient_ids))                                # doctest: +SKIP
        (28, 28)
    """
    desc = read_ct_description(description)
    if split not in SPLITS:
        raise DataError(f"{desc.file}: unknown split {split!r}; choose one of {list(SPLITS)}")
    chosen = desc.split_indices(split)
    if not chosen:
        raise DataError(f"{desc.file}: no patients in the '{split}' split; present: {ct_splits(desc.file)}")
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    n = desc.train_slices if split == "train" else desc.n_slices

    def work(i: int) -> tuple[list[int], np.ndarray]:
        return _patient_slices(desc.paths[i], n, size, desc.window)

    # zlib (nii.gz) and numpy release the GIL: threads overlap the decompression of several volumes.
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        it = pool.map(work, chosen)
        if progress and len(chosen) > 20:
            from tqdm.auto import tqdm
            it = tqdm(it, total=len(chosen), desc=f"reading CT volumes ({split})", unit="patient", leave=False)
        results = list(it)
    images, labels, paths, pids = [], [], [], []
    for i, (idx, arr) in zip(chosen, results):
        images.append(arr)
        labels += [desc.labels[i]] * len(idx)
        paths += [f"{desc.patients[i]}#slice{k}" for k in idx]
        pids += [desc.patients[i]] * len(idx)
    return ImageSet(torch.from_numpy(np.concatenate(images)).unsqueeze(1), torch.tensor(labels, dtype=torch.long),
                    list(desc.classes), paths, pids, source=f"{desc.file}:{split}", labelled_per_patient=True)
