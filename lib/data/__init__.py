"""Data: decoding, datasets, patient ids and splits, preprocessing and augmentation.

Files → :func:`load_split` → :class:`ImageSet` (uint8 tensors) → :class:`Preprocess` (the model's own
normalisation) → model. See each module's docstring for details and examples.
"""
from .datasets import (DataError, ImageSet, available_splits, cache_dir, clear_memory_cache, decode_files,
                       load_folder, load_npz, load_split, scan_folder)
from .images import ImageError, load_grey, to_grey_array
from .patients import patient_id, patient_split
from .transforms import Augment, Preprocess
from .volumes import (LUNG_WINDOW, CTDescription, central_slices, clear_volume_cache, load_ct_split, load_volume,
                      read_ct_description, to_uint8)

__all__ = [
    "DataError", "ImageError", "ImageSet", "available_splits", "cache_dir", "clear_memory_cache", "decode_files",
    "load_folder", "load_npz", "load_split", "scan_folder", "load_grey", "to_grey_array", "patient_id",
    "patient_split", "Preprocess", "Augment", "LUNG_WINDOW", "CTDescription", "central_slices", "clear_volume_cache",
    "load_ct_split", "load_volume", "read_ct_description", "to_uint8",
]
