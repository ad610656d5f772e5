"""Model report tab in process: it runs when opened and from a link (threshold by preset name), names its thresholds
unambiguously ("chosen on validation" vs "best on this split"), clears stale figures first, fits a small screen,
and its "Reproduce in Python" snippet gives the same numbers. Plus the ROC / confusion-matrix labels it relies on.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from lib.explain import threshold_presets  # noqa: E402
from lib.metrics import evaluate_predictions, plot_confusion_matrix, plot_roc  # noqa: E402
from lib.models import get_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "pneumonia_cnn"
SPLIT = "test"

pytestmark = pytest.mark.skipif(not (ROOT / "data" / "chest_xray" / "val").is_dir() or os.environ.get("XCXR_DATA_ROOT"),
                                reason="needs the bundled course splits (data/chest_xray)")


@pytest.fixture(scope="module")
def ctx():
    from space.app import make_context
    return make_context()


@pytest.fixture(scope="module")
def tab(ctx):
    from space.tabs import report
    with gr.Blocks() as demo:
        spec = report.build(ctx)
    return demo, spec


@pytest.fixture(scope="module")
def preds(ctx):
    from space.evaluation import load_data, predict
    m = ctx.model(MODEL)
    size = get_config(m)["img_size"]
    return predict(m, load_data(SPLIT, size)), threshold_presets(predict(m, load_data("val", size)))


def _fns(demo) -> dict:
    return {f.name: f.fn for f in demo.fns.values()}


def test_report_runs_on_open_and_names_its_thresholds(ctx, tab, preds):
    from space.tabs.report import TABLE_HEADERS
    pred, presets = preds
    demo, spec = tab
    fn, inputs, outputs = spec.on_open
    t = presets["gmean"]
    out = fn(MODEL, SPLIT, t, "gmean", "")
    assert len(out) == len(outputs)
    metrics, table, note, roc, cm, curves, card, shown, code = out
    want = evaluate_predictions(pred.label, pred.probability, t, pred.patient_id)
    assert metrics == want
    # the note tells the validation preset in use from the thresholds that are best on the test split itself
    assert "chosen on validation" in note and "best on this split (optimistic)" in note
    assert f"G-mean {want['thresholds']['gmean']['threshold']:.3f}" in note and "Optimal" not in note
    assert note.count("G-mean") == 2  # once as the preset in use, once as best on this split, each named so
    # three short columns: no horizontal scrolling at 1366×768
    assert len(TABLE_HEADERS) == 3 and all(len(row) == 3 for row in table)
    assert max(len(str(row[0])) for row in table) <= 13
    for img in (roc, cm):
        assert img is not None and img.width <= 640
    # opened again with nothing changed: nothing recomputed
    assert all(u == gr.skip() for u in fn(MODEL, SPLIT, t, "gmean", shown))
    assert "metrics = evaluate_predictions(" in code


def test_report_link_sets_split_and_threshold_by_name(ctx, tab, preds):
    from space.links import collecting
    fn, outputs = tab[1].on_link
    with collecting() as told:
        split, t, spec, preset, note, tok, newest = fn({"tab": "report", "model": MODEL, "split": "val",
                                                        "threshold": "gmean"})
    assert told == [] and (split, t, spec, preset) == ("val", preds[1]["gmean"], "gmean", "gmean") and tok == newest
    with collecting() as told:
        split, t, spec, preset, *_ = fn({"tab": "report", "model": MODEL, "split": "nope", "preset": "0.3"})
    assert (split, t, spec, preset) == (SPLIT, 0.3, "0.3", None)
    assert any("split 'nope'" in x for x in told), told
    with collecting() as told:
        _, t, spec, *_ = fn({"tab": "report", "model": MODEL, "threshold": "best"})
    assert spec == "model" and any("threshold 'best'" in x for x in told), told
    assert dict(tab[1].link_extras).keys() == {"split", "threshold"} and "preset" in tab[1].link_reads
    assert tab[1].result_id == "report-result"


def test_report_clears_old_figures_first(tab):
    from space.evaluation import setting_key
    fns = _fns(tab[0])
    begin, update = fns["begin"], fns["update"]
    assert all(u == gr.skip() for u in begin(MODEL, SPLIT, 0.5, setting_key(MODEL, SPLIT, 0.5)))
    metrics, table, note, roc, cm, curves, card, shown, tok, newest, code = begin(
        "resnet18_scratch", SPLIT, 0.5, setting_key(MODEL, SPLIT, 0.5))
    assert (metrics, table, roc, cm, curves, card, shown, code) == (None, None, None, None, None, "", "", "")
    assert "resnet18_scratch" in note and tok == newest
    # the same model: its training curves and card stay
    out = begin(MODEL, SPLIT, 0.7, setting_key(MODEL, SPLIT, 0.5))
    assert out[3] is None and out[5] == gr.skip() and out[6] == gr.skip()
    assert all(u == gr.skip() for u in update(MODEL, SPLIT, 0.5, "0.5", "", "older", newest))


def test_report_snippet_gives_the_same_numbers(ctx, preds):
    from space.tabs.report import compute_report, snippet
    for model_name, split, text in ((MODEL, SPLIT, "gmean"), ("resnet18_scratch", "val", "0.7")):
        code = snippet(ctx, model_name, split, text)
        ns: dict = {}
        here = os.getcwd()
        os.chdir(ROOT)
        try:
            exec(compile(code, "<snippet>", "exec"), ns)
        finally:
            os.chdir(here)
        from space.evaluation import resolve_threshold
        t = resolve_threshold(ctx.model(model_name), model_name, split, text)[0]
        metrics, table, *_ = compute_report(ctx, model_name, split, t)
        assert ns["metrics"] == metrics and ns["table"] == table


# --- the figures' labels ------------------------------------------------------------------------------------------

Y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.6, 0.3])


def test_plot_roc_names_best_points_and_the_threshold_in_use():
    fig = plot_roc(Y, P, mark=("f1", "gmean"), mark_label="{name} best on this split (optimistic)",
                   operating_points={"in use (chosen on validation)": 0.5}, title="ROC: model on test")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "F1 best on this split (optimistic)" in labels and "G-mean best on this split (optimistic)" in labels
    assert "in use (chosen on validation) t=0.5" in labels
    assert fig.axes[0].get_title() == "ROC: model on test"
    # the default labels are unchanged (backward compatible)
    assert "F1-optimal (M)" in plot_roc(Y, P, label="M").axes[0].get_legend_handles_labels()[1]
    with pytest.raises(ValueError, match="name"):
        plot_roc(Y, P, mark_label="best")


def test_long_figure_titles_wrap():
    title = "yours:some-organisation/a-very-long-model-name-v3 on test, t=0.624"
    got = plot_confusion_matrix([[5, 1], [2, 7]], title=title).axes[0].get_title()
    assert "\n" in got and all(len(line) <= 38 for line in got.splitlines())
    assert plot_confusion_matrix([[5, 1], [2, 7]], title="short").axes[0].get_title() == "short"
