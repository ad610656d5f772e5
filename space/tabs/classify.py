"""Classify tab: upload or pick an example, choose a model, read the decision and the class probabilities (API
``/classify``: the probabilities dict).

One decision, never two: the line above the bars says the class at the model's **operating threshold** (from its
config, with how it was chosen), and the bars carry no headline of their own — a ``gr.Label`` headlines the larger
probability (P ≥ 0.5), which contradicts the decision whenever P lies between 0.5 and the threshold.
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import torch

from lib.data import Preprocess
from lib.models import get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors
from ..snippets import code_box, header, image_path, model_lines

__all__ = ["build", "class_probabilities", "preprocessing_markdown", "decision_line", "snippet"]


def class_probabilities(model: torch.nn.Module, grey_small: Any) -> dict[str, float]:
    """``{label: probability}`` for one grey uint8 image at the model's size (a ``lib.models.predict_proba`` call)."""
    labels = list(get_config(model)["labels"])
    p = float(predict_proba(model, torch.from_numpy(grey_small)[None, None])[0])
    return {labels[0]: 1.0 - p, labels[1]: p}


def _threshold(cfg: dict) -> tuple[float, str]:
    """The model's operating threshold and where it comes from (0.5 when its config stores none)."""
    thr = cfg.get("threshold")
    if thr is None:
        return 0.5, "the model stores no threshold: 0.5 is used"
    rule = str(cfg.get("threshold_rule") or "stored in its config")
    return float(thr), f"chosen: {rule}"


def _digits(p: float, thr: float) -> int:
    """Decimals that show ``p`` and ``thr`` as different numbers (3, more when they round alike, 6 at most):
    "0.624, below the threshold 0.624" would read as a contradiction."""
    d = 3
    while d < 6 and p != thr and round(p, d) == round(thr, d):
        d += 1
    return d


def decision_line(model: torch.nn.Module, probabilities: dict[str, float]) -> str:
    """The decision as one markdown line: the class at the model's threshold, P(positive class), the threshold and
    its origin — ``"**NORMAL** — P(PNEUMONIA) = 0.522, below the model's threshold 0.624 (chosen: youden on the
    validation split)"``."""
    cfg = get_config(model)
    labels = list(cfg["labels"])
    thr, origin = _threshold(cfg)
    p = float(probabilities[labels[1]])
    above = p >= thr
    d = _digits(p, thr)
    where = "at or above" if above else "below"
    return (f"**{labels[1] if above else labels[0]}** — P({labels[1]}) = {p:.{d}f}, {where} the model's threshold "
            f"{thr:.{d}f} ({origin})")


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


def snippet(ctx: AppContext, upload: Any, model_name: str | None, example: str | None) -> str:
    """The code behind the view: leaves ``probabilities`` (the dict the bars show) and ``decision`` (the class at the
    model's threshold, the decision line's first word)."""
    m = ctx.model(model_name)
    load = model_lines(ctx, model_name, m)  # ["from lib.models import load_model", "", "model = load_model(…)"]
    lines = header("Classify: class probabilities and the decision at the model's threshold") + [
        "import torch",
        "",
        "from lib.data import load_grey",
        "from lib.models import get_config, load_model, predict_proba",
        "",
        *load[2:],
        "cfg = get_config(model)",
        f"path = {image_path(ctx, upload, example)}",
        'grey = load_grey(path, cfg["img_size"])  # uint8, decoded and resized as the app does',
        "p = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])  # P(class 1)",
        'labels = cfg["labels"]',
        "probabilities = {labels[0]: 1.0 - p, labels[1]: p}",
        '# the operating threshold stored with the model (0.5 when it has none)',
        'threshold = cfg["threshold"] if cfg.get("threshold") is not None else 0.5',
        "decision = labels[1] if p >= threshold else labels[0]",
    ]
    return "\n".join(lines) + "\n"


def _gallery_examples(ctx: AppContext, per_class: int = 3) -> list[str]:
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
    thumbs = gr.Gallery(None, label="Examples (click one)", columns=3,
                        height="auto", allow_preview=False, interactive=False, render=False)
    with gr.Row():
        with gr.Column(scale=1):
            inp = image_inputs(ctx, below_example=thumbs.render)
            go = gr.Button("Classify", variant="primary")
        with gr.Column(scale=1):
            # the decision first, one line; the bars below have no headline (it would name the larger probability)
            decision = gr.Markdown(elem_id="classify-decision")
            probs = gr.Label(label="Class probabilities (the decision above uses the model's threshold, not 50 %)",
                             num_top_classes=2, show_heading=False)
            preview = gr.Image(label="What the model sees (its input pixels)",
                               format="png", type="numpy", interactive=False, image_mode="L", height=260)
        with gr.Column(scale=1):
            info = gr.Markdown()
    code = code_box()

    @ui_errors
    def classify(image: Any, model: str | None = None, example: str | None = None) -> dict[str, float]:
        m = ctx.model(model)
        small, _ = load_image(ctx, image, example, m, original=False)
        return class_probabilities(m, small)

    @ui_errors
    def details(image: Any, model_name: str | None, example_id: str | None):
        m = ctx.model(model_name)
        small, full = load_image(ctx, image, example_id, m)
        text = decision_line(m, class_probabilities(m, small))
        truth = ctx.examples.label(example_id) if (not image and example_id) else None
        more = [f"true label (folder): **{truth}**"] if truth else []
        more.append(f"original size {full.shape[1]}×{full.shape[0]} px → model input "
                    f"{small.shape[1]}×{small.shape[0]} px")
        text += "\n\n" + " · ".join(more)
        # A 28 px input would show as a speck: repeat its pixels (nearest neighbour, no smoothing added) for display.
        zoom = max(1, 224 // max(small.shape[:2]))
        return np.kron(small, np.ones((zoom, zoom), dtype=small.dtype)) if zoom > 1 else small, text

    @ui_errors
    def describe(model_name: str | None) -> str:
        return preprocessing_markdown(ctx.model(model_name), model_name or ctx.default_model or "")

    @ui_errors
    def show_code(image: Any, model_name: str | None, example_id: str | None) -> str:
        return snippet(ctx, image, model_name, example_id)

    def nothing(image: Any, example: str | None) -> bool:
        return not image and not example

    def auto(image: Any, model: str | None, example: str | None):
        """classify without complaining when there is nothing to classify yet (an emptied dropdown)."""
        return gr.skip() if nothing(image, example) else classify(image, model, example)

    def auto_details(image: Any, model: str | None, example: str | None):
        return (gr.skip(), gr.skip()) if nothing(image, example) else details(image, model, example)

    def auto_code(image: Any, model: str | None, example: str | None):
        return gr.skip() if nothing(image, example) else show_code(image, model, example)

    def clear():
        """The old result goes the moment an input changes: never the previous image's numbers under a new one."""
        return None, "", None, ""

    def pick(evt: gr.SelectData):
        return picks[evt.index] if evt is not None and 0 <= evt.index < len(picks) else gr.skip()

    thumbs.select(pick, None, inp.example, api_visibility="private", queue=False)
    inputs = [inp.upload, inp.model, inp.example]
    shown = [probs, decision, preview, code]
    go.click(classify, inputs, probs, api_name="classify", concurrency_id="interactive") \
        .success(details, inputs, [preview, decision], api_visibility="private") \
        .success(show_code, inputs, code, api_visibility="private", show_progress="hidden")
    # Any new input (an example — `picked` has cleared the upload first —, a model, an upload or its removal) clears
    # the result at once, then classifies (cheap); a new model is described first.
    for event in (inp.picked.then(clear, None, shown, api_visibility="private", queue=False),
                  inp.model.change(clear, None, shown, api_visibility="private", queue=False)
                  .then(describe, inp.model, info, api_visibility="private"),
                  inp.upload.upload(clear, None, shown, api_visibility="private", queue=False),
                  inp.upload.clear(clear, None, shown, api_visibility="private", queue=False)):
        event.then(auto, inputs, probs, api_visibility="private") \
            .success(auto_details, inputs, [preview, decision], api_visibility="private") \
            .success(auto_code, inputs, code, api_visibility="private", show_progress="hidden")

    # The first view shows the thumbnails, classifies the default example and describes the default model, so the
    # page is never empty.
    def thumbnails() -> list[tuple[str, str]]:
        # the true label only: a longer caption is cut at the thumbnail's width (the dropdown names the file)
        return [(str(ctx.examples.path(e)), ctx.examples.label(e) or e) for e in picks]

    first_view = [(thumbnails, [], thumbs), (classify, inputs, probs), (details, inputs, [preview, decision]),
                  (show_code, inputs, code), (describe, [inp.model], info)]
    return TabSpec(model=inp.model, example=inp.example, on_load=first_view, result_id="classify-decision")
