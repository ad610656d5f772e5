"""Feature-maps tab: the chosen image after each block/stage of the model (API ``/feature_maps``)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import torch

from lib.explain import feature_map_grid, feature_maps, prepare

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors

__all__ = ["build", "FM_SCALES", "stage_panels"]

FM_SCALES = ["per_map", "shared"]


def stage_panels(model: torch.nn.Module, grey: np.ndarray, top_k: int, scale: str) -> list[tuple[np.ndarray, str]]:
    """``(RGB grid, caption)`` per stage, from :func:`lib.explain.feature_maps` and :func:`feature_map_grid`."""
    if scale not in FM_SCALES:
        raise gr.Error(f"scale must be one of {FM_SCALES}, got {scale!r}")
    stages = feature_maps(model, prepare(model, torch.from_numpy(grey)), top_k=int(top_k))
    out = []
    for i, st in enumerate(stages):
        shape = "×".join(str(s) for s in st.maps.shape[1:]) or "1-D"
        out.append((feature_map_grid(st.maps, scale=scale),
                    f"{i + 1}. {st.name} — {shape}, channels {st.channels} (strongest first)"))
    return out


def build(ctx: AppContext) -> TabSpec:
    """The Feature maps tab (call inside ``with gr.Tab("Feature maps"):``)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            inp = image_inputs(ctx)
            top_k = gr.Slider(1, 32, value=8, step=1, label="Channels per stage (strongest by mean activation)")
            scale = gr.Radio(FM_SCALES, value="per_map", label="Scale (per map: each pattern; shared: which is strong)")
            go = gr.Button("Show feature maps", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Feature maps after each stage (nearest-neighbour enlarged)", format="png",
                                 columns=3, object_fit="contain", height="auto")
            gr.Markdown("Each tile is one channel's activation map after the stage, enlarged without smoothing: one "
                        "block = one activation. Deeper stages are coarser and more abstract.")

    @ui_errors
    def run(image: Any, model: str | None = None, top_k: float = 8, scale: str = "per_map",
            example: str | None = None, progress: gr.Progress = gr.Progress()):
        progress(0.1, desc="loading the image")
        m = ctx.model(model)
        grey, _ = load_image(ctx, image, example, m, original=False)
        progress(0.4, desc="running the model stage by stage")
        return stage_panels(m, grey, int(top_k), scale)

    inputs = [inp.upload, inp.model, top_k, scale, inp.example]
    go.click(run, inputs, gallery, api_name="feature_maps", concurrency_id="interactive")
    return TabSpec(model=inp.model, example=inp.example, on_open=(run, inputs, gallery))
