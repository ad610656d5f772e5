"""Figures for evaluation and training: ROC curves, confusion matrices, training curves.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show``. New figures
are built directly on the Agg canvas (no pyplot, so no global figure list: safe in a web app and
on a headless machine, and the caller's interactive backend is left alone). Pass ``ax`` to draw into
an existing figure, e.g. several models' ROC curves on one axis. Write a figure with
:func:`save_figure`.

Example::

    from lib.metrics import plot_roc, save_figure
    fig = plot_roc(y_val, p_cnn, label="CNN1")
    plot_roc(y_val, p_resnet, ax=fig.axes[0], label="ResNet18")
    save_figure(fig, "runs/roc.png")
"""
from __future__ import annotations

import math
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from .core import THRESHOLD_CRITERIA, _both_classes, _skm, _check_inputs, _check_threshold, _metrics, _optimal
from ..errors import XcxrValueError

__all__ = ["plot_roc", "plot_confusion_matrix", "plot_training_curves", "save_figure"]

_CRITERION_STYLE = {
    "f1": {"marker": "o", "name": "F1"},
    "gmean": {"marker": "s", "name": "G-mean"},
    "youden": {"marker": "^", "name": "Youden J"},
}


#: Characters per line of a title passed in (wrapped beyond): what fits the figures' default widths.
_TITLE_WIDTH = 38


def _wrap(text: str, width: int) -> str:
    """``text`` wrapped at ``width`` characters, its own line breaks kept."""
    return "\n".join(textwrap.fill(line, width=max(8, int(width))) or line for line in str(text).splitlines())


def _new_axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _root_figure(ax: Axes) -> Figure:
    fig = ax.get_figure(root=True)
    assert fig is not None  # an Axes always belongs to a figure
    return fig


def plot_roc(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    ax: Axes | None = None,
    label: str | None = None,
    mark: Sequence[str] = ("f1", "gmean"),
    thresholds: Mapping[str, float] | None = None,
    *,
    mark_label: str = "{name}-optimal",
    operating_points: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """ROC curve with its AUC and the optimal operating points marked.

    Each criterion in ``mark`` (any of ``"f1"``, ``"gmean"``, ``"youden"``) adds a marker at the
    (FPR, TPR) reached with its optimal threshold (see :func:`lib.metrics.optimal_thresholds`),
    annotated with that threshold. The chance diagonal is drawn once per axis.

    With ``thresholds``, the given thresholds are marked instead (and ``mark`` is ignored): the
    marker sits at the (FPR, TPR) that *these data* reach at that threshold, which is how a
    threshold chosen on the validation split is shown on the test ROC curve. A key that is a
    criterion name, optionally followed by a note (``"f1"``, ``"gmean (val)"``), gets that
    criterion's marker and name (``"G-mean (val)"``); any other key is shown as it is.

    Args:
        y_true: labels 0/1, 1 = positive class; both classes must be present.
        y_prob: positive-class probabilities in ``[0, 1]``.
        ax: draw into this axis (to compare several models); a new figure otherwise.
        label: model name for the legend, shown as ``"label (AUC = 0.912)"``.
        mark: criteria whose optimal points are marked; ``()`` for none.
        thresholds: ``{name: threshold}`` to mark instead of the optima of ``y_prob``; each legend
            entry reads ``"F1 (val) t=0.62 (label)"``.
        mark_label: the legend text of the ``mark`` points, ``{name}`` being the criterion's name
            (``"F1"``); e.g. ``"{name} best on this split (optimistic)"`` to tell them apart from a
            threshold chosen on the validation split.
        operating_points: ``{text: threshold}`` marked **in addition** to ``mark`` as filled
            diamonds (e.g. the threshold in use, chosen on the validation split); legend
            ``"text t=0.624"``.
        title: the axis title (default ``"ROC curve"``, unless the axis has one); wrapped to fit.

    Returns:
        The figure holding ``ax``.

    Raises:
        ValueError: invalid inputs, one class only, an unknown criterion in ``mark``, or a
            threshold outside ``[0, 1]``.

    Example:
        >>> fig = plot_roc([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8], label="demo")
        >>> fig.axes[0].get_legend_handles_labels()[1][0]
        'demo (AUC = 0.750)'
        >>> fig = plot_roc([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8], thresholds={"f1 (val)": 0.5})
        >>> fig.axes[0].get_legend_handles_labels()[1][1]
        'F1 (val) t=0.5'
    """
    if isinstance(mark, str):
        mark = (mark,)
    unknown = [m for m in mark if m not in THRESHOLD_CRITERIA]
    if unknown:
        raise XcxrValueError(f"mark: unknown criterion {unknown}; allowed: {list(THRESHOLD_CRITERIA)}")
    given = {str(k): _check_threshold(v) for k, v in thresholds.items()} if thresholds is not None else None
    extra = {str(k): _check_threshold(v) for k, v in (operating_points or {}).items()}
    if "{name}" not in mark_label:
        raise XcxrValueError(f"mark_label must contain '{{name}}' (the criterion's name), got {mark_label!r}")
    yt, yp = _check_inputs(y_true, y_prob)
    if not _both_classes(yt):
        raise XcxrValueError("plot_roc needs both classes in y_true: the ROC curve is undefined with one class")
    if ax is None:
        fig, ax = _new_axes((5.0, 5.0))
    else:
        fig = _root_figure(ax)

    fpr, tpr, _ = _skm.roc_curve(yt, yp)
    auc = _metrics(yt, yp, 0.5)["auc"]
    text = f"AUC = {auc:.3f}"
    (line,) = ax.plot(fpr, tpr, lw=2, label=f"{label} ({text})" if label else text)
    color = line.get_color()

    if given is not None:
        _mark_given(ax, yt, yp, given, label, color)
    elif mark:
        thresholds = _optimal(yt, yp)
        notes: dict[float, list[str]] = {}  # one annotation per distinct threshold
        for name in mark:
            t = thresholds[name]
            m = _metrics(yt, yp, t)
            x, y = 1.0 - m["specificity"], m["recall"]
            style = _CRITERION_STYLE[name]
            ax.plot(x, y, linestyle="none", marker=style["marker"], ms=8, mfc="white", mec=color, mew=2,
                    label=mark_label.format(name=style["name"]) + (f" ({label})" if label else ""), zorder=3)
            notes.setdefault(t, []).append(style["name"])
        for t, names in notes.items():
            m = _metrics(yt, yp, t)
            x, y = 1.0 - m["specificity"], m["recall"]
            right = x < 0.6  # keep the text inside the axes
            ax.annotate(f"{', '.join(names)} t={t:.3g}", (x, y), xytext=(8 if right else -8, -12 if y > 0.5 else 8),
                        textcoords="offset points", ha="left" if right else "right", fontsize=8, color=color)

    for text, t in extra.items():
        m = _metrics(yt, yp, t)
        ax.plot(1.0 - m["specificity"], m["recall"], linestyle="none", marker="D", ms=7, color=color, mfc=color,
                mec="black", mew=1, zorder=4, label=f"{text} t={t:.3g}")

    if not any(ln.get_gid() == "chance" for ln in ax.lines):
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", gid="chance", label="_chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    if title is not None:
        ax.set_title(_wrap(title, _TITLE_WIDTH))
    elif not ax.get_title():
        ax.set_title("ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _marker_style(key: str) -> tuple[str, str]:
    """``(marker, display name)`` for a ``thresholds`` key: criterion style for ``"gmean"`` / ``"gmean (val)"``."""
    head, _, rest = key.partition(" ")
    style = _CRITERION_STYLE.get(head.lower())
    if style is None:
        return "", key
    return style["marker"], style["name"] + (f" {rest}" if rest else "")


def _mark_given(ax: Axes, yt: np.ndarray, yp: np.ndarray, given: Mapping[str, float], label: str | None,
                color: str) -> None:
    """Markers at the (FPR, TPR) these data reach at the given thresholds (e.g. chosen on another split)."""
    spare = iter(["D", "v", "P", "X", "<", ">", "*", "h"])  # for keys that are not a criterion
    for key, t in given.items():
        marker, name = _marker_style(key)
        m = _metrics(yt, yp, t)
        ax.plot(1.0 - m["specificity"], m["recall"], linestyle="none", marker=marker or next(spare, "o"), ms=8,
                color=color, mfc="white", mec=color, mew=2, zorder=3,  # color=: do not advance the colour cycle
                label=f"{name} t={t:.3g}" + (f" ({label})" if label else ""))


def plot_confusion_matrix(
    cm: ArrayLike,
    class_names: Sequence[str] = ("NORMAL", "PNEUMONIA"),
    title: str | None = None,
    ax: Axes | None = None,
    *,
    show_row_percent: bool = True,
    title_width: int = _TITLE_WIDTH,
) -> Figure:
    """Confusion matrix as a heat map with the counts written in each cell.

    Rows are the true classes and columns the predicted classes, as returned in
    ``binary_metrics(...)["confusion_matrix"]`` (``[[TN, FP], [FN, TP]]``).

    Args:
        cm: square matrix of counts (nested list or array).
        class_names: one name per row/column, negative class first.
        title: axis title; ``None`` for "Confusion matrix". A long title is wrapped onto several
            lines (at ``title_width`` characters), so it never runs past the figure.
        ax: draw into this axis; a new figure otherwise.
        show_row_percent: also write each count as a percentage of its true class (the row),
            so the diagonal shows specificity and sensitivity.

    Returns:
        The figure holding ``ax``.

    Raises:
        ValueError: ``cm`` not square, negative, or not matching ``class_names``.

    Example:
        >>> fig = plot_confusion_matrix([[50, 10], [5, 35]], title="test set")
        >>> [t.get_text() for t in fig.axes[0].texts][:2]
        ['50\\n(83.3%)', '10\\n(16.7%)']
    """
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise XcxrValueError(f"cm must be a square matrix of counts; got shape {m.shape}")
    if m.dtype.kind not in "biuf" or (m < 0).any():
        raise XcxrValueError("cm must contain non-negative counts")
    if len(class_names) != m.shape[0]:
        raise XcxrValueError(f"class_names has {len(class_names)} names for a {m.shape[0]}x{m.shape[1]} matrix")
    if ax is None:
        fig, ax = _new_axes((4.2, 3.8))
    else:
        fig = _root_figure(ax)

    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(float(m.max()), 1.0))
    row_sums = m.sum(axis=1)
    threshold = im.norm.vmax / 2.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            count = m[i, j]
            text = f"{int(count)}" if float(count).is_integer() else f"{count:.3g}"
            if show_row_percent:
                pct = 100.0 * count / row_sums[i] if row_sums[i] > 0 else 0.0
                text += f"\n({pct:.1f}%)"
            ax.text(j, i, text, ha="center", va="center", fontsize=11,
                    color="white" if count > threshold else "black")
    ticks = np.arange(m.shape[0])
    ax.set_xticks(ticks, labels=list(class_names))
    ax.set_yticks(ticks, labels=list(class_names), rotation=90, va="center")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title("Confusion matrix" if title is None else _wrap(title, title_width))
    return fig


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """Values of ``key`` as floats, NaN where missing/None (matplotlib leaves a gap)."""
    out = []
    for h in history:
        v = h.get(key)
        out.append(math.nan if v is None else float(v))
    return np.asarray(out, dtype=np.float64)


def plot_training_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Loss, validation AUC and learning rate per epoch, in three panels.

    The best epoch (highest ``val_auc``; the first one on a tie) is marked with a dashed line on the
    loss and AUC panels and a star on the AUC curve. Missing or ``None`` values leave gaps.

    Args:
        history: one dict per epoch with keys ``epoch``, ``train_loss``, ``val_loss``,
            ``val_auc`` and ``lr`` (``val_*`` may be ``None``).

    Returns:
        A new figure with three axes (loss, validation AUC, learning rate).

    Raises:
        ValueError: empty history or an entry without ``epoch``.

    Example:
        >>> h = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_auc": 0.8, "lr": 1e-3},
        ...      {"epoch": 2, "train_loss": 0.5, "val_loss": 0.55, "val_auc": 0.85, "lr": 5e-4}]
        >>> len(plot_training_curves(h).axes)
        3
    """
    if not history:
        raise XcxrValueError("history is empty: nothing to plot")
    for i, h in enumerate(history):
        if not isinstance(h, Mapping) or h.get("epoch") is None:
            raise XcxrValueError(f"history[{i}] must be a dict with an 'epoch' key; got {h!r}")
    epochs = _series(history, "epoch")
    train_loss = _series(history, "train_loss")
    val_loss = _series(history, "val_loss")
    val_auc = _series(history, "val_auc")
    lr = _series(history, "lr")

    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_auc, ax_lr = fig.subplots(1, 3)

    ax_loss.plot(epochs, train_loss, marker="o", ms=3, label="train loss")
    if not np.isnan(val_loss).all():
        ax_loss.plot(epochs, val_loss, marker="o", ms=3, label="validation loss")
    ax_loss.set_title("Loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")

    ax_auc.set_title("Validation AUC")
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("AUC")
    if np.isnan(val_auc).all():
        ax_auc.text(0.5, 0.5, "no validation AUC", ha="center", va="center", transform=ax_auc.transAxes,
                    color="grey")
    else:
        ax_auc.plot(epochs, val_auc, marker="o", ms=3, color="C2", label="validation AUC")
        best = int(np.nanargmax(val_auc))
        ax_auc.plot(epochs[best], val_auc[best], marker="*", ms=14, color="C3", linestyle="none",
                    label=f"best: epoch {epochs[best]:g}, AUC {val_auc[best]:.3f}")
        for a in (ax_loss, ax_auc):
            a.axvline(epochs[best], ls="--", lw=1, color="C3", gid="best_epoch")
        ax_auc.legend(fontsize=8, loc="lower right")
    ax_loss.legend(fontsize=8)

    for a in (ax_loss, ax_auc, ax_lr):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_lr.set_title("Learning rate")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("lr")
    if np.isnan(lr).all():
        ax_lr.text(0.5, 0.5, "no learning rate logged", ha="center", va="center", transform=ax_lr.transAxes,
                   color="grey")
    else:
        ax_lr.plot(epochs, lr, marker="o", ms=3, color="C4")
        finite = lr[np.isfinite(lr)]
        if (finite > 0).all() and finite.max() > finite.min():  # ExponentialLR decays geometrically
            ax_lr.set_yscale("log")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG (creating parent folders) and close it.

    Args:
        fig: the figure to save.
        path: output file; written as PNG whatever its suffix.
        dpi: resolution.

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> p = save_figure(plot_confusion_matrix([[3, 1], [0, 4]]), os.path.join(tempfile.mkdtemp(), "cm.png"))
        >>> p.stat().st_size > 0
        True
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    # Release it: pyplot keeps a reference to figures it created until they are closed.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)
    return out
