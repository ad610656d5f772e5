"""Tests for lib.explain.outcomes (TP/TN/FP/FN, cached predictions, threshold presets) and lib.explain.trust
(model-randomisation sanity check, deletion/insertion curves).

Small hand-built models and tiny images keep these fast. The two checks on the bundled trained model
(``models/pneumonia_cnn``) skip until its ``model.safetensors`` exists and when ``../shared/data/chest_xray`` is absent.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from lib.data import ImageSet, load_split
from lib.explain import (Outcomes, Predictions, clear_prediction_cache, curve_auc, deletion_insertion,
                         model_randomisation, outcomes, perturbation_curves, predict_split, randomisation_blocks,
                         rank_correlation, threshold_presets)
from lib.explain.core import prepare
from lib.explain.trust import ssim
from lib.metrics import optimal_thresholds
from lib.models import create_model, load_model

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "models" / "pneumonia_cnn"
TEST_SPLIT = ROOT.parent / "shared" / "data" / "chest_xray" / "test"
outcomes_module = importlib.import_module("lib.explain.outcomes")  # `lib.explain.outcomes` is also the function


def _config(**extra):
    return {"architecture": "toy", "num_classes": 1, "labels": ["NORMAL", "PNEUMONIA"], "in_chans": 1,
            "img_size": 8, "mean": [0.0], "std": [1.0], "target_layer": None, "first_layer": "table", **extra}


class LookupModel(nn.Module):
    """One logit per image, looked up from a hand-set table by the image's pixel [0, 0] (= its row number).

    Counts its forward passes, so a test can see whether the cache ran it.
    """

    def __init__(self, probabilities, **cfg):
        super().__init__()
        p = torch.tensor(probabilities, dtype=torch.float64)
        self.table = nn.Parameter(torch.log(p / (1 - p)).float())  # logit(p); sigmoid(0) = 0.5 exactly
        self.xcxr_config = _config(**cfg)
        self._calls = [0]  # a list, so lib's eval views of this model (which run the forward passes) count here too

    @property
    def forwards(self) -> int:
        return self._calls[0]

    def forward(self, x):
        self._calls[0] += 1
        idx = torch.round(x[:, 0, 0, 0] * 255).long()  # Preprocess: uint8 / 255, mean 0, std 1
        return self.table[idx][:, None]


# label, probability → outcome at 0.5 (>= rule)
ROWS = [(1, 0.95), (0, 0.80), (1, 0.30), (0, 0.10), (1, 0.60), (0, 0.55), (1, 0.05), (0, 0.45), (1, 0.50), (0, 0.49)]


def _imageset(n=len(ROWS)):
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.tensor([y for y, _ in ROWS[:n]])
    paths = [f"/data/{'PNEUMONIA' if y else 'NORMAL'}/person{i}_x.jpeg" for i, (y, _) in enumerate(ROWS[:n])]
    return ImageSet(images, labels, ["NORMAL", "PNEUMONIA"], paths, [f"p{i // 2}" for i in range(n)])


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_prediction_cache()
    yield
    clear_prediction_cache()


# --- outcomes ---------------------------------------------------------------------------------------------------

def test_outcomes_exact_lists_sorted_most_confident_first():
    model = LookupModel([p for _, p in ROWS])
    pred = predict_split(model, _imageset(), batch_size=4)
    assert isinstance(pred, Predictions) and len(pred) == 10
    np.testing.assert_allclose(pred.probability, [p for _, p in ROWS], atol=1e-6)
    res = outcomes(pred, 0.5)
    assert isinstance(res, Outcomes)
    assert res.tp == [0, 4, 8]        # highest probability first; 0.50 >= 0.5 is positive
    assert res.fp == [1, 5]           # most confident false alarms first
    assert res.fn == [6, 2]           # most confidently missed first (lowest probability)
    assert res.tn == [3, 7, 9]        # lowest probability first
    assert res.counts == {"TP": 3, "TN": 3, "FP": 2, "FN": 2}
    assert res["FP"] == res.fp
    assert res.outcome == ["TP", "FP", "FN", "TN", "TP", "FP", "FN", "TN", "TP", "TN"]
    assert res.prediction.tolist() == [1, 1, 0, 0, 1, 1, 0, 0, 1, 0]
    row = res.rows()[1]
    assert list(row) == ["index", "path", "label", "probability", "prediction", "outcome", "patient_id"]
    assert row["index"] == 1 and row["label"] == 0 and row["outcome"] == "FP" and row["patient_id"] == "p0"
    assert row["path"].endswith("NORMAL/person1_x.jpeg") and row["probability"] == pytest.approx(0.8, abs=1e-6)


def test_outcomes_extreme_thresholds_and_ties_keep_dataset_order():
    model = LookupModel([0.7, 0.7, 0.2, 0.7])
    ds = _imageset(4)  # labels 1, 0, 1, 0
    res = outcomes(predict_split(model, ds), 0.0)  # everything positive
    assert res.tp == [0, 2] and res.fp == [1, 3] and res.fn == [] and res.tn == []
    res = outcomes(predict_split(model, ds), 1.0)  # nothing positive (no probability reaches 1)
    assert res.fn == [2, 0] and res.tn == [1, 3]   # 0.2 before 0.7; equal 0.7s stay in data-set order


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_outcomes_rejects_bad_thresholds(bad):
    pred = predict_split(LookupModel([p for _, p in ROWS]), _imageset())
    with pytest.raises(ValueError, match="threshold"):
        outcomes(pred, bad)


def test_predict_split_runs_the_model_once_and_caches_by_content(tmp_path):
    model = LookupModel([p for _, p in ROWS])
    ds = _imageset()
    first = predict_split(model, ds, batch_size=4)
    assert model.forwards == 3                      # 10 images in batches of 4
    again = predict_split(model, ds, batch_size=4)
    assert model.forwards == 3 and again is first   # cached: the model did not run
    # the same pixels in another ImageSet object share the entry; other data does not
    predict_split(model, ImageSet(ds.images.clone(), ds.labels.clone(), ds.classes, ds.paths, ds.patient_ids))
    assert model.forwards == 3
    predict_split(model, ds.subset(range(5)))
    assert model.forwards == 4
    # changed weights (in place) → new key → the model runs again
    with torch.no_grad():
        model.table[0] = 0.0
    changed = predict_split(model, ds, batch_size=4)
    assert model.forwards == 7 and changed.probability[0] == pytest.approx(0.5)
    # in-place change of the pixels → new key
    ds.images[0, 0, 1, 1] = 7
    predict_split(model, ds, batch_size=4)
    assert model.forwards == 10
    # use_cache=False always runs
    predict_split(model, ds, batch_size=10, use_cache=False)
    assert model.forwards == 11


def test_predict_split_disk_cache_survives_a_restart(tmp_path):
    model = LookupModel([p for _, p in ROWS])
    ds = _imageset()
    first = predict_split(model, ds, cache_dir=tmp_path)
    assert model.forwards == 1 and len(list(tmp_path.glob("predictions-*.npz"))) == 1
    clear_prediction_cache()  # "restart": memory gone, file stays
    second = predict_split(model, ds, cache_dir=tmp_path)
    assert model.forwards == 1
    np.testing.assert_array_equal(second.probability, first.probability)
    assert second.key == first.key and second.path == first.path


def test_predict_split_restores_mode_and_checks_inputs():
    model = LookupModel([p for _, p in ROWS]).train()
    predict_split(model, _imageset())
    assert model.training
    with pytest.raises(TypeError, match="ImageSet"):
        predict_split(model, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="img_size=8"):
        predict_split(model, ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]),
                                      ["NORMAL", "PNEUMONIA"], ["a", "b"]))


def test_threshold_presets_are_the_metrics_module_thresholds():
    pred = predict_split(LookupModel([p for _, p in ROWS]), _imageset())
    presets = threshold_presets(pred)
    assert presets == {"0.5": 0.5, **optimal_thresholds(pred.label, pred.probability)}
    assert set(presets) == {"0.5", "f1", "gmean", "youden"}
    # the model's own threshold (stored in config.json by training, chosen on validation) comes along
    pred = predict_split(LookupModel([p for _, p in ROWS], threshold=0.42), _imageset())
    assert threshold_presets(pred)["model"] == 0.42
    # thresholds from "validation" applied to "test": a preset value is usable directly
    res = outcomes(pred, threshold_presets(pred)["youden"])
    assert sum(res.counts.values()) == 10


def test_threshold_presets_need_both_classes():
    ds = _imageset().subset([0, 2, 4])  # positives only
    with pytest.raises(ValueError):
        threshold_presets(predict_split(LookupModel([p for _, p in ROWS]), ds))


# --- rank correlation and SSIM ---------------------------------------------------------------------------------

def test_rank_correlation_matches_scipy_and_handles_constant_maps():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 6, 7), generator=g).float()  # many ties
    b = torch.randint(0, 5, (3, 6, 7), generator=g).float()
    rho = rank_correlation(a, b)
    for i in range(3):
        assert rho[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-12)
    assert rank_correlation(a, a.exp() * 3).tolist() == pytest.approx([1.0] * 3)
    assert rank_correlation(a, -a).tolist() == pytest.approx([-1.0] * 3)
    zero = torch.zeros(6, 7)
    assert rank_correlation(zero, a[0]).item() == 0.0     # constant vs map: nothing of the order survives
    assert rank_correlation(zero, zero + 3).item() == 1.0  # two constant maps
    assert float(ssim(a[0], a[0])) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim(a[0], b[0])) < 0.9


# --- model-randomisation sanity check ---------------------------------------------------------------------------

def _small_cnn(seed=0, **cfg):
    torch.manual_seed(seed)
    return create_model("pneumonia_cnn", img_size=32, widths=(4, 8), **cfg)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def test_randomisation_blocks_follow_the_module_tree():
    assert randomisation_blocks(_small_cnn()) == ["head", "features.1", "features.0"]
    assert randomisation_blocks(create_model("pneumonia_cnn")) == ["head", "features.2", "features.1", "features.0"]
    assert randomisation_blocks(create_model("cnn1")) == ["classifier", "features.3", "features.2", "features.1",
                                                          "features.0"]
    blocks = randomisation_blocks(create_model("resnet18_scratch", img_size=64))
    assert blocks[:3] == ["fc", "layer4.1", "layer4.0"] and blocks[-3:] == ["layer1.0", "bn1", "conv1"]


def test_sanity_check_step0_is_one_and_callers_model_is_untouched():
    model = _small_cnn().train()  # the caller's mode (train) must come back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hooks(model)
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    rng = torch.get_rng_state()
    rows = model_randomisation(model, x, seed=0, with_ssim=True)
    assert torch.equal(torch.get_rng_state(), rng)  # seeded re-init does not disturb the global RNG
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["layer"] for r in rows] == ["original", "head", "features.1", "features.0"]
    assert rows[0]["spearman"] == pytest.approx(1.0, abs=1e-12) and rows[0]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["spearman_per_image"] == pytest.approx([1.0] * 3)
    assert all(-1.0 <= r["spearman"] <= 1.0 for r in rows)
    assert rows[-1]["spearman"] < 0.99  # a fully random model explains differently
    # the caller's model: weights equal, every module's mode restored, no hook left, no gradients stored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training for m in model.modules())
    assert _hooks(model) == hooks == 0
    assert all(p.grad is None for p in model.parameters())
    # seeded: the same call gives the same numbers
    again = model_randomisation(model, x, seed=0, with_ssim=True)
    assert [r["spearman"] for r in again] == [r["spearman"] for r in rows]


def test_sanity_check_accepts_any_explainer_and_checks_block_names():
    model = _small_cnn()
    x = torch.randn(2, 1, 32, 32)
    calls = []

    def saliency(m, images, classes):
        calls.append(classes)
        images = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(m(images)[:, 1].sum(), images)
        return grad.abs()

    rows = model_randomisation(model, x, classes=[1], explain=saliency, blocks=["head", "features.1"])
    assert [r["layer"] for r in rows] == ["original", "head", "features.1"] and calls == [[1]] * 3
    with pytest.raises(ValueError, match="unknown block"):
        model_randomisation(model, x, blocks=["nope"])
    with pytest.raises(TypeError, match="float tensor"):
        model_randomisation(model, torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


# --- deletion / insertion ---------------------------------------------------------------------------------------

class EvidenceModel(nn.Module):
    """One logit z = k · Σ_p w_p (x_p − mean(x)) = k · Σ_p (w_p − mean(w)) x_p — linear in the pixels.

    Setting pixel p to the baseline m (the image mean) changes z by k (w_p − mean(w)) (m − x_p), so the map
    (w − mean(w)) ⊙ (x − m) is the exact evidence: deleting in its order is the fastest way down.
    """

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)
        self.xcxr_config = _config(img_size=w.shape[-1])

    def forward(self, x):
        return 0.05 * (self.w * (x - x.mean(dim=(-2, -1), keepdim=True))).sum(dim=(1, 2, 3))[:, None]


def test_deletion_of_the_true_evidence_beats_random_maps():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 1, 16, 16, generator=g)
    w[:, :, 4:12, 4:12] += 1.0  # the model looks at the centre …
    x = torch.rand(4, 1, 16, 16, generator=g)
    x[:, :, 4:12, 4:12] += 1.0  # … where these images are bright: confident PNEUMONIA
    model = EvidenceModel(w)
    evidence = ((w - w.mean()) * (x - x.mean(dim=(-2, -1), keepdim=True)))[:, 0]
    res = deletion_insertion(model, x, maps=evidence, classes=1, steps=16, n_random=3, random_grid=None, seed=0)
    assert res.classes.tolist() == [1, 1, 1, 1]
    for mode in ("deletion", "insertion"):
        assert res.curves[mode].shape == (4, 17) and res.random_curves[mode].shape == (4, 17)
        assert ((0 <= res.auc[mode]) & (res.auc[mode] <= 1)).all()
        assert ((0 <= res.random_auc[mode]) & (res.random_auc[mode] <= 1)).all()
    assert (res.auc["deletion"] < res.random_auc["deletion"]).all()
    assert (res.auc["insertion"] > res.random_auc["insertion"]).all()
    s = res.summary()
    assert s["deletion_auc"] < s["random_deletion_auc"] and s["insertion_auc"] > s["random_insertion_auc"]
    # ends of the curves: intact image → all pixels at the baseline (the image mean: logit 0, p = 0.5)
    with torch.no_grad():
        p0 = torch.sigmoid(model(x)[:, 0]).double().numpy()
    np.testing.assert_allclose(res.curves["deletion"][:, 0], p0, atol=1e-6)
    np.testing.assert_allclose(res.curves["deletion"][:, -1], 0.5, atol=1e-6)
    np.testing.assert_allclose(res.curves["insertion"][:, -1], p0, atol=1e-6)
    assert res.x[0] == 0.0 and res.x[-1] == 1.0


def test_batched_equals_unbatched_and_aucs_in_unit_interval():
    model = _small_cnn(seed=3).train()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    kw = dict(steps=6, n_random=2, random_grid=4, seed=5)
    fast = deletion_insertion(model, x, batch_size=5, **kw)  # chunks that straddle images and random maps
    slow = deletion_insertion(model, x, batched=False, **kw)
    assert model.training and _hooks(model) == 0
    for mode in ("deletion", "insertion"):
        np.testing.assert_allclose(fast.curves[mode], slow.curves[mode], atol=1e-6, rtol=0)
        np.testing.assert_allclose(fast.random_curves[mode], slow.random_curves[mode], atol=1e-6, rtol=0)
        np.testing.assert_allclose(fast.auc[mode], slow.auc[mode], atol=1e-6, rtol=0)
        assert ((0 <= fast.auc[mode]) & (fast.auc[mode] <= 1)).all()
    np.testing.assert_array_equal(fast.classes, slow.classes)
    # the classes default to each image's prediction
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    assert fast.classes.tolist() == pred.tolist()


def test_perturbation_curves_and_auc_helpers():
    model = _small_cnn()
    x = torch.randn(2, 1, 32, 32)
    maps = torch.rand(2, 8, 8)  # coarser than the image: resized bilinearly
    xs, p = perturbation_curves(model, x, maps, classes=[0, 1], mode="insertion", steps=4, baseline="blur")
    assert xs.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and p.shape == (2, 5)
    assert ((0 <= p) & (p <= 1)).all()
    assert curve_auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert curve_auc(np.ones((3, 11))).tolist() == pytest.approx([1.0] * 3)
    with pytest.raises(ValueError, match="one map per image"):
        perturbation_curves(model, x, torch.rand(2, 2, 32, 32), classes=1)
    with pytest.raises(ValueError, match="mode"):
        perturbation_curves(model, x, maps, classes=1, mode="erase")
    with pytest.raises(ValueError, match="classes"):
        perturbation_curves(model, x, maps, classes=[2, 0])
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(model, x, steps=0)


# --- the bundled trained model on real test images --------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    if not (TRAINED / "model.safetensors").is_file():
        pytest.skip("models/pneumonia_cnn/model.safetensors does not exist yet (the bundled model is being trained)")
    if not TEST_SPLIT.is_dir():
        pytest.skip("../shared/data/chest_xray/test is not beside the repo")
    model = load_model(TRAINED)
    test = load_split(TEST_SPLIT.parent, "test", img_size=model.xcxr_config["img_size"], progress=False)
    # fixed choice: the first 25 images of each class, in file order
    idx = [i for c in (0, 1) for i in np.flatnonzero(test.labels.numpy() == c)[:25].tolist()]
    return model, prepare(model, test.images[idx]), test.labels[idx]


def test_trained_model_sanity_check_rank_correlation_collapses(trained):
    model, x, _ = trained
    rows = model_randomisation(model, x[::8], seed=0)  # 7 images, both classes
    assert rows[0]["spearman"] == pytest.approx(1.0)
    assert [r["layer"] for r in rows[:3]] == ["original", "head", "features.2"]
    # once the top blocks (head, last ConvBlock) are random, the maps no longer rank pixels like the trained ones
    assert all(r["spearman"] < 0.3 for r in rows[2:]), [(r["layer"], round(r["spearman"], 3)) for r in rows]


def test_trained_model_gradcam_deletion_beats_random_maps(trained):
    model, x, _ = trained
    assert len(x) == 50
    # 5 steps and one random map per image keep this at ~500 forward passes (a shared CPU); the gap is wide
    res = deletion_insertion(model, x, modes=["deletion"], steps=5, n_random=1, seed=0)
    s = res.summary()
    assert s["deletion_auc"] < s["random_deletion_auc"], s


def test_predict_split_on_a_zoo_model_with_batchnorm_buffers():
    # BatchNorm's num_batches_tracked is a 0-d tensor: the weights fingerprint must hash it too
    model = create_model("pneumonia_cnn", img_size=8)
    ds = _imageset()
    pred = predict_split(model, ds, batch_size=4)
    assert len(pred.probability) == len(ds) and np.isfinite(pred.probability).all()
    with torch.no_grad():
        model.features[0].bn1.num_batches_tracked += 1   # a buffer change is a different model
    assert predict_split(model, ds, batch_size=4) is not pred
