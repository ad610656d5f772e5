"""Heatmaps tab: Grad-CAM for both classes side by side, plus one saliency method (API ``/heatmaps``).

Every map is a :mod:`lib.explain` call (``gradcam`` / ``attribute``) drawn with ``lib.explain.overlay``; this module
only maps the UI choices onto their arguments (see :func:`overlay_limits` and :func:`heatmaps_for`).
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import torch

from lib.explain import attribute, gradcam, list_methods, overlay, prepare
from lib.models import conv_layers, get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors
from ..fair_queue import expensive_when

__all__ = ["build", "heatmaps_for", "layer_choices", "overlay_limits", "SCALES", "UPSAMPLES", "SALIENCY_METHODS",
           "DEFAULT_LAYER", "EXPENSIVE_METHODS"]

DEFAULT_LAYER = "default (model's target layer)"
SCALES = ["per map", "shared (both classes)"]
UPSAMPLES = ["bilinear", "bicubic", "nearest"]
#: Captum methods offered (Grad-CAM itself has the two big panels).
SALIENCY_METHODS = [m for m in list_methods() if m != "layer_gradcam"]
#: The methods that run in the app's expensive lane: 25–250 forward/backward passes per image (integrated gradients,
#: SmoothGrad, occlusion) against one for plain and guided gradients (see README, Benchmarks).
EXPENSIVE_METHODS = ("integrated_gradients", "smoothgrad", "occlusion")
CMAP, ALPHA = "jet", 0.5


def overlay_limits(scale: str, relu: bool) -> tuple[str, float, float]:
    """``(normalise mode for gradcam, vmin, vmax)`` for a UI scale choice.

    ``per map``: each class map min–max to [0, 1] (shows the pattern, hides the magnitude); ``shared``: both classes
    divided by their common largest |value| (ReLU'd → [0, 1], signed → [−1, 1]), so a weak class looks weak.
    """
    if scale not in SCALES:
        raise gr.Error(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == SCALES[0]:
        return "per_map", 0.0, 1.0
    return "shared", (0.0 if relu else -1.0), 1.0


def _saliency_limits(maps: np.ndarray) -> tuple[float, float]:
    """Own scale for the saliency map: [0, max] for non-negative maps, symmetric around 0 for signed ones."""
    lo, hi = float(maps.min()), float(maps.max())
    if lo >= 0:
        return 0.0, max(hi, 1e-12)
    m = max(abs(lo), abs(hi), 1e-12)
    return -m, m


def caption(cfg: dict, layer: str, relu: bool, upsample: str, scale: str, method: str, target: str) -> str:
    labels = cfg["labels"]
    return "\n".join([
        f"**What these maps show.** Grad-CAM at layer `{layer}`: where that layer's feature maps raise the **logit** "
        f"(the score before softmax) of {labels[0]} (left) and {labels[1]} (right). "
        f"{'ReLU applied: only evidence *for* the class is shown.' if relu else 'Signed: blue = evidence against.'} "
        f"The map is computed at the layer's coarse resolution and enlarged ({upsample}), so fine detail is not real.",
        "",
        f"**What they do not show.** Not a segmentation of the disease, not a measure of how sure the model is, and "
        f"not proof that the model is right. "
        + ("*Per-map scaling* stretches each map to the full colour range: a near-zero map looks as bright as a strong "
           "one — switch to *shared* to compare the classes." if scale == SCALES[0] else
           "*Shared scaling*: both maps use one scale, so a weaker class really looks weaker."),
        "",
        f"Right panel: **{method}** for the predicted class ({target}), on its own scale; pixel-level gradients are "
        "noisy and can look like edge detectors (see the Trust tab's randomisation check).",
    ])


def heatmaps_for(model: torch.nn.Module, grey: np.ndarray, layer: str | None, relu: bool, upsample: str,
                 scale: str, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The three overlays and the caption for one grey image at the model's size."""
    cfg = get_config(model)
    if layer in (None, "", DEFAULT_LAYER):
        layer = cfg.get("target_layer")
    if upsample not in UPSAMPLES:
        raise gr.Error(f"upsampling must be one of {UPSAMPLES}, got {upsample!r}")
    if method not in SALIENCY_METHODS:
        raise gr.Error(f"saliency method must be one of {SALIENCY_METHODS}, got {method!r}")
    mode, vmin, vmax = overlay_limits(scale, bool(relu))
    x = prepare(model, torch.from_numpy(grey))
    maps = gradcam(model, x, None, layer, relu=bool(relu), upsample=upsample, normalise=mode)[0].cpu().numpy()
    prob = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])
    target = 1 if prob >= float(cfg.get("threshold", 0.5)) else 0
    sal = attribute(model, x, target, method=method)[0, 0].cpu().numpy()
    left = overlay(grey, maps[0], CMAP, ALPHA, vmin, vmax)
    right = overlay(grey, maps[1], CMAP, ALPHA, vmin, vmax)
    slo, shi = _saliency_limits(sal)
    sal_rgb = overlay(grey, sal, CMAP, ALPHA, slo, shi)
    return left, right, sal_rgb, caption(cfg, layer, bool(relu), upsample, scale, method, cfg["labels"][target])


def layer_choices(model: torch.nn.Module) -> list[str]:
    """The target-layer dropdown's choices: the model's default, then its conv layers in forward order."""
    return [DEFAULT_LAYER] + conv_layers(model)


def build(ctx: AppContext) -> TabSpec:
    """The Heatmaps tab (call inside ``with gr.Tab("Heatmaps"):``)."""
    # the layer list is filled on page load (on_model below): building the page never waits for a model to load
    default_layers = [DEFAULT_LAYER]
    labels = ctx.labels()
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            inp = image_inputs(ctx)
            layer = gr.Dropdown(default_layers, value=DEFAULT_LAYER, label="Target layer (conv layers, forward order)",
                                allow_custom_value=True)
            relu = gr.Checkbox(True, label="ReLU (paper); off = signed map")
            upsample = gr.Radio(UPSAMPLES, value="bilinear", label="Upsampling to the image")
            scale = gr.Radio(SCALES, value=SCALES[0], label="Colour scale")
            method = gr.Dropdown(SALIENCY_METHODS, value="saliency", label="Saliency method (predicted class)")
            expensive_when(method, EXPENSIVE_METHODS)  # any event reading this choice queues by its cost
            go = gr.Button("Explain", variant="primary")
        with gr.Column(scale=3):
            with gr.Row():
                first = gr.Image(label=f"Grad-CAM: {labels[0]}", format="png", interactive=False)
                second = gr.Image(label=f"Grad-CAM: {labels[1]}", format="png", interactive=False)
                saliency = gr.Image(label="Saliency", format="png", interactive=False)
            text = gr.Markdown()

    @ui_errors
    def run(image: Any, model: str | None = None, layer: str | None = DEFAULT_LAYER, relu: bool = True,
            upsample: str = "bilinear", scale: str = SCALES[0], method: str = "saliency", example: str | None = None,
            progress: gr.Progress = gr.Progress()):
        progress(0.1, desc="loading the image")
        m = ctx.model(model)
        grey, _ = load_image(ctx, image, example, m, original=False)
        progress(0.3, desc=f"Grad-CAM and {method}")
        return heatmaps_for(m, grey, layer, relu, upsample, scale, method)

    @ui_errors
    def on_model(model_name: str | None):
        m = ctx.model(model_name)
        names = get_config(m)["labels"]
        return (gr.Dropdown(choices=layer_choices(m), value=DEFAULT_LAYER),
                gr.Image(label=f"Grad-CAM: {names[0]}"), gr.Image(label=f"Grad-CAM: {names[1]}"))

    inputs = [inp.upload, inp.model, layer, relu, upsample, scale, method, inp.example]
    outputs = [first, second, saliency, text]
    go.click(run, inputs, outputs, api_name="heatmaps", concurrency_id="interactive")
    inp.model.change(on_model, inp.model, [layer, first, second], api_visibility="private")
    return TabSpec(model=inp.model, example=inp.example, on_open=(run, inputs, outputs),
                   on_load=[(on_model, [inp.model], [layer, first, second])])
