"""Metrics for binary chest X-ray / CT classification (label 1 = positive class).

``core`` (scikit-learn only): :func:`binary_metrics`, :func:`roc_auc`, :func:`optimal_thresholds`
(F1, G-mean, Youden), :func:`threshold_report`, :func:`patient_means` (per-patient mean probabilities),
:func:`evaluate_predictions` (its per-patient sub-section is under the key :data:`PER_PATIENT`, ``"per_patient"``).
``summary``: :func:`headline` — which section of a run's ``metrics.json`` is *the* result (test, else validation;
per patient in a patient-level run), and :func:`per_patient_section`, which also reads files from before the rename.
``plots`` (matplotlib, Agg canvas): :func:`plot_roc`, :func:`plot_confusion_matrix`,
:func:`plot_training_curves`, :func:`save_figure`. The plotting functions are imported on first use,
so a training loop that only needs the numbers does not pay for importing matplotlib.

Example:
    >>> from lib.metrics import binary_metrics
    >>> binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])["accuracy"]
    0.5
"""
from __future__ import annotations

import importlib
from typing import Any

from .core import (
    PER_PATIENT,
    THRESHOLD_CRITERIA,
    binary_metrics,
    evaluate_predictions,
    optimal_thresholds,
    patient_level,  # deprecated name of patient_means, importable for old notebooks (not in __all__)
    patient_means,
    roc_auc,
    threshold_report,
)
from .summary import Headline, headline, per_patient_section

__all__ = [
    "THRESHOLD_CRITERIA",
    "binary_metrics",
    "roc_auc",
    "optimal_thresholds",
    "threshold_report",
    "patient_means",
    "evaluate_predictions",
    "PER_PATIENT",
    "headline",
    "Headline",
    "per_patient_section",
    "plot_roc",
    "plot_confusion_matrix",
    "plot_training_curves",
    "save_figure",
]

_PLOTS = {"plot_roc", "plot_confusion_matrix", "plot_training_curves", "save_figure"}


def __getattr__(name: str) -> Any:  # PEP 562: lazy import of the matplotlib-based helpers
    if name in _PLOTS:
        return getattr(importlib.import_module(".plots", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _PLOTS)
