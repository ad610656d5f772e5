"""Model report tab: metrics (per image and per patient), ROC, confusion matrix, training curves, model card.

UI glue only: the numbers are :func:`lib.metrics.evaluate_predictions` on the probabilities of
:func:`lib.explain.predict_split` (one cached pass per model and split, through :mod:`space.evaluation`, shared with
the Outcomes tab); the figures are :func:`lib.metrics.plot_roc` (F1 and G-mean points marked),
:func:`lib.metrics.plot_confusion_matrix` and :func:`lib.metrics.plot_training_curves` (the model folder's
``history.json``; else its ``training_curves.png``), plain matplotlib ``Figure`` objects (no pyplot: its global
figure list is not thread-safe).

API: ``/report`` (model, split, threshold → metrics JSON, metrics table, ROC, confusion matrix, training curves,
model card). The preset radio (0.5 / F1 / G-mean / Youden / model's own, chosen on the validation split when there
is one) sets the threshold, as on the Outcomes tab.
"""
from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn
from matplotlib.figure import Figure
from PIL import Image

from lib.explain import to_png_bytes
from lib.metrics import evaluate_predictions, plot_confusion_matrix, plot_roc, plot_training_curves
from lib.models import ModelLoadError, folder_file, get_config, model_file

from ..context import AppContext, TabSpec, model_choice
from ..errors import ui_errors
from ..evaluation import data_choices, initial_threshold, load_data, predict, preset_choice, preset_threshold

__all__ = ["build", "compute_report", "METRIC_ROWS", "model_card"]

#: Metrics shown in the table, in order (key in evaluate_predictions → label).
METRIC_ROWS = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("precision", "precision"),
               ("recall", "recall = sensitivity"), ("specificity", "specificity"), ("f1", "F1"),
               ("gmean", "G-mean"), ("youden", "Youden J"), ("auc", "ROC AUC"), ("n", "images / patients"),
               ("tp", "TP"), ("tn", "TN"), ("fp", "FP"), ("fn", "FN")]

_FIGS: "OrderedDict[tuple, Image.Image]" = OrderedDict()
_FIGS_LOCK = threading.Lock()


def _png(fig: Figure) -> Image.Image:
    """A matplotlib figure as a PIL image. lib's figures are plain ``Figure`` objects (no pyplot figure list), so
    nothing needs closing: the figure is garbage once this returns."""
    return Image.open(io.BytesIO(to_png_bytes(fig))).convert("RGB")


def _cached(key: tuple, make: Any) -> Image.Image:
    with _FIGS_LOCK:
        if key in _FIGS:
            _FIGS.move_to_end(key)
            return _FIGS[key]
    img = make()
    with _FIGS_LOCK:
        _FIGS[key] = img
        while len(_FIGS) > 48:
            _FIGS.popitem(last=False)
    return img


#: What the report reads from a model folder, at most (a model folder is input: anything can be dropped in runs/).
MAX_CARD_BYTES = 512 * 2**10
MAX_HISTORY_BYTES = 2 * 2**20
MAX_FIGURE_BYTES = 8 * 2**20


def _file(source: nn.Module | Path | None, name: str, max_bytes: int) -> Path | None:
    """A file of a model (its folder or Hub repo: :func:`lib.models.model_file`) or of a folder
    (:func:`lib.models.folder_file`), within the size limit and never through a symlink out of a folder."""
    if source is None:
        return None
    try:
        if isinstance(source, nn.Module):
            return model_file(source, name, max_bytes)
        return folder_file(source, name, max_bytes)
    except ModelLoadError:
        return None


def model_card(source: nn.Module | Path | None) -> str:
    """The model's (or folder's) ``README.md`` without its YAML front matter (markdown), or a short note."""
    card = _file(source, "README.md", MAX_CARD_BYTES)
    if card is None:
        return "_No model card (README.md) for this model._"
    text = card.read_text(encoding="utf-8", errors="replace")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4:].lstrip("\n")
    return text


def _training_curves(folder: nn.Module | Path | None) -> Image.Image | None:
    if folder is None:
        return None
    hist = _file(folder, "history.json", MAX_HISTORY_BYTES)
    if hist is not None:
        key = ("curves", str(hist), hist.stat().st_mtime_ns)
        try:
            history = json.loads(hist.read_text())
            return _cached(key, lambda: _png(plot_training_curves(history)))
        except (ValueError, TypeError):  # an unreadable history: fall back to the saved picture
            pass
    png = _file(folder, "training_curves.png", MAX_FIGURE_BYTES)
    if png is None:
        return None
    try:
        with Image.open(png) as img:
            if img.width * img.height > 16_000_000:  # a picture, not a decompression bomb
                return None
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    return "—" if v is None else v


def compute_report(ctx: AppContext, name: str, split: str, threshold: float, progress: Any = None) -> tuple:
    """Everything the tab shows: ``(metrics dict, table rows, note, ROC, confusion matrix, curves, card)``."""
    step = progress or (lambda *a, **k: None)
    step(0.05, desc="loading the model")
    m = ctx.model(name)
    name = name or ctx.default_model
    step(0.2, desc="loading the images")
    ds = load_data(split, int(get_config(m)["img_size"]))
    step(0.4, desc="running the model on the split (once, cached)")
    pred = predict(m, ds)
    t = float(threshold)
    step(0.7, desc="metrics and figures")
    metrics = evaluate_predictions(pred.label, pred.probability, t, pred.patient_id)
    patient = metrics.get("per_patient") or {}  # lib.metrics.PER_PATIENT
    table = [[label, _fmt(metrics.get(key)), _fmt(patient.get("n_patients" if key == "n" else key))
              if patient else "—"] for key, label in METRIC_ROWS]
    both = len(set(pred.label.tolist())) == 2
    roc = _cached(("roc", pred.key), lambda: _png(plot_roc(pred.label, pred.probability, label=name,
                                                           mark=("f1", "gmean")))) if both else None
    cm = _cached(("cm", pred.key, t), lambda: _png(plot_confusion_matrix(
        metrics["confusion_matrix"], class_names=pred.classes,
        title=f"{name} on {split}, threshold {t:.3f}")))
    curves = _training_curves(m)  # the files that travel with the model: its folder, or its Hub repo
    thr = metrics.get("thresholds") or {}
    best = ", ".join(f"{k} {v['threshold']:.3f}" for k, v in thr.items() if isinstance(v, dict) and "threshold" in v)
    note = (f"**{name}** on **{split}** ({len(pred)} images"
            + (f", {patient['n_patients']} patients" if patient else "") + f") at threshold **{t:.3f}**. "
            + ("Per patient: mean probability of the patient's images. " if patient else
               "No patient has more than one image here, so there is no per-patient column. ")
            + (f"Optimal thresholds on this split (shown on the ROC; optimistic if used to report it): {best}."
               if best else ""))
    step(1.0, desc="done")
    return metrics, table, note, roc, cm, curves, model_card(m)


def build(ctx: AppContext) -> TabSpec:
    """The Model report tab (call inside ``with gr.Tab("Model report"):``)."""
    splits = data_choices()
    with gr.Row():
        model = model_choice(ctx)
        split = gr.Dropdown(choices=splits, value=splits[0][1], label="Data split")
        threshold = gr.Slider(0.0, 1.0, value=initial_threshold(ctx), step=0.001,
                              label="Threshold (positive iff P ≥ threshold)")
    with gr.Row():
        preset = preset_choice(scale=3)
        go = gr.Button("Show report", variant="primary", scale=1)
    preset_note = gr.Markdown()
    note = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(headers=["metric", "per image", "per patient"], label="Metrics", interactive=False)
        metrics = gr.JSON(label="All numbers (evaluate_predictions)", visible=False)
    with gr.Row():
        roc = gr.Image(label="ROC (F1 and G-mean points marked)", format="png", interactive=False)
        cm = gr.Image(label="Confusion matrix at the threshold", format="png", interactive=False)
    curves = gr.Image(label="Training curves", format="png", interactive=False)
    with gr.Accordion("Model card", open=False):
        card = gr.Markdown()

    @ui_errors
    def run(name: str, split_name: str, t: float, progress: gr.Progress = gr.Progress()) -> tuple:
        return compute_report(ctx, name, split_name, t, progress)

    @ui_errors
    def apply_preset(name: str, split_name: str, key: str | None) -> tuple:
        if not key:
            return gr.update(), gr.update()
        return preset_threshold(ctx.model(name), name, split_name, key)

    outs = [metrics, table, note, roc, cm, curves, card]
    go.click(run, [model, split, threshold], outs, api_name="report", concurrency_id="expensive", concurrency_limit=1)
    gr.on([threshold.release, split.change, model.change], run, [model, split, threshold], outs,
          api_visibility="private", concurrency_id="expensive", concurrency_limit=1)
    preset.input(apply_preset, [model, split, preset], [threshold, preset_note], api_visibility="private").then(
        run, [model, split, threshold], outs, api_visibility="private")
    return TabSpec(model=model)
