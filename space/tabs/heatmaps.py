"""Heatmaps tab: Grad-CAM for both classes side by side, one saliency method, and a grid of many images.

API: ``/heatmaps`` (upload, model, layer, relu, upsample, scale, method, example → the two Grad-CAM overlays, the
saliency overlay — each with its colour bar drawn into the image — and a caption) and ``/heatmap_grid`` (model,
layer, source, split, N → one PNG of N images × both classes on one colour scale, and a caption; expensive lane).

Every map is a :mod:`lib.explain` call (``gradcam`` / ``attribute`` / ``gradcam_figure``) drawn with
``lib.explain.overlay`` and ``with_colorbar``; this module only maps the UI choices onto their arguments
(:func:`overlay_limits`, :func:`heatmaps_for`, :func:`grid_for`) and writes the same calls out as code
(:func:`snippet`, :func:`grid_snippet`).

Colours: ReLU'd Grad-CAM in ``jet`` from 0; signed maps (ReLU off, and the signed saliency methods) in
``lib.explain.DIVERGING`` centred at 0 (white = no evidence); non-negative saliency in a sequential map from 0.
The two Grad-CAM maps share one scale by default (a class the model barely sees looks weak).

No stale screens: changing the example, the upload, the model or a setting clears the three images and the caption
at once (a ``queue=False`` step), then recomputes them (the cheap methods) or asks for *Explain* (the methods of
:data:`EXPENSIVE_METHODS`). A result computed for settings that have changed since is dropped, not shown
(:class:`_Views`).

Deep links: ``?tab=heatmaps&model=…&example=…&layer=features.1.conv2&relu=false&upsample=nearest&scale=per_map&
method=smoothgrad`` and, for the grid (rendered on open), ``&grid=FP&grid_split=test&grid_n=10``
(``grid`` = ``course`` | ``TP`` | ``TN`` | ``FP`` | ``FN``). The copy-link button writes them back (the grid's only
while a grid is shown).
"""
from __future__ import annotations

import io
import itertools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from lib.errors import XcxrError
from lib.explain import (DIVERGING, attribute, gradcam, gradcam_figure, list_methods, normalise, outcomes, overlay,
                         prepare, symmetric_limits, to_png_bytes, with_colorbar)
from lib.explain.figures import pick_rows
from lib.models import conv_layers, get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors
from ..evaluation import BUNDLED, data_choices, data_root, load_data, predict
from ..fair_queue import expensive_when
from ..links import LinkParams
from ..snippets import REPO, code_box, header, image_path, model_lines
from ..visitor_models import current_session

__all__ = ["build", "heatmaps_for", "layer_choices", "overlay_limits", "gradcam_maps", "colorbar_label",
           "saliency_style", "scale_id", "snippet", "grid_rows", "grid_figure", "grid_for", "grid_snippet", "cleared",
           "grid_cleared", "caption", "SCALES", "SCALE_LABELS", "DEFAULT_SCALE", "UPSAMPLES", "SALIENCY_METHODS",
           "DEFAULT_LAYER", "DEFAULT_LAYER_LABEL", "EXPENSIVE_METHODS", "SIGNED_METHODS", "GRID_SOURCES",
           "GRID_MAX_PER_CLASS", "GRID_MAX_IMAGES", "GRID_PER_CLASS", "GRID_SEED", "GRID_SPLIT", "RESULT_ID"]

#: The layer dropdown's value for "the model's own target layer" (``layer=default`` in links).
DEFAULT_LAYER = "default"
DEFAULT_LAYER_LABEL = "default (model's target layer)"
#: Colour-scale ids (the radio's values and the ``scale`` link parameter); shared is the default.
SCALES = ["per_map", "shared"]
DEFAULT_SCALE = "shared"
SCALE_LABELS = {"shared": "shared: both classes on one scale",
                "per_map": "per map: each map stretched to its own range (exaggerates weak maps)"}
#: Earlier values of the scale input, still accepted by ``/heatmaps``.
_SCALE_ALIASES = {"per map": "per_map", "shared (both classes)": "shared"}
UPSAMPLES = ["bilinear", "bicubic", "nearest"]
#: Captum methods offered (Grad-CAM itself has the two big panels).
SALIENCY_METHODS = [m for m in list_methods() if m != "layer_gradcam"]
#: The methods that run in the app's expensive lane: 25–250 forward/backward passes per image (integrated gradients,
#: SmoothGrad, occlusion) against one for plain and guided gradients (see README, Benchmarks). A change of settings
#: does not recompute them: the visitor presses *Explain*.
EXPENSIVE_METHODS = ("integrated_gradients", "smoothgrad", "occlusion")
#: The methods whose maps are signed (lib.explain.attribution: saliency and SmoothGrad take |gradient|).
SIGNED_METHODS = ("integrated_gradients", "guided_backprop", "occlusion")
_METHOD_NAMES = {"saliency": "saliency", "integrated_gradients": "integr. gradients", "smoothgrad": "SmoothGrad",
                 "guided_backprop": "guided backprop", "occlusion": "occlusion"}
CMAP, ALPHA = "jet", 0.5
#: Non-negative saliency maps: a sequential colour map from 0 (the one of lib's saliency figure).
SALIENCY_CMAP = "inferno"
#: elem_id of the row with the three maps (a deep link scrolls it into view).
RESULT_ID = "heatmaps-result"

#: The grid's image sources: the README figure's draw, or the most confident cases of one outcome.
GRID_SOURCES = ["course", "TP", "TN", "FP", "FN"]
_GRID_SOURCE_LABELS = {"course": "course figure (README): N per class at random, seed 0",
                       "TP": "the N most confident true positives (TP)",
                       "TN": "the N most confident true negatives (TN)",
                       "FP": "the N most confident false positives (FP)",
                       "FN": "the N most confident false negatives (FN)"}
_OUTCOME_WORDS = {"TP": "true positives", "TN": "true negatives", "FP": "false positives", "FN": "false negatives"}
GRID_MAX_PER_CLASS = 10
GRID_MAX_IMAGES = 20
#: The README figure (train/figures.py defaults): 5 images per class of the bundled examples, seed 0.
GRID_PER_CLASS, GRID_SEED, GRID_SPLIT = 5, 0, "examples"

_SKIP4 = (gr.skip(),) * 4


# --------------------------------------------------------------------------------------------- UI choices → lib
def scale_id(scale: Any) -> str:
    """``"shared"`` or ``"per_map"`` from the scale input (the earlier radio labels are accepted too)."""
    s = _SCALE_ALIASES.get(str(scale), str(scale)) if scale is not None else DEFAULT_SCALE
    if s not in SCALES:
        raise gr.Error(f"scale must be one of {SCALES} (shared: both classes on one scale), got {scale!r}")
    return s


def _layer_name(cfg: dict, layer: str | None) -> str:
    if layer in (None, "", DEFAULT_LAYER, DEFAULT_LAYER_LABEL):
        return str(cfg.get("target_layer"))
    return str(layer)


def overlay_limits(scale: str, relu: bool) -> tuple[str, float, float]:
    """``(normalise mode for gradcam, vmin, vmax)`` for a scale id (:data:`SCALES`).

    ``shared`` (default): both class maps divided by their common largest |value| (ReLU'd → [0, 1], signed →
    [−1, 1]), so a weak class looks weak. ``per_map``, ReLU'd: each map min–max to [0, 1] (shows the pattern, hides
    the magnitude). ``per_map``, signed: each map divided by its own largest |value| → [−1, 1], so 0 stays at the
    diverging map's centre (:func:`gradcam_maps`).
    """
    s = scale_id(scale)
    return s, (0.0 if relu else -1.0), 1.0


def gradcam_cmap(relu: bool) -> str:
    """``jet`` for ReLU'd maps (from 0), :data:`lib.explain.DIVERGING` for signed ones (white at 0)."""
    return CMAP if relu else DIVERGING


def colorbar_label(scale: str, relu: bool) -> str:
    """The text along a Grad-CAM map's colour bar: which scale its numbers are on."""
    if scale_id(scale) == "shared":
        return "Grad-CAM, shared scale" if relu else "Grad-CAM signed, shared scale"
    return "per map: 0 = min, 1 = max" if relu else "per map: ±1 = its max |value|"


def gradcam_maps(model: torch.nn.Module, x: torch.Tensor, layer: str, relu: bool, upsample: str,
                 scale: str) -> np.ndarray:
    """Grad-CAM of both classes, ``(2, H, W)``, scaled as :func:`overlay_limits` says."""
    mode, _, _ = overlay_limits(scale, relu)
    if mode == "per_map" and not relu:  # signed, per map: each map over its own largest |value| (0 stays 0)
        raw = gradcam(model, x, [0, 1], layer, relu=False, upsample=upsample, normalise="none")
        return torch.cat([normalise(raw[:, [c]], "shared") for c in (0, 1)], dim=1)[0].cpu().numpy()
    return gradcam(model, x, [0, 1], layer, relu=bool(relu), upsample=upsample, normalise=mode)[0].cpu().numpy()


def saliency_style(method: str, sal: np.ndarray) -> tuple[str, float, float, str]:
    """``(cmap, vmin, vmax, colour-bar label)`` of a saliency map: its own scale, symmetric around 0 in
    :data:`lib.explain.DIVERGING` for the signed methods, from 0 in :data:`SALIENCY_CMAP` for the others."""
    name = _METHOD_NAMES.get(method, method)
    if method in SIGNED_METHODS:
        lo, hi = symmetric_limits(sal)
        return DIVERGING, lo, hi, f"{name}, own scale"
    return SALIENCY_CMAP, 0.0, max(float(sal.max()), 1e-12), f"{name}, own scale"


def _check(upsample: str, method: str) -> None:
    if upsample not in UPSAMPLES:
        raise gr.Error(f"upsampling must be one of {UPSAMPLES}, got {upsample!r}")
    if method not in SALIENCY_METHODS:
        raise gr.Error(f"saliency method must be one of {SALIENCY_METHODS}, got {method!r}")


def caption(cfg: dict, layer: str, relu: bool, upsample: str, scale: str, method: str, target: str) -> str:
    labels = cfg["labels"]
    shared = scale_id(scale) == "shared"
    colours = ("ReLU applied: only evidence *for* the class is shown (colour map *jet*, 0 = dark blue)." if relu else
               "Signed (ReLU off): red = evidence for the class, blue = evidence against, white = none.")
    top = "largest value" if relu else "largest |value|"
    scale_text = (f"**Shared scale** (default): both maps on one scale (1 = the {top} of the two), so the class "
                  "the model barely sees really looks weak." if shared else
                  "**Per-map scale exaggerates weak maps**: each map is stretched to its own full colour range, so a "
                  "map with almost no evidence looks as strong as the other one, and the two colour bars mean "
                  "different things. Switch to *shared* to compare the classes.")
    signed = method in SIGNED_METHODS
    return "\n".join([
        f"**What these maps show.** Grad-CAM at layer `{layer}`: where that layer's feature maps raise the **logit** "
        f"(the score before softmax) of {labels[0]} (left) and {labels[1]} (right). {colours} "
        f"The map is computed at the layer's coarse resolution and enlarged ({upsample}), so fine detail is not real. "
        f"{scale_text} The colour bar beside each map gives its values.",
        "",
        "**What they do not show.** Not a segmentation of the disease, not a measure of how sure the model is, and "
        "not proof that the model is right.",
        "",
        f"Right panel: **{method}** for the predicted class ({target}), on its own scale "
        + ("(symmetric around 0: red raises the score, blue lowers it)" if signed else "(from 0)")
        + "; pixel-level gradients are noisy and can look like edge detectors (see the Trust tab's randomisation "
          "check).",
    ])


def heatmaps_for(model: torch.nn.Module, grey: np.ndarray, layer: str | None, relu: bool, upsample: str,
                 scale: str, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The three overlays, each with its colour bar drawn in, and the caption, for one grey image at the model's
    size. :func:`snippet` writes the same calls out."""
    cfg = get_config(model)
    layer = _layer_name(cfg, layer)
    _check(upsample, method)
    relu = bool(relu)
    _, vmin, vmax = overlay_limits(scale, relu)
    cmap, label = gradcam_cmap(relu), colorbar_label(scale, relu)
    x = prepare(model, torch.from_numpy(grey))
    maps = gradcam_maps(model, x, layer, relu, upsample, scale)
    left, right = (with_colorbar(overlay(grey, maps[c], cmap, ALPHA, vmin, vmax), vmin, vmax, cmap, label=label)
                   for c in (0, 1))
    prob = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])
    target = int(prob >= cfg.get("threshold", 0.5))
    sal = attribute(model, x, target, method=method)[0, 0].cpu().numpy()
    scmap, slo, shi, slabel = saliency_style(method, sal)
    sal_rgb = with_colorbar(overlay(grey, sal, scmap, ALPHA, slo, shi), slo, shi, scmap, label=slabel)
    return left, right, sal_rgb, caption(cfg, layer, relu, upsample, scale, method, cfg["labels"][target])


def layer_choices(model: torch.nn.Module) -> list[tuple[str, str]]:
    """The target-layer dropdown's ``(label, value)`` choices: the model's default, then its conv layers in forward
    order."""
    return [(DEFAULT_LAYER_LABEL, DEFAULT_LAYER)] + [(n, n) for n in conv_layers(model)]


def cleared(method: str | None) -> tuple:
    """What the three images, the caption and the code box show the moment a setting changes: nothing, and either
    "computing" or, for an expensive method, "press Explain"."""
    if method in EXPENSIVE_METHODS:
        text = (f"Settings changed. **Press Explain** to compute the maps: *{method}* runs 25–250 forward/backward "
                "passes, so it is not recomputed on every change.")
    else:
        text = "*Computing the maps for the new choice…*"
    return None, None, None, text, ""


# --------------------------------------------------------------------------------------------- "Reproduce in Python"
def _with_imports(model_code: list[str], names: list[str]) -> list[str]:
    """:func:`space.snippets.model_lines` with ``names`` added to its ``from lib.models import load_model``."""
    first = "from lib.models import load_model"
    if model_code and model_code[0] == first:
        return [f"from lib.models import {', '.join(sorted(names + ['load_model']))}", *model_code[1:]]
    return [f"from lib.models import {', '.join(names)}", *model_code]


def snippet(ctx: AppContext, upload: Any, model_name: str | None, layer: str | None, relu: bool, upsample: str,
            scale: str, method: str, example: str | None) -> str:
    """The code behind the view: run from the repository root, it leaves the three displayed images (``uint8`` RGB,
    with their colour bars) in ``shown`` — the same calls as :func:`heatmaps_for`."""
    m = ctx.model(model_name)
    cfg = get_config(m)
    name = _layer_name(cfg, layer)
    _check(upsample, method)
    relu = bool(relu)
    s = scale_id(scale)
    mode, vmin, vmax = overlay_limits(s, relu)
    cmap = gradcam_cmap(relu)
    labels = cfg["labels"]
    signed_per_map = s == "per_map" and not relu
    lines = header("Heatmaps: Grad-CAM of both classes and the predicted class's saliency")
    imports = ["attribute", "gradcam", "overlay", "prepare", "with_colorbar"]
    if not relu or method in SIGNED_METHODS:
        imports.append("DIVERGING")
    if signed_per_map:
        imports.append("normalise")
    if method in SIGNED_METHODS:
        imports.append("symmetric_limits")
    lines += ["import torch", "", "from lib.data import load_grey",
              f"from lib.explain import {', '.join(sorted(imports, key=str.lower))}"]
    lines += _with_imports(model_lines(ctx, model_name, m), ["get_config", "predict_proba"])
    lines += ["cfg = get_config(model)",
              f"path = {image_path(ctx, upload, example)}",
              f"grey = load_grey(path, cfg[\"img_size\"])  # uint8 ({cfg['img_size']}, {cfg['img_size']}), as the app "
              "sees it",
              "x = prepare(model, torch.from_numpy(grey))  # the model's own preprocessing",
              ""]
    where = f"{name!r}" + ("  # the model's target layer" if layer in (None, "", DEFAULT_LAYER, DEFAULT_LAYER_LABEL)
                            else "")
    lines += [f"layer = {where}",
              f"# Grad-CAM of {labels[0]} and {labels[1]} (classes 0, 1): "
              + ("ReLU" if relu else "signed (no ReLU)") + f", {upsample} upsampling"]
    if signed_per_map:
        lines += [f"raw = gradcam(model, x, [0, 1], layer, relu=False, upsample={upsample!r}, normalise=\"none\")",
                  "# per map, signed: each map divided by its own largest |value|, so 0 stays at the centre",
                  "maps = torch.cat([normalise(raw[:, [c]], \"shared\") for c in (0, 1)], dim=1)[0].numpy()"]
    else:
        why = ("both maps divided by their common largest value (shared scale)" if mode == "shared"
               else "each map min-max scaled to [0, 1] (per map)")
        lines += [f"# {why}",
                  f"maps = gradcam(model, x, [0, 1], layer, relu={relu}, upsample={upsample!r}, "
                  f"normalise={mode!r})[0].numpy()"]
    lines += [f"vmin, vmax, cmap = {vmin!r}, {vmax!r}, " + (f"{cmap!r}" if relu else "DIVERGING  # blue < 0 < red"),
              "shown = [with_colorbar(overlay(grey, maps[c], cmap, 0.5, vmin, vmax), vmin, vmax, cmap,",
              f"                       label={colorbar_label(s, relu)!r}) for c in (0, 1)]",
              "",
              f"# {method} of the predicted class ({labels[1]} if P({labels[1].lower()}) ≥ the model's threshold)",
              "p = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])",
              "target = int(p >= cfg.get(\"threshold\", 0.5))",
              f"sal = attribute(model, x, target, method={method!r})[0, 0].numpy()"]
    name_ = _METHOD_NAMES.get(method, method)
    if method in SIGNED_METHODS:
        lines += ["lo, hi = symmetric_limits(sal)  # signed: its own scale, symmetric around 0",
                  "scmap = DIVERGING"]
    else:
        lines += ["lo, hi = 0.0, max(float(sal.max()), 1e-12)  # non-negative: its own scale, from 0",
                  f"scmap = {SALIENCY_CMAP!r}"]
    lines += [f"shown.append(with_colorbar(overlay(grey, sal, scmap, 0.5, lo, hi), lo, hi, scmap, "
              f"label={name_ + ', own scale'!r}))"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- the grid
def _split_label(split: str) -> str:
    return "the bundled examples" if split == "examples" else f"the {split} split"


def _grid_n(source: str, n: Any) -> int:
    top = GRID_MAX_PER_CLASS if source == "course" else GRID_MAX_IMAGES
    try:
        k = int(round(float(n)))
    except (TypeError, ValueError):
        raise gr.Error(f"N must be a whole number between 1 and {top}, got {n!r}") from None
    if not 1 <= k <= top:
        what = "images per class for the course figure" if source == "course" else "images"
        raise gr.Error(f"N must be between 1 and {top} {what}, got {k}; choose a smaller N")
    return k


def grid_rows(model: torch.nn.Module, split: str, source: str, n: Any) -> tuple[Any, list[int], str]:
    """``(dataset, row indices, what they are)`` of the grid: ``course`` = the README figure's draw
    (:func:`lib.explain.figures.pick_rows`, ``n`` per class, seed 0), or the ``n`` most confident cases of one
    outcome (``TP`` … ``FN``) at the model's own threshold."""
    if source not in GRID_SOURCES:
        raise gr.Error(f"grid images must be one of {GRID_SOURCES}, got {source!r}")
    k = _grid_n(source, n)
    cfg = get_config(model)
    ds = load_data(split, int(cfg["img_size"]))
    where = _split_label(split)
    if source == "course":
        rows = pick_rows(ds.labels, k, GRID_SEED, n_classes=len(ds.classes))
        per = " + ".join(f"{int((ds.labels[rows] == c).sum())} {name}" for c, name in enumerate(ds.classes))
        return ds, rows, f"Course figure: {per} images of {where}, drawn at random with seed {GRID_SEED}"
    pred = predict(model, ds)
    t = float(pred.model_threshold) if pred.model_threshold is not None else 0.5
    found = outcomes(pred, t)[source]
    if not found:
        raise gr.Error(f"there are no {_OUTCOME_WORDS[source]} ({source}) on {where} at the model's threshold "
                       f"{t:.3f}; choose another group or split")
    rows = found[:k]
    more = "" if len(rows) == k else f" (only {len(rows)} at this threshold)"
    return ds, rows, (f"The {len(rows)} most confident {_OUTCOME_WORDS[source]} ({source}){more} of {where} at the "
                      f"model's threshold {t:.3f}")


def _grid_title(what: str, layer: str) -> str:
    return f"{what}\nGrad-CAM of the class logits at {layer}, ReLU, one colour scale for all maps"


def grid_figure(model: torch.nn.Module, split: str, source: str, n: Any, layer: str | None) -> tuple[Any, str]:
    """``(matplotlib Figure, what its rows are)``: :func:`lib.explain.gradcam_figure` of :func:`grid_rows`' images
    with ``normalise="none"`` (rows = images; columns = the X-ray and both classes' Grad-CAM; one colour scale and
    one colour bar for every map)."""
    name = _layer_name(get_config(model), layer)
    ds, rows, what = grid_rows(model, split, source, n)
    fig = gradcam_figure(model, ds.images[rows], labels=ds.labels[rows].tolist(), layer=name, normalise="none",
                         title=_grid_title(what, name))
    return fig, what


def grid_for(model: torch.nn.Module, split: str, source: str, n: Any, layer: str | None) -> tuple[np.ndarray, str]:
    """The grid as ``uint8`` RGB (the pixels of its PNG, :func:`grid_figure`) and a caption."""
    cfg = get_config(model)
    name = _layer_name(cfg, layer)
    fig, what = grid_figure(model, split, source, n, layer)
    rgb = np.asarray(Image.open(io.BytesIO(to_png_bytes(fig))).convert("RGB"))
    labels = cfg["labels"]
    text = (f"**{what}.** Rows: images (true label and P({labels[1].lower()}) above each); columns: the X-ray, "
            f"Grad-CAM of {labels[0]}, Grad-CAM of {labels[1]} at layer `{name}` (ReLU, bilinear). **One colour "
            "scale for every map** (0 … the largest value in the grid, in logit units): a dim map is weak evidence, "
            "compared with every other map here. Download the PNG with the button on the image.")
    return rgb, text


def _repo_path(path: Path) -> tuple[str, str]:
    """``(literal, comment)`` for a data folder: relative to the repository when inside it."""
    try:
        return repr(Path(path).resolve().relative_to(REPO).as_posix()), ""
    except ValueError:
        return repr(Path(path).name), "  # the data folder on your disk"


def grid_snippet(ctx: AppContext, model_name: str | None, layer: str | None, source: str, split: str,
                 n: Any) -> str:
    """The code behind the grid: run from the repository root, it leaves the figure (a matplotlib Figure) in
    ``figure``; ``figure.savefig("grid.png")`` writes it."""
    m = ctx.model(model_name)
    cfg = get_config(m)
    name = _layer_name(cfg, layer)
    if source not in GRID_SOURCES:
        raise gr.Error(f"grid images must be one of {GRID_SOURCES}, got {source!r}")
    k = _grid_n(source, n)
    _, _, what = grid_rows(m, split, source, k)
    if split == "examples":
        folder, note = _repo_path(BUNDLED)
        sub = "None"
    else:
        folder, note = _repo_path(data_root())
        sub = repr(split)
    lines = header("Heatmaps grid: many images × both classes, one colour scale")
    lines += ["from lib.data import load_split",
              "from lib.explain import gradcam_figure" + ("" if source == "course" else ", outcomes, predict_split")]
    if source == "course":
        lines.append("from lib.explain.figures import pick_rows")
    lines += _with_imports(model_lines(ctx, model_name, m), ["get_config"])
    lines += [f"ds = load_split({folder}, {sub}, get_config(model)[\"img_size\"], progress=False){note}"]
    if source == "course":
        lines += [f"rows = pick_rows(ds.labels, {k}, {GRID_SEED}, n_classes=len(ds.classes))  # the README figure's "
                  "draw (python -m train.figures)"]
    else:
        lines += ["pred = predict_split(model, ds)",
                  "threshold = pred.model_threshold if pred.model_threshold is not None else 0.5  # the model's own",
                  f"rows = outcomes(pred, threshold)[{source!r}][:{k}]  # most confident first"]
    lines += [f"figure = gradcam_figure(model, ds.images[rows], labels=ds.labels[rows].tolist(), layer={name!r},",
              "                        normalise=\"none\",  # one colour scale for all maps",
              f"                        title={_grid_title(what, name)!r})",
              "# figure.savefig(\"grid.png\")"]
    return "\n".join(lines) + "\n"


def grid_cleared(source: str | None = None) -> tuple:
    """The grid, its caption, its link values and its code box the moment its settings change."""
    return None, "Settings changed: press **Render grid** to draw it again.", "", "", "", ""


# --------------------------------------------------------------------------------------------- stale results
class _Views:
    """Per browser session and part of the tab (``"view"``: the three maps; ``"grid"``): the settings the controls
    last changed to, and a generation that every change bumps. A result is shown only when it was computed for the
    current settings and no change came while it ran — so a slow result (integrated gradients, a grid) never lands
    next to newer controls. Sessions that never changed a control (API clients) are not checked."""

    def __init__(self, limit: int = 20_000) -> None:
        self._d: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def _get(self, request: Any, scope: str, create: bool) -> dict | None:
        # the handler's gr.Request, else the request being handled on this thread (a wrapper such as the app's
        # deep-link step calls the handler without one)
        sid = getattr(request, "session_hash", None) or current_session()
        if not sid:
            return None
        k = (str(sid), scope)
        e = self._d.get(k)
        if e is None and create:
            e = self._d[k] = {"gen": 0, "key": None, "must": None, "shown": None}
            while len(self._d) > self._limit:
                self._d.popitem(last=False)
        if e is not None:
            self._d.move_to_end(k)
        return e

    def changed(self, request: Any, scope: str, key: tuple) -> None:
        """A control changed (a clearing step): ``key`` is now what the page asks for."""
        with self._lock:
            e = self._get(request, scope, True)
            if e is not None:
                e.update(gen=e["gen"] + 1, key=key, must=None, shown=None)

    def reset(self, request: Any, scope: str, must: dict[int, str] | None = None) -> None:
        """The app set controls itself (a link, a model's layer list): drop the runs under way and accept the next
        one whose key has ``must``'s values (``{position in the key: value}``; the settings the link gave)."""
        with self._lock:
            e = self._get(request, scope, True)
            if e is not None:
                e.update(gen=e["gen"] + 1, key=None, must=dict(must or {}) or None, shown=None)

    def claim(self, request: Any, scope: str, key: tuple) -> int:
        """A run that is the page's latest word (a deep link's own view) begins: ``key`` is now what the page asks
        for and the runs under way are outdated. Returns the token for :meth:`finish`."""
        with self._lock:
            e = self._get(request, scope, True)
            if e is None:
                return -1
            e.update(gen=e["gen"] + 1, key=key, must=None, shown=None)
            return e["gen"]

    @staticmethod
    def _outdated(e: dict, key: tuple) -> bool:
        if e["key"] is not None and e["key"] != key:
            return True
        must = e.get("must") or {}
        return any(i >= len(key) or key[i] != v for i, v in must.items())

    def start(self, request: Any, scope: str, key: tuple) -> int | None:
        """A run of ``key`` begins: a token for :meth:`finish`, or None when ``key`` is outdated already."""
        with self._lock:
            e = self._get(request, scope, False)
            if e is None:
                return -1
            return None if self._outdated(e, key) else e["gen"]

    def finish(self, request: Any, scope: str, key: tuple, token: int | None) -> bool:
        """Whether the result of the run begun with ``token`` may be shown (then it is recorded as shown)."""
        with self._lock:
            e = self._get(request, scope, True)
            if e is None:
                return token is not None
            if token is None or (token != -1 and e["gen"] != token) or self._outdated(e, key):
                return False
            e["shown"] = key
            return True

    def shown(self, request: Any, scope: str, key: tuple) -> bool:
        """Whether the page shows the result of ``key`` now."""
        with self._lock:
            e = self._get(request, scope, False)
            return e is not None and e["shown"] == key

    def hides(self, request: Any, scope: str, key: tuple) -> bool:
        """Whether a browser session does *not* show the result of ``key`` (False without a session)."""
        with self._lock:
            e = self._get(request, scope, False)
            sid = getattr(request, "session_hash", None) or current_session()
            return bool(sid) and (e is None or e["shown"] != key)


_views = _Views()
#: A link that asks for a grid sets the grid-request state to a new number (its change renders the grid); any other
#: link leaves it at _NO_GRID (gr.skip() on a gr.State would count as a change).
_nonce = itertools.count(1)
_NO_GRID = 0


def _key(*values: Any) -> tuple:
    return tuple("" if v is None else str(v) for v in values)


# --------------------------------------------------------------------------------------------- the tab
def build(ctx: AppContext) -> TabSpec:
    """The Heatmaps tab (call inside ``with gr.Tab("Heatmaps"):``)."""
    # the layer list is filled on page load (on_model below): building the page never waits for a model to load
    labels = ctx.labels()
    splits = data_choices()
    with gr.Row():
        with gr.Column(scale=1, min_width=340):  # the example dropdown shows a whole file name
            inp = image_inputs(ctx)
            layer = gr.Dropdown([(DEFAULT_LAYER_LABEL, DEFAULT_LAYER)], value=DEFAULT_LAYER,
                                label="Target layer (conv layers, forward order)", allow_custom_value=True)
            relu = gr.Checkbox(True, label="ReLU (paper); off = signed map")
            upsample = gr.Radio(UPSAMPLES, value="bilinear", label="Upsampling to the image")
            scale = gr.Radio([(SCALE_LABELS[s], s) for s in ("shared", "per_map")], value=DEFAULT_SCALE,
                             label="Colour scale of the two Grad-CAM maps")
            method = gr.Dropdown(SALIENCY_METHODS, value="saliency", label="Saliency method (predicted class)")
            expensive_when(method, EXPENSIVE_METHODS)  # any event reading this choice queues by its cost
            go = gr.Button("Explain", variant="primary")
        with gr.Column(scale=3):
            with gr.Row(elem_id=RESULT_ID):
                first = gr.Image(label=f"Grad-CAM: {labels[0]}", format="png", interactive=False)
                second = gr.Image(label=f"Grad-CAM: {labels[1]}", format="png", interactive=False)
                saliency = gr.Image(label="Saliency", format="png", interactive=False)
            text = gr.Markdown()
            code = code_box()
    with gr.Accordion("Grid: many images × both classes, one colour scale", open=False) as grid_box:
        gr.Markdown("Grad-CAM of both classes for many images at once, every map on **one** colour scale, as one "
                    "downloadable PNG (model and layer from above). *Course figure* draws the README's images (N per "
                    "class of the split, at random with seed 0: N = 5 of the bundled examples is the README figure); "
                    "the outcome groups take the most confident cases at the model's threshold.")
        with gr.Row():
            grid_source = gr.Dropdown([(_GRID_SOURCE_LABELS[s], s) for s in GRID_SOURCES], value="course",
                                      label="Images", scale=3)
            grid_split = gr.Dropdown(splits, value=GRID_SPLIT, label="Data split", scale=2)
            grid_n = gr.Slider(1, GRID_MAX_PER_CLASS, value=GRID_PER_CLASS, step=1, scale=2,
                               label=f"N per class (course figure, ≤ {GRID_MAX_PER_CLASS})")
            grid_go = gr.Button("Render grid", scale=1)
        grid_text = gr.Markdown()
        grid_img = gr.Image(label="Grid", format="png", interactive=False, buttons=["download", "fullscreen"],
                            elem_id="heatmaps-grid")
        grid_code = code_box("Reproduce the grid in Python")
    # what the copy-link button writes for the grid: set while a grid is shown, empty otherwise
    link_grid = gr.Textbox(visible=False, label="grid")
    link_grid_split = gr.Textbox(visible=False, label="grid_split")
    link_grid_n = gr.Textbox(visible=False, label="grid_n")
    grid_request = gr.State(_NO_GRID)  # a link asks for a grid: a new value renders one
    todo = gr.State(None)  # the method a settings change recomputes (None: an expensive one, wait for Explain)

    inputs = [inp.upload, inp.model, layer, relu, upsample, scale, method, inp.example]
    outputs = [first, second, saliency, text]
    grid_inputs = [inp.model, layer, grid_source, grid_split, grid_n]
    grid_outputs = [grid_img, grid_text]

    def compute(image: Any, model: str | None, layer_: str | None, relu_: bool, upsample_: str, scale_: str,
                method_: str, example: str | None, progress: Any = None) -> tuple:
        if progress is not None:
            progress(0.1, desc="loading the image")
        m = ctx.model(model)
        grey, _ = load_image(ctx, image, example, m, original=False)
        if progress is not None:
            progress(0.3, desc=f"Grad-CAM and {method_}")
        return heatmaps_for(m, grey, layer_, relu_, upsample_, scale_, method_)

    @ui_errors
    def run(image: Any, model: str | None = None, layer: str | None = DEFAULT_LAYER, relu: bool = True,
            upsample: str = "bilinear", scale: str = DEFAULT_SCALE, method: str = "saliency",
            example: str | None = None, request: gr.Request | None = None,
            progress: gr.Progress = gr.Progress()):
        key = _key(image, model, layer, relu, upsample, scale, method, example)
        token = _views.start(request, "view", key)
        if token is None:  # the settings changed while this waited in the queue
            return _SKIP4
        out = compute(image, model, layer, relu, upsample, scale, method, example, progress)
        return out if _views.finish(request, "view", key, token) else _SKIP4

    @ui_errors
    def fill_code(image: Any, model: str | None, layer: str | None, relu: bool, upsample: str, scale: str,
                  method: str, example: str | None, request: gr.Request | None = None):
        if _views.hides(request, "view", _key(image, model, layer, relu, upsample, scale, method, example)):
            return gr.skip()
        return snippet(ctx, image, model, layer, relu, upsample, scale, method, example)

    @ui_errors
    def refresh(image: Any, model: str | None, layer: str | None, relu: bool, upsample: str, scale: str,
                method: str | None, example: str | None, request: gr.Request | None = None):
        """After a change: recompute (``method`` is the cheap method to use, None for an expensive one)."""
        if not method:
            return (gr.skip(),) * 5
        key = _key(image, model, layer, relu, upsample, scale, method, example)
        return current_view(request, key, _views.start(request, "view", key),
                            (image, model, layer, relu, upsample, scale, method, example))

    def current_view(request: Any, key: tuple, token: int | None, args: tuple) -> tuple:
        """The three maps, caption and code of ``args`` — or nothing when the run begun with ``token`` is
        outdated before or after it computes (the controls changed meanwhile)."""
        if token is None:
            return (gr.skip(),) * 5
        out = compute(*args)
        if not _views.finish(request, "view", key, token):
            return (gr.skip(),) * 5
        return (*out, snippet(ctx, *args))

    @ui_errors
    def open_view(image: Any, model: str | None, layer: str | None, relu: bool, upsample: str, scale: str,
                  method: str, example: str | None, request: gr.Request | None = None):
        """Opening the tab: compute the view unless it is already shown. Without a ``gr.Request`` this is the app's
        deep-link step (it runs after every ``on_link`` and reads the controls the link set): its view is the
        page's latest word, whatever an earlier step read while the link's values were still arriving."""
        key = _key(image, model, layer, relu, upsample, scale, method, example)
        if request is None:
            token = _views.claim(request, "view", key)
        elif _views.shown(request, "view", key):
            return (gr.skip(),) * 5
        else:
            token = _views.start(request, "view", key)
        return current_view(request, key, token, (image, model, layer, relu, upsample, scale, method, example))

    def clear(image: Any, model: str | None, layer: str | None, relu: bool, upsample: str, scale: str,
              method: str, example: str | None, request: gr.Request | None = None) -> tuple:
        _views.changed(request, "view", _key(image, model, layer, relu, upsample, scale, method, example))
        return (*cleared(method), None if method in EXPENSIVE_METHODS else method)

    @ui_errors
    def on_model(model_name: str | None, current: str | None, request: gr.Request | None = None):
        m = ctx.model(model_name)
        names = get_config(m)["labels"]
        choices = layer_choices(m)
        if current in [v for _, v in choices]:
            layer_up = gr.Dropdown(choices=choices)  # keeps the value (a link's layer, the visitor's choice)
        else:
            layer_up = gr.Dropdown(choices=choices, value=DEFAULT_LAYER)
            _views.reset(request, "view")  # the runs under way used the old layer; the next one is current
            _views.reset(request, "grid")
        return layer_up, gr.Image(label=f"Grad-CAM: {names[0]}"), gr.Image(label=f"Grad-CAM: {names[1]}")

    clear_outputs = [first, second, saliency, text, code, todo]
    view_outputs = [first, second, saliency, text, code]
    refresh_inputs = [inp.upload, inp.model, layer, relu, upsample, scale, todo, inp.example]
    private = dict(api_visibility="private")
    # Explain (the public endpoint), then its code
    go.click(run, inputs, outputs, api_name="heatmaps", concurrency_id="interactive").success(
        fill_code, inputs, code, queue=False, **private)
    # every change: clear at once, then recompute (cheap methods) — never an image next to another image's maps
    inp.picked.then(clear, inputs, clear_outputs, queue=False, **private).then(refresh, refresh_inputs, view_outputs,
                                                                              **private)
    gr.on([inp.upload.upload, inp.upload.clear, layer.input, relu.input, upsample.input, scale.input, method.input],
          clear, inputs, clear_outputs, queue=False, **private).then(refresh, refresh_inputs, view_outputs, **private)
    inp.model.change(clear, inputs, clear_outputs, queue=False, **private).then(
        on_model, [inp.model, layer], [layer, first, second], **private).then(
        refresh, refresh_inputs, view_outputs, **private)

    # --- the grid
    @ui_errors
    def render_grid(model: str | None = None, layer: str | None = DEFAULT_LAYER, source: str = "course",
                    split: str = GRID_SPLIT, n: float = GRID_PER_CLASS, request: gr.Request | None = None,
                    progress: gr.Progress = gr.Progress()):
        key = _key(model, layer, source, split, n)
        token = _views.start(request, "grid", key)
        if token is None:
            return gr.skip(), gr.skip()
        progress(0.1, desc="loading the images")
        m = ctx.model(model)
        progress(0.3, desc="Grad-CAM of every image")
        out = grid_for(m, split, source, n, layer)
        return out if _views.finish(request, "grid", key, token) else (gr.skip(), gr.skip())

    @ui_errors
    def render_linked_grid(model: str | None, layer: str | None, source: str, split: str, n: float,
                           request: gr.Request | None = None, progress: gr.Progress = gr.Progress()):
        """The grid a link asks for: the page's latest word for the grid (see ``open_view``)."""
        _views.claim(request, "grid", _key(model, layer, source, split, n))
        return render_grid(model, layer, source, split, n, request=request, progress=progress)

    @ui_errors
    def after_grid(model: str | None, layer: str | None, source: str, split: str, n: float,
                   request: gr.Request | None = None):
        if _views.hides(request, "grid", _key(model, layer, source, split, n)):
            return (gr.skip(),) * 4
        return source, split, str(int(round(float(n)))), grid_snippet(ctx, model, layer, source, split, n)

    def clear_grid(model: str | None, layer: str | None, source: str, split: str, n: float,
                   request: gr.Request | None = None) -> tuple:
        _views.changed(request, "grid", _key(model, layer, source, split, n))
        return grid_cleared(source)

    def on_source(source: str, n: float) -> Any:
        top = GRID_MAX_PER_CLASS if source == "course" else GRID_MAX_IMAGES
        label = (f"N per class (course figure, ≤ {GRID_MAX_PER_CLASS})" if source == "course"
                 else f"N images (≤ {GRID_MAX_IMAGES})")
        return gr.Slider(maximum=top, value=min(int(round(float(n or 1))), top), label=label)

    grid_clear_outputs = [grid_img, grid_text, link_grid, link_grid_split, link_grid_n, grid_code]
    grid_after_outputs = [link_grid, link_grid_split, link_grid_n, grid_code]
    grid_evt = dict(concurrency_id="expensive", concurrency_limit=1)  # many images: the expensive lane
    grid_go.click(render_grid, grid_inputs, grid_outputs, api_name="heatmap_grid", **grid_evt).success(
        after_grid, grid_inputs, grid_after_outputs, queue=False, **private)
    grid_request.change(render_linked_grid, grid_inputs, grid_outputs, **grid_evt, **private).success(
        after_grid, grid_inputs, grid_after_outputs, queue=False, **private)
    grid_source.input(on_source, [grid_source, grid_n], grid_n, queue=False, **private).then(
        clear_grid, grid_inputs, grid_clear_outputs, queue=False, **private)
    gr.on([grid_split.input, grid_n.input, layer.input, inp.model.change], clear_grid, grid_inputs,
          grid_clear_outputs, queue=False, **private)

    # --- deep links: ?tab=heatmaps&layer=…&relu=…&upsample=…&scale=…&method=…[&grid=FP&grid_split=test&grid_n=3]
    link_outputs = [layer, relu, upsample, scale, method, grid_box, grid_source, grid_split, grid_n, grid_request]

    @ui_errors
    def from_link(q: dict, request: gr.Request | None = None) -> tuple:
        q = dict(q or {})
        if q.get("tab") != "heatmaps":  # another tab's link: its parameters are not ours
            return (*(gr.skip(),) * (len(link_outputs) - 1), _NO_GRID)
        p = LinkParams(q, "heatmaps")
        layer_value, choices = None, None
        if p.has("layer"):
            name = q.get("model") if q.get("model") in ctx.catalog.names() else ctx.default_model
            try:
                m = ctx.model(name)
            except XcxrError:
                p.problem(f"layer {p.raw('layer')!r} could not be checked: model {name!r} does not load")
                m = None
            if m is not None:
                choices = layer_choices(m)
                target = str(get_config(m).get("target_layer"))
                layer_value = p.choice("layer", [v for _, v in choices], default=DEFAULT_LAYER,
                                       what=f"layer (a conv layer of {name} or 'default')",
                                       aliases={target: DEFAULT_LAYER, DEFAULT_LAYER_LABEL: DEFAULT_LAYER})
        # the values this link sets (None: not in the link), in the order of the view's key from position 2
        set_to = [layer_value,
                  p.boolean("relu", True) if p.has("relu") else None,
                  p.choice("upsample", UPSAMPLES, default="bilinear") if p.has("upsample") else None,
                  p.choice("scale", SCALES, default=DEFAULT_SCALE, aliases=_SCALE_ALIASES) if p.has("scale") else None,
                  p.choice("method", SALIENCY_METHODS, default="saliency") if p.has("method") else None]
        ups = [gr.skip() if layer_value is None else gr.Dropdown(choices=choices, value=layer_value),
               *(gr.skip() if v is None else v for v in set_to[1:])]
        # what a result must have been computed with to be shown now: the values this link sets
        must = {i + 2: str(v) for i, v in enumerate(set_to) if v is not None}  # key: image, model, layer, relu…
        grid_must: dict[int, str] = {1: str(set_to[0])} if set_to[0] is not None else {}
        if q.get("model") in ctx.catalog.names():  # the app sets the model and example dropdowns of valid links
            must[1] = grid_must[0] = str(q["model"])
        if q.get("example") in ctx.examples:
            must[7] = str(q["example"])
        grid_ups: list = [gr.skip()] * 4 + [_NO_GRID]
        if p.has("grid"):
            source = p.choice("grid", GRID_SOURCES, default=None, what="grid (course, TP, TN, FP or FN)")
            if source is not None:
                split = p.choice("grid_split", [v for _, v in splits], default=GRID_SPLIT)
                top = GRID_MAX_PER_CLASS if source == "course" else GRID_MAX_IMAGES
                n = p.integer("grid_n", 1, top, default=min(GRID_PER_CLASS if source == "course" else 10, top))
                grid_ups = [gr.Accordion(open=True), source, split, on_source(source, n), next(_nonce)]
                grid_must.update({2: source, 3: split})
        elif p.has("grid_split") or p.has("grid_n"):
            p.problem("grid_split and grid_n need grid=course|TP|TN|FP|FN")
        p.warn()
        _views.reset(request, "view", must)  # the link set the controls: results under way are for the old ones
        _views.reset(request, "grid", grid_must)
        return (*ups, *grid_ups)

    extras = [("layer", layer), ("relu", relu), ("upsample", upsample), ("scale", scale), ("method", method),
              ("grid", link_grid), ("grid_split", link_grid_split), ("grid_n", link_grid_n)]
    return TabSpec(model=inp.model, example=inp.example, on_open=(open_view, inputs, view_outputs),
                   on_load=[(on_model, [inp.model, layer], [layer, first, second])],
                   on_link=(from_link, link_outputs), link_extras=extras, result_id=RESULT_ID)
