"""Filters tab: first-layer filters of several models side by side (API ``/filters``).

The default selection is the bundled, study and Hub models (at most :data:`MAX_DEFAULT`); local training runs
(``run:…``, a sweep leaves dozens) are added by choosing them, so the tab never loads every run at once.
"""
from __future__ import annotations

import gradio as gr
import torch

from lib.errors import XcxrError
from lib.explain import filter_grid, filter_summary
from lib.models import get_config

from ..context import AppContext, TabSpec
from ..errors import public_text, ui_errors

__all__ = ["build", "FILTER_SCALES", "MAX_DEFAULT", "training_label", "filter_panels", "default_models",
           "PRETRAINED_MISSING"]

FILTER_SCALES = ["common", "per_filter"]
#: How many models the tab shows before the user picks.
MAX_DEFAULT = 8


def default_models(available: list[str]) -> list[str]:
    """The models shown before the user picks: bundled, study and Hub models first; runs only if nothing else."""
    chosen = [n for n in available if not n.startswith("run:")] or list(available)
    return chosen[:MAX_DEFAULT]


def training_label(model: torch.nn.Module) -> str:
    """``"ImageNet-pretrained…"`` or ``"trained from scratch"``, from the model's config."""
    cfg = get_config(model)
    arch = str(cfg.get("architecture", ""))
    if "pretrained" in arch or cfg.get("pretrained"):
        stem = "first layer kept as pretrained" if cfg.get("freeze_stem") else "first layer fine-tuned"
        return f"ImageNet-pretrained ({stem})"
    return "trained from scratch"


def filter_panels(ctx: AppContext, scale: str, names: list[str] | None = None) -> tuple[list[tuple], str]:
    """One gallery entry ``(RGB uint8 grid, caption)`` per model in ``names`` (default: :func:`default_models`),
    and a summary in markdown."""
    if scale not in FILTER_SCALES:
        raise gr.Error(f"scale must be one of {FILTER_SCALES}, got {scale!r}")
    available = ctx.catalog.available()
    names = default_models(available) if not names else list(names)
    unknown = [n for n in names if n not in available and not (ctx.visitors and ctx.visitors.owns(n))]
    if unknown:
        raise gr.Error(f"not available: {', '.join(unknown)}; choose among the listed models")
    items, lines = [], []
    for name in names:
        model = ctx.model(name)  # a catalogue model, or this session's own (yours:…)
        try:
            grid = filter_grid(model, scale=scale)
        except XcxrError as e:  # e.g. a model without a first conv layer: said in the text, the others still shown
            lines.append(f"- `{name}`: no filter grid ({public_text(str(e))})")
            continue
        label = training_label(model)
        items.append((grid, f"{name} — {label}"))
        lines.append(f"- `{name}` ({label}): {filter_summary(model)}")
    if not items:
        raise gr.Error("no available model has first-layer filters to show")
    text = ("Red = positive weight, blue = negative, white = 0 (a diverging colour map). "
            "`common` scale: one limit for all kernels of a model (strong and weak filters comparable); "
            "`per_filter`: each kernel stretched to its own range.\n\n" + "\n".join(lines))
    if not any(training_label(ctx.model(n)).startswith("ImageNet") for n in names):
        text += "\n\n" + PRETRAINED_MISSING
    return items, text


#: Shown while no ImageNet-pretrained model is listed (the course compares all three kinds of first layers).
PRETRAINED_MISSING = (
    "**Where is the ImageNet-pretrained ResNet18?** Its first layer would show what ImageNet taught it: smooth "
    "oriented edge detectors (Gabor-like stripes at many angles), colour-opponent blobs and a few high-frequency "
    "checkers — structured kernels, unlike the noisier ones a network trained from scratch on a few thousand "
    "X-rays learns. It is missing here because its ImageNet weights could not be downloaded where this app was "
    "built (offline). With network access, `python -m train resnet18_pretrained --data …` (or "
    "`--pretrained-file resnet18.safetensors` offline) trains it, and `python -m space.deploy` publishes it; "
    "then it appears in this list.")


def build(ctx: AppContext) -> TabSpec:
    """The Filters tab (call inside ``with gr.Tab("Filters"):``); its model choice is a multi-select, so it has no
    model dropdown for deep links."""
    available = ctx.catalog.available()
    with gr.Row():
        models = ctx.offer_models(gr.Dropdown(available, value=default_models(available), multiselect=True, scale=3,
                                              label="Models (add training runs to compare them)"),
                                  ctx.catalog.available)
        scale = gr.Radio(FILTER_SCALES, value="common", label="Scale")
        go = gr.Button("Show filters", variant="primary")
    gallery = gr.Gallery(label="First-layer filters, one panel per model (click to enlarge)", format="png",
                         columns=4, object_fit="contain", height=360, preview=False)
    text = gr.Markdown()

    @ui_errors
    def run(scale: str = "common", names: list[str] | None = None, progress: gr.Progress = gr.Progress()):
        progress(0.2, desc="drawing the filters")
        return filter_panels(ctx, scale, names)

    go.click(run, [scale, models], [gallery, text], api_name="filters", concurrency_id="interactive")
    scale.change(run, [scale, models], [gallery, text], api_visibility="private", concurrency_id="interactive")
    return TabSpec(on_open=(run, [scale, models], [gallery, text]))
