"""Outcomes tab: TP / TN / FP / FN galleries of a model on a data split at a decision threshold.

UI glue only: the split, its cached predictions and the threshold presets come from :mod:`space.evaluation` (shared
with the Model report tab), the four lists from :func:`lib.explain.outcomes` and the heatmaps from
:func:`lib.explain.gradcam` + :func:`lib.explain.overlay` + :func:`lib.explain.with_colorbar`.

API: ``/outcomes`` (model, split, threshold → counts, TP, TN, FP, FN galleries, note), ``/outcome_presets``
(model, split, preset → threshold, note), ``/outcome_heatmaps`` (model, split, threshold, outcome, rank →
heatmaps).

Deep links (read by this tab's ``on_link`` handler; :func:`open_outcome` for code)::

    ?tab=outcomes&model=…&split=test&threshold=gmean&outcome=FP&index=3&image=NORMAL/IM-0001-0001.jpeg

``threshold`` (alias ``preset``) is a preset name — ``f1``, ``gmean``, ``youden``, ``model``, ``0.5`` — or a number
in [0, 1] (:func:`space.evaluation.parse_threshold`); ``image`` is the image's id (``CLASS/FILE``,
:func:`lib.explain.image_ids`). A link survives retraining: the preset name gives the new model's number, and the
image id opens that image wherever it now is — with a visible warning when it is no longer the link's
``outcome`` #``index``. The copy-link button writes the preset's name when the threshold came from a preset, the
number when the slider was moved, and the image shown. A link opens with its galleries and heatmaps computed, the
thumbnail highlighted and the heatmaps (``#outcomes-result``) scrolled into view.

Changing the model, split or threshold clears the heatmaps at once (they belong to the previous setting) and
recomputes the galleries; a newer change makes an older queued one skip.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch.nn as nn
from PIL import Image

from lib.explain import gradcam, image_ids, outcomes, overlay, prepare, with_colorbar
from lib.explain.outcomes import OUTCOMES
from lib.models import get_config

from ..context import AppContext, TabSpec, model_choice
from ..errors import ui_errors
from ..evaluation import (spec_for, ThresholdError, data_choices, describe_threshold, evaluation_from_link,
                          initial_threshold, initial_threshold_spec, load_data, load_split_call, parse_threshold,
                          predict, predict_call, prediction_lines, preset_choice, preset_threshold, resolve_threshold,
                          setting_key, threshold_lines, threshold_text)
from ..links import LinkParams
from ..snippets import code_box, header, model_lines

__all__ = ["build", "open_outcome", "compute_outcomes", "locate", "snippet", "heatmap_images", "GALLERY_SIZE",
           "OUTCOME_NAMES", "RESULT_ID", "CMAP", "COLORBAR_LABEL"]

#: Examples shown per outcome gallery (the most confident first); the counts are always complete.
GALLERY_SIZE = 24
THUMB = 160
OUTCOME_NAMES = {"TP": "true positives", "TN": "true negatives", "FP": "false positives", "FN": "false negatives"}
#: ``elem_id`` of the caption + heatmaps block (a deep link scrolls it into view).
RESULT_ID = "outcomes-result"
#: The heatmaps' colour map and the text along their colour bars.
CMAP = "jet"
COLORBAR_LABEL = "Grad-CAM, shared scale"

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
    """The thumbnails of one outcome with short captions, ``"#3 · 0.87"`` (rank · P(positive class))."""
    return [(_thumb(ds, i), f"#{r + 1} · {pred.probability[i]:.2f}") for r, i in enumerate(res[name][:GALLERY_SIZE])]


def _galleries(ds: Any, pred: Any, res: Any, selected: tuple[str, int] | None = None) -> list:
    """Updates of the four galleries; the thumbnail of ``selected`` = (outcome, 1-based rank) highlighted (none
    when it is beyond the gallery), every other highlight removed."""
    out = []
    for name in OUTCOMES:
        pick = selected[1] - 1 if selected and selected[0] == name and selected[1] <= GALLERY_SIZE else None
        out.append(gr.Gallery(value=_gallery(ds, pred, res, name), selected_index=pick))
    return out


def _highlight(selected: tuple[str, int] | None) -> list:
    """Gallery updates that only move the highlight to ``selected`` (see :func:`_galleries`)."""
    return [gr.Gallery(selected_index=selected[1] - 1 if selected and selected[0] == name
                       and selected[1] <= GALLERY_SIZE else None) for name in OUTCOMES]


def locate(res: Any, ids: list[str], image_id: str) -> tuple[str, int] | None:
    """``(outcome, 1-based rank)`` of the image ``image_id`` (``CLASS/FILE``) at ``res``'s threshold, or ``None``
    when the split has no such image."""
    try:
        i = ids.index(image_id)
    except ValueError:
        return None
    outcome = res.outcome[i]
    return outcome, res[outcome].index(i) + 1


def heatmap_images(model: nn.Module, grey: Any) -> tuple[list[np.ndarray], float]:
    """Grad-CAM of both classes of one image ``grey`` (``(1, 1, H, W)`` uint8), overlaid on one **shared** colour
    scale (0 … the larger map's maximum) with that scale's colour bar drawn into each image; ``(images, vmax)``."""
    maps = gradcam(model, prepare(model, grey))[0].cpu().numpy()  # (2, H, W): both classes, ReLU, bilinear
    vmax = float(maps.max()) if maps.max() > 0 else 1.0
    images = [with_colorbar(overlay(grey[0, 0].numpy(), maps[c], cmap=CMAP, vmin=0.0, vmax=vmax), 0.0, vmax, CMAP,
                            label=COLORBAR_LABEL) for c in range(maps.shape[0])]
    return images, vmax


class _Notice(LinkParams):
    """A link warning that is not a bad parameter (the link's image has moved): shown as it is, as a toast — or
    collected by the course link checker (``space.links.collecting``), like every link problem."""

    def message(self) -> str:
        return " ".join(self.problems)


def _check_pick(res: Any, outcome: str, rank: int) -> tuple[str, int]:
    outcome = str(outcome).upper()
    if outcome not in OUTCOMES:
        raise gr.Error(f"outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
    items = res[outcome]
    if not items:
        raise gr.Error(f"there are no {OUTCOME_NAMES[outcome]} at threshold {res.threshold:.3f}; pick another outcome "
                       "or threshold")
    if not 1 <= int(rank) <= len(items):
        raise gr.Error(f"index must be between 1 and {len(items)} for {outcome} at threshold {res.threshold:.3f}, "
                       f"got {rank}")
    return outcome, int(rank)


def _heatmaps(model: nn.Module, ds: Any, pred: Any, res: Any, outcome: str, rank: int) -> tuple[Any, Any, str]:
    """Grad-CAM of both classes for the ``rank``-th (1-based) example of ``outcome``, on one shared colour scale."""
    outcome, rank = _check_pick(res, outcome, rank)
    items = res[outcome]
    i = items[rank - 1]
    imgs, vmax = heatmap_images(model, ds.images[i:i + 1])
    image_id = image_ids(ds)[i]
    beyond = f" (beyond the {GALLERY_SIZE} in the gallery)" if rank > GALLERY_SIZE else ""
    caption = (f"**{outcome} #{rank}** of {len(items)}{beyond} — `{image_id}`, true label "
               f"**{pred.classes[int(pred.label[i])]}**, P({pred.classes[1].lower()}) = {pred.probability[i]:.3f} "
               f"at threshold {res.threshold:.3f}. Grad-CAM of each class's **logit** (ReLU, bilinear), both maps on "
               f"one **shared colour scale** (0 … {vmax:.3g}, the bar beside each map), so their strength can be "
               "compared. Red = the regions whose activation raised that class's score; it does not say *why*, nor "
               "that the model is right.")
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


def _note(name: str, split: str, pred: Any, res: Any, desc: str, presets_note: str) -> str:
    return (f"**{name}** on **{split}** ({len(pred)} images) at threshold **{res.threshold:.3f}** ({desc}): "
            + ", ".join(f"{k} {v}" for k, v in res.counts.items()) + "." + (f" {presets_note}" if presets_note else ""))


def snippet(ctx: AppContext, model_name: str | None, split: str, threshold_text_: str | float,
            outcome: str | None = None, index: int | None = None) -> str:
    """"Reproduce in Python" for the Outcomes tab: the split, the probabilities, the outcomes at the threshold
    ``threshold_text_`` (a preset name or a number: :func:`space.evaluation.parse_threshold`) and, when ``outcome``
    is given, image ``index`` (1-based rank) of it with its two heatmaps.

    Leaves ``counts`` (``{"TP": …}``) and, with an outcome, ``image`` (its id) and ``shown``: the two displayed
    heatmaps (``uint8`` RGB with their colour bars, Grad-CAM of class 0 then class 1), equal to what the tab shows.
    """
    m = ctx.model(model_name)
    name = model_name or ctx.default_model or ""
    lines = header(f"Outcomes: {name} on {split}") + model_lines(ctx, name, m)
    lines += ["",
              "from lib.data import load_split",
              "from lib.explain import (gradcam, image_ids, outcomes, overlay, predict_split, prepare,",
              "                         threshold_presets, with_colorbar)",
              "from lib.models import get_config",
              "",
              'size = get_config(model)["img_size"]',
              f"data = {load_split_call(split)}",
              *prediction_lines(m),
              f"pred = {predict_call(m)}  # P({ctx.labels(name)[1].lower()}) per image",
              *threshold_lines(m, split, threshold_text_),
              "res = outcomes(pred, t)  # positive iff probability >= t; each list most confident first",
              "counts = res.counts"]
    if outcome is not None:
        o, r = str(outcome).upper(), int(index or 1)
        lines += ["",
                  f"i = res[{o!r}][{r} - 1]  # {o} #{r}",
                  "image = image_ids(data)[i]",
                  "grey = data.images[i:i + 1]",
                  "maps = gradcam(model, prepare(model, grey))[0].numpy()  # both classes' Grad-CAM (ReLU, bilinear)",
                  "vmax = float(maps.max()) if maps.max() > 0 else 1.0  # one colour scale shared by both maps",
                  f"shown = [with_colorbar(overlay(grey[0, 0].numpy(), cam, cmap={CMAP!r}, vmin=0.0, vmax=vmax),",
                  f"                       0.0, vmax, {CMAP!r}, label={COLORBAR_LABEL!r}) for cam in maps]"]
    return "\n".join(lines)


def build(ctx: AppContext) -> TabSpec:
    """The Outcomes tab (call inside ``with gr.Tab("Outcomes"):``)."""
    splits = data_choices()
    labels = ctx.labels()
    first_spec = initial_threshold_spec(ctx)
    gr.Markdown("Every image of a split, sorted into **true/false positives/negatives** at a decision threshold "
                f"(positive iff P({labels[1].lower()}) ≥ threshold). Each gallery starts with the case the model "
                "was surest about — for the errors, the most confident mistakes; a caption is the rank and "
                f"P({labels[1].lower()}). Up to {GALLERY_SIZE} shown per outcome. Click an image to see its Grad-CAM "
                "for both classes.")
    with gr.Row():
        model = model_choice(ctx)
        split = gr.Dropdown(choices=splits, value=splits[0][1], label="Data split")
    with gr.Row():
        threshold = gr.Slider(0.0, 1.0, value=initial_threshold(ctx), step=0.001, label="Threshold", scale=3,
                              elem_classes=["xcxr-threshold"])
        preset = preset_choice(scale=3, value=first_spec)
        refresh = gr.Button("Show outcomes", variant="primary", scale=1)
    # the threshold as a link writes it: a preset's name ("gmean") or the slider's number ("0.5123")
    spec = gr.Textbox(value=first_spec, visible=False, label="threshold spec")
    shown = gr.State("")  # setting_key of the galleries shown ("" = none)
    token, latest = gr.Textbox(visible=False, label="outcomes request"), gr.State("")  # the newest request wins
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
    with gr.Column(elem_id=RESULT_ID):  # caption and maps together: what a deep link scrolls into view
        caption = gr.Markdown(elem_id="outcomes-caption")
        with gr.Row():
            heat0 = gr.Image(label=f"Grad-CAM: {labels[0]}", format="png", interactive=False,
                             elem_id="outcomes-heat-0")
            heat1 = gr.Image(label=f"Grad-CAM: {labels[1]}", format="png", interactive=False,
                             elem_id="outcomes-heat-1")
    image_id = gr.Textbox(visible=False, label="image id")  # the image shown, for copied links
    code = code_box()
    gallery_list = list(galleries.values())

    def label_of(name: str | None) -> str:
        return name or ctx.default_model or ""

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

    lane = dict(concurrency_id="expensive", concurrency_limit=1)  # a whole split: its own lane (fair_queue)
    api_outputs = [counts, *gallery_list, note]

    @ui_errors
    def fill_code(name: str, split_name: str, t: float, spec_text: str, image: str, outcome: str,
                  rank: float) -> str:
        """The snippet of the view: with the heatmaps' image when some are shown."""
        m = ctx.model(name)
        text = spec_for(m, label_of(name), split_name, t, spec_text)
        if image:
            return snippet(ctx, name, split_name, text, outcome, int(rank or 1))
        return snippet(ctx, name, split_name, text)

    code_inputs = [model, split, threshold, spec, image_id, sel_outcome, sel_rank]

    # the API endpoint /outcomes (model, split, threshold → counts, galleries, note); the visible button runs the
    # same with the preset's name and clears the heatmaps of another setting (wired below)
    api_outcomes = gr.Button("outcomes (API)", visible=False)
    api_outcomes.click(run, [model, split, threshold], api_outputs, api_name="outcomes", **lane)

    @ui_errors
    def heat_labels(name: str | None) -> tuple:
        names = ctx.labels(name)
        return gr.Image(label=f"Grad-CAM: {names[0]}"), gr.Image(label=f"Grad-CAM: {names[1]}")

    model.change(heat_labels, model, [heat0, heat1], api_visibility="private", queue=False)

    clear_outs = [heat0, heat1, caption, image_id, code, token, latest, shown]

    def begin(name: str, split_name: str, t: float, shown_key: str) -> tuple:
        """A setting changed: clear the heatmaps at once (they belong to the previous setting) and start a new
        request (an older one still queued then skips). Nothing when the galleries shown are of this setting (a
        deep link has just set it)."""
        if setting_key(name, split_name, t) == shown_key:
            return tuple(gr.skip() for _ in clear_outs)
        tok = uuid.uuid4().hex[:12]
        return None, None, "", "", "", tok, tok, ""

    @ui_errors
    def update(name: str, split_name: str, t: float, spec_text: str, shown_key: str, tok: str, newest: str,
               progress: gr.Progress = gr.Progress()) -> tuple:
        """The galleries of the current setting; a preset keeps its name (a new model gets its own number)."""
        n_out = 5 + len(gallery_list)
        if (tok or "") != (newest or ""):  # a newer change is queued: it computes
            return tuple(gr.skip() for _ in range(n_out))
        progress(0.05, desc="loading the model")
        m = ctx.model(name)
        try:
            parsed = parse_threshold(spec_text)
            if isinstance(parsed, str):
                t = resolve_threshold(m, label_of(name), split_name, parsed)[0]
        except ThresholdError:
            pass
        if setting_key(name, split_name, t) == shown_key:
            return tuple(gr.skip() for _ in range(n_out))
        progress(0.3, desc="the model on the split (once, cached)")
        ds, pred, res = compute_outcomes(m, split_name, t)
        desc, presets_note = describe_threshold(m, label_of(name), split_name, t, spec_text)
        progress(0.8, desc="thumbnails")
        # the snippet too (no heatmaps now): one queued event per change, not two
        text = spec_for(m, label_of(name), split_name, t, spec_text)
        return (t, res.counts, *_galleries(ds, pred, res), _note(label_of(name), split_name, pred, res, desc,
                                                                 presets_note), setting_key(name, split_name, t),
                snippet(ctx, name, split_name, text))

    update_in = [model, split, threshold, spec, shown, token, latest]
    update_out = [threshold, counts, *gallery_list, note, shown, code]

    begin_args = dict(fn=begin, inputs=[model, split, threshold, shown], outputs=clear_outs,
                      api_visibility="private", queue=False)

    def recompute(started: Any) -> None:
        """After ``begin``: the galleries and the snippet."""
        started.then(update, update_in, update_out, api_visibility="private", **lane)

    for change in (model.change, split.change):
        recompute(change(**begin_args))
    # "Show outcomes": recompute even when the galleries are of this setting
    recompute(refresh.click(lambda name, split_name, t: begin(name, split_name, t, ""), [model, split, threshold],
                            clear_outs, api_visibility="private", queue=False))
    # the slider moved by hand: the link writes its number, and no preset is selected any more
    recompute(threshold.release(lambda t: (threshold_text(float(t)), None), threshold, [spec, preset],
                                api_visibility="private", queue=False).then(**begin_args))

    @ui_errors
    def apply_preset(name: str, split_name: str, key: str | None) -> tuple[float, str]:
        if not key:
            return gr.update(), gr.update()
        return preset_threshold(ctx.model(name), name, split_name, key)

    recompute(preset.input(apply_preset, [model, split, preset], [threshold, note], api_name="outcome_presets",
                           **lane).success(lambda key: key, preset, spec, api_visibility="private",
                                           queue=False).success(**begin_args))

    @ui_errors
    def heat(name: str, split_name: str, t: float, outcome: str, rank: float) -> tuple:
        m = ctx.model(name)
        ds, pred, res = compute_outcomes(m, split_name, float(t))
        return _heatmaps(m, ds, pred, res, outcome, int(rank or 1))

    @ui_errors
    def shown_image(name: str, split_name: str, t: float, outcome: str, rank: float) -> tuple:
        """After "Show heatmaps": the image's id (for copied links) and its thumbnail highlighted."""
        m = ctx.model(name)
        ds, pred, res = compute_outcomes(m, split_name, float(t))
        outcome, rank = _check_pick(res, outcome, int(rank or 1))
        return (image_ids(ds)[res[outcome][rank - 1]], *_highlight((outcome, rank)))

    def picker(outcome: str):
        # one handler per gallery: the gallery a click came from is known when the handler is made
        @ui_errors
        def pick(name: str, split_name: str, t: float, tok: str, newest: str, evt: gr.SelectData) -> tuple:
            if (tok or "") != (newest or ""):  # the setting changed since: this click's heatmaps would be stale
                return tuple(gr.skip() for _ in range(6))
            rank = int(evt.index) + 1
            m = ctx.model(name)
            ds, pred, res = compute_outcomes(m, split_name, float(t))
            h0, h1, cap = _heatmaps(m, ds, pred, res, outcome, rank)
            return outcome, rank, h0, h1, cap, image_ids(ds)[res[outcome][rank - 1]]
        return pick

    # a new outcome / rank typed in: the image shown is no longer the one they name (a copied link must not
    # carry both) until "Show heatmaps"
    gr.on([sel_outcome.input, sel_rank.input], lambda: "", None, image_id, api_visibility="private", queue=False)
    show.click(heat, [model, split, threshold, sel_outcome, sel_rank], [heat0, heat1, caption],
               api_name="outcome_heatmaps").success(
        shown_image, [model, split, threshold, sel_outcome, sel_rank], [image_id, *gallery_list],
        api_visibility="private").success(fill_code, code_inputs, code, api_visibility="private")
    for outcome_name, g in galleries.items():
        g.select(picker(outcome_name), [model, split, threshold, token, latest],
                 [sel_outcome, sel_rank, heat0, heat1, caption, image_id], api_visibility="private").success(
            fill_code, code_inputs, code, api_visibility="private")

    # deep link: ?tab=outcomes&model=…&split=…&threshold=gmean&outcome=FP&index=3&image=CLASS/FILE (the app sets the
    # tab and the model)
    link_outputs = [split, threshold, spec, preset, sel_outcome, sel_rank, counts, *gallery_list, note, heat0, heat1,
                    caption, image_id, shown, token, latest, code]

    @ui_errors
    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "outcomes")
        name, m, split_name, t, spec_text, _ = evaluation_from_link(ctx, p)
        outcome = p.choice("outcome", OUTCOMES, default=None, what="outcome")
        index = p.integer("index", 1, 10**7, default=None)
        image = p.raw("image")
        ds, pred, res = compute_outcomes(m, split_name, t)
        ids = image_ids(ds)
        target, moved = None, ""
        if image is not None:
            target = locate(res, ids, image)
            if target is None:
                instead = (f"opened {outcome or 'TP'} #{index or 1} instead" if outcome or index else
                           "no heatmaps shown")
                p.problem(f"image {image!r} is not in the {split_name} split (a link to another data set, or the "
                          f"image was removed); {instead}")
            elif (outcome or target[0]) != target[0] or (index or target[1]) != target[1]:
                moved = (f"This link named {outcome or target[0]} #{index or target[1]}; at this threshold "
                         f"({t:.3f}) the image is now {target[0]} #{target[1]} (the model or threshold changed).")
        if target is None and (outcome or index):
            o, r = outcome or "TP", index or 1
            n = res.counts[o]
            if n == 0:
                p.problem(f"there are no {OUTCOME_NAMES[o]} at threshold {t:.3f}, so no heatmaps are shown; pick "
                          "another outcome")
            elif r > n:
                p.problem(f"index {r} is beyond the {n} {o} at threshold {t:.3f}; #1 is shown")
                target = (o, 1)
            else:
                target = (o, r)
        p.warn()
        desc, presets_note = describe_threshold(m, name, split_name, t, spec_text)
        parsed = parse_threshold(spec_text)
        heat_out: tuple = (None, None, "", "")
        if target is not None:
            h0, h1, cap = _heatmaps(m, ds, pred, res, *target)
            if moved:
                notice = _Notice({}, "outcomes")
                notice.problem(moved)
                notice.warn()
                cap = f"⚠️ **{moved}**\n\n{cap}"
            heat_out = (h0, h1, cap, ids[res[target[0]][target[1] - 1]])
        tok = uuid.uuid4().hex[:12]  # the link's view is the newest request: queued older ones skip
        code_text = snippet(ctx, name, split_name, spec_text, *(target or (None, None)))
        return (split_name, t, spec_text, parsed if isinstance(parsed, str) else None,
                target[0] if target else gr.skip(), target[1] if target else gr.skip(), res.counts,
                *_galleries(ds, pred, res, target), _note(name, split_name, pred, res, desc, presets_note),
                *heat_out, setting_key(name, split_name, t), tok, tok, code_text)

    # the copy-link button writes these back: the query parameters from_link reads, with the components holding them
    extras = [("split", split), ("threshold", spec), ("outcome", sel_outcome), ("index", sel_rank),
              ("image", image_id)]
    return TabSpec(model=model, on_link=(from_link, link_outputs), link_extras=extras, link_reads=["preset"],
                   result_id=RESULT_ID)
