"""Feature-maps tab: the chosen image after each block/stage of the model, one tile per channel (API
``/feature_maps``).

Each tile is one channel's activation map (:func:`lib.explain.feature_maps.feature_map_tiles`), 336 px with its
caption ("stage 2 · features.1 · ch 17") drawn on a band above the map, so it never covers the map; a click opens it
full size. Link parameters: ``top_k`` (channels per stage) and ``fm_scale`` (``per_map`` / ``shared``).
"""
from __future__ import annotations

import time
from typing import Any

import gradio as gr
import numpy as np
import torch

from lib.explain import feature_maps, prepare
from lib.explain.feature_maps import feature_map_tiles

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors
from ..links import LinkParams, link_pending
from ..snippets import code_box, header, image_path, model_lines

__all__ = ["build", "FM_SCALES", "TILE", "MARGIN", "TOP_K", "channel_tiles", "snippet"]

FM_SCALES = ["per_map", "shared"]
#: Pixels per tile side (the map, nearest-neighbour enlarged; its caption band comes on top): a whole multiple of
#: every stage's size for 224 px inputs (112, 56, 28, 14, 7), so every activation is a square of equal size, and
#: large enough for the enlarged view to stay sharp.
TILE = 336
#: Blank pixels above each caption: the gallery lays its label over the first tile's top-left corner.
MARGIN = 40
#: Channels per stage: (smallest, largest, default).
TOP_K = (1, 32, 8)


def channel_tiles(model: torch.nn.Module, grey: np.ndarray, top_k: int, scale: str) -> list[tuple[np.ndarray, str]]:
    """``(captioned RGB tile, caption)`` per channel, stage after stage, from :func:`lib.explain.feature_maps` and
    :func:`lib.explain.feature_maps.feature_map_tiles`."""
    if scale not in FM_SCALES:
        raise gr.Error(f"scale must be one of {FM_SCALES}, got {scale!r}")
    top_k = int(top_k)
    if not TOP_K[0] <= top_k <= TOP_K[1]:
        raise gr.Error(f"top_k must be between {TOP_K[0]} and {TOP_K[1]}, got {top_k}")
    stages = feature_maps(model, prepare(model, torch.from_numpy(grey)), top_k=top_k)
    return feature_map_tiles(stages, scale=scale, tile=TILE, margin=MARGIN)


def snippet(ctx: AppContext, upload: Any, model_name: str | None, top_k: int, scale: str,
            example: str | None) -> str:
    """The code behind the view: leaves ``shown``, the displayed tiles (``uint8`` RGB arrays, captions drawn in, in
    display order) and ``captions``."""
    load = model_lines(ctx, model_name)
    lines = header(f"Feature maps: the {int(top_k)} strongest channels after each stage") + [
        "import torch",
        "",
        "from lib.data import load_grey",
        "from lib.explain import feature_maps, prepare",
        "from lib.explain.feature_maps import feature_map_tiles",
        "from lib.models import get_config, load_model",
        "",
        *load[2:],
        f"path = {image_path(ctx, upload, example)}",
        'grey = load_grey(path, get_config(model)["img_size"])  # uint8, decoded and resized as the app does',
        f"stages = feature_maps(model, prepare(model, torch.from_numpy(grey)), top_k={int(top_k)})",
        f"tiles = feature_map_tiles(stages, scale={scale!r}, tile={TILE}, margin={MARGIN})  # [(RGB tile, caption)]",
        "shown = [tile for tile, _ in tiles]",
        "captions = [caption for _, caption in tiles]",
    ]
    return "\n".join(lines) + "\n"


def build(ctx: AppContext) -> TabSpec:
    """The Feature maps tab (call inside ``with gr.Tab("Feature maps"):``)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=340):  # wide enough for "person1071_virus_1774.jpeg (PNEUMONIA)"
            inp = image_inputs(ctx)
            top_k = gr.Slider(TOP_K[0], TOP_K[1], value=TOP_K[2], step=1,
                              label="Channels per stage (strongest by mean activation)")
            scale = gr.Radio(FM_SCALES, value="per_map", label="Scale (per map: each pattern; shared: which is strong)")
            go = gr.Button("Show feature maps", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Feature maps after each stage, one tile per channel (click one to enlarge)",
                                 format="png", columns=4, fit_columns=False, object_fit="contain", height=600,
                                 allow_preview=True,
                                 elem_id="feature-maps-gallery")
            gr.Markdown("Each tile is one channel's activation map after a stage, enlarged without smoothing: one "
                        "block = one activation. Stages run left to right, top to bottom, strongest channel first; "
                        "deeper stages are coarser and more abstract. Click a tile to see it full size.")
    code = code_box()

    @ui_errors
    def run(image: Any, model: str | None = None, top_k: float = TOP_K[2], scale: str = "per_map",
            example: str | None = None, progress: gr.Progress = gr.Progress()):
        progress(0.1, desc="loading the image")
        m = ctx.model(model)
        grey, _ = load_image(ctx, image, example, m, original=False)
        progress(0.4, desc="running the model stage by stage")
        # the caption is drawn above each map; a gallery caption would be laid over the map
        return [tile for tile, _ in channel_tiles(m, grey, int(top_k), scale)]

    @ui_errors
    def show_code(image: Any, model: str | None, top_k: float, scale: str, example: str | None) -> str:
        return snippet(ctx, image, model, int(top_k), scale, example)

    def run_and_code(image: Any, model: str | None, k: float, s: str, example: str | None):
        return run(image, model, k, s, example), show_code(image, model, k, s, example)

    def code_after_run(*args: Any):
        return show_code(*args), True

    def open_tab(image: Any, model: str | None, k: float, s: str, example: str | None, live: bool,
                 request: gr.Request = None):
        if link_pending(request, "feature_maps", live):
            return gr.skip(), gr.skip(), gr.skip()
        return (*run_and_code(image, model, k, s, example), True)

    def clear(live: bool):
        """The old tiles go at once; a new run is asked for (``again``) only when tiles were on screen — a hidden tab
        whose inputs a deep link sets computes when it is opened, not before."""
        return None, "", (time.monotonic() if live else gr.skip())

    def auto(image: Any, model: str | None, k: float, s: str, example: str | None):
        if not image and not example:
            return gr.skip(), gr.skip(), gr.skip()
        return (*run_and_code(image, model, k, s, example), True)

    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "feature_maps")
        k = p.integer("top_k", TOP_K[0], TOP_K[1], default=TOP_K[2]) if p.has("top_k") else gr.skip()
        s = p.choice("fm_scale", FM_SCALES, default="per_map") if p.has("fm_scale") else gr.skip()
        p.warn()
        return k, s

    inputs = [inp.upload, inp.model, top_k, scale, inp.example]
    live = gr.State(False)  # tiles have been shown in this tab: a changed input recomputes them
    # set (to a new value) when a changed input asks for a recomputation: a component the page holds (a State's
    # change does not fire after a queue=False step), rendered but never shown
    again = gr.Number(None, visible="hidden", label="recompute the feature maps", interactive=False)
    go.click(run, inputs, gallery, api_name="feature_maps", concurrency_id="interactive") \
        .success(code_after_run, inputs, [code, live], api_visibility="private", show_progress="hidden")
    # A new input clears the old tiles at once, then recomputes them (one forward pass; `again` triggers it). The
    # slider clears while it moves and recomputes when let go (its `release`): a drag queues one run, not one each step.
    private = dict(api_visibility="private", queue=False)
    inp.picked.then(clear, live, [gallery, code, again], **private)
    for event in (inp.model.change, inp.upload.upload, inp.upload.clear, top_k.release, scale.change):
        event(clear, live, [gallery, code, again], **private)
    top_k.change(lambda: (None, ""), None, [gallery, code], api_visibility="private", queue=False)
    again.change(auto, inputs, [gallery, code, live], api_visibility="private", concurrency_id="interactive")
    return TabSpec(model=inp.model, example=inp.example,
                   on_open=(open_tab, [*inputs, live], [gallery, code, live]),
                   on_link=(from_link, [top_k, scale]), link_extras=[("top_k", top_k), ("fm_scale", scale)],
                   result_id="feature-maps-gallery")
