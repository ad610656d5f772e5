"""Datasets: chest X-ray class folders and MedMNIST ``.npz`` files, decoded once into uint8 tensors.

An :class:`ImageSet` holds every image of a split as one ``uint8`` tensor ``(N, 1, H, W)`` plus labels, file
paths and patient ids. Decoding a JPEG costs far more than a forward pass of a small CNN, so each file is
decoded **once**: the resized pixels are kept in memory and in a disk cache keyed by the file list, their
modification times and sizes, and the target size (change any file and it is decoded again). An epoch then
only indexes a tensor.

Supported layouts (``load_split``):

* ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*`` — the Kermany / Kaggle layout; pass ``split``.
* ``ROOT/{NORMAL,PNEUMONIA}/*`` — one split in one folder (``split`` ignored or ``None``).
* ``FILE.npz`` with keys ``{split}_images`` and ``{split}_labels`` — MedMNIST (e.g. PneumoniaMNIST).

Class folders are sorted by name, so label 0 = ``NORMAL`` and label 1 = ``PNEUMONIA`` (the positive class).

Example:
    >>> train = load_split("../shared/data/chest_xray", "train", img_size=224)
    >>> train.images.shape, train.class_counts()
    (torch.Size([3491, 1, 224, 224]), [935, 2556])
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .images import ImageError, load_grey
from .patients import patient_id

__all__ = [
    "DataError", "ImageSet", "load_split", "decode_files", "load_folder", "load_npz", "scan_folder", "available_splits",
    "IMAGE_EXTENSIONS", "cache_dir", "clear_memory_cache",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".dcm", ".dicom"}
SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1
_MEMORY: dict[str, np.ndarray] = {}


class DataError(ValueError):
    """The data on disk is not what the loader needs; the message names the path and the fix."""


def cache_dir() -> Path:
    """Where decoded images are cached: ``$XCXR_CACHE_DIR`` or ``~/.cache/xcxr/decoded``."""
    return Path(os.environ.get("XCXR_CACHE_DIR") or Path.home() / ".cache" / "xcxr" / "decoded")


def clear_memory_cache() -> None:
    """Forget the decoded images held in memory, CT slices included (the disk cache stays)."""
    _MEMORY.clear()
    from .volumes import clear_volume_cache  # imported here: volumes imports this module
    clear_volume_cache()


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """All images of one split, decoded: ``images`` uint8 ``(N,1,H,W)``, ``labels`` int64 ``(N,)``.

    ``ds[i]`` returns ``(uint8 image (1,H,W), label)``; normalisation happens in the model's
    :class:`lib.data.transforms.Preprocess`, on whole batches.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str]
    patient_ids: list[str | None] = field(default_factory=list)
    source: str = ""
    #: True when the patient, not the image, is the unit (CT: several slices per patient, averaged per patient).
    patient_level: bool = False

    def __post_init__(self) -> None:
        if not self.patient_ids:
            self.patient_ids = [patient_id(p) for p in self.paths]
        n = len(self.labels)
        if not (self.images.shape[0] == n == len(self.paths) == len(self.patient_ids)):
            raise ValueError("images, labels, paths and patient_ids must have the same length")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def img_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    def class_counts(self) -> list[int]:
        """Number of images per class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights ``N / (K · n_c)`` for a class-weighted loss (1.0 for balanced data).

        For a one-logit (BCE) model use :meth:`pos_weight` instead.
        """
        counts = torch.tensor(self.class_counts(), dtype=torch.float32)
        if (counts == 0).any():
            missing = [c for c, n in zip(self.classes, counts.tolist()) if n == 0]
            raise DataError(f"{self.source}: no images of class {missing}; cannot weight the loss")
        return counts.sum() / (len(counts) * counts)

    def pos_weight(self) -> torch.Tensor:
        """``n_negative / n_positive`` for ``BCEWithLogitsLoss(pos_weight=…)``; equivalent to the class weights."""
        w = self.class_weights()
        return (w[1] / w[0]).reshape(1)

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        """A new ImageSet with the given rows (shares no storage with this one)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageSet(self.images[idx].clone(), self.labels[idx].clone(), list(self.classes),
                        [self.paths[i] for i in idx.tolist()], [self.patient_ids[i] for i in idx.tolist()],
                        self.source, self.patient_level)


def available_splits(root: str | os.PathLike) -> list[str]:
    """The split names present under ``root`` (folders, npz keys or CT description), in train/val/test order."""
    root = Path(root)
    if root.suffix.lower() in (".yaml", ".yml"):  # a CT description: see lib/data/volumes.py
        from .volumes import ct_splits
        return ct_splits(root)
    if root.suffix == ".npz" and root.is_file():
        with np.load(root) as z:
            keys = set(z.files)
        return [s for s in SPLITS if f"{s}_images" in keys] + sorted(
            k[: -len("_images")] for k in keys if k.endswith("_images") and k[: -len("_images")] not in SPLITS)
    return [s for s in SPLITS if (root / s).is_dir()]


def scan_folder(folder: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """List ``folder/CLASS/*`` image files. Returns ``(paths, labels, class_names)``, classes sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"{folder}: expected one sub-folder per class (e.g. NORMAL/ and PNEUMONIA/), found {classes or 'none'}")
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).rglob("*")
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"{folder / cls}: the class folder contains no images "
                            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return paths, labels, classes


def _cache_key(paths: Sequence[str], size: tuple[int, int]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_CACHE_VERSION, list(size)]).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()[:32]


def _decode_all(paths: Sequence[str], size: tuple[int, int], progress: bool) -> np.ndarray:
    out = np.empty((len(paths), *size), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = load_grey(paths[i], size)  # raises ImageError naming the file

    # PIL releases the GIL while decoding, so threads use every core without pickling images around.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(work, range(len(paths)))
        if progress and len(paths) > 200:
            from tqdm.auto import tqdm
            it = tqdm(it, total=len(paths), desc="decoding images", unit="img", leave=False)
        for _ in it:
            pass
    return out


def decode_files(paths: Sequence[str], size: int | tuple[int, int], cache: bool = True,
                 progress: bool = True) -> np.ndarray:
    """Decode image files to a uint8 array ``(N, H, W)``, once: memory cache, then disk cache, then PIL."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if not cache:
        return _decode_all(paths, size, progress)
    key = _cache_key(paths, size)
    if key in _MEMORY:
        return _MEMORY[key]
    file = cache_dir() / f"{key}.npy"
    arr = None
    if file.is_file():
        try:
            arr = np.load(file, allow_pickle=False)
            if arr.shape != (len(paths), *size) or arr.dtype != np.uint8:
                arr = None
        except (OSError, ValueError):
            arr = None  # a damaged cache file is simply rebuilt
    if arr is None:
        arr = _decode_all(paths, size, progress)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, arr, allow_pickle=False)
            os.replace(tmp, file)
        except OSError as e:  # a read-only home must not stop training
            log.warning("could not write the decode cache %s: %s", file, e)
    _MEMORY[key] = arr
    return arr


def load_folder(folder: str | os.PathLike, img_size: int | tuple[int, int] = 224, cache: bool = True,
                progress: bool = True) -> ImageSet:
    """Load ``folder/{CLASS}/*`` as one :class:`ImageSet`, decoded once and cached."""
    paths, labels, classes = scan_folder(folder)
    arr = decode_files(paths, img_size, cache=cache, progress=progress)
    return ImageSet(torch.from_numpy(arr).unsqueeze(1), torch.tensor(labels, dtype=torch.long), classes,
                    paths, source=str(folder))


def load_npz(file: str | os.PathLike, split: str = "train", img_size: int | tuple[int, int] | None = None,
             classes: Sequence[str] = ("NORMAL", "PNEUMONIA")) -> ImageSet:
    """Load one split of a MedMNIST-style ``.npz`` (keys ``{split}_images``, ``{split}_labels``).

    Colour MedMNIST images ``(N,H,W,3)`` are converted to grey. ``img_size`` resizes (bilinear); ``None`` keeps
    the stored size (28 for PneumoniaMNIST).
    """
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    try:
        z = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{file}: not a readable .npz file ({e})") from e
    with z:
        ki, kl = f"{split}_images", f"{split}_labels"
        if ki not in z.files or kl not in z.files:
            raise DataError(f"{file}: needs keys '{ki}' and '{kl}' (MedMNIST layout); found {sorted(z.files)}")
        images, labels = z[ki], z[kl]
    if images.ndim == 4 and images.shape[-1] in (3, 4):
        images = np.round(images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    if images.ndim != 3:
        raise DataError(f"{file}: '{ki}' has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise DataError(f"{file}: {len(images)} images but {len(labels)} labels in split '{split}'")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{file}: labels must be in 0..{len(classes) - 1} for classes {list(classes)}, "
                        f"found {sorted(set(labels.tolist()))}")
    images = np.clip(images, 0, 255).astype(np.uint8)
    t = torch.from_numpy(images).unsqueeze(1)
    if img_size is not None:
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if tuple(t.shape[-2:]) != size:
            t = torch.nn.functional.interpolate(t.float(), size=size, mode="bilinear", align_corners=False,
                                                antialias=True).round().clamp(0, 255).to(torch.uint8)
    paths = [f"{file.name}:{split}[{i}]" for i in range(len(labels))]
    return ImageSet(t, torch.from_numpy(labels), list(classes), paths, [None] * len(labels),
                    source=f"{file}:{split}")


def load_split(root: str | os.PathLike, split: str | None = "train", img_size: int | tuple[int, int] = 224,
               cache: bool = True, progress: bool = True) -> ImageSet:
    """Load one split from any supported layout (see the module docstring).

    Args:
        root: a folder with ``train/ val/ test/`` sub-folders, a folder of class folders, a ``.npz`` file, or a
            CT description ``.yaml`` (see :mod:`lib.data.volumes`; the set is then patient-level).
        split: ``"train"``, ``"val"``, ``"test"`` (or another npz prefix). Ignored for a single class-folder root.
        img_size: side length (or ``(H, W)``) the images are resized to.

    Raises:
        DataError: missing split or class folder, empty class folder, wrong npz keys.
        ImageError: an unreadable image (the message names the file).
    """
    root = Path(root)
    if root.suffix.lower() in (".yaml", ".yml"):  # a CT description: central slices per patient (volumes.py)
        from .volumes import load_ct_split
        return load_ct_split(root, split or "train", img_size, progress=progress)
    if root.suffix == ".npz":
        return load_npz(root, split or "train", img_size)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder or .npz file")
    present = available_splits(root)
    if present:
        if split is None:
            raise DataError(f"{root} has split folders {present}; choose one with split=…")
        if split not in present:
            raise DataError(f"{root}: no '{split}' split folder; found {present}")
        return load_folder(root / split, img_size, cache=cache, progress=progress)
    return load_folder(root, img_size, cache=cache, progress=progress)
