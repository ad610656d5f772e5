"""Classify tab: upload or pick an example, choose a model, read the class probabilities (API ``/classify``)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import torch

from lib.data import Preprocess
from lib.models import get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors

__all__ = ["build", "class_probabilities", "preprocessing_markdown"]


def class_probabilities(model: torch.nn.Module, grey_small: Any) -> dict[str, float]:
    """``{label: probability}`` for one grey uint8 image at the model's size (a ``lib.models.predict_proba`` call)."""
    labels = list(get_config(model)["labels"])
    p = float(predict_proba(model, torch.from_numpy(grey_small)[None, None])[0])
    return {labels[0]: 1.0 - p, labels[1]: p}


def preprocessing_markdown(model: torch.nn.Module, name: str) -> str:
    """What the model does to an image before it sees it, read from its config (never copied by hand)."""
    cfg = get_config(model)
    size = cfg.get("img_size")
    chans = cfg.get("in_chans", 1)
    mean, std = cfg.get("mean"), cfg.get("std")
    thr = cfg.get("threshold")
    lines = [
        f"**Model** `{name}` — architecture `{cfg.get('architecture')}`, labels {list(cfg.get('labels', []))}",
        "",
        "**Preprocessing (from the model's config.json):**",
        "1. decode to one grey channel, 8 bit (16-bit PNG min–max rescaled; DICOM windowed)",
        f"2. resize to {size}×{size} px (bilinear, aspect ratio not kept)",
        f"3. scale to [0, 1], then normalise: (x − {mean}) / {std}",
        f"4. {f'copy the grey image to {chans} input channels' if chans and chans > 1 else 'one input channel'}",
    ]
    if thr is not None:
        rule = cfg.get("threshold_rule", "stored")
        lines += ["", f"**Decision threshold** P({cfg['labels'][1]}) ≥ {float(thr):.3f} ({rule})"]
    lines += ["", f"The exact object used: `{Preprocess.from_config(cfg)!r}`",
              "", f"Grad-CAM default layer: `{cfg.get('target_layer')}`"]
    return "\n".join(lines)


def _gallery_examples(ctx: AppContext, per_class: int = 4) -> list[str]:
    """A few examples of each class for the thumbnail gallery."""
    out: list[str] = []
    for label in sorted({ctx.examples.label(e) for e in ctx.examples}):
        out += [e for e in ctx.examples if ctx.examples.label(e) == label][:per_class]
    return out


def build(ctx: AppContext) -> TabSpec:
    """The Classify tab (call inside ``with gr.Tab("Classify"):``)."""
    picks = _gallery_examples(ctx)
    # made here, placed below the example dropdown by image_inputs
    # Empty here and filled by the first view (below): a value given here is written into /config with the server's
    # temp folder in every file path.
    thumbs = gr.Gallery(None, label="Examples (click one)", columns=4,
                        height=200, allow_preview=False, interactive=False, render=False)
    with gr.Row():
        with gr.Column(scale=1):
            inp = image_inputs(ctx, below_example=thumbs.render)
            go = gr.Button("Classify", variant="primary")
        with gr.Column(scale=1):
            probs = gr.Label(label="Class probabilities", num_top_classes=2)
            decision = gr.Markdown()
            preview = gr.Image(label="What the model sees (grey, its input pixels; small inputs shown enlarged)",
                               format="png", type="numpy", interactive=False, image_mode="L", height=260)
        with gr.Column(scale=1):
            info = gr.Markdown()

    @ui_errors
    def classify(image: Any, model: str | None = None, example: str | None = None) -> dict[str, float]:
        m = ctx.model(model)
        small, _ = load_image(ctx, image, example, m, original=False)
        return class_probabilities(m, small)

    @ui_errors
    def details(image: Any, model_name: str | None, example_id: str | None):
        m = ctx.model(model_name)
        small, full = load_image(ctx, image, example_id, m)
        cfg = get_config(m)
        thr = cfg.get("threshold", 0.5)
        p = class_probabilities(m, small)[cfg["labels"][1]]
        pred = cfg["labels"][1] if p >= thr else cfg["labels"][0]
        truth = ctx.examples.label(example_id) if (not image and example_id) else None
        text = f"**Prediction at threshold {float(thr):.3f}: {pred}** (P({cfg['labels'][1]}) = {p:.3f})"
        if truth:
            text += f" — true label (folder): {truth}"
        text += (f"\n\nOriginal size {full.shape[1]}×{full.shape[0]} px → model input "
                 f"{small.shape[1]}×{small.shape[0]} px.")
        # A 28 px input would show as a speck: repeat its pixels (nearest neighbour, no smoothing added) for display.
        zoom = max(1, 224 // max(small.shape[:2]))
        return np.kron(small, np.ones((zoom, zoom), dtype=small.dtype)) if zoom > 1 else small, text

    @ui_errors
    def describe(model_name: str | None) -> str:
        return preprocessing_markdown(ctx.model(model_name), model_name or ctx.default_model or "")

    def auto(image: Any, model: str | None, example: str | None):
        """classify without complaining when there is nothing to classify yet (an emptied dropdown)."""
        if not image and not example:
            return gr.skip()
        return classify(image, model, example)

    def auto_details(image: Any, model: str | None, example: str | None):
        if not image and not example:
            return gr.skip(), gr.skip()
        return details(image, model, example)

    def pick(evt: gr.SelectData):
        return picks[evt.index] if evt is not None and 0 <= evt.index < len(picks) else gr.skip()

    thumbs.select(pick, None, inp.example, api_visibility="private", queue=False)
    inputs = [inp.upload, inp.model, inp.example]
    go.click(classify, inputs, probs, api_name="classify", concurrency_id="interactive") \
        .success(details, inputs, [preview, decision], api_visibility="private")
    # Picking an example (or a model, or uploading) classifies at once.
    for event in (inp.picked,
                  inp.model.change(describe, inp.model, info, api_visibility="private"),
                  inp.upload.upload(lambda: None, None, None, api_visibility="private", queue=False)):
        event.then(auto, inputs, probs, api_visibility="private") \
            .success(auto_details, inputs, [preview, decision], api_visibility="private")
    # The first view shows the thumbnails, classifies the default example and describes the default model, so the
    # page is never empty.
    def thumbnails() -> list[tuple[str, str]]:
        return [(str(ctx.examples.path(e)), e) for e in picks]

    first_view = [(thumbnails, [], thumbs), (classify, inputs, probs), (details, inputs, [preview, decision]),
                  (describe, [inp.model], info)]
    return TabSpec(model=inp.model, example=inp.example, on_load=first_view)
