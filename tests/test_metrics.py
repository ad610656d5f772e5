"""Tests for lib.metrics: hand-computed golden values, brute-force threshold checks, validation, plots."""
from __future__ import annotations

import doctest
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

import lib.metrics as metrics
from lib.metrics import (
    binary_metrics,
    evaluate_predictions,
    headline,
    optimal_thresholds,
    patient_means,
    per_patient_section,
    plot_confusion_matrix,
    plot_roc,
    plot_training_curves,
    roc_auc,
    save_figure,
    threshold_report,
)
from lib.metrics import core, plots, summary

# Hand-made example: 4 positives, 5 negatives, one tie across classes at 0.35.
#   positives: 0.9, 0.8, 0.6, 0.35      negatives: 0.7, 0.55, 0.35, 0.2, 0.1
Y = [1, 1, 1, 0, 1, 0, 0, 0, 0]
P = [0.9, 0.8, 0.6, 0.7, 0.35, 0.55, 0.35, 0.2, 0.1]


def close(a: float, b: Fraction | float) -> bool:
    return math.isclose(a, float(b), rel_tol=0, abs_tol=1e-12)


# ----------------------------------------------------------------------------- binary_metrics
def test_binary_metrics_hand_computed():
    # threshold 0.5 -> predicted positive: 0.9, 0.8, 0.6 (true pos) and 0.7, 0.55 (true neg)
    #            pred 0   pred 1
    #   true 0   TN = 3   FP = 2
    #   true 1   FN = 1   TP = 3
    m = binary_metrics(Y, P, threshold=0.5)
    assert m["confusion_matrix"] == [[3, 2], [1, 3]]
    assert (m["tn"], m["fp"], m["fn"], m["tp"], m["n"]) == (3, 2, 1, 3, 9)
    assert close(m["accuracy"], Fraction(6, 9))
    assert close(m["precision"], Fraction(3, 5))  # TP / (TP + FP)
    assert close(m["recall"], Fraction(3, 4))  # TP / (TP + FN)
    assert m["sensitivity"] == m["recall"]
    assert close(m["specificity"], Fraction(3, 5))  # TN / (TN + FP)
    assert close(m["f1"], Fraction(2 * 3, 2 * 3 + 2 + 1))  # 2TP / (2TP + FP + FN) = 2/3
    assert close(m["balanced_accuracy"], (Fraction(3, 4) + Fraction(3, 5)) / 2)  # 27/40
    assert close(m["gmean"], math.sqrt(3 / 4 * 3 / 5))
    assert close(m["youden"], Fraction(3, 4) + Fraction(3, 5) - 1)
    assert m["threshold"] == 0.5


def test_auc_pair_counting():
    # 4 x 5 = 20 (positive, negative) pairs; a pair counts 1 if the positive scores higher, 1/2 on a tie.
    #   0.9 beats all 5 -> 5;  0.8 -> 5;  0.6 beats 0.55, 0.35, 0.2, 0.1 -> 4;
    #   0.35 ties 0.35 (1/2) and beats 0.2, 0.1 -> 2.5.      AUC = 16.5 / 20 = 0.825
    assert close(binary_metrics(Y, P)["auc"], Fraction(33, 40))
    assert close(roc_auc(Y, P), Fraction(33, 40))


def test_threshold_rule_is_greater_or_equal():
    m = binary_metrics(Y, P, threshold=0.6)  # 0.6 itself is predicted positive
    assert (m["tp"], m["fp"]) == (3, 1)
    m = binary_metrics(Y, P, threshold=0.35)  # both 0.35 predicted positive
    assert m["confusion_matrix"] == [[2, 3], [0, 4]]
    m = binary_metrics(Y, P, threshold=0.0)
    assert m["confusion_matrix"] == [[0, 5], [0, 4]]
    m = binary_metrics(Y, P, threshold=1.0)  # nothing positive: precision 0 (zero_division=0), not NaN
    assert m["confusion_matrix"] == [[5, 0], [4, 0]]
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["specificity"] == 1.0


def test_single_class_auc_is_none_and_values_are_plain_python():
    m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert m["auc"] is None
    assert m["confusion_matrix"] == [[2, 1], [0, 0]]
    assert m["recall"] == 0.0 and close(m["specificity"], Fraction(2, 3))
    for k, v in binary_metrics(Y, P).items():
        assert type(v) in (int, float, list), (k, type(v))
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_accepts_numpy_bool_and_float_labels():
    a = binary_metrics(np.array(Y, dtype=bool), np.array(P, dtype=np.float32))
    b = binary_metrics(np.array(Y, dtype=float), P)
    assert a["confusion_matrix"] == b["confusion_matrix"] == [[3, 2], [1, 3]]


# ----------------------------------------------------------------------------- thresholds
def test_optimal_thresholds_hand_example():
    # Candidates (TP, FP) with P = 4, N = 5:
    #   t=0.9 (1,0) F1 .40 J .25 | t=0.8 (2,0) F1 .667 J .50 | t=0.7 (2,1) F1 .571 J .30
    #   t=0.6 (3,1) F1 .75 J .55 G sqrt(.6) | t=0.55 (3,2) F1 .667 | t=0.35 (4,3) F1 .727 J .40
    assert optimal_thresholds(Y, P) == {"f1": 0.6, "gmean": 0.6, "youden": 0.6}


def test_optimal_thresholds_ties_go_to_highest_threshold():
    # y = [0, 1, 0, 1], p = [.2, .4, .6, .8]
    #   t=0.8: TPR .5 FPR 0   J .5  G sqrt(.5)  F1 2/3
    #   t=0.4: TPR 1  FPR .5  J .5  G sqrt(.5)  F1 4/5   -> J and G tie: the higher threshold 0.8 wins
    assert optimal_thresholds([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8]) == {"f1": 0.4, "gmean": 0.8, "youden": 0.8}


def _brute_force(y, p):
    """Best threshold per criterion by scanning every distinct probability with binary_metrics."""
    best = {}
    for t in sorted(set(np.asarray(p).tolist()), reverse=True):  # highest first: ties keep the highest
        m = binary_metrics(y, p, t)
        for name in ("f1", "gmean", "youden"):
            if name not in best or m[name] > best[name][1] + 1e-12:
                best[name] = (t, m[name])
    return best


@pytest.mark.parametrize("seed", range(6))
def test_optimal_thresholds_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 40))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1)
    if seed % 2:
        p = np.round(p, 1)  # many tied probabilities
    got = optimal_thresholds(y, p)
    expected = _brute_force(y, p)
    for name, (t, score) in expected.items():
        assert got[name] == t, name
        assert close(binary_metrics(y, p, got[name])[name], score)
    # thresholds between the candidates (and 0, 1) give no better score either
    u = np.unique(p)
    for g in np.r_[0.0, (u[:-1] + u[1:]) / 2, 1.0]:
        m = binary_metrics(y, p, g)
        for name, (_, score) in expected.items():
            assert m[name] <= score + 1e-12, (name, g)


def test_optimal_thresholds_need_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        optimal_thresholds([1, 1, 1], [0.2, 0.5, 0.9])


def test_threshold_report():
    r = threshold_report(Y, P)
    assert set(r) == {"f1", "gmean", "youden", "0.5"}
    assert r["f1"]["threshold"] == 0.6 and close(r["f1"]["f1"], Fraction(3, 4))
    assert r["f1"]["confusion_matrix"] == [[4, 1], [1, 3]]
    assert r["0.5"] == binary_metrics(Y, P, 0.5)
    single = threshold_report([0, 0], [0.1, 0.9])
    assert single["f1"] is None and single["gmean"] is None and single["youden"] is None
    assert single["0.5"]["fp"] == 1


# ----------------------------------------------------------------------------- per patient
def test_patient_means_hand_example():
    ids = ["a", "a", "b", None, "c", "c", "c", None]
    y = [1, 1, 0, 0, 1, 1, 1, 1]
    p = [0.9, 0.5, 0.2, 0.3, 0.6, 0.3, 0.3, 0.7]
    yp, pp, out_ids = patient_means(y, p, ids)
    # a: (0.9 + 0.5) / 2 = 0.7; b: 0.2; None: 0.3; c: (0.6 + 0.3 + 0.3) / 3 = 0.4; None: 0.7
    assert out_ids == ["a", "b", None, "c", None]
    assert yp.tolist() == [1, 0, 0, 1, 1]
    np.testing.assert_allclose(pp, [0.7, 0.2, 0.3, 0.4, 0.7], rtol=0, atol=1e-12)


def test_patient_means_numpy_ids_and_nan_missing():
    yp, pp, ids = patient_means([0, 0, 1], [0.2, 0.4, 0.9], np.array([7, 7, 8]))
    assert ids == [7, 8] and yp.tolist() == [0, 1]
    np.testing.assert_allclose(pp, [0.3, 0.9])
    _, _, ids = patient_means([0, 0], [0.2, 0.4], [float("nan"), float("nan")])
    assert ids == [None, None]


def test_patient_means_mixed_labels_names_patient():
    with pytest.raises(ValueError, match=r"patient 'P12'.*both labels"):
        patient_means([0, 1, 1], [0.1, 0.2, 0.3], ["P12", "P12", "P11"])


def test_patient_means_length_mismatch():
    with pytest.raises(ValueError, match="patient_ids has 2 entries"):
        patient_means([0, 1, 1], [0.1, 0.2, 0.3], ["a", "b"])


def test_patient_level_is_a_deprecated_alias_of_patient_means():
    from lib.metrics import patient_level
    args = ([1, 1, 0], [0.9, 0.5, 0.2], ["a", "a", "b"])
    with pytest.warns(DeprecationWarning, match="patient_means"):
        old = patient_level(*args)
    new = patient_means(*args)
    assert old[0].tolist() == new[0].tolist() and old[1].tolist() == new[1].tolist() and old[2] == new[2]


# ----------------------------------------------------------------------------- evaluate_predictions
def test_evaluate_predictions_structure_and_json():
    ids = ["p1", "p1", "p2", "p3", "p3", "p4", "p5", "p5", "p6"]
    y = [1, 1, 1, 0, 0, 0, 0, 0, 1]
    p = [0.9, 0.7, 0.6, 0.2, 0.4, 0.55, 0.1, 0.3, 0.8]
    r = evaluate_predictions(y, p, threshold=0.5, patient_ids=ids)
    json.loads(json.dumps(r, allow_nan=False))  # strict JSON: no NaN / inf
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc", "confusion_matrix", "thresholds"):
        assert key in r
    assert r["confusion_matrix"] == binary_metrics(y, p)["confusion_matrix"]
    assert set(r["thresholds"]) == {"f1", "gmean", "youden", "0.5"}
    assert r["roc"]["fpr"][0] == 0.0 and r["roc"]["tpr"][-1] == 1.0
    pl = r["per_patient"]
    assert pl["n_patients"] == 6 and pl["n"] == 6 and "roc" not in pl
    # patients: p1 0.8 (1), p2 0.6 (1), p3 0.3 (0), p4 0.55 (0), p5 0.2 (0), p6 0.8 (1)
    assert pl["confusion_matrix"] == [[2, 1], [0, 3]]
    assert pl["auc"] == 1.0
    assert set(pl["thresholds"]) == {"f1", "gmean", "youden", "0.5"}


def test_evaluate_predictions_per_patient_none_cases():
    assert evaluate_predictions(Y, P)["per_patient"] is None
    # every patient has a single image: nothing to aggregate
    assert evaluate_predictions(Y, P, patient_ids=list("abcdefghi"))["per_patient"] is None
    assert evaluate_predictions(Y, P, patient_ids=[None] * 9)["per_patient"] is None


def test_evaluate_predictions_single_class_is_json_safe():
    r = evaluate_predictions([1, 1, 1], [0.2, 0.6, 0.9], patient_ids=["a", "a", "b"])
    json.dumps(r, allow_nan=False)
    assert r["auc"] is None and r["roc"] is None and r["thresholds"]["f1"] is None
    assert r["per_patient"]["n_patients"] == 2


# ----------------------------------------------------------------------------- headline
def _run_metrics(level: str, test: bool = True, legacy: bool = False) -> dict:
    """A metrics.json as fit writes it, from evaluate_predictions; ``legacy``: the sub-section's old name."""
    ids = ["p1", "p1", "p2", "p3", "p3", "p4", "p5", "p5", "p6"]
    y = [1, 1, 1, 0, 0, 0, 0, 0, 1]
    val = evaluate_predictions(y, [0.9, 0.7, 0.6, 0.2, 0.4, 0.55, 0.1, 0.3, 0.8], 0.5, ids)
    tst = evaluate_predictions(y, [0.8, 0.4, 0.7, 0.3, 0.6, 0.2, 0.1, 0.5, 0.9], 0.5, ids) if test else None
    if legacy:
        for section in filter(None, (val, tst)):
            section["patient_level"] = section.pop("per_patient")
    return {"level": level, "threshold": 0.5, "val": val, "test": tst}


@pytest.mark.parametrize("legacy", [False, True])
def test_headline_is_test_else_val_and_per_patient_in_a_patient_level_run(legacy):
    m = _run_metrics("image", legacy=legacy)
    h = headline(m)
    assert (h.split, h.level) == ("test", "image") and h.section is m["test"] and h.per_image is m["test"]
    assert h.per_patient["n_patients"] == 6  # the secondary table of an image-level run
    m = _run_metrics("patient", legacy=legacy)
    h = headline(m)
    assert (h.split, h.level) == ("test", "patient") and h.section["n_patients"] == 6 and h.per_image is m["test"]
    assert h.section is h.per_patient
    m = _run_metrics("patient", test=False, legacy=legacy)
    h = headline(m)
    assert h.split == "val" and h.section["n_patients"] == 6 and h.per_image is m["val"]
    assert headline(m, "test") is None and headline({}) is None


def test_headline_of_a_patient_level_run_without_repeated_patients_is_per_image():
    val = evaluate_predictions(Y, P, 0.5, list("abcdefghi"))  # one image per patient: no sub-section
    h = headline({"level": "patient", "val": val, "test": None})
    assert h.level == "patient" and h.section is val and h.per_patient is None


def test_per_patient_section_reads_old_metrics_files():
    assert per_patient_section({"per_patient": {"n_patients": 2}}) == {"n_patients": 2}
    assert per_patient_section({"patient_level": {"n_patients": 3}}) == {"n_patients": 3}
    assert per_patient_section({"per_patient": None}) is None and per_patient_section(None) is None


def test_headline_reads_the_shipped_metrics_files():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    files = [f for f in (root / "models").rglob("metrics.json")] + list((root / "studies").rglob("metrics.json"))
    checked = 0
    for f in files:
        m = json.loads(f.read_text())
        if "val" not in m:  # not a training run's metrics.json
            continue
        h = headline(m)
        assert h is not None and 0.0 <= h.section["accuracy"] <= 1.0, f
        if h.level == "image" and (m.get(h.split) or {}).get("patient_level"):
            assert h.per_patient is m[h.split]["patient_level"], f
        checked += 1
    assert checked or not files


def test_roc_downsampled_keeps_endpoints():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(0.2 * y + 0.8 * rng.random(5000), 0, 1)
    roc = evaluate_predictions(y, p)["roc"]
    assert 2 <= len(roc["fpr"]) == len(roc["tpr"]) <= 200
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    # small curves are kept whole
    small = evaluate_predictions(Y, P)["roc"]
    fpr, tpr, _ = roc_curve(Y, P)
    assert small == {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    assert (small["fpr"][3], small["tpr"][3]) == (0.2, 0.5)  # threshold 0.7: FP 1/5, TP 2/4


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "different lengths"),
        ([], [], "empty"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "only the labels 0 and 1"),
        ([0, -1], [0.1, 0.2], "only the labels 0 and 1"),
        ([0, 1], [0.1, 1.5], r"must lie in \[0, 1\]"),
        ([0, 1], [-0.2, 0.5], "not logits"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([[0, 1]], [0.1, 0.2], "1-D"),
        ([0, 1], [[0.9, 0.1], [0.2, 0.8]], r"probs\[:, 1\]"),
        (["a", "b"], [0.1, 0.2], "numeric"),
    ],
)
@pytest.mark.parametrize("fn", [binary_metrics, evaluate_predictions, optimal_thresholds, threshold_report])
def test_input_validation(fn, y, p, match):
    with pytest.raises(ValueError, match=match):
        fn(y, p)


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan"), "high"])
def test_bad_threshold(t):
    with pytest.raises(ValueError, match="threshold"):
        binary_metrics(Y, P, threshold=t)


# ----------------------------------------------------------------------------- plots
def _png_ok(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_roc_marks_operating_points(tmp_path):
    fig = plot_roc(Y, P, label="CNN1")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels[0] == "CNN1 (AUC = 0.825)"
    assert "F1-optimal (CNN1)" in labels and "G-mean-optimal (CNN1)" in labels
    # the marker sits at (FPR, TPR) of the optimal threshold 0.6: (1/5, 3/4)
    marker = next(line for line in ax.lines if line.get_label() == "F1-optimal (CNN1)")
    assert marker.get_xydata().tolist() == [[pytest.approx(0.2), pytest.approx(0.75)]]
    assert any("t=0.6" in t.get_text() for t in ax.texts)
    # a second model on the same axis; the chance line is not drawn twice
    fig2 = plot_roc([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8], ax=ax, label="DNN1", mark=("youden",))
    assert fig2 is fig
    assert sum(line.get_gid() == "chance" for line in ax.lines) == 1
    assert "DNN1 (AUC = 0.750)" in ax.get_legend_handles_labels()[1]
    assert _png_ok(save_figure(fig, tmp_path / "sub" / "roc.png"))


def test_plot_roc_errors():
    with pytest.raises(ValueError, match="mark"):
        plot_roc(Y, P, mark=("accuracy",))
    with pytest.raises(ValueError, match="both classes"):
        plot_roc([1, 1], [0.2, 0.3])


def test_plot_confusion_matrix(tmp_path):
    cm = binary_metrics(Y, P)["confusion_matrix"]
    fig = plot_confusion_matrix(cm, title="threshold 0.5")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    # row-major: rows = true, columns = predicted
    assert [t.split("\n")[0] for t in texts] == ["3", "2", "1", "3"]
    assert texts[0] == "3\n(60.0%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["NORMAL", "PNEUMONIA"]
    assert ax.get_xlabel() == "Predicted" and ax.get_ylabel() == "True" and ax.get_title() == "threshold 0.5"
    assert _png_ok(save_figure(fig, tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3]])


def test_plot_training_curves(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 0.70, "val_loss": 0.65, "val_auc": 0.70, "lr": 1e-3},
        {"epoch": 2, "train_loss": 0.55, "val_loss": None, "val_auc": None, "lr": 9e-4},
        {"epoch": 3, "train_loss": 0.45, "val_loss": 0.50, "val_auc": 0.86, "lr": 8.1e-4},
        {"epoch": 4, "train_loss": 0.40, "val_loss": 0.52, "val_auc": 0.84, "lr": 7.29e-4},
    ]
    fig = plot_training_curves(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    ax_loss, ax_auc, _ = fig.axes
    best_lines = [line for line in ax_auc.lines if line.get_gid() == "best_epoch"]
    assert len(best_lines) == 1 and best_lines[0].get_xdata()[0] == 3  # best val AUC at epoch 3
    assert any("epoch 3" in label for label in ax_auc.get_legend_handles_labels()[1])
    assert _png_ok(save_figure(fig, tmp_path / "curves.png"))
    # no validation at all still plots
    no_val = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": None, "val_auc": None, "lr": 1e-3} for e in (1, 2)]
    assert isinstance(plot_training_curves(no_val), Figure)
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([])


# ----------------------------------------------------------------------------- package
def test_public_api_and_docstring_examples():
    for name in metrics.__all__:
        assert callable(getattr(metrics, name)) or name in ("THRESHOLD_CRITERIA", "PER_PATIENT")
    for mod in (core, plots, summary, metrics):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


def test_no_gradio_import():
    import ast
    import pathlib

    for path in pathlib.Path(core.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            assert not any(n.split(".")[0] == "gradio" for n in names), path
