"""The classroom view of the Classify, Trust, Feature maps and Filters tabs.

One decision (never a headline that contradicts it), example dropdowns that name the file, no stale results after an
input changes, a one-sentence Trust verdict with the baseline's own probability, large captioned feature-map tiles,
titled filter panels, deep-link parameters (good ones applied, bad ones named in a warning), and "Reproduce in Python"
snippets that, executed from the repository root, give exactly what the view shows.

The app is built once (not launched); its event handlers are called directly, as Gradio would call them. One browser
test measures the tiles at 1366×768 (skipped without Debian chromium and Playwright).
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")

from conftest import ROOT, launched_app  # noqa: E402
from lib.data import load_grey  # noqa: E402
from lib.explain import filter_grid  # noqa: E402
from lib.explain.filters import filter_panel, with_title  # noqa: E402
from lib.models import get_config, predict_proba  # noqa: E402

MODEL = "pneumonia_cnn"
#: P(PNEUMONIA) = 0.522 for the bundled model: above 0.5, below its threshold 0.624 → NORMAL
BETWEEN = "PNEUMONIA/person1261_bacteria_3219.jpeg"
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"


def _fn(demo, name: str | None = None, api_name: str | None = None, tab: str | None = None):
    """The handler of the app's event with this api_name, or the one whose function has this name and whose outputs
    are in ``tab``."""
    found = [bf for bf in demo.fns.values()
             if (api_name and bf.api_name == api_name)
             or (name and getattr(bf.fn, "__name__", "") == name and all(_in_tab(o, tab) for o in bf.outputs))]
    assert found, f"no event {api_name or name!r}"
    return found[0]


def _in_tab(component, tab_id: str) -> bool:
    block = component
    while block is not None:
        if isinstance(block, gr.Tab):
            return block.id == tab_id
        block = getattr(block, "parent", None)
    return False


def _exec(code: str, monkeypatch) -> dict:
    """Run a snippet as a student would: from the repository root, in a fresh namespace."""
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "<snippet>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    assert not [str(w.message) for w in caught if "Link" in str(w.message)]


# ------------------------------------------------------------------------------------ Classify: one decision
def test_decision_never_contradicts_between_half_and_threshold(demo, ctx):
    from space.tabs.classify import class_probabilities, decision_line

    model = ctx.model(MODEL)
    thr = get_config(model)["threshold"]
    p = class_probabilities(model, load_grey(ctx.examples.path(BETWEEN), 224))["PNEUMONIA"]
    assert 0.5 < p < thr  # the case a headline of the larger probability gets wrong
    # the view's own handler: the decision line names the class at the threshold, P, the threshold and its origin
    _, text = _fn(demo, name="details", tab="classify").fn(None, MODEL, BETWEEN)
    line = text.split("\n")[0]
    assert line.startswith("**NORMAL** — P(PNEUMONIA) = 0.522, below the model's threshold 0.624")
    assert "validation" in line and "PNEUMONIA**" not in line
    # any probability: the bold class is the one on the threshold's side; P and threshold never print alike
    for q in [0.0, 0.3, 0.5, 0.51, thr - 1e-4, thr, thr + 1e-4, 0.7, 1.0]:
        line = decision_line(model, {"NORMAL": 1 - q, "PNEUMONIA": q})
        want = "PNEUMONIA" if q >= thr else "NORMAL"
        assert line.startswith(f"**{want}**") and ("at or above" if q >= thr else "below") in line, (q, line)
        shown_p = line.split("= ")[1].split(",")[0]
        shown_thr = line.split("threshold ")[1].split(" ")[0]
        assert q == thr or shown_p != shown_thr, line


def test_probability_bars_have_no_headline(demo):
    labels = [b for b in demo.blocks.values() if isinstance(b, gr.Label) and _in_tab(b, "classify")]
    assert len(labels) == 1
    assert labels[0].show_heading is False and labels[0].num_top_classes == 2
    # the public API still returns the probabilities dict (postprocessed by the same Label)
    out = _fn(demo, api_name="classify").fn(None, MODEL, BETWEEN)
    assert set(out) == {"NORMAL", "PNEUMONIA"} and sum(out.values()) == pytest.approx(1.0)


def test_no_model_threshold_says_so():
    from space.tabs.classify import decision_line

    class Plain(torch.nn.Module):
        xcxr_config = {"labels": ["NORMAL", "PNEUMONIA"], "threshold": None}

    from unittest import mock
    with mock.patch("space.tabs.classify.get_config", lambda m: m.xcxr_config):
        line = decision_line(Plain(), {"NORMAL": 0.4, "PNEUMONIA": 0.6})
    assert line.startswith("**PNEUMONIA**") and "0.500" in line and "stores no threshold" in line


# ------------------------------------------------------------------------------------ example dropdowns
def test_example_dropdowns_show_file_names_and_keep_ids(demo, ctx):
    from space.context import example_label

    dropdowns = [s.example for s in demo.xcxr_tabs.values() if s.example is not None]
    assert len(dropdowns) >= 4
    for dd in dropdowns:
        labels = [label for label, _ in dd.choices]
        values = [value for _, value in dd.choices]
        assert values == list(ctx.examples)  # the ids: what links, the API and load_image use
        assert "person1071_virus_1774.jpeg (PNEUMONIA)" in labels
        assert all(label == example_label(v) and v.split("/")[-1] in label for label, v in dd.choices)
        assert dd.value in values  # the default is an id too
    assert example_label("NORMAL/IM-0011-0001-0002.jpeg") == "IM-0011-0001-0002.jpeg (NORMAL)"
    # a deep link or a test sets the dropdown by id, and the tabs load that file
    assert dropdowns[0].preprocess(EXAMPLE) == EXAMPLE
    probs = _fn(demo, api_name="classify").fn(None, MODEL, EXAMPLE)
    model = ctx.model(MODEL)
    p = float(predict_proba(model, torch.from_numpy(load_grey(ctx.examples.path(EXAMPLE), 224))[None, None])[0])
    assert probs["PNEUMONIA"] == p


# ------------------------------------------------------------------------------------ no stale screens
def _chain_from(demo, component, events: tuple[str, ...]) -> list:
    """Every event function triggered by ``component``'s ``events``, and everything chained after them."""
    ids = {i for i, bf in demo.fns.items()
           if any(t[0] == component._id and t[1] in events for t in bf.targets)}
    found = set(ids)
    while True:
        more = {i for i, bf in demo.fns.items() if bf.trigger_after in found and i not in found}
        if not more:
            return [demo.fns[i] for i in sorted(found)]
        found |= more


def _empties(out) -> bool:
    """Nothing left of a result: None, "", a curve without points, or the Trust tab's "press Run the checks"."""
    def empty(v) -> bool:
        if isinstance(v, str):
            return v == "" or "Run the checks" in v
        if hasattr(v, "select_dtypes"):  # a curve frame: no points left (NaN), or no rows
            return bool(v.empty or v.select_dtypes("number").isna().all().all())
        return v is None
    return all(empty(v) for v in out)


@pytest.mark.parametrize("tab", ["classify", "feature_maps", "trust"])
def test_a_changed_input_clears_the_old_results_at_once(demo, tab):
    spec = demo.xcxr_tabs[tab]
    if tab == "classify":
        _, inputs, _ = spec.on_load[1]
        results = [o for _, _, outs in spec.on_load[1:4] for o in (outs if isinstance(outs, list) else [outs])]
    else:
        _, inputs, results = spec.on_open
        results = [r for r in results if not isinstance(r, gr.State) and r.visible != "hidden"]
    upload = inputs[0]
    sources = [(upload, ("upload", "clear")), (spec.model, ("change",)), (spec.example, ("change",))]
    if tab == "feature_maps":
        sources += [(inputs[2], ("change",)), (inputs[3], ("change",))]  # top_k, scale
    if tab == "trust":
        sources += [(c, ("change",)) for c in inputs[3:6]]  # class, steps, seed
    for component, events in sources:
        chain = _chain_from(demo, component, events)
        clearing = [bf for bf in chain if not bf.queue and {o._id for o in results} <= {o._id for o in bf.outputs}]
        assert clearing, (tab, component.label, events)
        for bf in clearing:
            out = bf.fn(*([False] * len(bf.inputs)))  # feature maps: "no tiles were shown" → nothing recomputed
            assert _empties([o for o, c in zip(out, bf.outputs) if c in results]), (tab, component.label, out)


def test_trust_waits_for_the_button_and_feature_maps_recompute(demo):
    from space.tabs.trust import PRESS_RUN

    spec = demo.xcxr_tabs["trust"]
    chain = _chain_from(demo, spec.model, ("change",))
    assert not [bf for bf in chain if getattr(bf.fn, "__name__", "") in ("run", "open_run")]  # nothing expensive
    clears = [bf for bf in chain if getattr(bf.fn, "__name__", "") == "clear"]
    assert clears and all(PRESS_RUN in [o for o in bf.fn() if isinstance(o, str)] and not bf.queue for bf in clears)
    # feature maps: tiles on screen (live) → the clear step asks for a recomputation, which the tab runs
    fm = demo.xcxr_tabs["feature_maps"]
    clear = [bf for bf in _chain_from(demo, fm.model, ("change",)) if getattr(bf.fn, "__name__", "") == "clear"][0]
    again = clear.outputs[-1]
    assert isinstance(clear.fn(True)[-1], float) and clear.fn(False)[-1] == gr.skip()
    assert [bf.fn.__name__ for bf in demo.fns.values() if any(t[0] == again._id for t in bf.targets)] == ["auto"]


# ------------------------------------------------------------------------------------ Trust
def test_trust_verdict_and_baseline_probability(demo, ctx):
    from lib.explain import deletion_insertion, prepare
    from space.tabs.trust import curves_help

    data, table, gallery, deletion, insertion, aucs, summary = _fn(demo, api_name="trust").fn(
        None, MODEL, EXAMPLE, "PNEUMONIA", 8, 0)
    verdict = summary.split("\n\n")[0].strip("*")
    assert verdict.startswith("Grad-CAM for PNEUMONIA ") and verdict.endswith(".")
    assert ". " not in verdict  # one sentence
    assert ("passes the randomisation check" in verdict) or ("fails the randomisation check" in verdict)
    # the baseline's own probability: the insertion curve's first point = the deletion curve's last
    x = prepare(ctx.model(MODEL), torch.from_numpy(load_grey(ctx.examples.path(EXAMPLE), 224))[None, None])
    res = deletion_insertion(ctx.model(MODEL), x, classes=[1], steps=8, seed=0)
    base = float(res.baseline_probability[0])
    assert base == res.curves["insertion"][0, 0] == res.curves["deletion"][0, -1] == data["baseline_probability"]
    text = curves_help(data)
    assert f"P(PNEUMONIA) = {base:.3f}" in text
    assert "not neutral" in text and "good explanation" in text and "useless" in text
    if base >= 0.5:
        assert "PNEUMONIA-like" in text  # why insertion starts high and deletion climbs back
    # the "how to read" sits beside the curves (same row)
    md = [b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and _in_tab(b, "trust")]
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.LinePlot) and _in_tab(b, "trust")]
    row = plots[0].parent
    assert plots[1].parent is row and any(m.parent.parent is row for m in md)


@pytest.mark.parametrize("rows,summary,want", [
    ([0.12], dict(deletion_auc=0.1, random_deletion_auc=0.2, insertion_auc=0.5, random_insertion_auc=0.6),
     "passes the randomisation check (ρ falls to 0.12 after randomising head) and beats random maps on deletion "
     "but not insertion."),
    ([0.9, 0.8], dict(deletion_auc=0.3, random_deletion_auc=0.2, insertion_auc=0.7, random_insertion_auc=0.6),
     "fails the randomisation check (ρ stays at 0.80 or above) and beats random maps on insertion but not "
     "deletion."),
    ([-0.4], dict(deletion_auc=0.1, random_deletion_auc=0.2, insertion_auc=0.7, random_insertion_auc=0.6),
     "passes the randomisation check (ρ falls to -0.40 after randomising head) and beats random maps on deletion "
     "and insertion."),
    ([0.2], dict(deletion_auc=0.3, random_deletion_auc=0.2, insertion_auc=0.5, random_insertion_auc=0.6),
     "passes the randomisation check (ρ falls to 0.20 after randomising head) and does not beat random maps on "
     "deletion or insertion."),
])
def test_verdict_sentences(rows, summary, want):
    from space.tabs.trust import verdict

    table = [{"step": 0, "layer": "original", "spearman": 1.0}] + [
        {"step": i + 1, "layer": ["head", "features.2"][i], "spearman": r} for i, r in enumerate(rows)]
    assert verdict("PNEUMONIA", table, summary) == "Grad-CAM for PNEUMONIA " + want


# ------------------------------------------------------------------------------------ Feature maps
def test_feature_map_tiles_are_large_and_captioned(demo, ctx):
    from space.tabs.feature_maps import MARGIN, TILE, channel_tiles

    model = ctx.model("resnet18_scratch")
    grey = load_grey(ctx.examples.path(EXAMPLE), 224)
    tiles = channel_tiles(model, grey, 3, "per_map")
    stages = get_config(model)["feature_stages"]
    assert len(tiles) == 3 * len(stages)
    stage1 = [c for _, c in tiles[:3]]
    assert all(c.startswith(f"stage 1 · {stages[0]} · ch ") for c in stage1) and len(set(stage1)) == 3
    assert tiles[3][1].startswith(f"stage 2 · {stages[1]} · ch ")
    for tile, caption in tiles:
        assert tile.shape[1] == TILE >= 150 and tile.shape[0] > TILE + MARGIN  # the map, and the band above it
        band = tile[:tile.shape[0] - TILE]
        assert (band[:MARGIN] == 255).all()  # room for the gallery's label
        assert (band.min(axis=2) < 100).sum() > 50  # the caption is drawn there, outside the map
    # 1 tile per channel in the gallery, enlargeable, at most 4 a row (≥ 150 px each at 1366×768)
    gallery = demo.xcxr_tabs["feature_maps"].on_open[2][0]
    assert isinstance(gallery, gr.Gallery) and gallery.allow_preview and gallery.columns <= 4
    items = _fn(demo, api_name="feature_maps").fn(None, "resnet18_scratch", 3, "per_map", EXAMPLE)
    assert all(np.array_equal(a, t) for a, (t, _) in zip(items, tiles)) and len(items) == len(tiles)


def test_feature_map_tiles_scales_and_fully_connected_stages():
    from lib.explain import FeatureStage
    from lib.explain.feature_maps import feature_map_tiles

    maps = torch.stack([torch.zeros(7, 7), torch.ones(7, 7)])
    maps[0, 0, 0] = 0.5  # weak channel: its own range per map, dark on the stage's shared range
    stage = FeatureStage("layer4", maps, [3, 9])
    per, shared = (feature_map_tiles([stage], scale=s, tile=70, captions=False) for s in ("per_map", "shared"))
    assert [c for _, c in per] == ["stage 1 · layer4 · ch 3", "stage 1 · layer4 · ch 9"]
    assert per[0][0].shape == (70, 70, 3) and (per[0][0][:10, :10] == per[0][0][0, 0]).all()  # nearest: 10 px blocks
    assert per[0][0][0, 0].tolist() != shared[0][0][0, 0].tolist()
    units = FeatureStage("layers.0", torch.tensor([3.0, 1.0]), [17, 4])
    (bars, caption), = feature_map_tiles([units], tile=64)
    assert caption == "stage 1 · layers.0 · units 17, 4" and bars.dtype == np.uint8 and bars.ndim == 3


# ------------------------------------------------------------------------------------ Filters
def test_filter_panels_carry_a_title(demo, ctx):
    from space.tabs.filters import MARGIN, filter_panels, panel_title

    items, text = filter_panels(ctx, "common", ["pneumonia_cnn", "resnet18_scratch"])
    for name, panel in zip(["pneumonia_cnn", "resnet18_scratch"], items):
        model = ctx.model(name)
        assert panel_title(name, model) == [name, "trained from scratch"]
        assert np.array_equal(panel, filter_panel(model, "common", title=[name, "trained from scratch"],
                                                  margin=MARGIN))
        assert (panel[:MARGIN] == 255).all()  # room for the gallery's label
        assert (panel[MARGIN:MARGIN + 40].min(axis=2) < 100).sum() > 100  # the title's dark text
        # under the title: the lib's grid, enlarged (nearest) to a readable width
        grids = [filter_grid(model, scale="common", zoom=z) for z in range(1, 40)]
        left = [(panel.shape[1] - g.shape[1]) // 2 for g in grids]
        same = [g for g, x in zip(grids, left) if x >= 0 and np.array_equal(panel[-g.shape[0]:, x:x + g.shape[1]], g)]
        assert len(same) == 1 and same[0].shape[1] >= 256, name
    # with_title keeps the image, centred under the text, and pads a narrow one
    img = np.zeros((20, 30, 3), np.uint8)
    out = with_title(img, ["a rather long title that needs more room"], margin=5)
    assert out.shape[1] > 30 and (out[:5] == 255).all()
    left = (out.shape[1] - 30) // 2
    assert np.array_equal(out[-20:, left:left + 30], img)


# ------------------------------------------------------------------------------------ deep-link parameters
def test_link_extras(demo):
    extras = {t: [p for p, _ in demo.xcxr_tabs[t].link_extras] for t in ("trust", "feature_maps", "filters")}
    assert extras == {"trust": ["class", "steps", "seed"], "feature_maps": ["top_k", "fm_scale"],
                      "filters": ["filter_scale", "models"]}
    for tab in extras:
        assert all(_in_tab(c, tab) for _, c in demo.xcxr_tabs[tab].link_extras)
        assert demo.xcxr_tabs[tab].on_link is not None and demo.xcxr_tabs[tab].result_id


def test_trust_link(demo, no_warnings):
    fn, outputs = demo.xcxr_tabs["trust"].on_link
    cls, steps, seed = fn({"tab": "trust", "class": "pneumonia", "steps": "8", "seed": "3"})
    assert cls.value == "PNEUMONIA" and "PNEUMONIA" in [v for _, v in cls.choices] and (steps, seed) == (8, 3)
    assert fn({"tab": "trust"}) == (gr.skip(),) * 3  # nothing in the link: nothing touched
    with pytest.warns(UserWarning, match="class 'cat'.*steps must be between 4 and 100.*seed must be a whole"):
        cls, steps, seed = fn({"class": "cat", "steps": "1000", "seed": "x"})
    assert (cls.value, steps, seed) == ("predicted class", 32, 0)  # the defaults


def test_feature_maps_link(demo, no_warnings):
    fn, outputs = demo.xcxr_tabs["feature_maps"].on_link
    assert fn({"top_k": "4", "fm_scale": "shared"}) == (4, "shared")
    assert fn({}) == (gr.skip(), gr.skip())
    with pytest.warns(UserWarning, match="top_k must be between 1 and 32.*fm_scale 'huge'"):
        assert fn({"top_k": "99", "fm_scale": "huge"}) == (8, "per_map")


def test_filters_link(demo, no_warnings):
    fn, outputs = demo.xcxr_tabs["filters"].on_link
    assert fn({"filter_scale": "per_filter", "models": "resnet18_scratch,pneumonia_cnn"}) == (
        "per_filter", ["resnet18_scratch", "pneumonia_cnn"])
    assert fn({}) == (gr.skip(), gr.skip())
    with pytest.warns(UserWarning, match="'nope' is not available"):
        assert fn({"models": "pneumonia_cnn,nope"}) == (gr.skip(), ["pneumonia_cnn"])  # unknown ones dropped
    with pytest.warns(UserWarning, match="filter_scale 'x'.*no.*available model"):
        scale, names = fn({"filter_scale": "x", "models": "nope"})
    assert scale == "common" and names and "nope" not in names  # the defaults


# ------------------------------------------------------------------------------------ Reproduce in Python
def test_each_tab_fills_its_code_box_after_a_run(demo):
    for tab, api in [("classify", "classify"), ("trust", "trust"), ("feature_maps", "feature_maps"),
                     ("filters", "filters")]:
        codes = [b for b in demo.blocks.values() if isinstance(b, gr.Code) and _in_tab(b, tab)]
        assert len(codes) == 1, tab
        run_id = next(i for i, bf in demo.fns.items() if bf.api_name == api)
        chained = {i for i, bf in demo.fns.items() if bf.trigger_after is not None}
        after = [run_id]
        while True:
            nxt = [i for i in chained if demo.fns[i].trigger_after in after and i not in after]
            if not nxt:
                break
            after += nxt
        assert any(codes[0] in demo.fns[i].outputs and demo.fns[i].trigger_only_on_success for i in after[1:]), tab


def test_classify_snippet_equals_the_view(demo, ctx, monkeypatch):
    from space.tabs.classify import snippet

    view = _fn(demo, api_name="classify").fn(None, MODEL, BETWEEN)
    _, text = _fn(demo, name="details", tab="classify").fn(None, MODEL, BETWEEN)
    ns = _exec(snippet(ctx, None, MODEL, BETWEEN), monkeypatch)
    assert ns["probabilities"] == view
    assert text.startswith(f"**{ns['decision']}**") and ns["decision"] == "NORMAL"
    # an upload: the snippet names a file of the student's, and says so
    assert "my_xray.png" in snippet(ctx, "/tmp/gradio/abc/upload.png", MODEL, None)


def test_trust_snippet_equals_the_view(demo, ctx, monkeypatch):
    from space.tabs.trust import snippet

    data, *_ = _fn(demo, api_name="trust").fn(None, MODEL, EXAMPLE, None, 6, 2)
    code = snippet(ctx, None, MODEL, EXAMPLE, data["class"], 6, 2, data["label"], predicted=True)
    ns = _exec(code, monkeypatch)
    assert ns["rows"] == data["randomisation"]
    assert ns["summary"] == data["deletion_insertion"]
    assert ns["baseline_p"] == data["baseline_probability"]
    # the view's own code step writes the same code, with "how to read" and what the results belong to
    finish = _fn(demo, name="finish", tab="trust").fn
    after = finish(data, None, MODEL, EXAMPLE, "predicted class", 6, 2)
    assert after[8] == code and "How to read the curves" in after[7]
    assert all(v == gr.skip() for v in after[:7])  # the results themselves stay
    # results whose inputs changed while the checks ran are not left on screen
    stale = finish(data, None, MODEL, EXAMPLE, "predicted class", 6, 3)
    assert _empties([v for v in stale[:9] if not isinstance(v, dict)]) and stale[8] == ""


def test_feature_maps_snippet_equals_the_view(demo, ctx, monkeypatch):
    from space.tabs.feature_maps import snippet

    view = _fn(demo, api_name="feature_maps").fn(None, MODEL, 5, "shared", EXAMPLE)
    ns = _exec(snippet(ctx, None, MODEL, 5, "shared", EXAMPLE), monkeypatch)
    assert len(ns["shown"]) == len(view) == 5 * 3
    assert all(np.array_equal(a, b) for a, b in zip(ns["shown"], view))
    assert ns["captions"][0].startswith("stage 1 · features.0 · ch ")


def test_filters_snippet_equals_the_view(demo, ctx, monkeypatch):
    from space.tabs.filters import snippet

    names = ["resnet18_scratch", "pneumonia_cnn"]
    view, _ = _fn(demo, api_name="filters").fn("per_filter", names)
    ns = _exec(snippet(ctx, "per_filter", names), monkeypatch)
    assert len(ns["shown"]) == len(view) == 2
    assert all(np.array_equal(a, b) for a, b in zip(ns["shown"], view))


# ------------------------------------------------------------------------------------ in a browser at 1366×768
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_tiles_and_decision_at_1366x768(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("XDG_CONFIG_HOME", str(tmp_path / "config"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    with launched_app() as app, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.set_default_timeout(90_000)
            url = app.local_url.rstrip("/")
            page.goto(f"{url}/?example={BETWEEN}")
            decision = page.locator("#classify-decision")
            decision.get_by_text("below the model's threshold").wait_for()
            assert decision.inner_text().startswith("NORMAL")
            page.goto(f"{url}/?tab=feature_maps&example={EXAMPLE}")
            tile = page.locator("#feature-maps-gallery button.thumbnail-item img").first
            tile.wait_for(state="visible")
            box = tile.bounding_box()
            assert box["width"] >= 150, box  # the tile as shown (its map is most of it)
        finally:
            browser.close()
