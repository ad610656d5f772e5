"""The teaching app: classify a chest X-ray and look inside the model. UI glue only; every number is a ``lib`` call.

Run it (offline, bundled model and examples)::

    python -m space.app                       # http://127.0.0.1:7860
    python -m space.app --port 7861 --host 0.0.0.0
    python space/app.py                       # how a Hugging Face Space starts app_file

Port: ``--port`` > ``GRADIO_SERVER_PORT`` > 7860; host: ``--host`` > ``GRADIO_SERVER_NAME`` > 127.0.0.1.
Models: ``models/*`` (bundled), ``$XCXR_RUNS_DIR`` (default ``runs/``, folders written by
``python -m train … --out``), Hub repos from ``$XCXR_HUB_MODELS`` (comma list) or ``space/hub_models.yaml``
(tried only when ``HF_HUB_OFFLINE`` is unset).

Deep links: ``/?tab=heatmaps&model=pneumonia_cnn&example=PNEUMONIA/person1071_virus_1774.jpeg`` opens that tab with
that model and example (tab ids: classify, heatmaps, filters, feature_maps, outcomes, report, trust). Extra parameters
(``outcome=FP&index=3``) are handed to the tabs that ask for them (see :mod:`space.context`). The "Copy link" button
copies the link of the current view.
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python space/app.py` (Spaces) puts space/ first on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported; no network in class rooms

import gradio as gr  # noqa: E402

from space.catalog import ModelCatalog  # noqa: E402
from space.context import TAB_IDS, AppContext  # noqa: E402
from space.examples import ExampleSet  # noqa: E402
from space.tabs import classify, feature_maps, filters, heatmaps  # noqa: E402

__all__ = ["build_app", "make_context", "main", "TAB_TITLES"]

TAB_TITLES = {"classify": "Classify", "heatmaps": "Heatmaps", "filters": "Filters", "feature_maps": "Feature maps",
              "outcomes": "Outcomes", "report": "Model report", "trust": "Trust"}


def _optional_tab(name: str):
    """The third helper's tab modules (``space.tabs.outcomes`` …) when present; the app runs without them."""
    try:
        module = __import__(f"space.tabs.{name}", fromlist=["build"])
    except ImportError as e:
        if e.name and not e.name.startswith("space.tabs"):
            raise  # the module exists but one of its imports is broken: show it, do not hide it
        return None
    return module if hasattr(module, "build") else None


def make_context(models_dir: str = "models", runs_dir: str | None = None, hub_repos: list | None = None,
                 examples_dir: str | None = None) -> AppContext:
    catalog = ModelCatalog(models_dir=models_dir, runs_dir=runs_dir, hub_repos=hub_repos)
    examples = ExampleSet(examples_dir) if examples_dir else ExampleSet()
    return AppContext(catalog=catalog, examples=examples)


_COPY_LINK_JS = """
(tab, ...values) => {
  const n = values.length / 2;
  const models = values.slice(0, n), examples = values.slice(n);
  const owners = %s;            // tab id -> index of its model/example dropdown (or -1)
  const url = new URL(window.location.href);
  url.search = "";
  url.hash = "";
  if (tab) url.searchParams.set("tab", tab);
  const i = (owners[tab] !== undefined) ? owners[tab] : 0;
  const m = models[i] !== undefined ? models[i] : models[0];
  const e = examples[i] !== undefined ? examples[i] : examples[0];
  if (m) url.searchParams.set("model", m);
  if (e) url.searchParams.set("example", e);
  const link = url.toString();
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(link).catch(() => {}); }
  return link;
}
"""


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole app as a ``gr.Blocks`` (queue configured); launch it with :func:`main` or ``demo.launch()``."""
    ctx = ctx or make_context()
    owners: dict[str, int] = {}
    tabs_built: dict[str, gr.Tab] = {}
    # delete_cache: uploads and rendered images older than an hour are removed every hour (a Space runs for weeks).
    with gr.Blocks(title="Explainable chest X-ray classification", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Explainable chest X-ray classification\nA teaching tool: classify an X-ray (normal vs "
                    "pneumonia), then look inside the model. **Not for diagnosis.**")
        ctx.link_params = gr.State({})
        current_tab = gr.Textbox(value=TAB_IDS[0], visible=False, label="current tab")
        with gr.Tabs(selected=TAB_IDS[0]) as tabs:
            for tab_id in TAB_IDS:
                module = {"classify": classify, "heatmaps": heatmaps, "filters": filters,
                          "feature_maps": feature_maps}.get(tab_id) or _optional_tab(tab_id)
                if module is None:
                    continue
                n_models = len(ctx.model_dropdowns)
                with gr.Tab(TAB_TITLES[tab_id], id=tab_id) as tab:
                    module.build(ctx)
                if len(ctx.model_dropdowns) > n_models:
                    owners[tab_id] = n_models
                tab.select(lambda t=tab_id: t, None, current_tab, api_visibility="private", queue=False)
                tabs_built[tab_id] = tab
        with gr.Row():
            copy = gr.Button("Copy link to this view", size="sm", scale=0)
            link = gr.Textbox(label="Link (copied to the clipboard)", interactive=False, scale=4)
        copy.click(None, [current_tab] + ctx.model_dropdowns + ctx.example_dropdowns, link,
                   js=_COPY_LINK_JS % json.dumps(owners), api_visibility="private", queue=False)
        _wire_deep_links(demo, ctx, tabs, current_tab)
        # Opening a tab fills it with the current choices (heatmaps of the selected example, filters…).
        for tab_id, (fn, inputs, outputs) in ctx.on_open.items():
            if tab_id in tabs_built:
                tabs_built[tab_id].select(fn, inputs, outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=2, max_size=256)
    demo.xcxr_context = ctx  # type: ignore[attr-defined]  # tests and benchmarks reach the catalog through this
    return demo


def _wire_deep_links(demo: gr.Blocks, ctx: AppContext, tabs: gr.Tabs, current_tab: gr.Textbox) -> None:
    known_tabs = {t for t in TAB_IDS}
    n_m, n_e = len(ctx.model_dropdowns), len(ctx.example_dropdowns)

    def on_load(request: gr.Request):
        params = dict(request.query_params) if request is not None else {}
        tab = params.get("tab")
        model = params.get("model")
        example = params.get("example")
        tab_up = gr.Tabs(selected=tab) if tab in known_tabs else gr.skip()
        cur = tab if tab in known_tabs else gr.skip()
        model_ok = bool(model) and model in ctx.catalog.names()
        example_ok = bool(example) and example in ctx.examples
        models = [gr.Dropdown(value=model) if model_ok else gr.skip() for _ in range(n_m)]
        examples = [gr.Dropdown(value=example) if example_ok else gr.skip() for _ in range(n_e)]
        notes = []
        if model and not model_ok:
            notes.append(f"unknown model {model!r}")
        if example and not example_ok:
            notes.append(f"unknown example {example!r}")
        if notes:
            gr.Warning("Link: " + "; ".join(notes))
        return [tab_up, cur, params, *models, *examples]

    ev = demo.load(on_load, None, [tabs, current_tab, ctx.link_params, *ctx.model_dropdowns, *ctx.example_dropdowns],
                   api_visibility="private", queue=False)
    for fn, outputs in ctx.link_handlers:
        ev = ev.then(fn, ctx.link_params, outputs, api_visibility="private")
    # A deep link to a tab with an "open" action runs it once the dropdowns are set.
    for tab_id, (fn, inputs, outputs) in ctx.on_open.items():
        def when_linked(current, *args, _fn=fn, _tab=tab_id, _n=len(outputs) if isinstance(outputs, list) else 1):
            if current != _tab:
                return gr.skip() if _n == 1 else [gr.skip()] * _n
            return _fn(*args)

        ev.then(when_linked, [current_tab, *inputs], outputs, api_visibility="private")
    # First view: classify the default example and describe the default model, so the page is never empty.
    cls = getattr(ctx, "classify_outputs", None)
    if cls is not None:
        probs, preview, decision, info, classify_fn, details_fn, describe_fn = cls
        inputs = ctx.classify_inputs  # upload, model, example
        ev.then(classify_fn, inputs, probs, api_visibility="private") \
          .then(details_fn, inputs, [preview, decision], api_visibility="private") \
          .then(describe_fn, inputs[1], info, api_visibility="private")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Explainable chest X-ray classification — the Gradio app")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--runs-dir", default=None, help="training outputs to list (default $XCXR_RUNS_DIR or runs/)")
    ap.add_argument("--share", action="store_true", help="a public gradio.live link (needs the network)")
    args = ap.parse_args(argv)
    demo = build_app(make_context(args.models_dir, args.runs_dir))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="200mb",
                footer_links=["api", "settings"])


if __name__ == "__main__":
    main()
