"""The course splits and the predictions that travel with the app (issue #11).

* ``data/chest_xray/{val,test}`` are the course's splits: a fresh clone without ``../shared`` offers the same 497 and
  977 images, the same image ids and — being byte-identical — the same predictions, presets and outcome ranks.
* Every shipped model carries its predictions on those splits (``models/*/predictions``, written by
  ``python -m train.predictions``), keyed by its weights and the split: this test fails while they are stale (a
  retrained model or changed data), so the app never serves another model's numbers, and Outcomes answer at once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lib.data import load_split
from lib.explain import clear_prediction_cache, image_ids, outcomes, predict_split
from lib.models import get_config, load_model, predict_proba

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "data" / "chest_xray"
SHARED = ROOT.parent / "shared" / "data" / "chest_xray"
SHIPPED = sorted(p.parent for p in (ROOT / "models").glob("*/config.json"))


def test_the_course_splits_ship_with_the_app():
    counts = {s: load_split(COURSE, s, 32, progress=False).class_counts() for s in ("val", "test")}
    assert counts == {"val": [129, 368], "test": [273, 704]}
    assert (ROOT / "data" / "README.md").read_text().count("CC BY 4.0") >= 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data beside the repository")
def test_the_bundled_splits_are_the_course_splits_byte_for_byte():
    for split in ("val", "test"):
        ours = sorted(p.relative_to(COURSE / split) for p in (COURSE / split).glob("*/*"))
        theirs = sorted(p.relative_to(SHARED / split) for p in (SHARED / split).glob("*/*"))
        assert ours == theirs
        for rel in ours:
            assert (COURSE / split / rel).read_bytes() == (SHARED / split / rel).read_bytes(), rel


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_model_carries_current_predictions(folder):
    model = load_model(folder)
    size = int(get_config(model)["img_size"])
    clear_prediction_cache()
    for split in ("val", "test"):
        ds = load_split(COURSE, split, size, progress=False)
        # read only the shipped folder: found there, or the model/data changed since `python -m train.predictions`
        pred = predict_split(model, ds, read_dirs=[folder / "predictions"])
        shipped = folder / "predictions" / f"predictions-{pred.key}.npz"
        assert shipped.is_file(), (f"{folder.name}: no current predictions for the {split} split; run "
                                   f"`python -m train.predictions {folder.relative_to(ROOT)}`")
        with np.load(shipped) as z:
            assert z["path"].tolist() == image_ids(ds)
        # the stored numbers are this model's: recompute a sample of images
        idx = torch.linspace(0, len(ds) - 1, 16).long()
        fresh = predict_proba(model, ds.images[idx]).double().numpy()
        assert np.allclose(pred.probability[idx.numpy()], fresh, atol=1e-6)
    assert sorted(p.name for p in (folder / "predictions").iterdir()) == sorted(
        f"predictions-{predict_split(model, load_split(COURSE, s, size, progress=False)).key}.npz"
        for s in ("val", "test")), "stale prediction files left in the folder"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data beside the repository")
def test_outcome_counts_are_the_same_with_or_without_shared_data():
    model = load_model(ROOT / "models" / "pneumonia_cnn")
    ours = predict_split(model, load_split(COURSE, "test", 224, progress=False))
    theirs = predict_split(model, load_split(SHARED, "test", 224, progress=False))
    assert ours.key == theirs.key and len(ours.probability) == 977
    for t in (0.1, 0.5, 0.6241651177406311, 0.9):
        a, b = outcomes(ours, t), outcomes(theirs, t)
        assert a.counts == b.counts and (a.tp, a.tn, a.fp, a.fn) == (b.tp, b.tn, b.fp, b.fn)
