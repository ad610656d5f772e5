"""Compare finished training runs (Study 2): ROC curves, F1/G-mean thresholds, confusion matrices, filters.

    python -m train.compare CNN1=runs/cnn1 DNN1=runs/dnn1 --out reports/compare --criteria f1,gmean

For every run folder (what ``python -m train`` leaves: config.json, model.safetensors, metrics.json,
train_args.json…) the model is loaded and the run's own validation and test splits are rebuilt with
:func:`lib.training.load_splits` from its ``train_args.json`` — the same carved validation split, the same
``max_images`` cap, the same image size. The thresholds that maximise each criterion (F1, G-mean…) are chosen
on the **validation** split and then applied to the **test** split, so the test set never picks its own
threshold (that would flatter every model). A run whose ``metrics.json`` says ``"level": "patient"`` is
compared on per-patient mean probabilities (both splits), otherwise per image.

Written into ``out``:

* ``roc.png``: every model's test ROC curve on one axes, AUC in the legend, markers where the val-chosen
  thresholds land on the test curve;
* ``confusion_matrices.png``: rows = models, columns = criteria, test counts at each val-chosen threshold;
* ``filters_<slug>.png``: each model's first-layer filters (:func:`lib.explain.filters.filter_grid`);
* ``thresholds.md``: one markdown table row per model × criterion;
* ``comparison.json``: the same numbers, the test confusion matrices and ROC AUCs (plain JSON).

Example::

    from lib.compare import compare_runs
    result = compare_runs({"CNN1": "runs/cnn1", "DNN1": "runs/dnn1"}, "reports/compare")
    result["models"]["CNN1"]["thresholds"]["f1"]     # the F1-optimal threshold on CNN1's validation split
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import ImageSet
from .metrics import THRESHOLD_CRITERIA, binary_metrics, optimal_thresholds, patient_means
from .models import get_config, load_model, predict_proba
from .training import TrainConfig, fields_affecting, load_splits, upgrade_args
from .errors import XcxrValueError
from .out_folders import check_out_folder

__all__ = ["compare_runs", "thresholds_table", "RUN_FILES", "TABLE_COLUMNS"]

log = logging.getLogger(__name__)

#: Files a finished run folder must hold to be compared (history.json is not needed).
RUN_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "metrics.json", "train_args.json")
#: Metric keys of :func:`lib.metrics.binary_metrics` shown in the table, with their column titles.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (("accuracy", "accuracy"), ("precision", "precision"),
                                              ("recall", "recall"), ("specificity", "specificity"),
                                              ("f1", "F1"), ("gmean", "G-mean"), ("auc", "AUC"))
_CRITERION_NAMES = {"f1": "F1", "gmean": "G-mean", "youden": "Youden J"}
_SPLITS = ("test", "val")
# Fields of TrainConfig that cannot change which images are in the validation and test splits; the others
# (metadata affects="split": data, img_size, seed, val_fraction, max_images) are the split cache key.
_NOT_SPLIT_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - fields_affecting("split")


def _check_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(train_args, metrics)`` of a finished run folder; ValueError naming the folder and what is missing."""
    if not folder.is_dir():
        raise XcxrValueError(f"{folder}: not a folder; expected a finished training run (python -m train … --out)")
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        hint = " (it holds a checkpoint: training has not finished)" if (folder / "checkpoint").is_dir() else ""
        raise XcxrValueError(f"{folder}: not a finished training run{hint}; missing {', '.join(missing)}")
    out = []
    for name in ("train_args.json", "metrics.json"):
        try:
            value = json.loads((folder / name).read_text())
        except (OSError, ValueError) as e:
            raise XcxrValueError(f"{folder}: {name} is not valid JSON ({e})") from e
        if not isinstance(value, dict):
            raise XcxrValueError(f"{folder}: {name} must hold a JSON object")
        out.append(value)
    return out[0], out[1]


def _train_config(folder: Path, args: Mapping[str, Any], data: str | None, progress: bool) -> TrainConfig:
    """The run's TrainConfig (only the fields this version knows), with ``data`` overridden if given."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in upgrade_args(args).items() if k in known}  # old files: renamed fields' new names
    if data is not None:
        kw["data"] = os.fspath(data)
    for key in ("model", "data"):
        if not kw.get(key):
            raise XcxrValueError(f"{folder}: train_args.json has no {key!r}")
    if not os.path.exists(kw["data"]):
        raise XcxrValueError(f"{folder}: the run's data {kw['data']!r} does not exist here; pass data=… (--data) "
                             "to point at the same data set")
    kw.update(out=os.fspath(folder), progress=progress, resume=False, overwrite=False, push_to_hub=None)
    try:
        return TrainConfig(**kw)
    except (TypeError, ValueError) as e:
        raise XcxrValueError(f"{folder}: train_args.json is not a valid training configuration ({e})") from e


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.").lower() or "model"
    slug, i = base, 2
    while slug in taken:  # "CNN 1" and "cnn-1" must not overwrite each other's figure
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def thresholds_table(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`compare_runs` output: one row per model × criterion.

    Example:
        >>> r = {"split": "test", "models": {"M": {"criteria": {"f1": {"threshold": 0.5, "accuracy": 1.0,
        ...      "precision": 1.0, "recall": 1.0, "specificity": 1.0, "f1": 1.0, "gmean": 1.0, "auc": 1.0}}}}}
        >>> print(thresholds_table(r).splitlines()[2])
        | M | F1 | 0.5000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 |
    """
    split = result.get("split", "test")
    head = ["model", "criterion", "threshold (val)", f"{split} {TABLE_COLUMNS[0][1]}"]
    head += [title for _, title in TABLE_COLUMNS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, model in result["models"].items():
        for crit, m in model["criteria"].items():
            cells = [name, _CRITERION_NAMES.get(crit, crit), _fmt(m["threshold"])]
            cells += [_fmt(m.get(key)) for key, _ in TABLE_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_runs(runs: Mapping[str, str | os.PathLike], out: str | os.PathLike, *,
                 criteria: Sequence[str] = ("f1", "gmean"), split: str = "test", data: str | None = None,
                 progress: bool = False, batch_size: int = 128) -> dict[str, Any]:
    """Compare finished runs on their own splits: thresholds chosen on validation, metrics on ``split``.

    Args:
        runs: display name → run folder (what ``python -m train … --out`` wrote).
        out: folder for roc.png, confusion_matrices.png, filters_<slug>.png, thresholds.md, comparison.json:
            absent, empty or a comparison report of ours (any other folder is refused before anything is written).
        criteria: threshold criteria from :data:`lib.metrics.THRESHOLD_CRITERIA` (``"f1"``, ``"gmean"``,
            ``"youden"``); a single string is one criterion.
        split: where the val-chosen thresholds are applied: ``"test"`` (default) or ``"val"`` (in-sample,
            for runs without a test split — optimistic).
        data: the data set to use instead of the ``data`` in each run's train_args.json (e.g. on another
            machine); the splits are carved from it with the run's seed, val_fraction and max_images.
        progress: show progress bars while decoding images.
        batch_size: inference batch size.

    Returns:
        The dict written to comparison.json: ``split``, ``threshold_split`` (``"val"``), ``criteria``,
        ``table`` (the markdown) and ``models``: name → ``run``, ``architecture``, ``level`` (``"image"`` or
        ``"patient"``), ``classes``, ``n_val``, ``n_test`` (counts at that level), ``val_auc``, ``auc``
        (ROC AUC on ``split``), ``thresholds`` (criterion → val-chosen threshold), ``criteria`` (criterion →
        :func:`lib.metrics.binary_metrics` on ``split`` at that threshold, with ``confusion_matrix``
        ``[[TN, FP], [FN, TP]]``) and ``files`` (its filter figure).

    Raises:
        ValueError: empty ``runs``, unknown criterion or split, a folder that is not a finished run, data
            that cannot be found, a run without the requested split, or a split with one class only;
            :class:`lib.out_folders.OutFolderError` (a ValueError) for an ``out`` that is not ours.

    Example:
        >>> compare_runs({"CNN1": "runs/cnn1", "ResNet18": "runs/resnet18"}, "reports/compare")  # doctest: +SKIP
    """
    from .explain.filters import filter_grid
    from .metrics.plots import _new_axes, plot_roc, save_figure

    if not runs:
        raise XcxrValueError("runs is empty: give at least one NAME → run folder")
    criteria = (criteria,) if isinstance(criteria, str) else tuple(criteria)
    unknown = [c for c in criteria if c not in THRESHOLD_CRITERIA]
    if unknown or not criteria:
        raise XcxrValueError(f"unknown criterion {unknown or '(none given)'}; allowed: {list(THRESHOLD_CRITERIA)}")
    if split not in _SPLITS:
        raise XcxrValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    # Before anything is written: `out` is absent, empty or a comparison report of ours (never a folder with other
    # files, never a symbolic link; lib.out_folders).
    check_out_folder(out, "compare")
    # Check every folder before the (slow) predictions, so a typo in the last one fails at once.
    checked = {}
    for name, folder in runs.items():
        args, run_metrics = _check_run(Path(folder))
        checked[str(name)] = (Path(folder), args, run_metrics, _train_config(Path(folder), args, data, progress))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # comparison.json first, without models (the marker of a report of ours): a comparison that stops half-way (a
    # run without a test split…) leaves a folder the next attempt recognises and may write again
    (out / "comparison.json").write_text(json.dumps({"split": split, "threshold_split": "val",
                                                     "criteria": list(criteria), "models": {}}, indent=1))

    fig_roc, ax_roc = _new_axes((6.5, 6.5))
    cm_fig, cm_axes = _confusion_grid(len(checked), len(criteria))
    splits_cache: dict[tuple[str, int], tuple[ImageSet, ImageSet | None]] = {}
    slugs: set[str] = set()
    models: dict[str, Any] = {}
    for row, (name, (folder, args, run_metrics, cfg)) in enumerate(checked.items()):
        model = load_model(folder)
        mcfg = get_config(model)
        img_size = int(mcfg["img_size"])
        # Runs of one sweep share data, seed and cap: decode their splits once.
        key = (json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_SPLIT_FIELDS},
                          sort_keys=True, default=str), img_size)
        if key not in splits_cache:
            _, val_ds, test_ds = load_splits(cfg, img_size)
            splits_cache[key] = (val_ds, test_ds)
        val_ds, test_ds = splits_cache[key]
        eval_ds = test_ds if split == "test" else val_ds
        if eval_ds is None:
            raise XcxrValueError(f"{folder}: the data {cfg.data!r} has no test split; use split='val' (--split val)")
        level = "patient" if run_metrics.get("level") == "patient" else "image"
        # float64, so that a threshold returned by optimal_thresholds compares exactly when applied again
        y_val, p_val = _level(val_ds, predict_proba(model, val_ds.images, batch_size).double().numpy(), level)
        y_ev, p_ev = _level(eval_ds, predict_proba(model, eval_ds.images, batch_size).double().numpy(), level)
        for s, y in (("val", y_val), (split, y_ev)):
            if y.min() == y.max():
                raise XcxrValueError(f"{folder}: the {s} split has one class only at {level} level; no ROC/thresholds")
        chosen = optimal_thresholds(y_val, p_val)  # honest: chosen on validation, never on the split reported
        thresholds = {c: chosen[c] for c in criteria}
        per_crit = {c: binary_metrics(y_ev, p_ev, t) for c, t in thresholds.items()}
        auc = next(iter(per_crit.values()))["auc"]
        classes = list(mcfg.get("labels") or eval_ds.classes)

        plot_roc(y_ev, p_ev, ax=ax_roc, label=name, thresholds={f"{c} (val)": t for c, t in thresholds.items()})
        for col, (c, m) in enumerate(per_crit.items()):
            _draw_cm(cm_axes[row][col], m["confusion_matrix"], classes,
                     f"{name} · {_CRITERION_NAMES.get(c, c)} (val) t={m['threshold']:.3g}")
        filters_file = f"filters_{_slug(name, slugs)}.png"
        save_figure(filter_grid(model, as_figure=True), out / filters_file)
        models[name] = {
            "run": os.fspath(folder), "architecture": mcfg.get("architecture", args.get("model")), "level": level,
            "data": cfg.data, "classes": classes, "n_val": int(len(y_val)), f"n_{split}": int(len(y_ev)),
            "val_auc": binary_metrics(y_val, p_val)["auc"], "auc": auc, "thresholds": thresholds,
            "criteria": per_crit, "files": {"filters": filters_file},
        }
        log.info("%s (%s, %s level): %s AUC %.4f, thresholds %s", name, folder, level, split, auc, thresholds)

    ax_roc.set_title(f"ROC on the {split} split; markers: thresholds chosen on validation")
    save_figure(fig_roc, out / "roc.png")
    save_figure(cm_fig, out / "confusion_matrices.png")
    result: dict[str, Any] = {"split": split, "threshold_split": "val", "criteria": list(criteria),
                              "models": models}
    result["table"] = thresholds_table(result)
    (out / "thresholds.md").write_text(
        f"Thresholds chosen on the validation split, metrics on the {split} split.\n\n{result['table']}\n")
    (out / "comparison.json").write_text(json.dumps(result, indent=1))
    return result


def _level(ds: ImageSet, prob: np.ndarray, level: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities per image, or per patient (mean probability) for ``level == "patient"``."""
    y = ds.labels.numpy().astype(np.int64)
    if level == "patient":
        y, prob, _ = patient_means(y, prob, ds.patient_ids)
    return y, prob


def _confusion_grid(rows: int, cols: int) -> tuple[Any, list[list[Any]]]:
    """A constrained-layout Agg figure with a rows × cols grid of axes (no pyplot: safe headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.2 * cols, 3.9 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [list(r) for r in axes]


def _draw_cm(ax: Any, cm: list[list[int]], classes: Sequence[str], title: str) -> None:
    from .metrics.plots import plot_confusion_matrix
    plot_confusion_matrix(cm, class_names=tuple(classes), title=title, ax=ax)
    ax.title.set_fontsize(9)  # model · criterion · threshold must fit above a 4-inch panel
