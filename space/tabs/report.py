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

Thresholds are named as everywhere in the app (:mod:`space.evaluation`): a preset is "chosen on validation"; the
F1 / G-mean points marked on the ROC and listed in the note are "best on this split (optimistic)"; the threshold in
use is a filled diamond on the ROC.

The report runs when the tab is opened and when a link opens it: ``?tab=report&model=…&split=test&threshold=gmean``
(``threshold`` — or its alias ``preset`` — is a preset name or a number, :func:`space.evaluation.parse_threshold`;
the copy-link button writes the preset's name when the threshold came from a preset, so the link survives
retraining). Changing the model, split or threshold clears the figures at once, then recomputes them.
"""
from __future__ import annotations

import io
import json
import textwrap
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import torch.nn as nn
from PIL import Image

from lib.explain import to_png_bytes
from lib import metrics as lib_metrics  # its plot_* functions import matplotlib on first use
from lib.metrics import evaluate_predictions
from lib.models import ModelLoadError, folder_file, get_config, model_file

from ..context import AppContext, TabSpec, model_choice
from ..errors import ui_errors
from ..evaluation import (spec_for, BEST_ON_SPLIT, PRESET_LABELS, ThresholdError, data_choices, describe_threshold,
                          evaluation_from_link, initial_threshold, initial_threshold_spec, load_data,
                          load_split_call, parse_threshold, predict, predict_call, prediction_lines, preset_choice,
                          preset_threshold, resolve_threshold, setting_key, threshold_lines, threshold_text)
from ..links import LinkParams
from ..snippets import code_box, header, model_lines

if TYPE_CHECKING:  # matplotlib is imported on first use (0.3 s of the app's start otherwise)
    from matplotlib.figure import Figure

__all__ = ["build", "compute_report", "snippet", "METRIC_ROWS", "TABLE_HEADERS", "model_card"]

#: Metrics shown in the table, in order (key in evaluate_predictions → label). Short labels: the table's three
#: columns fit a 1366×768 screen without scrolling.
METRIC_ROWS = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."), ("precision", "precision"),
               ("recall", "sensitivity"), ("specificity", "specificity"), ("f1", "F1"),
               ("gmean", "G-mean"), ("youden", "Youden J"), ("auc", "ROC AUC"), ("n", "count"),
               ("tp", "TP"), ("tn", "TN"), ("fp", "FP"), ("fn", "FN")]
TABLE_HEADERS = ["metric", "per image", "per patient"]

_FIGS: "OrderedDict[tuple, Image.Image]" = OrderedDict()
_FIGS_LOCK = threading.Lock()


#: White rows added above a figure: Gradio draws the image's label over its top-left corner, where the title is.
LABEL_ROOM = 30


def _png(fig: Figure, pad_top: int = 0) -> Image.Image:
    """A matplotlib figure as a PIL image (``pad_top`` white rows above it). lib's figures are plain ``Figure``
    objects (no pyplot figure list), so nothing needs closing: the figure is garbage once this returns."""
    img = Image.open(io.BytesIO(to_png_bytes(fig))).convert("RGB")
    if pad_top <= 0:
        return img
    out = Image.new("RGB", (img.width, img.height + pad_top), "white")
    out.paste(img, (0, pad_top))
    return out


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
            return _cached(key, lambda: _png(lib_metrics.plot_training_curves(history)))
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


def compute_report(ctx: AppContext, name: str, split: str, threshold: float, progress: Any = None,
                   spec: str | None = None) -> tuple:
    """Everything the tab shows: ``(metrics dict, table rows, note, ROC, confusion matrix, curves, card)``.

    ``spec``: the threshold as the visitor chose it (``"gmean"``…), named first in the description."""
    step = progress or (lambda *a, **k: None)
    step(0.05, desc="loading the model")
    m = ctx.model(name)
    name = name or ctx.default_model
    step(0.2, desc="loading the images")
    ds = load_data(split, int(get_config(m)["img_size"]))
    step(0.4, desc="running the model on the split (once, cached)")
    pred = predict(m, ds)
    t = float(threshold)
    desc = describe_threshold(m, name, split, t, spec)[0] if spec else None
    step(0.7, desc="metrics and figures")
    metrics = evaluate_predictions(pred.label, pred.probability, t, pred.patient_id)
    patient = metrics.get("per_patient") or {}  # lib.metrics.PER_PATIENT
    table = [[label, _fmt(metrics.get(key)), _fmt(patient.get("n_patients" if key == "n" else key))
              if patient else "—"] for key, label in METRIC_ROWS]
    both = len(set(pred.label.tolist())) == 2
    # the legend names where the threshold in use comes from; the note says which preset(s) it is
    in_use = f"in use ({desc.rsplit(', ', 1)[-1]})" if desc else "in use"
    roc = _cached(("roc", pred.key, name, split, t, in_use), lambda: _png(lib_metrics.plot_roc(
        pred.label, pred.probability, mark=("f1", "gmean"), mark_label="{name} " + BEST_ON_SPLIT,
        operating_points={in_use: t}, title=f"ROC: {name} on {split}"), LABEL_ROOM)) if both else None
    cm = _cached(("cm", pred.key, name, split, t), lambda: _png(lib_metrics.plot_confusion_matrix(
        metrics["confusion_matrix"], class_names=pred.classes, title=f"{name} on {split}, t={t:.3f}"), LABEL_ROOM))
    curves = _training_curves(m)  # the files that travel with the model: its folder, or its Hub repo
    thr = metrics.get("thresholds") or {}
    best = ", ".join(f"{PRESET_LABELS[k]} {thr[k]['threshold']:.3f}" for k in ("f1", "gmean", "youden")
                     if isinstance(thr.get(k), dict) and "threshold" in thr[k])
    note = (f"**{name}** on **{split}** ({len(pred)} images"
            + (f", {patient['n_patients']} patients" if patient else "") + f") at threshold **{t:.3f}** "
            + (f"({desc}; the filled diamond on the ROC). " if desc else "(the filled diamond on the ROC). ")
            + ("Per patient: mean probability of the patient's images. " if patient else
               "No patient has more than one image here, so there is no per-patient column. ")
            + (f"Thresholds *{BEST_ON_SPLIT}*: {best} (the ROC's open markers; tuned on the data they are "
               "scored on, so never a fair report of it)." if best else ""))
    step(1.0, desc="done")
    return metrics, table, note, roc, cm, curves, model_card(m)


_ROWS_CODE = textwrap.fill(", ".join(f"{k!r}: {v!r}" for k, v in METRIC_ROWS), width=100, initial_indent="rows = {",
                           subsequent_indent=" " * 8, break_long_words=False, break_on_hyphens=False) + "}"


def snippet(ctx: AppContext, model_name: str | None, split: str, threshold_text_: str | float) -> str:
    """"Reproduce in Python" for the report: leaves ``metrics`` (the :func:`lib.metrics.evaluate_predictions`
    dict) and ``table`` (the rows of the metrics table, as shown) for model ``model_name`` on ``split`` at the
    threshold ``threshold_text_`` (a preset name or a number: :func:`space.evaluation.parse_threshold`)."""
    m = ctx.model(model_name)
    name = model_name or ctx.default_model or ""
    lines = header(f"Model report: {name} on {split}")
    lines += model_lines(ctx, name, m)
    lines += ["",
              "from lib.data import load_split",
              "from lib.explain import predict_split, threshold_presets",
              "from lib.metrics import evaluate_predictions",
              "from lib.models import get_config",
              "",
              'size = get_config(model)["img_size"]',
              f"data = {load_split_call(split)}",
              *prediction_lines(m),
              f"pred = {predict_call(m)}  # P({ctx.labels(name)[1].lower()}) per image",
              *threshold_lines(m, split, threshold_text_),
              "metrics = evaluate_predictions(pred.label, pred.probability, t, pred.patient_id)",
              "",
              "# the table as shown: 4 decimals, per patient only when some patient has several images",
              'per_patient = metrics["per_patient"] or {}',
              'fmt = lambda v: round(v, 4) if isinstance(v, float) else ("—" if v is None else v)',
              _ROWS_CODE,
              'table = [[label, fmt(metrics.get(key)), fmt(per_patient.get("n_patients" if key == "n" else key))]',
              "         for key, label in rows.items()]"]
    return "\n".join(lines)


def build(ctx: AppContext) -> TabSpec:
    """The Model report tab (call inside ``with gr.Tab("Model report"):``)."""
    splits = data_choices()
    first_spec = initial_threshold_spec(ctx)
    with gr.Row():
        model = model_choice(ctx)
        split = gr.Dropdown(choices=splits, value=splits[0][1], label="Data split")
        threshold = gr.Slider(0.0, 1.0, value=initial_threshold(ctx), step=0.001,
                              label="Threshold (positive iff P ≥ threshold)", elem_classes=["xcxr-threshold"])
    with gr.Row():
        preset = preset_choice(scale=3, value=first_spec)
        go = gr.Button("Show report", variant="primary", scale=1)
    # the threshold as a link writes it: a preset's name ("gmean") or the slider's number ("0.5123")
    spec = gr.Textbox(value=first_spec, visible=False, label="threshold spec")
    shown = gr.State("")  # setting_key of the report shown ("" = none)
    token, latest = gr.Textbox(visible=False, label="report request"), gr.State("")  # the newest request wins
    preset_note = gr.Markdown()
    # the result a link scrolls to: the note naming the thresholds, the table and the two figures side by side
    with gr.Column(elem_id="report-result"):
        note = gr.Markdown()
        with gr.Row(equal_height=False):
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Metrics", interactive=False, wrap=True,
                                 column_widths=["44%", "28%", "28%"], max_height=640, elem_id="report-metrics",
                                 scale=1, min_width=280)
            roc = gr.Image(label="ROC (F1 and G-mean points marked)", format="png", interactive=False, scale=1,
                           min_width=280)
            cm = gr.Image(label="Confusion matrix at the threshold", format="png", interactive=False, scale=1,
                          min_width=280)
    metrics = gr.JSON(label="All numbers (evaluate_predictions)", visible=False)
    curves = gr.Image(label="Training curves", format="png", interactive=False)
    with gr.Accordion("Model card", open=False):
        card = gr.Markdown()
    code = code_box()

    outs = [metrics, table, note, roc, cm, curves, card]

    @ui_errors
    def run(name: str, split_name: str, t: float, progress: gr.Progress = gr.Progress()) -> tuple:
        return compute_report(ctx, name, split_name, t, progress)

    @ui_errors
    def apply_preset(name: str, split_name: str, key: str | None) -> tuple:
        if not key:
            return gr.update(), gr.update()
        return preset_threshold(ctx.model(name), name, split_name, key)

    def begin(name: str, split_name: str, t: float, shown_key: str) -> tuple:
        """A setting changed: clear the old numbers and figures at once (they belong to the previous setting; the
        training curves and card only when the model changed) and start a new request (an older one still queued
        then skips)."""
        if setting_key(name, split_name, t) == shown_key:
            return tuple(gr.skip() for _ in clear_outs)
        tok = uuid.uuid4().hex[:12]
        same_model = bool(shown_key) and shown_key.split("|", 1)[0] == (name or "")
        keep = gr.skip() if same_model else None
        note_text = f"Computing the report of **{name or ctx.default_model}** on **{split_name}**…"
        return (None, None, note_text, None, None, keep, gr.skip() if same_model else "", "", tok, tok, "")

    @ui_errors
    def update(name: str, split_name: str, t: float, spec_text: str, shown_key: str, tok: str, newest: str,
               progress: gr.Progress = gr.Progress()) -> tuple:
        """The report at the current setting; a preset keeps its name (a new model gets its own number)."""
        if (tok or "") != (newest or ""):  # a newer change is queued: it computes
            return tuple(gr.skip() for _ in update_out)
        m = ctx.model(name)
        label = name or ctx.default_model
        try:
            parsed = parse_threshold(spec_text)
            if isinstance(parsed, str):
                t = resolve_threshold(m, label, split_name, parsed)[0]
        except ThresholdError:
            pass
        if setting_key(name, split_name, t) == shown_key:  # shown already (begin skipped)
            return tuple(gr.skip() for _ in update_out)
        result = compute_report(ctx, name, split_name, t, progress, spec=spec_text)
        return (t, *result, setting_key(name, split_name, t),
                snippet(ctx, name, split_name, spec_for(m, label, split_name, t, spec_text)))

    @ui_errors
    def on_open(name: str, split_name: str, t: float, spec_text: str, shown_key: str,
                progress: gr.Progress = gr.Progress()) -> tuple:
        """Opening the tab (or a link to it): the report of the current setting, unless it is shown already."""
        if setting_key(name, split_name, t) == shown_key:
            return tuple(gr.skip() for _ in range(len(outs) + 2))
        m = ctx.model(name)
        result = compute_report(ctx, name, split_name, t, progress, spec=spec_text)
        return (*result, setting_key(name, split_name, t),
                snippet(ctx, name, split_name, spec_for(m, name or ctx.default_model, split_name, t, spec_text)))

    lane = dict(concurrency_id="expensive", concurrency_limit=1)  # a whole split: its own lane (fair_queue)
    clear_outs = [*outs, shown, token, latest, code]
    update_in = [model, split, threshold, spec, shown, token, latest]
    update_out = [threshold, *outs, shown, code]
    # the API endpoint /report (model, split, threshold → …); the visible button runs the same, naming the preset
    api_report = gr.Button("report (API)", visible=False)
    api_report.click(run, [model, split, threshold], outs, api_name="report", **lane)
    go.click(lambda name, split_name, t: begin(name, split_name, t, ""), [model, split, threshold], clear_outs,
             api_visibility="private", queue=False).then(update, update_in, update_out, api_visibility="private",
                                                         **lane)
    # the slider moved by hand: the link writes its number, and no preset is selected any more
    threshold.release(lambda t: (threshold_text(float(t)), None), threshold, [spec, preset],
                      api_visibility="private", queue=False).then(
        begin, [model, split, threshold, shown], clear_outs, api_visibility="private", queue=False).then(
        update, update_in, update_out, api_visibility="private", **lane)
    for trigger in (split.change, model.change):
        trigger(begin, [model, split, threshold, shown], clear_outs, api_visibility="private", queue=False).then(
            update, update_in, update_out, api_visibility="private", **lane)
    preset.input(apply_preset, [model, split, preset], [threshold, preset_note], api_visibility="private").success(
        lambda key: key, preset, spec, api_visibility="private", queue=False).success(
        begin, [model, split, threshold, shown], clear_outs, api_visibility="private", queue=False).success(
        update, update_in, update_out, api_visibility="private", **lane)

    # deep link: ?tab=report&model=…&split=…&threshold=gmean (or preset=gmean); the app then opens the tab, which
    # computes the report (on_open)
    link_outputs = [split, threshold, spec, preset, preset_note, token, latest]

    @ui_errors
    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "report")
        _, _, split_name, t, spec_text, desc = evaluation_from_link(ctx, p)
        p.warn()
        parsed = parse_threshold(spec_text)
        tok = uuid.uuid4().hex[:12]  # the link's report is the newest request: queued older ones skip
        return (split_name, t, spec_text, parsed if isinstance(parsed, str) else None,
                f"Threshold from the link: **{t:.3f}** ({desc}).", tok, tok)

    return TabSpec(model=model, on_open=(on_open, [model, split, threshold, spec, shown], [*outs, shown, code]),
                   on_link=(from_link, link_outputs), link_extras=[("split", split), ("threshold", spec)],
                   link_reads=["preset"], result_id="report-result")
