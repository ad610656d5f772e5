"""Outcomes: run a model on a split once, then TP / TN / FP / FN at any decision threshold.

The model runs **once** per (weights, data set): :func:`predict_split` caches the positive-class probabilities,
so moving a threshold slider in the app, or asking for another preset, never runs the network again.

Caching, and why it is keyed the way it is:

* **In memory** (always): the key is a fingerprint of the model's *weights* (a BLAKE2 hash of every parameter and
  buffer, plus the preprocessing config: mean, std, image size) and of the *data* (a hash of the uint8 pixels,
  labels and paths). Keying by content rather than by ``id(model)`` means that a model trained for one more epoch,
  or re-loaded from disk, is never served stale probabilities, and that the same weights loaded twice share one
  entry. Hashing costs a few tens of milliseconds for ResNet18 and the test split — far less than a forward pass
  over the split; the pixel hash is remembered per tensor version (``Tensor._version`` counts in-place writes).
  The newest :data:`MEMORY_CACHE_SIZE` entries are kept. Thread-safe: when many threads ask for the same
  model and split at once (a class opening the Outcomes tab), one computes and the others wait for its result.
* **On disk** (opt-in, ``cache_dir=…``): one small ``predictions-<key>.npz`` per key — the same content key, which
  equals hashing the model's ``model.safetensors`` tensors and the decoded files. Useful for the app, which
  restarts; the file is checked against the data set's paths and labels on load and rebuilt if it does not match.

Thresholds: an image is predicted positive iff ``probability >= threshold`` (the rule of :mod:`lib.metrics`).
Choose thresholds on the **validation** split and apply them to the test split — tuning on the test split and
reporting test metrics at that threshold is optimistic::

    val_pred = predict_split(model, load_split(root, "val", img_size))
    test_pred = predict_split(model, load_split(root, "test", img_size))
    presets = threshold_presets(val_pred)      # {"0.5": 0.5, "f1": …, "gmean": …, "youden": …, "model": …}
    res = outcomes(test_pred, presets["youden"])

Example:
    >>> pred = predict_split(model, test_set)         # runs the model once (batched)
    >>> res = outcomes(pred, 0.5)
    >>> res.counts
    {'TP': 690, 'TN': 190, 'FP': 83, 'FN': 14}
    >>> res.fp[:3]                                    # dataset indices of the most confident false positives
    [12, 240, 7]
    >>> res.rows()[0]
    {'index': 0, 'path': '…/NORMAL/IM-0011-0001.jpeg', 'label': 0, 'probability': 0.07, 'prediction': 0,
     'outcome': 'TN', 'patient_id': 'IM-0011'}
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.weak import WeakIdKeyDictionary

from ..data.datasets import ImageSet
from ..metrics import optimal_thresholds
from ..models.layers import get_config, hash_tensor, model_fingerprint
from ..models.outputs import predict_proba
from ..errors import XcxrKeyError, XcxrTypeError, XcxrValueError

__all__ = ["Predictions", "Outcomes", "predict_split", "outcomes", "threshold_presets", "clear_prediction_cache",
           "ship_predictions", "image_ids", "OUTCOMES", "MEMORY_CACHE_SIZE"]

log = logging.getLogger(__name__)

#: The four outcomes, in the order the app shows them.
OUTCOMES: tuple[str, ...] = ("TP", "TN", "FP", "FN")
#: How many (model, data set) predictions the in-memory cache keeps.
MEMORY_CACHE_SIZE = 16
_CACHE_VERSION = 2  # 2: images keyed by CLASS/FILE, not by their path on one machine

_MEMORY: "OrderedDict[str, Predictions]" = OrderedDict()
_MEMORY_LOCK = threading.Lock()                    # guards _MEMORY and _COMPUTING
_COMPUTING: dict[str, threading.Lock] = {}         # key → held while one thread computes that key
# Pixel hashes per tensor (by identity: tensors compare element-wise, so a plain WeakKeyDictionary cannot hold
# them), invalidated by the tensor's version counter, which every in-place write bumps.
_TENSOR_HASHES: WeakIdKeyDictionary = WeakIdKeyDictionary()


@dataclass(frozen=True)
class Predictions:
    """A model's positive-class probabilities on one data set, one row per image.

    Attributes:
        index: position of each image in the data set, ``0..N-1``.
        path: file path (or npz reference) of each image.
        label: true label, 0/1 (1 = the positive class, ``classes[1]``).
        probability: ``P(class 1)`` per image (float64; sigmoid of the logit or softmax[:, 1]).
        patient_id: patient id per image (``None`` where unknown).
        classes: class names, index 0 = negative.
        model_threshold: the operating threshold stored in the model's config by training (chosen on the
            validation split), or ``None``.
        key: the cache key (content fingerprint of the weights and the data).
    """

    index: np.ndarray
    path: list[str]
    label: np.ndarray
    probability: np.ndarray
    patient_id: list[str | None]
    classes: list[str]
    model_threshold: float | None = None
    key: str = ""

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per image: ``index, path, label, probability, patient_id``."""
        return [{"index": int(i), "path": p, "label": int(y), "probability": float(q), "patient_id": pid}
                for i, p, y, q, pid in zip(self.index, self.path, self.label, self.probability, self.patient_id)]


@dataclass(frozen=True)
class Outcomes:
    """Predictions at one threshold: per-image prediction and outcome, and the four sorted index lists.

    Attributes:
        threshold: the decision threshold (positive iff ``probability >= threshold``).
        prediction: predicted label per image (0/1).
        outcome: ``"TP"``, ``"TN"``, ``"FP"`` or ``"FN"`` per image.
        tp, tn, fp, fn: data-set indices of each outcome, **most confident first**: TP and FP by descending
            probability (FP: the most confident false alarms first), TN and FN by ascending probability
            (FN: the most confidently missed positives first). Ties keep data-set order.
        predictions: the :class:`Predictions` these come from.
    """

    threshold: float
    prediction: np.ndarray
    outcome: list[str]
    tp: list[int]
    tn: list[int]
    fp: list[int]
    fn: list[int]
    predictions: Predictions = field(repr=False)

    @property
    def counts(self) -> dict[str, int]:
        """``{"TP": n, "TN": n, "FP": n, "FN": n}``."""
        return {name: len(self[name]) for name in OUTCOMES}

    def __getitem__(self, name: str) -> list[int]:
        """The sorted index list of one outcome: ``res["FP"]``."""
        if name not in OUTCOMES:
            raise XcxrKeyError(f"outcome must be one of {OUTCOMES}, got {name!r}")
        return getattr(self, name.lower())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per image: ``index, path, label, probability, prediction, outcome, patient_id``."""
        rows = self.predictions.rows()
        for row, pred, out in zip(rows, self.prediction, self.outcome):
            row.update(prediction=int(pred), outcome=out)
            row["patient_id"] = row.pop("patient_id")  # keep the documented column order
        return rows


# --- fingerprints ---------------------------------------------------------------------------------------------

_hash_tensor = hash_tensor
_model_fingerprint = model_fingerprint


def _pixels_fingerprint(images: torch.Tensor) -> str:
    version = images._version
    cached = _TENSOR_HASHES.get(images)
    if cached is not None and cached[0] == version:
        return cached[1]
    h = hashlib.blake2b(digest_size=16)
    _hash_tensor(h, images)
    digest = h.hexdigest()
    try:
        _TENSOR_HASHES[images] = (version, digest)
    except TypeError:  # pragma: no cover - a tensor subclass without weakref support
        pass
    return digest


def image_ids(dataset: ImageSet) -> list[str]:
    """Each image's id that does not depend on where the data lies: ``CLASS/FILE`` (the last two path parts).

    Prediction files keyed by these travel with a model: the same split on another machine (or in the Space, or a
    fresh clone) has the same ids, so the predictions shipped with a model are found there.

    Example:
        >>> image_ids(load_split("data/chest_xray", "test", 224))[:1]
        ['NORMAL/IM-0001-0001.jpeg']
    """
    return ["/".join(Path(str(p)).parts[-2:]) for p in dataset.paths]


def _dataset_fingerprint(dataset: ImageSet) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(_pixels_fingerprint(dataset.images).encode())
    _hash_tensor(h, dataset.labels)
    h.update(json.dumps([image_ids(dataset), list(dataset.classes)]).encode())
    return h.hexdigest()


# --- public API -----------------------------------------------------------------------------------------------

def predict_split(model: nn.Module, dataset: ImageSet, batch_size: int = 128,
                  cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                  read_dirs: Sequence[str | os.PathLike] = ()) -> Predictions:
    """Run ``model`` on every image of ``dataset`` once (batched) and return the per-image table, cached.

    The model's own preprocessing (``config.json``: mean, std) is applied; it runs in ``eval()`` mode and the
    caller's mode is restored. See the module docstring for the cache keys.

    Args:
        model: any zoo model (it carries ``xcxr_config``).
        dataset: an :class:`~lib.data.ImageSet` (uint8 images, labels, paths, patient ids).
        batch_size: images per forward pass.
        cache_dir: also keep the result in this folder (``predictions-<key>.npz``), so it survives a restart.
            ``None`` (default): memory only.
        use_cache: ``False`` always runs the model (and refreshes the caches).
        read_dirs: more folders to look in for ``predictions-<key>.npz`` before running the model, never written
            (the ``predictions/`` folder shipped with a model: :func:`ship_predictions`).

    Returns:
        :class:`Predictions`.

    Raises:
        TypeError: ``dataset`` is not an ImageSet, or ``model`` is not a zoo model.
        ValueError: ``batch_size`` < 1, or the images do not match the model's input size.

    Example:
        >>> pred = predict_split(model, load_split("../shared/data/chest_xray", "test", 224))
        >>> pred.probability[:3]
        array([0.03, 0.12, 0.91])
    """
    if not isinstance(dataset, ImageSet):
        raise XcxrTypeError(f"dataset must be a lib.data.ImageSet, got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise XcxrValueError(f"batch_size must be a positive int, got {batch_size!r}")
    cfg = get_config(model)
    size = cfg.get("img_size")
    if size and tuple(dataset.images.shape[-2:]) != (size, size):
        raise XcxrValueError(f"the images are {tuple(dataset.images.shape[-2:])} but {cfg['architecture']} takes "
                             f"{size}×{size}: load the split with img_size={size}")
    key = f"{_model_fingerprint(model)}-{_dataset_fingerprint(dataset)}"
    threshold = cfg.get("threshold")
    model_threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    if use_cache and (cached := _cached(key, model_threshold)) is not None:
        return cached
    with _MEMORY_LOCK:
        computing = _COMPUTING.setdefault(key, threading.Lock())
    with computing:  # one thread per key computes; the others wait here, then find its result in memory
        try:
            if use_cache and (cached := _cached(key, model_threshold)) is not None:
                return cached
            return _compute(model, dataset, key, model_threshold, batch_size, cache_dir, use_cache, read_dirs)
        finally:
            with _MEMORY_LOCK:
                if _COMPUTING.get(key) is computing:
                    del _COMPUTING[key]


def _cached(key: str, model_threshold: float | None) -> Predictions | None:
    with _MEMORY_LOCK:
        cached = _MEMORY.get(key)
        if cached is None:
            return None
        _MEMORY.move_to_end(key)
    # the stored threshold is config, not output: same weights and data, maybe another threshold
    return cached if cached.model_threshold == model_threshold else replace(cached, model_threshold=model_threshold)


def _compute(model: nn.Module, dataset: ImageSet, key: str, model_threshold: float | None, batch_size: int,
             cache_dir: str | os.PathLike | None, use_cache: bool, read_dirs: Sequence[str | os.PathLike] = ()
             ) -> Predictions:
    file = Path(cache_dir) / f"predictions-{key}.npz" if cache_dir is not None else None
    prob = None
    if use_cache:
        for folder in [*read_dirs, *([cache_dir] if cache_dir is not None else [])]:
            prob = _read_disk(Path(folder) / f"predictions-{key}.npz", dataset)
            if prob is not None:
                break
    if prob is None:
        # float64 so that a threshold returned by optimal_thresholds (one of these values) compares exactly
        prob = predict_proba(model, dataset.images, batch_size=batch_size).double().numpy()
        if file is not None:
            _write_disk(file, dataset, prob)
    elif file is not None and not file.is_file():
        _write_disk(file, dataset, prob)  # found only in a read-only folder: keep a copy where the app writes

    pred = Predictions(index=np.arange(len(dataset)), path=list(dataset.paths),
                       label=dataset.labels.numpy().astype(np.int64).copy(), probability=prob,
                       patient_id=list(dataset.patient_ids), classes=list(dataset.classes),
                       model_threshold=model_threshold, key=key)
    with _MEMORY_LOCK:
        _MEMORY[key] = pred
        while len(_MEMORY) > MEMORY_CACHE_SIZE:
            _MEMORY.popitem(last=False)
    return pred


def _read_disk(file: Path, dataset: ImageSet) -> np.ndarray | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            prob, labels, paths = z["probability"], z["label"], z["path"].tolist()
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring the unreadable prediction cache %s (%s)", file, e)
        return None
    if paths != image_ids(dataset) or not np.array_equal(labels, dataset.labels.numpy()):
        return None  # a hash collision or a hand-edited file: recompute rather than trust it
    return prob.astype(np.float64)


def _write_disk(file: Path, dataset: ImageSet, prob: np.ndarray) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}.npz")  # one per writer
        np.savez_compressed(tmp, probability=prob, label=dataset.labels.numpy(),
                            path=np.array(image_ids(dataset), dtype=str),
                            version=np.array(_CACHE_VERSION))
        os.replace(tmp, file)  # atomic: a reader never sees half a file
    except OSError as e:  # a read-only cache folder must not stop the app
        log.warning("could not write the prediction cache %s: %s", file, e)


def ship_predictions(model: nn.Module, folder: str | os.PathLike, datasets: Sequence[ImageSet],
                     batch_size: int = 128) -> list[Path]:
    """Write ``folder/predictions/predictions-<key>.npz`` for each data set, and remove stale ones there.

    A model folder that carries its predictions on the splits the app offers lets the app answer Outcomes, the
    presets and the Model report at once after a start (:func:`predict_split` with ``read_dirs``). The key is a
    hash of the weights and of the split's pixels, labels and ids, so a retrained model or changed data simply
    misses the old files; this function rewrites them (``python -m train.predictions``). Returns the files kept.
    """
    out = Path(folder) / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    keep = []
    for ds in datasets:
        pred = predict_split(model, ds, batch_size=batch_size, use_cache=False)
        file = out / f"predictions-{pred.key}.npz"
        _write_disk(file, ds, pred.probability)
        keep.append(file)
    for stale in out.glob("predictions-*.npz"):
        if stale not in keep:
            stale.unlink()
    return keep


def clear_prediction_cache() -> None:
    """Forget the predictions held in memory (files in a ``cache_dir`` stay)."""
    with _MEMORY_LOCK:
        _MEMORY.clear()


def outcomes(pred: Predictions, threshold: float) -> Outcomes:
    """Per-image prediction and outcome at ``threshold``, and TP/TN/FP/FN lists, most confident first.

    Args:
        pred: from :func:`predict_split`.
        threshold: decision threshold in ``[0, 1]``; positive iff ``probability >= threshold``.

    Returns:
        :class:`Outcomes`. Sorting: FP and TP by descending probability, FN and TN by ascending probability,
        so each list starts with the case the model was surest about (for the errors: the most confident
        mistakes, the ones worth looking at first).

    Raises:
        TypeError: ``pred`` is not a :class:`Predictions`.
        ValueError: ``threshold`` is not a number in ``[0, 1]``.

    Example:
        >>> res = outcomes(pred, threshold_presets(val_pred)["youden"])
        >>> [pred.probability[i] for i in res.fp[:2]]     # descending
        [0.97, 0.95]
    """
    if not isinstance(pred, Predictions):
        raise XcxrTypeError(f"pred must come from predict_split (a Predictions), got {type(pred).__name__}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0.0 <= float(threshold) <= 1.0:
        raise XcxrValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    t = float(threshold)
    p, y = pred.probability, pred.label
    yhat = (p >= t).astype(np.int64)
    names = np.array(OUTCOMES)
    # TP=0, TN=1, FP=2, FN=3, from (label, prediction)
    code = np.where(yhat == 1, np.where(y == 1, 0, 2), np.where(y == 1, 3, 1))

    def order(mask: np.ndarray, descending: bool) -> list[int]:
        idx = np.flatnonzero(mask)
        # stable sort on ±probability keeps data-set order among ties
        return idx[np.argsort(-p[idx] if descending else p[idx], kind="stable")].tolist()

    return Outcomes(threshold=t, prediction=yhat, outcome=names[code].tolist(),
                    tp=order(code == 0, True), tn=order(code == 1, False),
                    fp=order(code == 2, True), fn=order(code == 3, False), predictions=pred)


def threshold_presets(pred: Predictions) -> dict[str, float]:
    """Named thresholds: 0.5, the F1-, G-mean- and Youden-optimal thresholds on ``pred``, and the model's own.

    The data-driven presets come from :func:`lib.metrics.optimal_thresholds` on ``pred``'s labels and
    probabilities. **Compute them on the validation split** (``threshold_presets(val_pred)``) and apply them to
    the test split; presets computed on the test split itself are optimistic.

    Args:
        pred: from :func:`predict_split`; both classes must be present.

    Returns:
        ``{"0.5": 0.5, "f1": …, "gmean": …, "youden": …}`` plus ``"model"``: the threshold stored in the model's
        config by training (chosen on its validation split), when the model has one.

    Raises:
        ValueError: only one class in ``pred`` (the optimal thresholds are undefined).

    Example:
        >>> threshold_presets(val_pred)
        {'0.5': 0.5, 'f1': 0.41, 'gmean': 0.73, 'youden': 0.73, 'model': 0.73}
    """
    if not isinstance(pred, Predictions):
        raise XcxrTypeError(f"pred must come from predict_split (a Predictions), got {type(pred).__name__}")
    presets: dict[str, float] = {"0.5": 0.5}
    presets.update({k: float(v) for k, v in optimal_thresholds(pred.label, pred.probability).items()})
    if pred.model_threshold is not None:
        presets["model"] = pred.model_threshold
    return presets
