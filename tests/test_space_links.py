"""The "Copy link to this view" wiring: which dropdown / component each tab's link is built from.

The app is built (not launched). The owner maps and the JSON handed to the button's JS are checked in Python against
the tab each component sits in; when ``node`` is installed the JS itself is run on made-up values. The clipboard in a
real browser is the browser test's business.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest

gr = pytest.importorskip("gradio")

COPY_LABEL = "Copy link to this view"
LINK_LABEL = "Link (copied to the clipboard)"


def _tab_of(component) -> str | None:
    block = component
    while block is not None:
        if isinstance(block, gr.Tab):
            return block.id
        block = getattr(block, "parent", None)
    return None


def _dropdowns(demo, kind: str) -> list:
    """The tabs' own ``kind`` ("model" / "example") dropdowns, in tab order (as the app passes them to the JS)."""
    return [getattr(s, kind) for s in demo.xcxr_tabs.values() if getattr(s, kind) is not None]


def _copy_dependency(demo) -> dict:
    deps = [d for d in demo.config["dependencies"] if d.get("js") and "n_models" in d["js"]]
    assert len(deps) == 1, [d.get("js", "")[:60] for d in deps]
    return deps[0]


def test_owner_maps_point_at_each_tabs_own_dropdowns(demo):
    owners = demo.xcxr_link_owners
    models, examples = owners["model"], owners["example"]
    model_dds, example_dds = _dropdowns(demo, "model"), _dropdowns(demo, "example")
    # every model / example dropdown is owned by the tab it is in, and every such tab is in the map
    assert {_tab_of(dd) for dd in model_dds} == set(models)
    assert {_tab_of(dd) for dd in example_dds} == set(examples)
    for tab, i in models.items():
        assert _tab_of(model_dds[i]) == tab, (tab, i)
    for tab, i in examples.items():
        assert _tab_of(example_dds[i]) == tab, (tab, i)
    # the tabs that have a model dropdown but no example dropdown (the cause of the wrong-example bug)
    assert {"outcomes", "report"} <= set(models) - set(examples)
    assert "filters" not in models and "filters" not in examples
    if "trust" in examples:
        assert examples["trust"] != models["trust"]  # the indices differ: one shared index named the wrong example


def test_outcomes_extras_are_the_outcomes_components(demo):
    if "outcomes" not in demo.xcxr_link_owners["model"]:
        pytest.skip("no outcomes tab")
    assert demo.xcxr_link_owners["extras"]["outcomes"] == ["split", "threshold", "outcome", "index", "image"]
    comps = dict(demo.xcxr_tabs["outcomes"].link_extras)
    assert isinstance(comps["split"], gr.Dropdown) and comps["split"].label == "Data split"
    # the threshold as a link names it: a preset's name ("gmean") or the slider's number
    assert isinstance(comps["threshold"], gr.Textbox) and comps["threshold"].label == "threshold spec"
    assert isinstance(comps["image"], gr.Textbox) and comps["image"].label == "image id"
    assert isinstance(comps["outcome"], gr.Dropdown) and comps["outcome"].label == "Outcome"
    assert isinstance(comps["index"], gr.Number)
    assert {_tab_of(c) for c in comps.values()} == {"outcomes"}


def test_copy_button_inputs_match_the_spec(demo):
    spec = demo.xcxr_link_spec
    inputs = demo.xcxr_link_inputs
    model_dds, example_dds = _dropdowns(demo, "model"), _dropdowns(demo, "example")
    assert spec["n_models"] == len(model_dds) and spec["n_examples"] == len(example_dds)
    assert spec["model_owner"] == demo.xcxr_link_owners["model"]
    assert spec["example_owner"] == demo.xcxr_link_owners["example"]
    assert isinstance(inputs[1], gr.JSON)  # the revisions of the models seen so far
    extras = inputs[2 + spec["n_models"] + spec["n_examples"]:]
    assert inputs[2:2 + spec["n_models"]] == model_dds
    assert inputs[2 + spec["n_models"]:2 + spec["n_models"] + spec["n_examples"]] == example_dds
    for tab, pairs in spec["extras"].items():
        registered = dict(demo.xcxr_tabs[tab].link_extras)
        for param, j in pairs:
            assert extras[j] is registered[param], (tab, param)
    # what the browser runs: these inputs, in this order, with this JSON
    dep = _copy_dependency(demo)
    assert dep["inputs"] == [c._id for c in inputs]
    assert json.dumps(spec, sort_keys=True) in dep["js"]
    assert "__LINK_SPEC__" not in dep["js"]


def test_labels_kept(demo):
    blocks = list(demo.blocks.values())
    assert any(isinstance(b, gr.Button) and b.value == COPY_LABEL for b in blocks)
    link = [b for b in blocks if isinstance(b, gr.Textbox) and b.label == LINK_LABEL]
    assert len(link) == 1
    assert _copy_dependency(demo)["outputs"] == [link[0]._id]


def _run_js(js: str, tab: str, values: list, revs: dict | None = None) -> dict[str, list[str]]:
    script = (f"globalThis.window = {{location: {{href: 'http://127.0.0.1:7860/?old=1#x'}}, isSecureContext: false}};"
              f"globalThis.navigator = {{}}; const f = {js};"
              f"process.stdout.write(f(...{json.dumps([tab, revs or {}, *values])}));")
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    parts = urlsplit(out.stdout)
    assert parts.fragment == "" and out.stdout.startswith("http://127.0.0.1:7860/")
    return parse_qs(parts.query)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_copy_link_js_builds_the_right_link(demo):
    spec = demo.xcxr_link_spec
    js = _copy_dependency(demo)["js"]
    models = [f"model-{i}" for i in range(spec["n_models"])]
    examples = [f"example-{i}" for i in range(spec["n_examples"])]
    n_extras = len(demo.xcxr_link_inputs) - 2 - spec["n_models"] - spec["n_examples"]
    extras = [f"extra-{j}" for j in range(n_extras)]
    for tab in ["classify", "heatmaps", "filters", "feature_maps", "outcomes", "report", "trust"]:
        q = _run_js(js, tab, models + examples + extras)
        assert q["tab"] == [tab]
        mi = spec["model_owner"].get(tab, 0)
        assert q["model"] == [f"model-{mi}"], tab
        if tab in spec["example_owner"]:
            assert q["example"] == [f"example-{spec['example_owner'][tab]}"], tab
        else:
            assert "example" not in q, tab
        want = {p: [f"extra-{j}"] for p, j in spec["extras"].get(tab, [])}
        assert {k: v for k, v in q.items() if k not in ("tab", "model", "example")} == want, tab
    if "outcomes" in spec["extras"]:
        # real-looking values: numbers are written as numbers, empty values are left out
        vals = {"split": "test", "threshold": 0.437, "outcome": "FP", "index": 3, "image": None}
        extras = [None] * n_extras
        for p, j in spec["extras"]["outcomes"]:
            extras[j] = vals[p]
        q = _run_js(js, "outcomes", models + examples + extras)
        assert q == {"tab": ["outcomes"], "model": [f"model-{spec['model_owner']['outcomes']}"], "split": ["test"],
                     "threshold": ["0.437"], "outcome": ["FP"], "index": ["3"]}
        extras[[j for p, j in spec["extras"]["outcomes"] if p == "index"][0]] = None
        assert "index" not in _run_js(js, "outcomes", models + examples + extras)

    # the model's revision goes into the link when the page knows it (the JSON of revisions seen so far)
    q = _run_js(js, "classify", models + examples + [None] * n_extras, revs={f"model-{mi}": "abc123" for mi in
                                                                             range(spec["n_models"])})
    assert q["rev"] == ["abc123"]


# ------------------------------------------------------------------ reading a link: every bad parameter is named
def _read(demo, **params):
    from space.app import known_params, read_link
    return read_link(demo.xcxr_context, {k: str(v) for k, v in params.items()}, known_params(demo.xcxr_tabs))


def test_a_good_link_is_read_without_problems(demo):
    from lib.models import weights_revision
    ctx = demo.xcxr_context
    rev = weights_revision(ctx.model("pneumonia_cnn"))
    tab, model, example, p = _read(demo, tab="outcomes", model="pneumonia_cnn", rev=rev,
                                   example="PNEUMONIA/person1071_virus_1774.jpeg")
    assert (tab, model, example, p.problems) == ("outcomes", "pneumonia_cnn", "PNEUMONIA/person1071_virus_1774.jpeg", [])
    assert _read(demo, tab="Model report")[0] == "report"  # the tab's title works too


def test_unknown_tab_model_example_and_parameters_are_named(demo):
    tab, model, example, p = _read(demo, tab="nope", model="no_such_model", example="PNEUMONIA/x.jpeg", colour="red")
    assert (tab, model, example) == (None, None, None)
    text = p.message()
    for fragment in ("tab 'nope'", "unknown model 'no_such_model'", "unknown example 'PNEUMONIA/x.jpeg'",
                     "unknown parameter(s) 'colour'"):
        assert fragment in text, text
    assert "pneumonia_cnn" in text  # what to choose instead


def test_a_link_to_a_retrained_model_says_so(demo):
    _, model, _, p = _read(demo, model="pneumonia_cnn", rev="0123456789")
    assert model == "pneumonia_cnn"  # still opened
    assert "revision '0123456789'" in p.message() and "retrained" in p.message()


def test_every_parameter_a_tab_writes_is_known(demo):
    from space.app import known_params
    known = known_params(demo.xcxr_tabs)
    for tab, spec in demo.xcxr_tabs.items():
        for param, _ in spec.link_extras:
            assert param in known, (tab, param)
    assert _read(demo, **{p: "x" for p in known if p not in ("tab", "model", "example", "rev")})[3].message().find(
        "unknown parameter") == -1
