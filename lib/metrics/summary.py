"""Which numbers of a run's ``metrics.json`` are *the* result: :func:`headline`.

A finished run (:func:`lib.training.fit`) writes ``metrics.json`` with a ``"val"`` and a ``"test"`` section (each an
:func:`~lib.metrics.evaluate_predictions` result; ``"test"`` is ``None`` without a test split) and ``"level"``
(``"image"``, or ``"patient"`` when the best epoch and the threshold were chosen on per-patient mean
probabilities). The headline is then

* the **test** section when there is one, else the validation section (a run without test data);
* in a patient-level run, that section's **per-patient** sub-section (``"per_patient"``) — the unit the run
  decided on; an image-level run reports per image, its per-patient numbers are a secondary table.

The model card, the training command's last line, the sweep summary and the app all pick it through
:func:`headline`, so they cannot disagree. ``metrics.json`` files written before the sub-section was renamed call
it ``"patient_level"``; :func:`per_patient_section` reads both.

Example:
    >>> from lib.metrics.summary import headline
    >>> m = {"level": "patient", "val": {"auc": 0.8, "per_patient": {"auc": 0.9}}, "test": None}
    >>> h = headline(m)
    >>> h.split, h.level, h.section["auc"], h.per_image["auc"]
    ('val', 'patient', 0.9, 0.8)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .core import PER_PATIENT

__all__ = ["Headline", "headline", "per_patient_section", "SPLIT_NAMES"]

#: The sub-section's name in files written before it was called ``"per_patient"``.
_LEGACY_PER_PATIENT = "patient_level"

#: Display names of the metrics.json split keys, for cards and tables.
SPLIT_NAMES: dict[str, str] = {"test": "test", "val": "validation"}


def per_patient_section(section: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The per-patient sub-section of one :func:`~lib.metrics.evaluate_predictions` result, or ``None``.

    ``None`` when the section is missing or no patient has more than one image (then per patient = per image).
    Reads ``"per_patient"`` and, for old ``metrics.json`` files, ``"patient_level"``.

    Example:
        >>> per_patient_section({"auc": 0.8, "patient_level": {"auc": 0.9, "n_patients": 3}})["n_patients"]
        3
    """
    if not section:
        return None
    return section.get(PER_PATIENT) or section.get(_LEGACY_PER_PATIENT) or None


@dataclass(frozen=True)
class Headline:
    """The result of a run: one split at one unit, with the other unit beside it.

    Attributes:
        split: ``"test"`` or ``"val"`` (the ``metrics.json`` key; :data:`SPLIT_NAMES` has the display name).
        level: ``"patient"`` or ``"image"``: the unit the run decided (best epoch, threshold) and reports on.
        section: the headline numbers (:func:`~lib.metrics.binary_metrics` keys, ``thresholds``, ``n``…).
        per_image: the split's per-image numbers (``section`` itself in an image-level run).
        per_patient: the split's per-patient numbers, ``None`` when no patient has two images (``section``
            itself in a patient-level run where some patient has).
    """

    split: str
    level: str
    section: Mapping[str, Any]
    per_image: Mapping[str, Any]
    per_patient: Mapping[str, Any] | None


def headline(metrics: Mapping[str, Any], split: str | None = None) -> Headline | None:
    """The headline numbers of a run's metrics: test (else validation), per patient in a patient-level run.

    Args:
        metrics: a ``metrics.json`` dict (:func:`lib.training.fit`'s return value).
        split: ``"test"`` or ``"val"`` to ask for that split only; ``None`` (default) takes test when present,
            else validation.

    Returns:
        A :class:`Headline`, or ``None`` when the split asked for (or both) is missing.

    Example:
        >>> headline({"level": "image", "val": {"auc": 0.8}, "test": {"auc": 0.7}}).section["auc"]
        0.7
        >>> headline({"level": "image", "val": {"auc": 0.8}, "test": None}, split="test") is None
        True
    """
    if split is None:
        split = "test" if metrics.get("test") else "val"
    per_image = metrics.get(split)
    if not per_image:
        return None
    level = "patient" if metrics.get("level") == "patient" else "image"
    per_patient = per_patient_section(per_image)
    # A patient-level run where every patient has one image has no sub-section: its per-image numbers are the
    # per-patient ones (evaluate_predictions leaves the sub-section empty when the two would be equal).
    section = (per_patient or per_image) if level == "patient" else per_image
    return Headline(split=split, level=level, section=section, per_image=per_image, per_patient=per_patient)
