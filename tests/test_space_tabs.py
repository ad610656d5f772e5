"""Outcomes, Model report and Trust tabs through a real client: the numbers equal the direct ``lib`` calls.

The real app (:func:`space.app.build_app`) is launched once for the module on a free port. The bundled examples
(``examples/chest_xray_test``, 100 images) are the split used, so the file runs on a fresh clone without
``../shared/data`` and stays fast.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import launched_app  # noqa: E402
from lib.data import load_grey, load_split  # noqa: E402
from lib.explain import (deletion_insertion, gradcam, model_randomisation, outcomes, overlay,  # noqa: E402
                         predict_split, prepare, threshold_presets)
from lib.metrics import evaluate_predictions  # noqa: E402
from lib.models import get_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "chest_xray_test"
MODEL = "pneumonia_cnn"
SPLIT = "examples"  # the bundled split, always present


@pytest.fixture(scope="module")
def app():
    with launched_app() as demo:
        yield demo
# `client` and `model` come from conftest.py and talk to this `app`.


@pytest.fixture(scope="module")
def pred(model):
    return predict_split(model, load_split(EXAMPLES, None, get_config(model)["img_size"], progress=False))


# --- Outcomes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_outcomes_counts_equal_lib(client, pred, threshold):
    counts, tp, tn, fp, fn, note = client.predict(MODEL, SPLIT, threshold, api_name="/outcomes")
    res = outcomes(pred, threshold)
    assert counts == res.counts
    for name, gallery in zip(("TP", "TN", "FP", "FN"), (tp, tn, fp, fn)):
        assert len(gallery) == min(len(res[name]), 24)
        # captions: most confident first, rank · P(pneumonia) of the lib's order (short: nothing cut at 1366×768)
        for rank, (item, i) in enumerate(zip(gallery, res[name])):
            assert item["caption"] == f"#{rank + 1} · {pred.probability[i]:.2f}"
    assert f"{threshold:.3f}" in note


def test_outcome_heatmaps_equal_lib(client, model, pred):
    res = outcomes(pred, 0.5)
    outcome = "TP"
    i = res[outcome][1]
    h0, h1, caption = client.predict(MODEL, SPLIT, 0.5, outcome, 2, api_name="/outcome_heatmaps")
    grey = load_split(EXAMPLES, None, get_config(model)["img_size"], progress=False).images[i:i + 1]
    maps = gradcam(model, prepare(model, grey))[0].numpy()
    vmax = float(maps.max())
    from PIL import Image
    from lib.explain import with_colorbar
    for path, c in ((h0, 0), (h1, 1)):
        assert str(path).endswith(".png")
        got = np.asarray(Image.open(path).convert("RGB"))
        # the overlay on the shared scale, with that scale's colour bar drawn into the image
        want = with_colorbar(overlay(grey[0, 0].numpy(), maps[c], vmin=0.0, vmax=vmax), 0.0, vmax, "jet",
                             label="Grad-CAM, shared scale")
        assert got.shape == want.shape and want.shape[1] > 224
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert Path(pred.path[i]).name in caption and "TP #2" in caption


def test_open_outcome_deep_link_function(app, model, pred):
    from space.tabs.outcomes import open_outcome

    ctx = app.xcxr_context
    res = outcomes(pred, pred.model_threshold)
    h0, h1, caption = open_outcome(MODEL, SPLIT, "TN", 1, ctx=ctx)
    assert h0.shape == h1.shape and h0.shape[0] == 224 and h0.shape[1] > 224  # the colour bar on the right
    assert Path(pred.path[res.tn[0]]).name in caption
    with pytest.raises(gr.Error):
        open_outcome(MODEL, SPLIT, "XX", 1, ctx=ctx)


def test_outcomes_bad_requests_then_good(client, pred):
    with pytest.raises(AppError, match="unavailable|unknown model"):
        client.predict("no_such_model", SPLIT, 0.5, api_name="/outcomes")
    with pytest.raises(AppError, match="between 1 and"):
        client.predict(MODEL, SPLIT, 0.5, "TP", 10_000, api_name="/outcome_heatmaps")
    counts = client.predict(MODEL, SPLIT, 0.5, api_name="/outcomes")[0]
    assert counts == outcomes(pred, 0.5).counts


# --- Model report -------------------------------------------------------------------------------------------------

def test_report_metrics_equal_lib(client, pred):
    metrics, table, note, roc, cm, curves, card = client.predict(MODEL, SPLIT, 0.5, api_name="/report")
    want = evaluate_predictions(pred.label, pred.probability, 0.5, pred.patient_id)
    # the whole dict, per image and per patient, through JSON (floats round-trip exactly)
    assert metrics == json.loads(json.dumps(want))
    rows = {r[0]: r[1] for r in table["data"]}
    assert float(rows["accuracy"]) == pytest.approx(want["accuracy"], abs=1e-4)
    for path in (roc, cm, curves):
        assert path and str(path).endswith(".png")
    assert card.strip() and not card.startswith("---")  # the model card without its YAML front matter


def test_report_model_threshold(client, pred):
    metrics = client.predict(MODEL, SPLIT, pred.model_threshold, api_name="/report")[0]
    assert metrics["threshold"] == pytest.approx(pred.model_threshold)
    want = evaluate_predictions(pred.label, pred.probability, pred.model_threshold)
    assert metrics["confusion_matrix"] == want["confusion_matrix"]


# --- Trust --------------------------------------------------------------------------------------------------------

def test_trust_equals_lib(client, model):
    example = sorted((EXAMPLES / "PNEUMONIA").glob("*.jpeg"))[0]
    steps, seed = 8, 3
    data, table, gallery, deletion, insertion, aucs, caption = client.predict(
        handle_file(str(example)), MODEL, None, "PNEUMONIA", steps, seed, api_name="/trust")
    x = prepare(model, torch.from_numpy(load_grey(example, get_config(model)["img_size"]))[None, None])
    rows = model_randomisation(model, x, classes=[1], seed=seed)
    assert [r["layer"] for r in data["randomisation"]] == [r["layer"] for r in rows]
    assert [r["spearman"] for r in data["randomisation"]] == pytest.approx([r["spearman"] for r in rows], abs=1e-9)
    assert len(gallery) == len(rows)
    res = deletion_insertion(model, x, classes=[1], steps=steps, seed=seed)
    for k, v in res.summary().items():
        assert data["deletion_insertion"][k] == pytest.approx(v, abs=1e-9), k
    # the verdict first, one sentence on both checks; the baseline's probability is in the numbers
    verdict = caption.split("\n\n")[0]
    assert verdict.startswith("**Grad-CAM for PNEUMONIA ") and verdict.count(". ") == 0 and "randomisation" in verdict
    assert data["baseline_probability"] == pytest.approx(float(res.baseline_probability[0]), abs=1e-9)


def test_trust_example_and_bad_upload(client, tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    with pytest.raises(AppError, match="empty"):
        client.predict(handle_file(str(bad)), MODEL, None, None, 4, 0, api_name="/trust")
    data = client.predict(None, MODEL, "NORMAL/" + sorted(p.name for p in (EXAMPLES / "NORMAL").iterdir())[0],
                          None, 4, 0, api_name="/trust")[0]
    assert data["randomisation"][0]["spearman"] == pytest.approx(1.0)


def test_outcome_presets_equal_lib(client, pred, monkeypatch, tmp_path):
    # no validation split (a fresh clone): presets come from the shown split itself, and the note says so
    monkeypatch.setenv("XCXR_DATA_ROOT", str(tmp_path))
    want = threshold_presets(pred)
    for key in ("0.5", "f1", "gmean", "youden", "model"):
        t, note = client.predict(MODEL, SPLIT, key, api_name="/outcome_presets")
        assert t == pytest.approx(want[key], abs=1e-12), key
        assert "optimistic" in note


def test_outcomes_deep_link_handler(app, pred):
    from space.tabs import outcomes as tab

    handler, outputs = app.xcxr_tabs["outcomes"].on_link  # the tab's spec: fn(query params) -> updates
    assert getattr(handler, "__wrapped__", handler).__module__ == tab.__name__
    out = handler({"tab": "outcomes", "model": MODEL, "split": SPLIT, "outcome": "fn", "index": "1",
                   "threshold": "0.9"})
    assert len(out) == len(outputs)
    got = dict(zip([id(c) for c in outputs], out))
    comps = {p: c for p, c in app.xcxr_tabs["outcomes"].link_extras}
    assert (got[id(comps["split"])], got[id(comps["threshold"])], got[id(comps["outcome"])],
            got[id(comps["index"])]) == (SPLIT, "0.9", "FN", 1)
    res = outcomes(pred, 0.9)
    assert res.counts in out
    assert any(isinstance(u, str) and "FN #1" in u and Path(pred.path[res.fn[0]]).name in u for u in out)


def test_no_tab_imports_another_tab():
    """What two tabs share lives in space.context / space.errors / space.evaluation, never in a tab module."""
    import ast

    tab_dir = ROOT / "space" / "tabs"
    tabs = {p.stem for p in tab_dir.glob("*.py") if p.stem != "__init__"}
    assert {"classify", "outcomes", "report"} <= tabs
    offenders = []
    for path in sorted(tab_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1:  # from .x import y / from . import x (a sibling in space/tabs)
                    targets = [base] if base else [a.name for a in node.names]
                    targets = [f"space.tabs.{t}" for t in targets]
                elif node.level >= 2:  # from ..x import y: outside space/tabs
                    targets = [f"space.{base}"]
                else:
                    targets = [base] + ([f"{base}.{a.name}" for a in node.names] if base == "space.tabs" else [])
            else:
                continue
            for t in targets:
                parts = t.split(".")
                if parts[:2] == ["space", "tabs"] and len(parts) > 2 and parts[2] in tabs:
                    offenders.append(f"{path.name}:{node.lineno} imports {t}")
    assert not offenders, offenders
