"""What every loader of :mod:`lib.data` shares: :class:`ImageSet`, :class:`DataError`, split names, file suffixes.

This module sits at the bottom of ``lib.data``: the X-ray loaders (:mod:`lib.data.datasets`), the CT loader
(:mod:`lib.data.volumes`) and the decoder (:mod:`lib.data.images`) import from it, and it imports none of them,
so no two loaders ever need each other. The layers, bottom to top::

    patients, common, cache        ids, shared types and constants, the memory / disk caches
    dicom_rle                      a bounded RLE decoder plugged into pydicom (used by images)
    images                         one file → one grey uint8 array (PIL, pydicom), within memory budgets
    datasets, volumes              X-ray class folders and .npz files; CT descriptions and volumes
    splits                         load_split / available_splits: picks the loader for a path

**File suffixes.** :data:`IMAGE_SUFFIXES` is the one list of file names the project treats as single images
(dataset scans, CT slice folders, bundled examples, the app's upload picker). It is what
:func:`lib.data.images.load_grey` decodes here: :data:`RASTER_SUFFIXES` through Pillow (JPEG, PNG incl. 16-bit,
BMP, TIFF, GIF, WebP, PGM/PPM — all built into the Pillow wheel) and :data:`DICOM_SUFFIXES` through pydicom. A file
with another name is ignored by the folder scans; an upload of any name is still sniffed by its content.

Example:
    >>> ".jpeg" in IMAGE_SUFFIXES, set(DICOM_SUFFIXES) <= set(IMAGE_SUFFIXES)
    (True, True)
    >>> small = resize_uint8(torch.full((2, 1, 8, 8), 200, dtype=torch.uint8), 4)
    >>> small.shape, small.dtype, int(small.max())
    (torch.Size([2, 1, 4, 4]), torch.uint8, 200)
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

import torch

from ..errors import XcxrValueError
from .patients import patient_id

__all__ = [
    "DataError", "ImageSet", "SPLITS", "IMAGE_SUFFIXES", "RASTER_SUFFIXES", "DICOM_SUFFIXES", "resize_uint8",
    "atomic_write",
]

#: The standard split names, in the order they are listed and reported.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: File names treated as DICOM even without the ``DICM`` marker at byte 128 (old files have no preamble).
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".dic")
#: Raster formats Pillow decodes here (every one is built into the Pillow wheel; no extra plugin needed).
RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm",
                                    ".ppm")
#: Every suffix :func:`lib.data.images.load_grey` decodes: Pillow's, then DICOM's (lower case, with the dot).
IMAGE_SUFFIXES: tuple[str, ...] = RASTER_SUFFIXES + DICOM_SUFFIXES


class DataError(XcxrValueError):
    """The data on disk is not what the loader needs; the message names the path and the fix."""


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """All images of one split, decoded: ``images`` uint8 ``(N,1,H,W)``, ``labels`` int64 ``(N,)``.

    ``ds[i]`` returns ``(uint8 image (1,H,W), label)``; normalisation happens in the model's
    :class:`lib.data.transforms.Preprocess`, on whole batches.

    Example:
        >>> ds = ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ["NORMAL", "PNEUMONIA"],
        ...               ["NORMAL/IM-0001-0001.jpeg", "PNEUMONIA/person1_virus_6.jpeg"])
        >>> len(ds), ds.class_counts(), ds.patient_ids
        (2, [1, 1], ['IM-0001', 'person1'])
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str]
    patient_ids: list[str | None] = field(default_factory=list)
    source: str = ""
    #: True when the label belongs to the patient, not the image (CT: several slices of one labelled volume), so
    #: training decides and reports per patient (:func:`lib.metrics.patient_means`).
    labelled_per_patient: bool = False

    def __post_init__(self) -> None:
        if not self.patient_ids:
            self.patient_ids = [patient_id(p) for p in self.paths]
        n = len(self.labels)
        if not (self.images.shape[0] == n == len(self.paths) == len(self.patient_ids)):
            raise XcxrValueError("images, labels, paths and patient_ids must have the same length")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def patient_level(self) -> bool:
        """Deprecated name of :attr:`labelled_per_patient` (read-only)."""
        import warnings
        warnings.warn("ImageSet.patient_level is deprecated: it is now ImageSet.labelled_per_patient",
                      DeprecationWarning, stacklevel=2)
        return self.labelled_per_patient

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
                        self.source, self.labelled_per_patient)


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a uint8 batch ``(N, C, H, W)`` to ``size`` (bilinear, antialiased), rounded back to uint8.

    A batch already of that size is returned as it is (no copy). Used for ``.npz`` images and CT slices; single
    files are resized by Pillow inside :func:`lib.data.images.load_grey` while they are decoded.

    Example:
        >>> resize_uint8(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), (14, 7)).shape
        torch.Size([1, 1, 14, 7])
    """
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    # antialias: without it a 4× downscale of an X-ray aliases the rib edges into moiré
    return torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False,
                                           antialias=True).round().clamp(0, 255).to(torch.uint8)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that a reader sees either the old file or the complete new one, never half of it.

    ``write`` receives an open binary file (a temporary one beside ``path``); after it returns, the file replaces
    ``path`` in one ``os.replace``. On error the temporary file is removed and the error propagates. Missing parent
    folders are created.

    Example:
        >>> atomic_write(cache_dir() / "x.npy", lambda f: np.save(f, arr, allow_pickle=False))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # process *and* thread in the name: two threads decoding the same files must not share a temporary file
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
