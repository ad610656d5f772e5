"""Outcomes tab: TP / TN / FP / FN galleries of a model on a data split at a decision threshold.

UI glue only: the split, its cached predictions and the threshold presets come from :mod:`space.evaluation` (shared
with the Model report tab), the four lists from :func:`lib.explain.outcomes` and the heatmaps from
:func:`lib.explain.gradcam` + :func:`lib.explain.overlay`.

API: ``/outcomes`` (model, split, threshold → counts, TP, TN, FP, FN galleries, note), ``/outcome_presets``
(model, split, preset → threshold, note), ``/outcome_heatmaps`` (model, split, threshold, outcome, rank →
heatmaps). Deep links: ``?tab=outcomes&model=…&split=test&outcome=FP&index=3[&threshold=0.5]`` — read by this
tab's ``on_link`` handler, and by :func:`open_outcome` for code.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn
from PIL import Image

from lib.explain import gradcam, outcomes, overlay, prepare
from lib.explain.outcomes import OUTCOMES
from lib.models import get_config

from ..context import AppContext, TabSpec, model_choice
from ..errors import ui_errors
from ..evaluation import data_choices, initial_threshold, load_data, predict, preset_choice, preset_threshold

__all__ = ["build", "open_outcome", "compute_outcomes", "GALLERY_SIZE", "OUTCOME_NAMES"]

#: Examples shown per outcome gallery (the most confident first); the counts are always complete.
GALLERY_SIZE = 24
THUMB = 160
OUTCOME_NAMES = {"TP": "true positives", "TN": "true negatives", "FP": "false positives", "FN": "false negatives"}

_THUMBS: dict[tuple[str, int], str] = {}
_THUMB_DIR = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "xcxr_outcome_thumbs"


def _thumb(ds: Any, index: int) -> str:
    """A small PNG of image ``index`` (rendered once per image, kept on disk)."""
    key = (ds.paths[index], int(ds.images.shape[-1]))
    path = _THUMBS.get(key)
    if path is None or not os.path.exists(path):
        _THUMB_DIR.mkdir(parents=True, exist_ok=True)
        digest = hashlib.blake2b(f"{key}".encode(), digest_size=10).hexdigest()
        path = str(_THUMB_DIR / f"{digest}.png")
        if not os.path.exists(path):
            img = Image.fromarray(ds.images[index, 0].numpy()).resize((THUMB, THUMB), Image.BILINEAR)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # written whole, then renamed: no torn reads
            img.save(tmp, format="PNG")
            os.replace(tmp, path)
        _THUMBS[key] = path
    return path


def compute_outcomes(model: nn.Module, split: str, threshold: float) -> tuple[Any, Any, Any]:
    """``(dataset, predictions, outcomes)`` — the one cached pass, then the threshold."""
    ds = load_data(split, int(get_config(model)["img_size"]))
    pred = predict(model, ds)
    return ds, pred, outcomes(pred, float(threshold))


def _default_threshold(pred: Any) -> float:
    return float(pred.model_threshold) if pred.model_threshold is not None else 0.5


def _gallery(ds: Any, pred: Any, res: Any, name: str) -> list[tuple[str, str]]:
    pos = pred.classes[1] if len(pred.classes) > 1 else "positive"
    return [(_thumb(ds, i), f"#{r + 1} · P({pos.lower()}) = {pred.probability[i]:.3f}")
            for r, i in enumerate(res[name][:GALLERY_SIZE])]


def _heatmaps(model: nn.Module, ds: Any, pred: Any, res: Any, outcome: str, rank: int) -> tuple[Any, Any, str]:
    """Grad-CAM of both classes for the ``rank``-th (1-based) example of ``outcome``, on one shared colour scale."""
    outcome = str(outcome).upper()
    if outcome not in OUTCOMES:
        raise gr.Error(f"outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
    items = res[outcome]
    if not items:
        raise gr.Error(f"there are no {OUTCOME_NAMES[outcome]} at threshold {res.threshold:.3f}")
    if not 1 <= int(rank) <= len(items):
        raise gr.Error(f"index must be between 1 and {len(items)} for {outcome} at threshold {res.threshold:.3f}, "
                       f"got {rank}")
    i = items[int(rank) - 1]
    grey = ds.images[i:i + 1]
    maps = gradcam(model, prepare(model, grey))[0].cpu().numpy()  # (2, H, W): both classes, ReLU, bilinear
    vmax = float(maps.max()) if maps.max() > 0 else 1.0
    imgs = [overlay(grey[0, 0].numpy(), maps[c], vmin=0.0, vmax=vmax) for c in range(maps.shape[0])]
    caption = (f"**{outcome} #{rank}** of {len(items)} — `{Path(pred.path[i]).name}`, true label "
               f"**{pred.classes[int(pred.label[i])]}**, P({pred.classes[1].lower()}) = {pred.probability[i]:.3f} "
               f"at threshold {res.threshold:.3f}. Grad-CAM of each class's **logit** (ReLU, bilinear), both maps on "
               f"one colour scale (0 … {vmax:.3g}) so their strength can be compared. Red = the regions whose "
               "activation raised that class's score; it does not say *why*, nor that the model is right.")
    return imgs[0], imgs[1] if len(imgs) > 1 else None, caption


def open_outcome(model: nn.Module | str, split: str, outcome: str, index: int, threshold: float | None = None,
                 ctx: AppContext | None = None) -> tuple[Any, Any, str]:
    """The heatmaps (both classes) and a caption of example ``index`` (1-based rank) of ``outcome``.

    ``model`` is a loaded model, or a model name when ``ctx`` is given. ``threshold=None``: the model's own
    threshold (from its config) or 0.5. For deep links: ``?tab=outcomes&model=…&split=test&outcome=FP&index=3``.
    """
    if isinstance(model, str):
        if ctx is None:
            raise gr.Error("pass ctx to open a model by name")
        model = ctx.model(model)
    ds = load_data(split, int(get_config(model)["img_size"]))
    pred = predict(model, ds)
    t = _default_threshold(pred) if threshold is None else float(threshold)
    return _heatmaps(model, ds, pred, outcomes(pred, t), outcome, int(index))


def build(ctx: AppContext) -> TabSpec:
    """The Outcomes tab (call inside ``with gr.Tab("Outcomes"):``)."""
    splits = data_choices()
    labels = ctx.labels()
    gr.Markdown("Every image of a split, sorted into **true/false positives/negatives** at a decision threshold "
                f"(positive iff P({labels[1].lower()}) ≥ threshold). Each gallery starts with the case the model "
                "was surest about — for the errors, the most confident mistakes. "
                f"Up to {GALLERY_SIZE} shown per outcome. Click an image to see its Grad-CAM for both classes.")
    with gr.Row():
        model = model_choice(ctx)
        split = gr.Dropdown(choices=splits, value=splits[0][1], label="Data split")
    with gr.Row():
        threshold = gr.Slider(0.0, 1.0, value=initial_threshold(ctx), step=0.001, label="Threshold", scale=3)
        preset = preset_choice(scale=3)
        refresh = gr.Button("Show outcomes", variant="primary", scale=1)
    note = gr.Markdown()
    counts = gr.JSON(label="Counts", visible=False)  # the counts are in the note; the JSON is for the API
    galleries = {}
    for pair in (("TP", "FP"), ("TN", "FN")):
        with gr.Row():
            for name in pair:
                galleries[name] = gr.Gallery(label=f"{name} — {OUTCOME_NAMES[name]}", columns=4, height=330,
                                             format="png", allow_preview=False, elem_id=f"outcomes-{name.lower()}")
    galleries = {n: galleries[n] for n in OUTCOMES}
    with gr.Row():
        sel_outcome = gr.Dropdown(choices=list(OUTCOMES), value="FP", label="Outcome", scale=1)
        sel_rank = gr.Number(value=1, precision=0, minimum=1, label="Rank (1 = most confident)", scale=1)
        show = gr.Button("Show heatmaps", scale=1)
    caption = gr.Markdown()
    with gr.Row():
        heat0 = gr.Image(label=f"Grad-CAM: {labels[0]}", format="png", interactive=False, elem_id="outcomes-heat-0")
        heat1 = gr.Image(label=f"Grad-CAM: {labels[1]}", format="png", interactive=False, elem_id="outcomes-heat-1")

    @ui_errors
    def run(name: str, split_name: str, t: float, progress: gr.Progress = gr.Progress()) -> tuple:
        progress(0.05, desc="loading the model")
        m = ctx.model(name)
        progress(0.2, desc="loading the images")
        ds = load_data(split_name, int(get_config(m)["img_size"]))
        progress(0.4, desc="running the model on the split (once, cached)")
        pred = predict(m, ds)
        res = outcomes(pred, float(t))
        progress(0.8, desc="thumbnails")
        gals = [_gallery(ds, pred, res, n) for n in OUTCOMES]
        text = (f"**{name}** on **{split_name}** ({len(pred)} images) at threshold **{float(t):.3f}**: "
                + ", ".join(f"{k} {v}" for k, v in res.counts.items()) + ".")
        return (res.counts, *gals, text)

    outputs = [counts, *galleries.values(), note]
    evt = dict(fn=run, inputs=[model, split, threshold], outputs=outputs, concurrency_id="expensive",
               concurrency_limit=1)  # a whole split: its own lane (space/fair_queue.py)
    gr.on([threshold.release, model.change, split.change], **evt, api_visibility="private")
    refresh.click(**evt, api_name="outcomes")

    @ui_errors
    def heat_labels(name: str | None) -> tuple:
        names = ctx.labels(name)
        return gr.Image(label=f"Grad-CAM: {names[0]}"), gr.Image(label=f"Grad-CAM: {names[1]}")

    model.change(heat_labels, model, [heat0, heat1], api_visibility="private", queue=False)

    @ui_errors
    def apply_preset(name: str, split_name: str, key: str | None) -> tuple[float, str]:
        if not key:
            return gr.update(), gr.update()
        return preset_threshold(ctx.model(name), name, split_name, key)

    preset.input(apply_preset, [model, split, preset], [threshold, note], api_name="outcome_presets",
                 concurrency_id="expensive", concurrency_limit=1).then(
        **evt, api_visibility="private")

    @ui_errors
    def heat(name: str, split_name: str, t: float, outcome: str, rank: float) -> tuple:
        m = ctx.model(name)
        ds, pred, res = compute_outcomes(m, split_name, float(t))
        return _heatmaps(m, ds, pred, res, outcome, int(rank or 1))

    def picker(outcome: str):
        # one handler per gallery: the gallery a click came from is known when the handler is made
        @ui_errors
        def pick(name: str, split_name: str, t: float, evt: gr.SelectData) -> tuple:
            rank = int(evt.index) + 1
            return (outcome, rank, *heat(name, split_name, t, outcome, rank))
        return pick

    show.click(heat, [model, split, threshold, sel_outcome, sel_rank], [heat0, heat1, caption],
               api_name="outcome_heatmaps")
    for outcome_name, g in galleries.items():
        g.select(picker(outcome_name), [model, split, threshold], [sel_outcome, sel_rank, heat0, heat1, caption],
                 api_visibility="private")

    # deep link: ?tab=outcomes&model=…&split=…&outcome=FP&index=3[&threshold=…] (the app sets the tab and model)
    link_outputs = [split, threshold, sel_outcome, sel_rank, counts, *galleries.values(), heat0, heat1, caption]

    @ui_errors
    def from_link(q: dict) -> tuple:
        if "outcome" not in q and "index" not in q:
            return tuple(gr.update() for _ in link_outputs)
        name = q.get("model") or ctx.default_model
        split_name = q.get("split") or splits[0][1]
        m = ctx.model(name)
        ds = load_data(split_name, int(get_config(m)["img_size"]))
        pred = predict(m, ds)
        try:
            t = float(q["threshold"]) if q.get("threshold") else _default_threshold(pred)
            rank = int(q.get("index") or 1)
        except ValueError:
            raise gr.Error("deep link: threshold must be a number and index a whole number") from None
        outcome = (q.get("outcome") or "TP").upper()
        res = outcomes(pred, t)
        h0, h1, cap = _heatmaps(m, ds, pred, res, outcome, rank)
        gals = [_gallery(ds, pred, res, n) for n in OUTCOMES]
        return (split_name, t, outcome, rank, res.counts, *gals, h0, h1, cap)

    # the copy-link button writes these back: the query parameters from_link reads, with the components holding them
    extras = [("split", split), ("threshold", threshold), ("outcome", sel_outcome), ("index", sel_rank)]
    return TabSpec(model=model, on_link=(from_link, link_outputs), link_extras=extras)
