"""Outcomes tab in process: thresholds by name, links that survive retraining (preset names, image ids), a link
that opens with its result computed, stale heatmaps cleared, and a "Reproduce in Python" snippet that reproduces
the view exactly.

The tab is built alone (``outcomes.build`` in a ``gr.Blocks``, not launched); its handlers are called as Gradio
would call them. The split is the course test split shipped in ``data/chest_xray`` with the bundled model's
shipped predictions, so nothing runs the model over a split.
"""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from lib.data import load_split  # noqa: E402
from lib.explain import image_ids, outcomes, threshold_presets  # noqa: E402
from lib.models import get_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "pneumonia_cnn"
SPLIT = "test"
CAPTION = re.compile(r"^#\d+ · [01]\.\d\d$")

pytestmark = pytest.mark.skipif(not (ROOT / "data" / "chest_xray" / "val").is_dir() or os.environ.get("XCXR_DATA_ROOT"),
                                reason="needs the bundled course splits (data/chest_xray)")


@pytest.fixture(scope="module")
def ctx():
    from space.app import make_context
    return make_context()


@pytest.fixture(scope="module")
def tab(ctx):
    from space.tabs import outcomes as mod
    with gr.Blocks() as demo:
        spec = mod.build(ctx)
    return demo, spec


@pytest.fixture(scope="module")
def model(ctx):
    return ctx.model(MODEL)


@pytest.fixture(scope="module")
def data(model):
    from space.evaluation import load_data, predict
    size = get_config(model)["img_size"]
    ds = load_data(SPLIT, size)
    val = load_data("val", size)
    return ds, predict(model, ds), threshold_presets(predict(model, val))


def _fns(demo) -> dict:
    """The tab's event functions by name (``begin``, ``update``, …)."""
    return {f.name: f.fn for f in demo.fns.values()}


def _by_elem(demo, elem_id: str):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


@contextlib.contextmanager
def _told():
    """What a visitor would be warned about (the toasts), as a list of texts."""
    try:
        from space.links import collecting
    except ImportError:  # pragma: no cover - without the link checker's collector: Gradio's warnings outside a page
        collecting = None
    if collecting is not None:
        with collecting() as told:
            yield told
        return
    with warnings.catch_warnings(record=True) as caught:  # pragma: no cover
        warnings.simplefilter("always")
        told: list[str] = []
        yield told
        told += [str(w.message) for w in caught if "Link" in str(w.message) or "link" in str(w.message)]


def _open(tab, **query) -> tuple[dict, list[str]]:
    """Run the tab's on_link handler; ``({component elem_id or param: value}, warnings)``."""
    demo, spec = tab
    fn, outputs = spec.on_link
    with _told() as told:
        out = fn({"tab": "outcomes", "model": MODEL, "split": SPLIT, **{k: str(v) for k, v in query.items()}})
    assert len(out) == len(outputs)
    by_id = {id(c): v for c, v in zip(outputs, out)}
    got = {p: by_id[id(c)] for p, c in spec.link_extras}
    for c in outputs:
        if getattr(c, "elem_id", None):
            got[c.elem_id] = by_id[id(c)]
    got["code"] = out[-1]
    return got, list(told)


# --- the threshold grammar ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("gmean", "gmean"), ("G-mean", "gmean"), ("GMEAN", "gmean"), ("f1", "f1"), ("F1", "f1"), ("youden", "youden"),
    ("Youden J", "youden"), ("model", "model"), ("0.5", "0.5"), ("0.5123", 0.5123), (" 0.25 ", 0.25), ("0", 0.0),
    ("1", 1.0), (0.3, 0.3)])
def test_threshold_grammar(text, want):
    from space.evaluation import parse_threshold
    assert parse_threshold(text) == want


@pytest.mark.parametrize("bad", ["", "foo", "1.5", "-0.1", "nan", "inf", "0.5.1", "gmean2"])
def test_threshold_grammar_refuses(bad):
    from space.evaluation import ThresholdError, parse_threshold
    with pytest.raises(ThresholdError, match="preset name") as e:
        parse_threshold(bad)
    assert "between 0 and 1" in str(e.value)  # says what to give instead


def test_threshold_text_is_what_a_link_writes():
    from space.evaluation import threshold_text
    assert threshold_text("G-mean") == "gmean"
    assert threshold_text(0.7120000000000001) == "0.712"  # the slider's float noise stays out of links
    assert threshold_text(0.6241651177406311) == "0.624165"


def test_presets_resolve_on_validation(ctx, model, data, monkeypatch):
    from space import evaluation as ev
    _, _, val_presets = data
    for key in ("f1", "gmean", "youden"):
        t, desc = ev.resolve_threshold(model, MODEL, SPLIT, key)
        assert t == val_presets[key] and desc.endswith(ev.CHOSEN_ON_VALIDATION), (key, desc)
    assert ev.resolve_threshold(model, MODEL, SPLIT, "model")[0] == get_config(model)["threshold"]
    assert ev.resolve_threshold(model, MODEL, SPLIT, "0.5")[0] == 0.5
    assert ev.resolve_threshold(model, MODEL, SPLIT, "0.42") == (0.42, "set by hand")
    # a name survives retraining: another model, the same name, its own number
    other = ctx.model("resnet18_scratch")
    assert ev.resolve_threshold(other, "resnet18_scratch", SPLIT, "gmean")[0] != val_presets["gmean"]
    # a model without a threshold of its own: "model" is refused with what to choose instead
    monkeypatch.setattr(ev, "_own_threshold", lambda cfg: None)
    with pytest.raises(ev.ThresholdError, match="no threshold of its own.*choose another preset"):
        ev.resolve_threshold(model, MODEL, SPLIT, "model")


@pytest.mark.parametrize("query, problem", [
    ({"threshold": "foo"}, "threshold 'foo' is neither a preset name"),
    ({"threshold": "1.5"}, "out of range"),
    ({"preset": "best"}, "preset 'best' is neither a preset name"),
    ({"threshold": "0.3", "preset": "gmean"}, "both threshold and preset"),
])
def test_bad_thresholds_in_links_are_named(model, query, problem):
    from space.evaluation import threshold_from_link
    from space.links import LinkParams
    p = LinkParams(query, "outcomes")
    t, spec, desc = threshold_from_link(p, model, MODEL, SPLIT)
    assert any(problem in x for x in p.problems), p.problems
    if "both" not in problem:  # a bad value: the default (the model's own threshold)
        assert (t, spec) == (get_config(model)["threshold"], "model")
    else:
        assert (t, spec) == (0.3, "0.3")


def test_preset_alias_in_a_link(model, data):
    from space.evaluation import threshold_from_link
    from space.links import LinkParams
    p = LinkParams({"preset": "G-mean"}, "outcomes")
    assert threshold_from_link(p, model, MODEL, SPLIT)[:2] == (data[2]["gmean"], "gmean") and not p.problems


# --- links ------------------------------------------------------------------------------------------------------

def test_link_opens_fp2_computed_and_highlighted(tab, data):
    from space.tabs.outcomes import RESULT_ID
    ds, pred, presets = data
    got, told = _open(tab, threshold="gmean", outcome="FP", index=2)
    assert told == []
    res = outcomes(pred, presets["gmean"])
    i = res.fp[1]
    assert (got["threshold"], got["outcome"], got["index"]) == ("gmean", "FP", 2)
    assert got["image"] == image_ids(ds)[i]
    assert got["outcomes-caption"].startswith("**FP #2** of ") and "shared colour scale" in got["outcomes-caption"]
    for k in ("outcomes-heat-0", "outcomes-heat-1"):
        assert isinstance(got[k], np.ndarray) and got[k].shape[0] == 224 and got[k].shape[1] > 224  # + colour bar
    # the galleries are computed, the chosen thumbnail highlighted (and only it), captions short
    for name in ("TP", "TN", "FP", "FN"):
        g = got[f"outcomes-{name.lower()}"]
        assert g.selected_index == (1 if name == "FP" else None), name
        assert len(g.value) == min(24, len(res[name]))
        assert all(CAPTION.match(item["caption"]) for item in g.value), g.value[:2]
    assert got["outcomes-fp"].value[1]["caption"] == f"#2 · {pred.probability[i]:.2f}"
    assert tab[1].result_id == RESULT_ID and _by_elem(tab[0], RESULT_ID) is not None
    assert "res['FP'][2 - 1]" in got["code"]


def test_link_image_whose_outcome_changed_opens_the_image_with_a_warning(tab, data):
    ds, pred, presets = data
    i = outcomes(pred, presets["gmean"]).fp[1]
    image = image_ids(ds)[i]
    t2 = float(pred.probability[i]) + 1e-6  # the same image, now just below the threshold: a true negative
    res2 = outcomes(pred, t2)
    rank = res2.tn.index(i) + 1
    got, told = _open(tab, threshold=repr(t2), outcome="FP", index=2, image=image)
    moved = f"This link named FP #2; at this threshold ({t2:.3f}) the image is now TN #{rank}"
    assert any(moved in x for x in told), told
    assert moved in got["outcomes-caption"] and got["outcomes-caption"].startswith("⚠️")
    assert (got["outcome"], got["index"], got["image"]) == ("TN", rank, image)
    assert got["outcomes-caption"].count(f"**TN #{rank}**") == 1
    assert got["outcomes-tn"].selected_index == (rank - 1 if rank <= 24 else None)
    assert got["outcomes-fp"].selected_index is None


def test_link_image_unchanged_opens_without_warning(tab, data):
    ds, pred, presets = data
    i = outcomes(pred, presets["gmean"]).fn[0]
    got, told = _open(tab, threshold="gmean", outcome="FN", index=1, image=image_ids(ds)[i])
    assert told == [] and (got["outcome"], got["index"]) == ("FN", 1)
    assert not got["outcomes-caption"].startswith("⚠️")


def test_link_unknown_image_warns_and_falls_back(tab, data):
    ds, pred, presets = data
    got, told = _open(tab, threshold="gmean", outcome="FP", index=2, image="NORMAL/no_such_image.jpeg")
    assert any("image 'NORMAL/no_such_image.jpeg' is not in the test split" in x and "opened FP #2 instead" in x
               for x in told), told
    assert got["image"] == image_ids(ds)[outcomes(pred, presets["gmean"]).fp[1]]
    assert got["outcomes-caption"].startswith("**FP #2**")


def test_link_bad_values_warn_and_use_defaults(tab, model):
    got, told = _open(tab, threshold="abc", outcome="XX", index=-3)
    text = " ".join(told)
    for fragment in ("threshold 'abc'", "outcome 'XX'", "index must be between"):
        assert fragment in text, text
    assert got["threshold"] == "model"  # the default: the model's own threshold


def test_link_to_another_tab_changes_nothing_here(demo):
    """The app runs only the linked tab's ``on_link``: a Heatmaps link leaves every Outcomes output as it is."""
    apply_link = next(f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "apply_link")
    mine = {id(c) for c in demo.xcxr_tabs["outcomes"].on_link[1]}
    got = apply_link.fn("heatmaps", {"tab": "heatmaps", "model": MODEL, "outcome": "FP", "index": "2"})
    assert len(got) == len(apply_link.outputs)
    assert all(u == gr.skip() for c, u in zip(apply_link.outputs, got) if id(c) in mine)
    assert any(u != gr.skip() for u in got) or demo.xcxr_tabs["heatmaps"].on_link is None
    # the same link to Outcomes does set them
    got = apply_link.fn("outcomes", {"tab": "outcomes", "model": MODEL, "outcome": "FP", "index": "2"})
    assert any(u != gr.skip() for c, u in zip(apply_link.outputs, got) if id(c) in mine)


def test_preset_only_link_computes_the_galleries(tab, data):
    got, told = _open(tab, preset="youden")
    assert told == [] and got["threshold"] == "youden"
    assert got["outcomes-tp"].value and got["outcomes-heat-0"] is None  # no outcome named: galleries only


# --- stale results ------------------------------------------------------------------------------------------------

def test_a_changed_setting_clears_the_heatmaps_and_an_older_request_skips(ctx, tab, data):
    from space.evaluation import resolve_threshold, setting_key
    fns = _fns(tab[0])
    begin, update = fns["begin"], fns["update"]
    key = setting_key(MODEL, SPLIT, 0.5)
    assert all(u == gr.skip() for u in begin(MODEL, SPLIT, 0.5, key))  # what a link just opened stays
    h0, h1, caption, image, code, tok, newest, shown = begin(MODEL, SPLIT, 0.5, setting_key(MODEL, SPLIT, 0.7))
    assert (h0, h1, caption, image, code, shown) == (None, None, "", "", "", "") and tok == newest
    # an older request, still queued when a newer one started, does nothing
    assert all(u == gr.skip() for u in update(MODEL, SPLIT, 0.5, "0.5", "", "old", newest))
    t, counts, tp, tn, fp, fn, note, shown, code = update(MODEL, SPLIT, 0.5, "0.5", "", tok, newest)
    assert (t, shown) == (0.5, key) and counts == outcomes(data[1], 0.5).counts
    assert "t = 0.5" in code and "shown" not in code  # the snippet of the galleries (no heatmaps shown)
    assert all(g.selected_index is None for g in (tp, tn, fp, fn))  # no highlight left from the previous setting
    # a preset keeps its name: after a model change its number is the new model's
    t2 = update("resnet18_scratch", SPLIT, 0.5, "gmean", "", tok, newest)[0]
    assert t2 == resolve_threshold(ctx.model("resnet18_scratch"), "resnet18_scratch", SPLIT, "gmean")[0]
    assert "chosen on validation" in update(MODEL, SPLIT, data[2]["gmean"], "gmean", "", tok, newest)[6]


def test_a_thumbnail_click_on_a_fresh_page_shows_its_heatmaps(tab, data):
    """A fresh page sends the hidden, empty request id as None (the state holds ""): that is no newer request."""
    ds, pred, _ = data
    picks = [f.fn for f in tab[0].fns.values() if f.name == "pick"]
    assert len(picks) == 4  # one per gallery, in the order TP, TN, FP, FN
    evt = gr.SelectData(None, {"index": 2, "value": None})
    outcome, rank, h0, h1, caption, image = picks[2](MODEL, SPLIT, 0.5, None, "", evt)
    assert (outcome, rank) == ("FP", 3) and caption.startswith("**FP #3**") and isinstance(h0, np.ndarray)
    assert image == image_ids(ds)[outcomes(pred, 0.5).fp[2]]
    # a click made before the setting changed (its request id is older than the newest): nothing
    assert all(u == gr.skip() for u in picks[2](MODEL, SPLIT, 0.5, "old", "new", evt))
    assert _fns(tab[0])["update"](MODEL, SPLIT, 0.5, "0.5", "", None, "")[0] == 0.5


# --- Reproduce in Python ------------------------------------------------------------------------------------------

def _exec(code: str) -> dict:
    ns: dict = {}
    here = os.getcwd()
    os.chdir(ROOT)  # snippets run from the repository root
    try:
        exec(compile(code, "<snippet>", "exec"), ns)
    finally:
        os.chdir(here)
    return ns


def test_snippet_reproduces_the_linked_view(tab):
    got, _ = _open(tab, threshold="gmean", outcome="FP", index=2)
    ns = _exec(got["code"])
    assert len(ns["shown"]) == 2
    assert np.array_equal(ns["shown"][0], got["outcomes-heat-0"])
    assert np.array_equal(ns["shown"][1], got["outcomes-heat-1"])
    assert ns["image"] == got["image"]
    fn, outputs = tab[1].on_link
    counts = next(c for c in outputs if isinstance(c, gr.JSON))
    assert ns["counts"] == dict(zip(map(id, outputs), fn({"tab": "outcomes", "model": MODEL, "split": SPLIT,
                                                           "threshold": "gmean"})))[id(counts)]


def test_snippet_with_a_number_and_the_bundled_examples(ctx):
    from space.tabs.outcomes import open_outcome, snippet
    code = snippet(ctx, MODEL, "examples", "0.37", "TN", 3)
    assert "load_split('examples/chest_xray_test', None, size)" in code and "t = 0.37" in code
    ns = _exec(code)
    h0, h1, _ = open_outcome(MODEL, "examples", "TN", 3, 0.37, ctx=ctx)
    assert np.array_equal(ns["shown"][0], h0) and np.array_equal(ns["shown"][1], h1)
    ds = load_split(ROOT / "examples" / "chest_xray_test", None, 224, progress=False)
    assert sum(ns["counts"].values()) == len(ds)
