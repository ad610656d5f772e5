"""Data: decoding, datasets, patient ids and splits, preprocessing and augmentation.

Files → :func:`load_split` → :class:`ImageSet` (uint8 tensors) → :class:`Preprocess` (the model's own
normalisation) → model. See each module's docstring for details and examples.

Where to look (each module imports only the ones listed above it, never the other way round):

=================  ============================================================================================
``patients``       patient ids from Kermany file names; patient-disjoint splits
``common``         :class:`ImageSet`, :class:`DataError`, ``SPLITS``, :data:`IMAGE_SUFFIXES`, uint8 resize
``cache``          the bounded in-memory LRU of decoded pixels (``$XCXR_MEMORY_CACHE_MB``), the disk cache folder
``images``         one file or upload → one grey uint8 array (Pillow, pydicom)
``datasets``       X-ray class folders and MedMNIST ``.npz`` files, decoded once
``volumes``        CT descriptions (YAML), NIfTI / DICOM / slice-image volumes → central slices per patient
``splits``         :func:`load_split`, :func:`available_splits`: pick the loader for a path
``transforms``     :class:`Preprocess` (the model's normalisation), :class:`Augment`
=================  ============================================================================================
"""
from .cache import cache_dir, clear_memory_cache, memory_cache_info
from .common import DICOM_SUFFIXES, IMAGE_SUFFIXES, DataError, ImageSet
from .datasets import decode_files, load_folder, load_npz, scan_folder
from .splits import available_splits, load_split
from .images import ImageError, load_grey, to_grey_array
from .patients import patient_id, patient_split
from .transforms import Augment, Preprocess
from .volumes import (LUNG_WINDOW, CTDescription, central_slices, clear_volume_cache, load_ct_split, load_volume,
                      read_ct_description, to_uint8)

__all__ = [
    "DataError", "ImageError", "ImageSet", "available_splits", "cache_dir", "clear_memory_cache", "decode_files",
    "load_folder", "load_npz", "load_split", "scan_folder", "load_grey", "to_grey_array", "patient_id",
    "patient_split", "Preprocess", "Augment", "LUNG_WINDOW", "CTDescription", "central_slices", "clear_volume_cache",
    "load_ct_split", "load_volume", "read_ct_description", "to_uint8", "IMAGE_SUFFIXES", "DICOM_SUFFIXES",
    "memory_cache_info",
]
