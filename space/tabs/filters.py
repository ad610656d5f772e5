"""Filters tab: first-layer filters of several models side by side (API ``/filters``).

The default selection is the bundled, study and Hub models (at most :data:`MAX_DEFAULT`); local training runs
(``run:…``, a sweep leaves dozens) are added by choosing them, so the tab never loads every run at once. Each panel
names its model, how it was trained and the layer, drawn into the image (:func:`lib.explain.filters.filter_panel`),
so the title is never cut and a downloaded panel still says what it shows. Link parameters: ``filter_scale``
(``common`` / ``per_filter``) and ``models`` (a comma list; unknown names are dropped with a warning).
"""
from __future__ import annotations

import gradio as gr
import torch

from lib.errors import XcxrError
from lib.explain import filter_summary
from lib.explain.filters import filter_panel, filter_weights
from lib.models import get_config

from ..context import AppContext, TabSpec
from ..errors import public_text, ui_errors
from ..links import LinkParams, link_pending
from ..snippets import code_box, header, model_lines

__all__ = ["build", "FILTER_SCALES", "MAX_DEFAULT", "training_label", "filter_panels", "default_models",
           "PRETRAINED_MISSING", "MARGIN", "panel_title", "snippet"]

FILTER_SCALES = ["common", "per_filter"]
#: How many models the tab shows before the user picks.
MAX_DEFAULT = 8
#: Blank pixels above each panel's title: the gallery lays its label over the first panel's top-left corner.
MARGIN = 32


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


def panel_title(name: str, model: torch.nn.Module) -> list[str]:
    """The first lines written above a model's panel: its name and how it was trained (the layer line is added by
    :func:`lib.explain.filters.filter_panel`)."""
    return [name, training_label(model)]


def _names(ctx: AppContext, names: list[str] | None) -> list[str]:
    available = ctx.catalog.available()
    names = default_models(available) if not names else list(names)
    unknown = [n for n in names if n not in available and not (ctx.visitors and ctx.visitors.owns(n))]
    if unknown:
        raise gr.Error(f"not available: {', '.join(unknown)}; choose among the listed models")
    return names


def filter_panels(ctx: AppContext, scale: str, names: list[str] | None = None) -> tuple[list, str]:
    """One gallery image per model in ``names`` (default: :func:`default_models`): the RGB uint8 panel of
    :func:`lib.explain.filters.filter_panel`, titled with the model, its training and the layer; and a summary in
    markdown."""
    if scale not in FILTER_SCALES:
        raise gr.Error(f"scale must be one of {FILTER_SCALES}, got {scale!r}")
    names = _names(ctx, names)
    items, lines = [], []
    for name in names:
        model = ctx.model(name)  # a catalogue model, or this session's own (yours:…)
        try:
            # the title is in the image: a gallery caption would be laid over the kernels and cut at 1366 px
            panel = filter_panel(model, scale=scale, title=panel_title(name, model), margin=MARGIN)
        except XcxrError as e:  # e.g. a model without a first conv layer: said in the text, the others still shown
            lines.append(f"- `{name}`: no filter grid ({public_text(str(e))})")
            continue
        items.append(panel)
        lines.append(f"- `{name}` ({training_label(model)}): {filter_summary(model)}")
    if not items:
        raise gr.Error("no available model has first-layer filters to show")
    text = ("Red = positive weight, blue = negative, white = 0 (a diverging colour map). "
            "`common` scale: one limit for all kernels of a model (strong and weak filters comparable); "
            "`per_filter`: each kernel stretched to its own range. Click a panel to enlarge it.\n\n"
            + "\n".join(lines))
    if not any(training_label(ctx.model(n)).startswith("ImageNet") for n in names):
        text += "\n\n" + PRETRAINED_MISSING
    return items, text


def snippet(ctx: AppContext, scale: str, names: list[str] | None = None) -> str:
    """The code behind the view: leaves ``shown``, the displayed panels (``uint8`` RGB arrays, titles drawn in, in
    display order). Models without a first-layer grid are left out, as in the view."""
    rows = []
    for name in _names(ctx, names):
        model = ctx.model(name)
        try:
            filter_weights(model)
        except XcxrError:  # no filter grid: not shown in the view either
            continue
        load = model_lines(ctx, name, model)[2]  # "model = load_model(…)  # comment"
        call, _, comment = load.partition("  #")
        rows.append(f"    ({name!r}, {call.split('=', 1)[1].strip()}, {panel_title(name, model)[1]!r}),"
                    + (f"  #{comment}" if comment else ""))
    lines = header("First-layer filters, one titled panel per model") + [
        "from lib.explain.filters import filter_panel",
        "from lib.models import load_model",
        "",
        "# (name, model, how it was trained): the title written above each panel",
        "models = [",
        *rows,
        "]",
        f"shown = [filter_panel(model, scale={scale!r}, title=[name, trained], margin={MARGIN})",
        "         for name, model, trained in models]",
    ]
    return "\n".join(lines) + "\n"


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
    model dropdown for deep links (its ``models`` link parameter sets it)."""
    available = ctx.catalog.available()
    with gr.Row():
        models = ctx.offer_models(gr.Dropdown(available, value=default_models(available), multiselect=True, scale=3,
                                              label="Models (add training runs to compare them)"),
                                  ctx.catalog.available)
        scale = gr.Radio(FILTER_SCALES, value="common", label="Scale")
        go = gr.Button("Show filters", variant="primary")
    gallery = gr.Gallery(label="First-layer filters, one panel per model (click to enlarge)", format="png",
                         columns=4, fit_columns=False, object_fit="contain", height=420, preview=False,
                         elem_id="filters-gallery")
    text = gr.Markdown()
    code = code_box()

    @ui_errors
    def run(scale: str = "common", names: list[str] | None = None, progress: gr.Progress = gr.Progress()):
        progress(0.2, desc="drawing the filters")
        return filter_panels(ctx, scale, names)

    @ui_errors
    def show_code(scale: str, names: list[str] | None) -> str:
        return snippet(ctx, scale, names)

    def run_and_code(scale: str, names: list[str] | None):
        return (*run(scale, names), show_code(scale, names))

    def open_tab(scale: str, names: list[str] | None, done: bool, request: gr.Request = None):
        if link_pending(request, "filters", done):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (*run_and_code(scale, names), True)

    def clear():
        return None, "", ""

    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "filters")
        s = p.choice("filter_scale", FILTER_SCALES, default="common") if p.has("filter_scale") else gr.skip()
        names = p.items("models", ctx.catalog.available())
        if names is None:
            chosen = gr.skip()
        elif names:
            chosen = names
        else:
            p.problem("models: none of the names is an available model, so the default selection is shown")
            chosen = default_models(ctx.catalog.available())
        p.warn()
        return s, chosen

    outputs = [gallery, text]
    opened = gr.State(False)  # the tab has been drawn once (a deep link's first "open" waits for its parameters)
    go.click(run, [scale, models], outputs, api_name="filters", concurrency_id="interactive") \
        .success(lambda s, n: (show_code(s, n), True), [scale, models], [code, opened], api_visibility="private",
                 show_progress="hidden")
    # Another scale or another choice of models: the old panels go at once, the new ones are drawn.
    for event in (scale.change(clear, None, [*outputs, code], api_visibility="private", queue=False),
                  models.change(clear, None, [*outputs, code], api_visibility="private", queue=False)):
        event.then(run_and_code, [scale, models], [*outputs, code], api_visibility="private",
                   concurrency_id="interactive")
    return TabSpec(on_open=(open_tab, [scale, models, opened], [*outputs, code, opened]),
                   on_link=(from_link, [scale, models]),
                   link_extras=[("filter_scale", scale), ("models", models)], result_id="filters-gallery")
