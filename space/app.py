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
copies the link of the current view: the tab, its own model and example dropdowns, and the parameters the tab
registered in ``ctx.link_extras`` (outcomes: split, threshold, outcome, index).
"""
import argparse
import json
import os
import sys
import threading
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


#: The "Copy link to this view" button's JS. Its inputs: the current tab id, then every model dropdown, every example
#: dropdown and every ``ctx.link_extras`` component, in that order; ``__LINK_SPEC__`` becomes the JSON of
#: :func:`_link_spec`, which says which of those values belong to which tab (and, for the extras, to which parameter).
_COPY_LINK_JS = """
(tab, ...values) => {
  const spec = __LINK_SPEC__;
  const own = (map, key) => Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
  const has = (v) => v !== undefined && v !== null && v !== "";
  const models = values.slice(0, spec.n_models);
  const examples = values.slice(spec.n_models, spec.n_models + spec.n_examples);
  const extras = values.slice(spec.n_models + spec.n_examples);
  const url = new URL(window.location.href);
  url.search = "";
  url.hash = "";
  if (tab) url.searchParams.set("tab", tab);
  // the tab's own model dropdown; a tab without one (filters) links the first tab's model
  const mi = own(spec.model_owner, tab);
  const m = (mi !== undefined) ? models[mi] : models[0];
  if (has(m)) url.searchParams.set("model", String(m));
  // an example only for a tab that has an example dropdown of its own
  const ei = own(spec.example_owner, tab);
  if (ei !== undefined && has(examples[ei])) url.searchParams.set("example", String(examples[ei]));
  for (const [param, j] of (own(spec.extras, tab) || [])) {
    if (has(extras[j])) url.searchParams.set(param, String(extras[j]));
  }
  const link = url.toString();
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(link).catch(() => {}); }
  return link;
}
"""

#: Query parameters the app itself writes; a tab's ``link_extras`` may not use them.
_RESERVED_PARAMS = ("tab", "model", "example")


def _link_extras(ctx: AppContext, tab_ids) -> tuple[list, dict[str, list[tuple[str, int]]]]:
    """``(components, {tab id: [(param, index into components)]})`` from ``ctx.link_extras`` (built tabs only;
    a component registered twice is passed once)."""
    components: list = []
    index: dict[int, int] = {}
    spec: dict[str, list[tuple[str, int]]] = {}
    for tab_id, pairs in (getattr(ctx, "link_extras", None) or {}).items():
        if tab_id not in tab_ids:
            continue
        for param, comp in pairs:
            if param in _RESERVED_PARAMS:
                raise ValueError(f"link_extras[{tab_id!r}]: {param!r} is set by the app itself")
            if id(comp) not in index:
                index[id(comp)] = len(components)
                components.append(comp)
            spec.setdefault(tab_id, []).append((param, index[id(comp)]))
    return components, spec


def _link_spec(n_models: int, n_examples: int, model_owner: dict[str, int], example_owner: dict[str, int],
               extras: dict[str, list[tuple[str, int]]]) -> dict:
    """What :data:`_COPY_LINK_JS` needs to know about its inputs (JSON-able)."""
    return {"n_models": n_models, "n_examples": n_examples, "model_owner": dict(model_owner),
            "example_owner": dict(example_owner),
            "extras": {t: [[p, i] for p, i in pairs] for t, pairs in extras.items()}}


def copy_link_js(spec: dict) -> str:
    """The copy-link JS for ``spec`` (see :func:`_link_spec`)."""
    return _COPY_LINK_JS.replace("__LINK_SPEC__", json.dumps(spec, sort_keys=True))


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole app as a ``gr.Blocks`` (queue configured); launch it with :func:`main` or ``demo.launch()``."""
    ctx = ctx or make_context()
    if not isinstance(getattr(ctx, "link_extras", None), dict):
        ctx.link_extras = {}
    model_owner: dict[str, int] = {}    # tab id -> index of its model dropdown in ctx.model_dropdowns (absent: none)
    example_owner: dict[str, int] = {}  # tab id -> index of its example dropdown in ctx.example_dropdowns
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
                n_models, n_examples = len(ctx.model_dropdowns), len(ctx.example_dropdowns)
                with gr.Tab(TAB_TITLES[tab_id], id=tab_id) as tab:
                    module.build(ctx)
                if len(ctx.model_dropdowns) > n_models:
                    model_owner[tab_id] = n_models
                if len(ctx.example_dropdowns) > n_examples:
                    example_owner[tab_id] = n_examples
                tab.select(lambda t=tab_id: t, None, current_tab, api_visibility="private", queue=False)
                tabs_built[tab_id] = tab
        with gr.Row():
            copy = gr.Button("Copy link to this view", size="sm", scale=0)
            link = gr.Textbox(label="Link (copied to the clipboard)", interactive=False, scale=4)
        extra_components, extras = _link_extras(ctx, tabs_built)
        spec = _link_spec(len(ctx.model_dropdowns), len(ctx.example_dropdowns), model_owner, example_owner, extras)
        copy_inputs = [current_tab] + ctx.model_dropdowns + ctx.example_dropdowns + extra_components
        copy.click(None, copy_inputs, link, js=copy_link_js(spec), api_visibility="private", queue=False)
        _wire_deep_links(demo, ctx, tabs, current_tab)
        # Opening a tab fills it with the current choices (heatmaps of the selected example, filters…).
        for tab_id, (fn, inputs, outputs) in ctx.on_open.items():
            if tab_id in tabs_built:
                tabs_built[tab_id].select(fn, inputs, outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=2, max_size=256)
    demo.xcxr_context = ctx  # type: ignore[attr-defined]  # tests and benchmarks reach the catalog through this
    # the copy-link wiring, for tests: owner maps, the JSON handed to the JS and its input components in order
    demo.xcxr_link_owners = {"model": model_owner, "example": example_owner,  # type: ignore[attr-defined]
                             "extras": {t: [p for p, _ in pairs] for t, pairs in extras.items()}}
    demo.xcxr_link_spec = spec  # type: ignore[attr-defined]
    demo.xcxr_link_inputs = copy_inputs  # type: ignore[attr-defined]
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


def _warm_up(module, ctx: AppContext) -> None:
    try:
        module.warm_up(ctx)
    except Exception as e:  # noqa: BLE001 - a failed warm-up only means the tab computes on first use
        print(f"[space] outcomes warm-up skipped: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Explainable chest X-ray classification — the Gradio app")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--runs-dir", default=None, help="training outputs to list (default $XCXR_RUNS_DIR or runs/)")
    ap.add_argument("--share", action="store_true", help="a public gradio.live link (needs the network)")
    args = ap.parse_args(argv)
    ctx = make_context(args.models_dir, args.runs_dir)
    demo = build_app(ctx)
    outcomes_tab = _optional_tab("outcomes")
    if outcomes_tab is not None and hasattr(outcomes_tab, "warm_up"):
        # Precompute the default model's outcomes while the first page loads (then cached in memory and on disk).
        threading.Thread(target=_warm_up, args=(outcomes_tab, ctx), daemon=True, name="outcomes-warm-up").start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="200mb",
                footer_links=["api", "settings"])


if __name__ == "__main__":
    main()
