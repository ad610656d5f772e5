"""Filters tab: first-layer filters of every available model side by side (API ``/filters``)."""
from __future__ import annotations

import gradio as gr
import torch

from lib.explain import filter_grid, filter_summary
from lib.models import get_config

from ..context import AppContext, ui_errors

__all__ = ["build", "FILTER_SCALES", "training_label", "filter_panels"]

FILTER_SCALES = ["common", "per_filter"]


def training_label(model: torch.nn.Module) -> str:
    """``"ImageNet-pretrained…"`` or ``"trained from scratch"``, from the model's config."""
    cfg = get_config(model)
    arch = str(cfg.get("architecture", ""))
    if "pretrained" in arch or cfg.get("pretrained"):
        stem = "first layer kept as pretrained" if cfg.get("freeze_stem") else "first layer fine-tuned"
        return f"ImageNet-pretrained ({stem})"
    return "trained from scratch"


def filter_panels(ctx: AppContext, scale: str) -> tuple[list[tuple], str]:
    """One gallery entry ``(RGB uint8 grid, caption)`` per available model, and a summary in markdown."""
    if scale not in FILTER_SCALES:
        raise ValueError(f"scale must be one of {FILTER_SCALES}, got {scale!r}")
    items, lines = [], []
    for name in ctx.catalog.available():
        model = ctx.catalog.get(name)
        try:
            grid = filter_grid(model, scale=scale)
        except (ValueError, TypeError) as e:
            lines.append(f"- `{name}`: no filter grid ({e})")
            continue
        label = training_label(model)
        items.append((grid, f"{name} — {label}"))
        lines.append(f"- `{name}` ({label}): {filter_summary(model)}")
    if not items:
        raise gr.Error("no available model has first-layer filters to show")
    text = ("Red = positive weight, blue = negative, white = 0 (a diverging colour map). "
            "`common` scale: one limit for all kernels of a model (strong and weak filters comparable); "
            "`per_filter`: each kernel stretched to its own range.\n\n" + "\n".join(lines))
    return items, text


def build(ctx: AppContext) -> None:
    with gr.Row():
        scale = gr.Radio(FILTER_SCALES, value="common", label="Scale")
        go = gr.Button("Show filters", variant="primary")
    gallery = gr.Gallery(label="First-layer filters, one panel per model (click to enlarge)", format="png",
                         columns=4, object_fit="contain", height=360, preview=False)
    text = gr.Markdown()

    @ui_errors
    def run(scale: str = "common", progress: gr.Progress = gr.Progress()):
        progress(0.2, desc="drawing the filters")
        return filter_panels(ctx, scale)

    go.click(run, scale, [gallery, text], api_name="filters", concurrency_limit=2)
    scale.change(run, scale, [gallery, text], api_visibility="private", concurrency_limit=2)
    ctx.on_open["filters"] = (run, [scale], [gallery, text])
