"""Binary-classification metrics, decision thresholds and per-patient aggregation.

Everything here works on two 1-D arrays of the same length:

* ``y_true``: labels in ``{0, 1}``; **1 is the positive class** (PNEUMONIA, severe COVID-19).
* ``y_prob``: the model's probability of the positive class, in ``[0, 1]`` (apply sigmoid /
  softmax first; logits are rejected).

**Prediction rule:** an image is predicted positive iff ``y_prob >= threshold``. Every function in
this module uses that rule, so a threshold returned by :func:`optimal_thresholds` reproduces its
optimum exactly when it is passed back to :func:`binary_metrics`.

All returned numbers are plain Python ``int``/``float``/``None`` (never NumPy scalars, never NaN), so
the results can be written with ``json.dumps`` as they are.

Typical use::

    from lib.metrics import binary_metrics, evaluate_predictions
    auc = binary_metrics(y_val, p_val)["auc"]               # in the training loop, every epoch
    report = evaluate_predictions(y_test, p_test, patient_ids=ids)   # in the evaluation CLI
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from ..errors import XcxrValueError


class _LazySklearnMetrics:
    """``sklearn.metrics``, imported on first use: it costs about a second, and the app's first page needs none."""

    def __getattr__(self, name: str):
        import sklearn.metrics

        return getattr(sklearn.metrics, name)


_skm = _LazySklearnMetrics()

__all__ = [
    "THRESHOLD_CRITERIA",
    "binary_metrics",
    "roc_auc",
    "optimal_thresholds",
    "threshold_report",
    "patient_means",
    "evaluate_predictions",
    "PER_PATIENT",
]

#: Names of the threshold-selection criteria understood by :func:`optimal_thresholds`.
THRESHOLD_CRITERIA: tuple[str, ...] = ("f1", "gmean", "youden")

#: Two scores closer than this are treated as a tie (then the highest threshold wins).
_TIE_TOL = 1e-12

#: Key of the per-patient sub-section in :func:`evaluate_predictions` results (and so in ``metrics.json``).
#: Files written before it was renamed say ``"patient_level"``: read them with
#: :func:`lib.metrics.summary.per_patient_section`, which knows both.
PER_PATIENT = "per_patient"

#: Maximum number of points kept in the ROC curve stored by :func:`evaluate_predictions`.
_MAX_ROC_POINTS = 200


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """Array from a list, NumPy array or (CPU/GPU, grad or not) torch tensor, without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_inputs(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert labels and probabilities.

    Returns:
        ``(y_true as int64 array, y_prob as float64 array)``.

    Raises:
        ValueError: empty input, not 1-D, length mismatch, labels outside ``{0, 1}``,
            probabilities NaN or outside ``[0, 1]``.
    """
    yt = _to_numpy(y_true)
    yp = _to_numpy(y_prob)
    if yt.ndim != 1:
        raise XcxrValueError(f"y_true must be 1-D (one label per image); got shape {yt.shape}")
    if yp.ndim != 1:
        hint = " (for a two-column softmax output pass probs[:, 1])" if yp.ndim == 2 else ""
        raise XcxrValueError(f"y_prob must be 1-D (one positive-class probability per image); got shape {yp.shape}{hint}")
    if yt.shape[0] != yp.shape[0]:
        raise XcxrValueError(f"y_true and y_prob have different lengths ({yt.shape[0]} vs {yp.shape[0]})")
    if yt.shape[0] == 0:
        raise XcxrValueError("empty input: y_true and y_prob contain no samples")
    if yt.dtype.kind not in "biuf":
        raise XcxrValueError(f"y_true must contain numeric labels 0 or 1; got dtype {yt.dtype}")
    if yp.dtype.kind not in "biuf":
        raise XcxrValueError(f"y_prob must contain numbers in [0, 1]; got dtype {yp.dtype}")
    bad = ~np.isin(yt, (0, 1))
    if bad.any():
        found = sorted({v.item() for v in np.unique(yt[bad])}, key=repr)[:5]
        raise XcxrValueError(f"y_true must contain only the labels 0 and 1 (1 = positive class); found {found}")
    yp = yp.astype(np.float64)
    nan = np.isnan(yp)
    if nan.any():
        raise XcxrValueError(f"y_prob contains NaN ({int(nan.sum())} values, first at index {int(np.argmax(nan))})")
    if yp.min() < 0.0 or yp.max() > 1.0:
        raise XcxrValueError(
            f"y_prob must lie in [0, 1]; got values from {yp.min():.6g} to {yp.max():.6g} "
            "(pass probabilities, not logits: apply sigmoid or softmax first)"
        )
    return yt.astype(np.int64), yp


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise XcxrValueError(f"threshold must be a number in [0, 1]; got {threshold!r}") from None
    if not 0.0 <= t <= 1.0:  # also rejects NaN
        raise XcxrValueError(f"threshold must be a number in [0, 1]; got {threshold!r}")
    return t


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.min() == 0 and y.max() == 1)


# --------------------------------------------------------------------------------------------
# metrics at one threshold
# --------------------------------------------------------------------------------------------
def _metrics(yt: np.ndarray, yp: np.ndarray, t: float) -> dict[str, Any]:
    """:func:`binary_metrics` on already validated arrays."""
    pred = (yp >= t).astype(np.int64)
    kw: dict[str, Any] = {"labels": [0, 1], "zero_division": 0}
    (tn, fp), (fn, tp) = _skm.confusion_matrix(yt, pred, labels=[0, 1]).tolist()
    recall = float(_skm.recall_score(yt, pred, pos_label=1, **kw))
    specificity = float(_skm.recall_score(yt, pred, pos_label=0, **kw))
    with warnings.catch_warnings():
        # One class only in y_true: sklearn warns and averages the recall of the classes present.
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*single label was found.*")
        balanced = float(_skm.balanced_accuracy_score(yt, pred))
    return {
        "accuracy": float(_skm.accuracy_score(yt, pred)),
        "precision": float(_skm.precision_score(yt, pred, pos_label=1, **kw)),
        "recall": recall,
        "sensitivity": recall,
        "specificity": specificity,
        "f1": float(_skm.f1_score(yt, pred, pos_label=1, **kw)),
        "balanced_accuracy": balanced,
        "gmean": math.sqrt(recall * specificity),
        "youden": recall + specificity - 1.0,
        "auc": float(_skm.roc_auc_score(yt, yp)) if _both_classes(yt) else None,
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
        "n": int(yt.shape[0]),
        "threshold": t,
    }


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Classification metrics at one decision threshold.

    An image is predicted positive iff ``y_prob >= threshold``. Metrics come from scikit-learn with
    ``zero_division=0`` (e.g. precision is 0, not NaN, when nothing is predicted positive).

    Args:
        y_true: labels 0/1, 1 = positive class.
        y_prob: probability of the positive class, in ``[0, 1]``.
        threshold: decision threshold in ``[0, 1]``.

    Returns:
        A dict of plain Python numbers: ``accuracy``, ``precision``, ``recall`` (= ``sensitivity``,
        the true-positive rate), ``specificity`` (true-negative rate), ``f1``, ``balanced_accuracy``,
        ``gmean`` (sqrt(recall * specificity)), ``youden`` (recall + specificity - 1), ``auc``
        (ROC AUC, threshold-free; ``None`` when ``y_true`` holds one class only),
        ``confusion_matrix`` as ``[[TN, FP], [FN, TP]]`` (rows = true, columns = predicted),
        ``tn``, ``fp``, ``fn``, ``tp``, ``n`` and ``threshold``.

    Raises:
        ValueError: invalid inputs (see :func:`evaluate_predictions`) or threshold outside ``[0, 1]``.

    Example:
        >>> m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
        >>> m["confusion_matrix"], m["precision"], m["auc"]
        ([[1, 1], [1, 1]], 0.5, 0.75)
        >>> binary_metrics([0, 1], [0.3, 0.5], threshold=0.5)["tp"]  # 0.5 >= 0.5: positive
        1
    """
    yt, yp = _check_inputs(y_true, y_prob)
    return _metrics(yt, yp, _check_threshold(threshold))


def roc_auc(y_true: ArrayLike, y_prob: ArrayLike) -> float | None:
    """ROC AUC alone (cheap enough to call every epoch), ``None`` when only one class is present.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
        0.75
        >>> roc_auc([1, 1], [0.2, 0.9]) is None
        True
    """
    yt, yp = _check_inputs(y_true, y_prob)
    return float(_skm.roc_auc_score(yt, yp)) if _both_classes(yt) else None


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------
def _candidate_scores(yt: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Candidate thresholds (distinct probabilities, descending) and each criterion's score at them."""
    # drop_intermediate=False keeps every distinct probability. roc_curve's thresholds are the
    # probabilities themselves and its (fpr, tpr) at threshold t count the samples with
    # y_prob >= t, i.e. exactly our prediction rule. The first entry (threshold = inf, nothing
    # predicted positive) is not a usable threshold in [0, 1] and is dropped.
    fpr, tpr, thr = _skm.roc_curve(yt, yp, drop_intermediate=False)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
    n_pos = int(yt.sum())
    n_neg = int(yt.shape[0] - n_pos)
    tp = np.rint(tpr * n_pos)
    fp = np.rint(fpr * n_neg)
    fn = n_pos - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    scores = {
        "f1": f1,
        "gmean": np.sqrt(tpr * (1.0 - fpr)),
        "youden": tpr - fpr,
    }
    return thr, scores


def _argbest(score: np.ndarray) -> int:
    """Index of the best score; thresholds are descending, so the first of tied maxima is the highest."""
    return int(np.flatnonzero(score >= score.max() - _TIE_TOL)[0])


def _optimal(yt: np.ndarray, yp: np.ndarray) -> dict[str, float]:
    if not _both_classes(yt):
        raise XcxrValueError(
            "optimal thresholds need both classes in y_true (ROC is undefined); "
            f"got only label {int(yt[0])} in {yt.shape[0]} samples"
        )
    thr, scores = _candidate_scores(yt, yp)
    return {name: float(thr[_argbest(scores[name])]) for name in THRESHOLD_CRITERIA}


def optimal_thresholds(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, float]:
    """Decision thresholds that maximise F1, G-mean and Youden's J.

    * ``"f1"``: F1 = 2 TP / (2 TP + FP + FN).
    * ``"gmean"``: G-mean = sqrt(TPR * (1 - FPR)) = sqrt(sensitivity * specificity).
    * ``"youden"``: J = TPR - FPR = sensitivity + specificity - 1.

    The candidates are the distinct predicted probabilities (every other threshold gives the same
    predictions as the next candidate above it, with the ``>=`` rule). The returned value is such a
    probability, so ``binary_metrics(y_true, y_prob, t)`` attains the optimum exactly. **Ties**
    (scores within 1e-12) go to the **highest** threshold, i.e. the fewest positive predictions.

    Args:
        y_true: labels 0/1, 1 = positive class; both classes must be present.
        y_prob: probability of the positive class, in ``[0, 1]``.

    Returns:
        ``{"f1": t_f1, "gmean": t_gmean, "youden": t_youden}``.

    Raises:
        ValueError: invalid inputs, or only one class in ``y_true``.

    Example:
        >>> optimal_thresholds([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8])
        {'f1': 0.4, 'gmean': 0.8, 'youden': 0.8}
    """
    yt, yp = _check_inputs(y_true, y_prob)
    return _optimal(yt, yp)


def _threshold_report(yt: np.ndarray, yp: np.ndarray) -> dict[str, dict[str, Any] | None]:
    report: dict[str, dict[str, Any] | None] = {}
    if _both_classes(yt):
        for name, t in _optimal(yt, yp).items():
            report[name] = _metrics(yt, yp, t)
    else:
        report.update({name: None for name in THRESHOLD_CRITERIA})
    report["0.5"] = _metrics(yt, yp, 0.5)
    return report


def threshold_report(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, dict[str, Any] | None]:
    """Metrics at the F1-, G-mean- and Youden-optimal thresholds and at 0.5.

    Args:
        y_true: labels 0/1, 1 = positive class.
        y_prob: probability of the positive class, in ``[0, 1]``.

    Returns:
        ``{"f1": {...}, "gmean": {...}, "youden": {...}, "0.5": {...}}``; each value is
        :func:`binary_metrics` at that threshold (its ``"threshold"`` key holds the threshold). With
        only one class in ``y_true`` the three optimal entries are ``None``.

    Example:
        >>> r = threshold_report([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8])
        >>> r["f1"]["threshold"], r["f1"]["f1"], r["0.5"]["f1"]
        (0.4, 0.8, 0.5)
    """
    yt, yp = _check_inputs(y_true, y_prob)
    return _threshold_report(yt, yp)


# --------------------------------------------------------------------------------------------
# per patient
# --------------------------------------------------------------------------------------------
def _is_missing(pid: Any) -> bool:
    return pid is None or (isinstance(pid, float) and math.isnan(pid))


def patient_means(
    y_true: ArrayLike, y_prob: ArrayLike, patient_ids: Sequence[Hashable | None] | ArrayLike
) -> tuple[np.ndarray, np.ndarray, list[Hashable | None]]:
    """Average image probabilities per patient (e.g. 10 CT slices -> one prediction).

    Patients are returned in order of first appearance. An image whose patient id is ``None``
    (or a float NaN, as pandas writes a missing value) is its own patient, with id ``None``.

    Args:
        y_true: per-image labels 0/1.
        y_prob: per-image positive-class probabilities.
        patient_ids: one id per image (str, int or any hashable).

    Returns:
        ``(y_true_p, y_prob_p, ids)``: int64 labels, float64 mean probabilities, list of ids.

    Raises:
        ValueError: invalid inputs, ``patient_ids`` of another length, or a patient whose images
            carry both labels (the error names the patient).

    Example:
        >>> y, p, ids = patient_means([1, 1, 0, 0], [0.9, 0.5, 0.2, 0.3], ["a", "a", "b", None])
        >>> y.tolist(), p.tolist(), ids
        ([1, 0, 0], [0.7, 0.2, 0.3], ['a', 'b', None])
    """
    yt, yp = _check_inputs(y_true, y_prob)
    return _patient_means(yt, yp, patient_ids)


def patient_level(
    y_true: ArrayLike, y_prob: ArrayLike, patient_ids: Sequence[Hashable | None] | ArrayLike
) -> tuple[np.ndarray, np.ndarray, list[Hashable | None]]:
    """Deprecated name of :func:`patient_means` (the same function; kept so old notebooks still run)."""
    warnings.warn("lib.metrics.patient_level is deprecated: it is now called lib.metrics.patient_means",
                  DeprecationWarning, stacklevel=2)
    return patient_means(y_true, y_prob, patient_ids)


def _patient_means(
    yt: np.ndarray, yp: np.ndarray, patient_ids: Any
) -> tuple[np.ndarray, np.ndarray, list[Hashable | None]]:
    pids = _to_numpy(patient_ids).tolist() if not isinstance(patient_ids, (list, tuple)) else list(patient_ids)
    if len(pids) != yt.shape[0]:
        raise XcxrValueError(f"patient_ids has {len(pids)} entries but there are {yt.shape[0]} samples")
    group_of: dict[Hashable, int] = {}
    ids: list[Hashable | None] = []
    labels: list[int] = []
    members: list[list[int]] = []
    for i, pid in enumerate(pids):
        if _is_missing(pid):
            g = None
        else:
            try:
                g = group_of.get(pid)
            except TypeError:
                raise XcxrValueError(f"patient id {pid!r} at index {i} is not hashable") from None
        if g is None:
            g = len(ids)
            if not _is_missing(pid):
                group_of[pid] = g
            ids.append(None if _is_missing(pid) else pid)
            labels.append(int(yt[i]))
            members.append([i])
        else:
            if labels[g] != int(yt[i]):
                raise XcxrValueError(
                    f"patient {pid!r} has images with both labels 0 and 1 "
                    f"(indices {members[g][0]} and {i}); a patient must have a single label"
                )
            members[g].append(i)
    y_prob_p = np.array([float(np.mean(yp[m])) for m in members], dtype=np.float64)
    return np.array(labels, dtype=np.int64), y_prob_p, ids


# --------------------------------------------------------------------------------------------
# full report
# --------------------------------------------------------------------------------------------
def _roc_points(yt: np.ndarray, yp: np.ndarray) -> dict[str, list[float]]:
    fpr, tpr, _ = _skm.roc_curve(yt, yp)
    if fpr.shape[0] > _MAX_ROC_POINTS:
        # evenly spaced indices; both endpoints (0, 0) and (1, 1) are kept
        idx = np.unique(np.rint(np.linspace(0, fpr.shape[0] - 1, _MAX_ROC_POINTS)).astype(np.int64))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def _section(yt: np.ndarray, yp: np.ndarray, t: float) -> dict[str, Any]:
    out = _metrics(yt, yp, t)
    out["n_positive"] = int(yt.sum())
    out["n_negative"] = int(yt.shape[0] - yt.sum())
    out["thresholds"] = _threshold_report(yt, yp)
    return out


def evaluate_predictions(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float = 0.5,
    patient_ids: Sequence[Hashable | None] | ArrayLike | None = None,
) -> dict[str, Any]:
    """Everything the evaluation CLI and the app show, as one JSON-serialisable dict.

    Args:
        y_true: per-image labels 0/1, 1 = positive class.
        y_prob: per-image positive-class probabilities in ``[0, 1]``.
        threshold: decision threshold for the top-level metrics (positive iff ``y_prob >= threshold``).
        patient_ids: optional per-image patient ids, see :func:`patient_means`.

    Returns:
        :func:`binary_metrics` at ``threshold`` (top level) plus ``n_positive``, ``n_negative``,
        ``"thresholds"`` (:func:`threshold_report`), ``"roc"`` (``{"fpr": [...], "tpr": [...]}``,
        at most 200 points with both endpoints kept; ``None`` with one class only) and
        ``"per_patient"`` (:data:`PER_PATIENT`): the same structure without ``"roc"`` computed on per-patient mean
        probabilities, plus ``n_patients``; ``None`` unless ``patient_ids`` is given and some patient
        has more than one image.

    Raises:
        ValueError: empty input, length mismatch, labels not in ``{0, 1}``, probabilities NaN or
            outside ``[0, 1]``, threshold outside ``[0, 1]``, a patient with mixed labels.

    Example:
        >>> r = evaluate_predictions([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], patient_ids=["a", "a", "b", "c"])
        >>> r["accuracy"], r["auc"], r["per_patient"]["n_patients"], r["per_patient"]["auc"]
        (0.5, 0.75, 3, 1.0)
    """
    yt, yp = _check_inputs(y_true, y_prob)
    t = _check_threshold(threshold)
    out = _section(yt, yp, t)
    out["roc"] = _roc_points(yt, yp) if _both_classes(yt) else None
    out[PER_PATIENT] = None
    if patient_ids is not None:
        yt_p, yp_p, ids = _patient_means(yt, yp, patient_ids)
        if len(ids) < yt.shape[0]:  # at least one patient has more than one image
            section = _section(yt_p, yp_p, t)
            section["n_patients"] = len(ids)
            out[PER_PATIENT] = section
    return out
