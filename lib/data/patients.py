"""Patient ids from Kermany file names, and a patient-disjoint split.

Several X-rays can belong to one child; an image-level random split then puts the same patient in
train and test and inflates every metric. Split by patient.

File name patterns (Kermany et al. 2018, the Kaggle "chest-xray-pneumonia" folder):

==============================  ==================  ===========
file name                       patient id          class
==============================  ==================  ===========
``person1000_bacteria_2931``    ``person1000``      pneumonia
``IM-0011-0001-0002``           ``IM-0011``         normal
``NORMAL2-IM-0011-0001``        ``NORMAL2-IM-0011`` normal (a separate numbering series)
==============================  ==================  ===========

Example:
    >>> patient_id("person1000_virus_1681.jpeg")
    'person1000'
"""
from __future__ import annotations

import os
import random
import re
from collections import defaultdict
from typing import Sequence
from ..errors import XcxrValueError

__all__ = ["patient_id", "patient_split"]

_PATTERNS = (
    re.compile(r"^(person\d+)_"),
    re.compile(r"^(NORMAL2-IM-\d+)-"),
    re.compile(r"^(IM-\d+)-"),
)


def patient_id(path: str | os.PathLike) -> str | None:
    """Return the patient id encoded in a Kermany file name, or ``None`` for any other name."""
    name = os.path.basename(os.fspath(path))
    for pattern in _PATTERNS:
        m = pattern.match(name)
        if m:
            return m.group(1)
    return None


def patient_split(paths: Sequence[str | os.PathLike], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> list[list[int]]:
    """Split image indices into patient-disjoint groups of roughly the given fractions.

    Images without a recognised patient id are treated as their own patient. Patients are shuffled with
    ``seed`` and assigned greedily so that each group's *image* count approaches its fraction.

    Args:
        paths: image paths (only the file names are used).
        fractions: one fraction per group, summing to 1, e.g. ``(0.8, 0.1, 0.1)`` for train/val/test.
        seed: shuffling seed; the same inputs and seed give the same split.

    Returns:
        One sorted list of indices into ``paths`` per fraction.

    Example:
        >>> train, val = patient_split(["person1_a.jpeg", "person1_b.jpeg", "person2_a.jpeg"], (0.5, 0.5))
    """
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise XcxrValueError(f"fractions must be non-negative and sum to 1, got {tuple(fractions)}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        groups[patient_id(p) or f"__image_{i}"].append(i)
    patients = sorted(groups)
    random.Random(seed).shuffle(patients)
    targets = [f * len(paths) for f in fractions]
    out: list[list[int]] = [[] for _ in fractions]
    for pid in patients:
        # the group furthest below its target (relative) gets the next patient
        k = min((j for j in range(len(fractions)) if targets[j] > 0),
                key=lambda j: (len(out[j]) - targets[j]) / targets[j])
        out[k].extend(groups[pid])
    return [sorted(o) for o in out]
