"""The teaching app: classify a chest X-ray and look inside the model. UI glue only; every number is a ``lib`` call.

Run it (offline, bundled model and examples)::

    python -m space.app                       # http://127.0.0.1:7860
    python -m space.app --port 7861 --host 0.0.0.0
    python space/app.py                       # how a Hugging Face Space starts app_file

Port: ``--port`` > ``GRADIO_SERVER_PORT`` > 7860; host: ``--host`` > ``GRADIO_SERVER_NAME`` > 127.0.0.1.
Models: ``models/*`` (bundled), ``$XCXR_RUNS_DIR`` (default ``runs/``, folders written by
``python -m train … --out``), Hub repos from ``$XCXR_HUB_MODELS`` (comma list) or ``space/hub_models.yaml``
(tried only when ``HF_HUB_OFFLINE`` is unset).

Deep links: ``/?tab=heatmaps&model=pneumonia_cnn&example=PNEUMONIA/person1071_virus_1774.jpeg&scale=shared`` opens
that tab with that model, example and setting (tab ids: classify, heatmaps, filters, feature_maps, outcomes, report,
trust). :func:`read_link` reads ``tab``, ``model``, ``example`` and ``rev`` (the model revision the link was written
for); the linked tab's ``on_link`` handler reads its own parameters (:class:`space.links.LinkParams`: a bad one is
named in a warning toast), its ``on_open`` computes the view, and the page scrolls to its ``result_id``. The "Copy
link" button copies the link of the current view: the tab, its own model (with its revision) and example dropdowns,
and the parameters in its :class:`space.context.TabSpec`'s ``link_extras``. The parameters of every tab: README,
"Deep links".

Where things are: this file builds the page and wires what crosses tabs (deep links, the copy-link button, the
first view); ``space/tabs/<tab>.py`` is one tab (``build(ctx) -> TabSpec``, its API endpoints); ``space/context.py``
the shared inputs and image loading; ``space/evaluation.py`` a model on a whole split (Outcomes, Model report);
``space/errors.py`` what a visitor sees when something fails; ``space/catalog.py`` the models offered;
``space/visitor_models.py`` the "Your model" panel (a visitor's own model, for their session only).
"""
import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python space/app.py` (Spaces) puts space/ first on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported; no network in class rooms
if __name__ == "__main__" and "IPython" not in sys.modules:
    # Started as the program, not from a notebook: gradio imports IPython whenever it is installed (for its notebook
    # magic; the tests' notebook kernel installs it here, the Space does not), 0.3 s of a 6 s start. A None entry
    # makes `import IPython` raise ImportError, which gradio expects.
    sys.modules["IPython"] = None  # type: ignore[assignment]

import gradio as gr  # noqa: E402

from lib.data.images import MAX_FILE_BYTES  # noqa: E402
from lib.errors import XcxrError  # noqa: E402
from lib.models import weights_revision  # noqa: E402
from space import evaluation, fair_queue, gradio_patches, visitor_models  # noqa: E402
from space.fair_queue import expensive_when  # noqa: E402
from space.catalog import ModelCatalog  # noqa: E402
from space.errors import public_text  # noqa: E402
from space.context import TAB_IDS, AppContext, TabSpec  # noqa: E402
from space.examples import ExampleSet  # noqa: E402
from space.links import LinkParams  # noqa: E402
from space.tabs import classify, feature_maps, filters, heatmaps, outcomes, report, trust  # noqa: E402

__all__ = ["build_app", "make_context", "main", "TAB_TITLES", "TAB_MODULES", "copy_link_js", "LANES", "known_params",
           "read_link"]

log = logging.getLogger("space")

TAB_TITLES = {"classify": "Classify", "heatmaps": "Heatmaps", "filters": "Filters", "feature_maps": "Feature maps",
              "outcomes": "Outcomes", "report": "Model report", "trust": "Trust"}
#: The queue's lanes (``concurrency_id`` -> events of it running at once). A free Space has 2 vCPUs: the interactive
#: lane (classify, Grad-CAM, filters, feature maps, every private helper event) runs two at a time; the expensive one
#: (``/trust``, ``/outcomes``, ``/report``, presets, heatmaps with IG/SmoothGrad/occlusion) one, so a queue of them
#: never holds both cores and ``/classify`` stays fast while they run. "Your model"'s open events have a lane of their
#: own: they mostly wait for a download in space/visitor_models.py's worker pool, and must not hold the others.
INTERACTIVE, EXPENSIVE = "interactive", fair_queue.EXPENSIVE
LANES = {INTERACTIVE: 2, EXPENSIVE: 1, visitor_models.LANE: visitor_models.MAX_PENDING}
#: The whole queue's bound, the last resort when many addresses flood at once (per visitor: space/fair_queue.py).
QUEUE_MAX_SIZE = 256
#: The page's own CSS (``launch(css=CSS)``, as :func:`main` does): the threshold sliders' number box wide enough for a
#: preset's full value (0.6241651177406311 is what decides; rounding it for the box would change outcomes at the
#: boundary).
CSS = ".xcxr-threshold input[type=number] { min-width: 11em; }"
#: tab id -> the module whose ``build(ctx) -> TabSpec`` makes it.
TAB_MODULES = {"classify": classify, "heatmaps": heatmaps, "filters": filters, "feature_maps": feature_maps,
               "outcomes": outcomes, "report": report, "trust": trust}


def make_context(models_dir: str = "models", runs_dir: str | None = None, hub_repos: list | None = None,
                 examples_dir: str | None = None) -> AppContext:
    """The catalog (bundled models, ``runs_dir``, Hub repos), the examples every tab reads and the visitors' own
    models (``space/visitor_models.py``)."""
    catalog = ModelCatalog(models_dir=models_dir, runs_dir=runs_dir, hub_repos=hub_repos, defer_checks=True)
    examples = ExampleSet(examples_dir) if examples_dir else ExampleSet()
    return AppContext(catalog=catalog, examples=examples, visitors=visitor_models.VisitorModels())


#: The "Copy link to this view" button's JS. Its inputs: the current tab id, the models' revisions seen so far
#: ({name: lib.models.weights_revision}), then every model dropdown, every example
#: dropdown and every ``link_extras`` component of the tabs' specs, in that order; ``__LINK_SPEC__`` becomes the
#: JSON of :func:`_link_spec`, which says which of those values belong to which tab (and, for the extras, to which
#: parameter).
_COPY_LINK_JS = """
(tab, revs, ...values) => {
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
  // the model's revision: a link opened after the model was retrained says so
  if (has(m) && revs && typeof revs === "object" && has(own(revs, String(m)))) {
    url.searchParams.set("rev", String(revs[String(m)]));
  }
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

#: Query parameters the app itself reads; a tab's ``link_extras`` may not use them. ``rev``: the model revision a
#: link was written for (:func:`lib.models.weights_revision`); a link whose model has since been retrained opens
#: with a warning saying so.
_RESERVED_PARAMS = ("tab", "model", "example", "rev")


def _link_extras(specs: dict[str, TabSpec]) -> tuple[list, dict[str, list[tuple[str, int]]]]:
    """``(components, {tab id: [(param, index into components)]})`` from the specs' ``link_extras`` (a component
    named by two tabs is passed once)."""
    components: list = []
    index: dict[int, int] = {}
    extras: dict[str, list[tuple[str, int]]] = {}
    for tab_id, spec in specs.items():
        for param, comp in spec.link_extras:
            if param in _RESERVED_PARAMS:
                raise ValueError(f"{tab_id} tab: link_extras may not use {param!r}, the app sets it")
            if id(comp) not in index:
                index[id(comp)] = len(components)
                components.append(comp)
            extras.setdefault(tab_id, []).append((param, index[id(comp)]))
    return components, extras


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
    specs: dict[str, TabSpec] = {}
    tab_blocks: dict[str, gr.Tab] = {}
    # delete_cache: uploads and rendered images older than an hour are removed every hour (a Space runs for weeks).
    with gr.Blocks(title="Explainable chest X-ray classification", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Explainable chest X-ray classification\nA teaching tool: classify an X-ray (normal vs "
                    "pneumonia), then look inside the model. **Not for diagnosis.**")
        # "Your model": a visitor's own model, added to every tab's model list for their session only
        your_model = visitor_models.build(ctx)
        link_params = gr.State({})  # the page's query parameters, for the tabs' on_link handlers
        current_tab = gr.Textbox(value=TAB_IDS[0], visible=False, label="current tab")
        with gr.Tabs(selected=TAB_IDS[0]) as tabs:
            for tab_id in TAB_IDS:
                with gr.Tab(TAB_TITLES[tab_id], id=tab_id) as tab:
                    specs[tab_id] = TAB_MODULES[tab_id].build(ctx)
                tab.select(lambda t=tab_id: t, None, current_tab, api_visibility="private", queue=False)
                tab_blocks[tab_id] = tab
        # Each tab's own dropdowns, in tab order; the owner maps say which index belongs to which tab.
        model_owner = {t: i for i, t in enumerate(t for t, s in specs.items() if s.model is not None)}
        example_owner = {t: i for i, t in enumerate(t for t, s in specs.items() if s.example is not None)}
        model_dds = [specs[t].model for t in model_owner]
        example_dds = [specs[t].example for t in example_owner]
        with gr.Row():
            copy = gr.Button("Copy link to this view", size="sm", scale=0)
            link = gr.Textbox(label="Link (copied to the clipboard)", interactive=False, scale=4)
        extra_components, extras = _link_extras(specs)
        spec = _link_spec(len(model_dds), len(example_dds), model_owner, example_owner, extras)
        # the revision of every model shown so far ({name: rev}), written into copied links as rev=…
        revs = gr.JSON({}, visible=False, label="model revisions")
        copy_inputs = [current_tab, revs, *model_dds, *example_dds, *extra_components]
        copy.click(None, copy_inputs, link, js=copy_link_js(spec), api_visibility="private", queue=False)
        _wire_deep_links(demo, ctx, specs, tabs, current_tab, link_params, model_dds, example_dds)
        _wire_revisions(demo, ctx, revs, model_dds)
        your_model.wire(demo)  # after the tabs: its outputs are their model dropdowns
        _check_link_api(demo)
        # Opening a tab fills it with the current choices (heatmaps of the selected example, filters…).
        for tab_id, s in specs.items():
            if s.on_open is not None:
                fn, inputs, outputs = s.on_open
                tab_blocks[tab_id].select(fn, inputs, outputs, api_visibility="private")
    # One queue for every visitor: per-visitor limits, unread events dropped, fair order, two lanes (see
    # space/fair_queue.py). Events without a concurrency_id of their own join the interactive lane.
    fair_queue.install(demo, lanes=LANES, default_lane=INTERACTIVE, max_size=QUEUE_MAX_SIZE)
    # output images written atomically (a class downloads the same file at once), no password in session state, no
    # per-session config copy before a session's first event runs (space/gradio_patches.py)
    gradio_patches.install()
    demo.xcxr_context = ctx  # type: ignore[attr-defined]  # tests and benchmarks reach the catalog through this
    demo.xcxr_tabs = specs  # type: ignore[attr-defined]  # tab id -> TabSpec, for tests
    # the copy-link wiring, for tests: owner maps, the JSON handed to the JS and its input components in order
    demo.xcxr_link_owners = {"model": model_owner, "example": example_owner,  # type: ignore[attr-defined]
                             "extras": {t: [p for p, _ in pairs] for t, pairs in extras.items()}}
    demo.xcxr_link_spec = spec  # type: ignore[attr-defined]
    demo.xcxr_link_inputs = copy_inputs  # type: ignore[attr-defined]
    # the models' config checks (a ResNet18's imports timm, ~2 s) run in the background once the page is built,
    # not while the start imports and builds on the same two cores
    ctx.catalog.start_checks()
    return demo


def known_params(specs: dict[str, TabSpec]) -> set[str]:
    """Every query parameter some part of the app reads: ``tab``, ``model``, ``example`` and each tab's
    ``link_extras`` and ``link_reads``."""
    known = set(_RESERVED_PARAMS)
    for s in specs.values():
        known.update(p for p, _ in s.link_extras)
        known.update(s.link_reads)
    return known


def read_link(ctx: AppContext, params: dict[str, str], known: set[str]) -> tuple[str | None, str | None, str | None,
                                                                                 LinkParams]:
    """``(tab, model, example, LinkParams)`` of a link's query parameters: each valid one, else ``None`` with a
    problem recorded (an unknown tab, model or example, a parameter no tab reads)."""
    p = LinkParams(params)
    tab = p.choice("tab", TAB_IDS, what="tab", aliases={TAB_TITLES[t].lower(): t for t in TAB_IDS})
    model = p.raw("model")
    if model is not None and model not in ctx.catalog.names():
        p.problem(f"unknown model {model[:80]!r} (this app offers: {', '.join(ctx.catalog.available()[:6])})")
        model = None
    elif model is not None and model not in ctx.catalog.available():
        p.problem(f"model {model!r} cannot be loaded here at the moment; the default model is shown")
        model = None
    example = p.raw("example")
    if example is not None and example not in ctx.examples:
        p.problem(f"unknown example {example!r}; pick one from the list")
        example = None
    rev = p.raw("rev")
    if rev is not None:
        name = model or ctx.default_model
        try:
            now = weights_revision(ctx.model(name))
        except XcxrError as e:
            p.problem(f"the revision of {name!r} cannot be checked ({public_text(str(e))[:120]})")
        else:
            if now != rev:
                p.problem(f"this link was written for revision {rev[:12]!r} of {name}; the app now has revision {now!r} "
                          "(the model was retrained): what the link shows may have changed")
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        p.problem(f"unknown parameter(s) {', '.join(repr(k[:40]) for k in unknown[:5])} (ignored)")
    return tab, model, example, p


#: Scrolls the linked tab's result into view once a deep link has computed it ({tab id: the TabSpec's result_id}).
_SCROLL_JS = """
(tab) => {
  const ids = __IDS__;
  const id = Object.prototype.hasOwnProperty.call(ids, tab) ? ids[tab] : null;
  const go = () => {
    const el = id ? document.getElementById(id) : null;
    if (el) { el.scrollIntoView({block: "start", behavior: "instant"}); }
  };
  // again once its images have loaded and the page above it has its final height
  for (const ms of [0, 400, 1500]) { setTimeout(go, ms); }
}
"""


def _wire_deep_links(demo: gr.Blocks, ctx: AppContext, specs: dict[str, TabSpec], tabs: gr.Tabs,
                     current_tab: gr.Textbox, link_params: gr.State, model_dds: list, example_dds: list) -> None:
    """On page load: select the linked tab, set every model/example dropdown (a bad link parameter is named in a
    warning toast), run the linked tab's ``on_link`` handler, open it (its ``on_open``), scroll its result into
    view; and, beside that, the first view (``on_load`` steps)."""
    n_m, n_e = len(model_dds), len(example_dds)
    known = known_params(specs)

    def on_load(request: gr.Request):
        params = dict(request.query_params) if request is not None else {}
        tab, model, example, p = read_link(ctx, params, known)
        p.warn()
        tab_up = gr.Tabs(selected=tab) if tab else gr.skip()
        cur = tab if tab else gr.skip()
        models = [gr.Dropdown(value=model) if model else gr.skip() for _ in range(n_m)]
        examples = [gr.Dropdown(value=example) if example else gr.skip() for _ in range(n_e)]
        return [tab_up, cur, params, *models, *examples]

    # queued (a private event of the interactive lane): Gradio shows a warning toast only for queued events
    ev = demo.load(on_load, None, [tabs, current_tab, link_params, *model_dds, *example_dds],
                   api_visibility="private")
    # Then two events for whatever tab is linked (not one per tab: a page load must stay well inside the fair
    # queue's per-visitor limit): its on_link handler reads its parameters, then its on_open computes the view.
    link_outputs = _union([s.on_link[1] for s in specs.values() if s.on_link is not None], "on_link outputs")

    def apply_link(current: str | None, params: dict | None):
        out = [gr.skip()] * len(link_outputs)
        spec = specs.get(current or "")
        if not params or spec is None or spec.on_link is None:
            return out
        fn, outputs = spec.on_link
        values = fn(dict(params))
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        for comp, value in zip(_as_list(outputs), values):
            out[_index(link_outputs, comp)] = value
        return out

    # the tabs' "open" steps: inputs and outputs of all of them, each tab's own picked out by position
    open_specs = {t: s.on_open for t, s in specs.items() if s.on_open is not None}
    open_inputs = _union([i for _, i, _ in open_specs.values()], None)
    open_outputs = _union([_as_list(o) for _, _, o in open_specs.values()], "on_open outputs")

    def open_linked(current: str | None, *values):
        out = [gr.skip()] * len(open_outputs)
        step = open_specs.get(current or "")
        if step is None:
            return out
        fn, inputs, outputs = step
        result = fn(*[values[_index(open_inputs, c)] for c in inputs])  # as a click would, without a request
        result = list(result) if isinstance(result, (list, tuple)) and isinstance(outputs, list) else [result]
        for comp, value in zip(_as_list(outputs), result):
            out[_index(open_outputs, comp)] = value
        return out

    # a link to an expensive tab (a whole split, the trust checks) queues in the expensive lane
    expensive_when(current_tab, LINKED_EXPENSIVE)

    def scroll_after(step: Any, tab_ids: set[str]) -> None:
        ids = {t: s.result_id for t, s in specs.items() if s.result_id and t in tab_ids}
        if ids:  # in the browser only: no request to the server
            step.then(None, [current_tab], None, js=_SCROLL_JS.replace("__IDS__", json.dumps(ids, sort_keys=True)),
                      api_visibility="private", queue=False)

    step = ev
    if link_outputs:
        step = step.then(apply_link, [current_tab, link_params], link_outputs, api_visibility="private")
        scroll_after(step, set(specs) - set(open_specs))  # a tab whose link handler computes the view itself
    if open_outputs:
        step = step.then(open_linked, [current_tab, *open_inputs], open_outputs, api_visibility="private")
        scroll_after(step, set(open_specs))
    # The first view (the Classify tab classifies the default example), so the page is never empty.
    for s in specs.values():
        step = ev
        for fn, inputs, outputs in s.on_load:
            step = step.then(fn, inputs, outputs, api_visibility="private")


#: Tabs whose deep link runs in the queue's expensive lane (a model over a whole split, the trust checks).
LINKED_EXPENSIVE = ("outcomes", "report", "trust")


def _as_list(components: Any) -> list:
    return list(components) if isinstance(components, (list, tuple)) else [components]


def _index(components: list, comp: Any) -> int:
    return next(i for i, c in enumerate(components) if c is comp)


def _union(groups: list, what: str | None) -> list:
    """The components of ``groups`` in order, each once; ``what``: refuse a component listed by two groups (two
    tabs may not both write one output)."""
    out: list = []
    for group in groups:
        for comp in _as_list(group):
            if any(c is comp for c in out):
                if what is not None and sum(any(c is comp for c in _as_list(g)) for g in groups) > 1:
                    raise ValueError(f"two tabs list the same component among their {what}: {comp!r}")
                continue
            out.append(comp)
    return out


#: The longest query string /check_link reads (a link is typed or pasted, never megabytes).
MAX_QUERY_CHARS = 4000


def _check_link_api(demo: gr.Blocks) -> None:
    """``/check_link`` (API only): what opening a link with this query string would warn about (``[]``: it opens
    what it says) — how ``python -m space.links check --app URL`` checks a course's links against a running app."""
    from urllib.parse import parse_qsl

    from space.links import check_query

    def check_link(query: str) -> list[str]:
        """The problems of a link's query string (``tab=outcomes&model=…``); [] when it opens what it says."""
        query = str(query or "").lstrip("?")
        if len(query) > MAX_QUERY_CHARS:
            return [f"the query string is longer than {MAX_QUERY_CHARS} characters"]
        return check_query(demo, dict(parse_qsl(query, keep_blank_values=True)))

    gr.api(check_link, api_name="check_link", concurrency_id=EXPENSIVE, concurrency_limit=1)


def _wire_revisions(demo: gr.Blocks, ctx: AppContext, revs: gr.JSON, model_dds: list) -> None:
    """Keep ``revs`` ({model name: revision}) up to date with the models the dropdowns show: one listener for all
    of them (a deep link sets every tab's dropdown at once), run at most once more while it runs."""
    def add(known: dict | None, *names: str | None):
        known = dict(known) if isinstance(known, dict) else {}
        new = {n or ctx.default_model for n in names} - set(known) - {None}
        if not new:
            return gr.skip()
        for name in sorted(new):
            try:
                known[name] = weights_revision(ctx.model(name))
            except XcxrError:  # not loadable: the tab that shows it says why; its links carry no revision
                continue
        return known

    if model_dds:  # .change also fires when a deep link sets a dropdown; load: the default model
        # not queued: a deep link's page load queues enough already (space/fair_queue.py); the revision of a
        # loaded model is a cached hash, and a model still loading is waited for off the event loop
        gr.on([demo.load, *(dd.change for dd in model_dds)], add, [revs, *model_dds], revs,
              api_visibility="private", show_progress="hidden", trigger_mode="always_last", queue=False)


def _warm_up(ctx: AppContext) -> None:
    try:
        evaluation.warm_up(ctx)
    except XcxrError as e:  # no model or no data: the tabs then compute (or explain why not) on first use
        log.warning("outcomes warm-up skipped: %s", e)
    except Exception:  # noqa: BLE001 - a bug, but only in a background optimisation: log it, keep serving
        log.exception("outcomes warm-up failed")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Explainable chest X-ray classification — the Gradio app")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--runs-dir", default=None, help="training outputs to list (default $XCXR_RUNS_DIR or runs/)")
    ap.add_argument("--share", action="store_true", help="a public gradio.live link (needs the network)")
    args = ap.parse_args(argv)
    # error ids shown to visitors point into this log (space.errors)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = make_context(args.models_dir, args.runs_dir)
    demo = build_app(ctx)
    # Precompute the default model's outcomes while the first page loads (then cached in memory and on disk).
    threading.Thread(target=_warm_up, args=(ctx,), daemon=True, name="outcomes-warm-up").start()
    # One upload limit, enforced by Gradio while the file streams in (HTTP 413, nothing kept on disk): the same
    # number lib.data.load_grey checks, so no upload is accepted by Gradio only to be refused by the decoder.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_BYTES,
                footer_links=["api", "settings"], css=CSS)


if __name__ == "__main__":
    main()
