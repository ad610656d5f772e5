"""One entry point for every data layout: :func:`load_split` and :func:`available_splits`.

This module sits *above* the loaders: it looks at the path and hands it to the right one, so the loaders never
need each other (the X-ray loader does not know CT exists, and the CT loader only shares
:mod:`lib.data.common` with it).

=====================================================  ===========================================================
``root``                                               loader
=====================================================  ===========================================================
``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*``         :func:`lib.data.datasets.load_folder` on ``ROOT/<split>``
``ROOT/{NORMAL,PNEUMONIA}/*`` (one split)              :func:`lib.data.datasets.load_folder` on ``ROOT``
``FILE.npz`` (``{split}_images``, ``{split}_labels``)  :func:`lib.data.datasets.load_npz` (MedMNIST)
``FILE.yaml`` / ``.yml`` (``kind: ct``)                :func:`lib.data.volumes.load_ct_split` (patient-level)
=====================================================  ===========================================================

Example:
    >>> available_splits("../shared/data/chest_xray")
    ['train', 'val', 'test']
    >>> train = load_split("../shared/data/chest_xray", "train", img_size=224)
    >>> train.images.shape, train.class_counts()
    (torch.Size([3491, 1, 224, 224]), [935, 2556])
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import SPLITS, DataError, ImageSet
from .datasets import load_folder, load_npz, npz_splits
from .volumes import ct_splits, is_ct_description, load_ct_split

__all__ = ["load_split", "available_splits"]


def available_splits(root: str | os.PathLike) -> list[str]:
    """The split names present under ``root`` (folders, npz keys or CT description), in train/val/test order.

    A folder of class folders (one split) has none: ``[]``.

    Example:
        >>> available_splits("../shared/data/pneumoniamnist.npz")
        ['train', 'val', 'test']
    """
    root = Path(root)
    if is_ct_description(root):
        return ct_splits(root)
    if root.suffix == ".npz" and root.is_file():
        return npz_splits(root)
    return [s for s in SPLITS if (root / s).is_dir()]


def load_split(root: str | os.PathLike, split: str | None = "train", img_size: int | tuple[int, int] = 224,
               cache: bool = True, progress: bool = True) -> ImageSet:
    """Load one split from any supported layout (see the module docstring).

    Args:
        root: a folder with ``train/ val/ test/`` sub-folders, a folder of class folders, a ``.npz`` file, or a
            CT description ``.yaml`` (see :mod:`lib.data.volumes`; the set is then patient-level).
        split: ``"train"``, ``"val"``, ``"test"`` (or another npz prefix). Ignored for a single class-folder root.
        img_size: side length (or ``(H, W)``) the images are resized to.
        cache: keep decoded X-ray images in the memory and disk caches (:mod:`lib.data.cache`).
        progress: show a progress bar for long decodes.

    Raises:
        DataError: missing split or class folder, empty class folder, wrong npz keys.
        ImageError: an unreadable image (the message names the file).

    Example:
        >>> test = load_split("../shared/data/chest_xray", "test", img_size=64)
        >>> len(test), test.classes
        (977, ['NORMAL', 'PNEUMONIA'])
    """
    root = Path(root)
    if is_ct_description(root):  # a CT description: central slices per patient (volumes.py)
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
