"""X-ray datasets: class folders and MedMNIST ``.npz`` files, decoded once into uint8 tensors.

An :class:`~lib.data.common.ImageSet` holds every image of a split as one ``uint8`` tensor ``(N, 1, H, W)`` plus
labels, file paths and patient ids. Decoding a JPEG costs far more than a forward pass of a small CNN, so each
file is decoded **once**: the resized pixels are kept in memory and in a disk cache keyed by the file list, their
modification times and sizes, and the target size (change any file and it is decoded again). An epoch then
only indexes a tensor. The memory cache is bounded (``$XCXR_MEMORY_CACHE_MB``, default 512 MB, least recently
used split evicted first; see :mod:`lib.data.cache`); an evicted split comes back from the disk cache.

Layouts read here (:func:`lib.data.splits.load_split` picks between them and CT descriptions):

* ``FOLDER/{NORMAL,PNEUMONIA}/*`` — one split as class folders (:func:`load_folder`); the Kermany / Kaggle layout
  ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*`` has one such folder per split. Files whose suffix is in
  :data:`~lib.data.common.IMAGE_SUFFIXES` are read, at any depth below the class folder.
* ``FILE.npz`` with keys ``{split}_images`` and ``{split}_labels`` — MedMNIST (e.g. PneumoniaMNIST, :func:`load_npz`).

Class folders are sorted by name, so label 0 = ``NORMAL`` and label 1 = ``PNEUMONIA`` (the positive class).

Example:
    >>> test = load_folder("../shared/data/chest_xray/test", img_size=224)
    >>> test.images.shape, test.class_counts()
    (torch.Size([977, 1, 224, 224]), [273, 704])
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .cache import MEMORY, cache_dir
from .common import IMAGE_SUFFIXES, SPLITS, DataError, ImageSet, atomic_write, resize_uint8
from .images import load_grey

__all__ = ["decode_files", "load_folder", "load_npz", "scan_folder", "npz_splits"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1
_CACHE_TAG = "decoded"  # first item of this module's keys in the shared memory cache (lib.data.cache)


def npz_splits(file: str | os.PathLike) -> list[str]:
    """The split prefixes of a MedMNIST-style ``.npz`` (keys ``{split}_images``): train/val/test first, then others.

    Example:
        >>> npz_splits("../shared/data/pneumoniamnist.npz")
        ['train', 'val', 'test']
    """
    with np.load(file) as z:
        keys = set(z.files)
    found = {k[: -len("_images")] for k in keys if k.endswith("_images")}
    return [s for s in SPLITS if s in found] + sorted(found - set(SPLITS))


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
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder / cls}: the class folder contains no images "
                            f"(looked for {', '.join(IMAGE_SUFFIXES)})")
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
    """Decode image files to a uint8 array ``(N, H, W)``, once: memory cache, then disk cache, then PIL.

    The memory cache is the bounded LRU :data:`lib.data.cache.MEMORY`; the disk cache is one ``.npy`` per file list
    and size in :func:`lib.data.cache.cache_dir`. The array returned from a cache is shared: do not modify it.

    Example:
        >>> arr = decode_files(["../shared/data/chest_xray/test/NORMAL/IM-0011-0001.jpeg"], 64)
        >>> arr.shape, arr.dtype
        ((1, 64, 64), dtype('uint8'))
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if not cache:
        return _decode_all(paths, size, progress)
    key = _cache_key(paths, size)
    hit = MEMORY.get((_CACHE_TAG, key))
    if hit is not None:
        return hit
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
            # atomic: a second process reading the cache meanwhile never sees half an array
            atomic_write(file, lambda f: np.save(f, arr, allow_pickle=False))
        except OSError as e:  # a read-only home must not stop training
            log.warning("could not write the decode cache %s: %s", file, e)
    # bounded LRU (lib.data.cache): a split larger than the whole bound stays on disk only
    MEMORY.put((_CACHE_TAG, key), arr)
    return arr


def load_folder(folder: str | os.PathLike, img_size: int | tuple[int, int] = 224, cache: bool = True,
                progress: bool = True) -> ImageSet:
    """Load ``folder/{CLASS}/*`` as one :class:`ImageSet`, decoded once and cached (see :func:`decode_files`).

    Example:
        >>> val = load_folder("../shared/data/chest_xray/val", img_size=64)
        >>> val.classes, val.images.shape[1:]
        (['NORMAL', 'PNEUMONIA'], torch.Size([1, 64, 64]))
    """
    paths, labels, classes = scan_folder(folder)
    arr = decode_files(paths, img_size, cache=cache, progress=progress)
    return ImageSet(torch.from_numpy(arr).unsqueeze(1), torch.tensor(labels, dtype=torch.long), classes,
                    paths, source=str(folder))


def load_npz(file: str | os.PathLike, split: str = "train", img_size: int | tuple[int, int] | None = None,
             classes: Sequence[str] = ("NORMAL", "PNEUMONIA")) -> ImageSet:
    """Load one split of a MedMNIST-style ``.npz`` (keys ``{split}_images``, ``{split}_labels``).

    Colour MedMNIST images ``(N,H,W,3)`` are converted to grey. ``img_size`` resizes (bilinear); ``None`` keeps
    the stored size (28 for PneumoniaMNIST).

    Example:
        >>> test = load_npz("../shared/data/pneumoniamnist.npz", "test")
        >>> test.images.shape[1:], test.classes
        (torch.Size([1, 28, 28]), ['NORMAL', 'PNEUMONIA'])
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
        t = resize_uint8(t, img_size)
    paths = [f"{file.name}:{split}[{i}]" for i in range(len(labels))]
    return ImageSet(t, torch.from_numpy(labels), list(classes), paths, [None] * len(labels),
                    source=f"{file}:{split}")

