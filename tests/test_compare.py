"""lib.compare.compare_runs and ``python -m train.compare`` on two tiny trained runs; plot_roc(thresholds=…)."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_xray_folder
from lib.compare import compare_runs, thresholds_table
from lib.data import Preprocess
from lib.metrics import binary_metrics, optimal_thresholds, patient_means
from lib.metrics.plots import plot_roc
from lib.models import get_config, load_model
from lib.training import TrainConfig, fit, load_splits
from train.compare import main as compare_main, parse_runs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished one-epoch runs (a small pneumonia_cnn and dnn1) on one tiny data set."""
    root = tmp_path_factory.mktemp("compare")
    data = make_xray_folder(root / "xray", n_per_class=12, size=48)
    base = dict(data=str(data), epochs=1, img_size=32, batch_size=8, progress=False, device="cpu")
    fit(TrainConfig(model="pneumonia_cnn", out=str(root / "cnn"), model_options={"widths": [4, 8]}, **base))
    fit(TrainConfig(model="dnn1", out=str(root / "dnn"), **base))
    return {"CNN": root / "cnn", "DNN 1": root / "dnn"}


def _probabilities(folder, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Recompute a run's probabilities on one of its splits, independently of lib.compare."""
    model = load_model(folder)
    args = json.loads((folder / "train_args.json").read_text())
    cfg = TrainConfig(**{k: v for k, v in args.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    _, val, test = load_splits(cfg, get_config(model)["img_size"])
    ds = val if split == "val" else test
    with torch.no_grad():
        logits = model.eval()(Preprocess.from_config(get_config(model))(ds.images))
    prob = (torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, 1)[:, 1]).double()
    return ds.labels.numpy(), prob.numpy(), ds.patient_ids


def _is_png(path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 3000, path
    with Image.open(path) as im:
        assert min(im.size) > 100


def test_compare_runs_thresholds_from_val_metrics_on_test(runs, tmp_path):
    out = tmp_path / "cmp"
    result = compare_runs(runs, out)
    saved = json.loads((out / "comparison.json").read_text())
    assert saved == json.loads(json.dumps(result))  # plain JSON, the same numbers as returned
    assert saved["split"] == "test" and saved["threshold_split"] == "val" and saved["criteria"] == ["f1", "gmean"]
    for name, folder in runs.items():
        y_val, p_val, _ = _probabilities(folder, "val")
        y_test, p_test, _ = _probabilities(folder, "test")
        expected = optimal_thresholds(y_val, p_val)
        model = saved["models"][name]
        assert model["level"] == "image" and model["n_val"] == len(y_val) and model["n_test"] == len(y_test)
        for crit in ("f1", "gmean"):
            t = model["thresholds"][crit]
            assert t == pytest.approx(expected[crit], rel=1e-6, abs=1e-9)
            got, want = dict(model["criteria"][crit]), binary_metrics(y_test, p_test, t)
            assert got.pop("confusion_matrix") == want.pop("confusion_matrix")
            assert got == pytest.approx(want)
        assert model["auc"] == pytest.approx(binary_metrics(y_test, p_test)["auc"])
        _is_png(out / model["files"]["filters"])
    assert saved["models"]["DNN 1"]["files"]["filters"] == "filters_dnn-1.png"
    for f in ("roc.png", "confusion_matrices.png"):
        _is_png(out / f)
    table = (out / "thresholds.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| CNN |") or ln.startswith("| DNN 1 |")]
    assert len(rows) == 4 and all(ln.count("|") == 11 for ln in rows)
    assert "| model | criterion | threshold (val) | test accuracy |" in table


def test_patient_level_run_uses_patient_means(runs, tmp_path):
    folder = tmp_path / "cnn_patient"
    shutil.copytree(runs["CNN"], folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "level": "patient"}))
    result = compare_runs({"CNN": folder}, tmp_path / "out", criteria="f1")
    model = result["models"]["CNN"]
    y_val, p_val, ids_val = _probabilities(folder, "val")
    y_test, p_test, ids_test = _probabilities(folder, "test")
    yv, pv, _ = patient_means(y_val, p_val, ids_val)
    yt, pt, _ = patient_means(y_test, p_test, ids_test)
    assert model["level"] == "patient" and model["n_test"] == len(yt) < len(y_test)  # two images per patient
    t = model["thresholds"]["f1"]
    assert t == pytest.approx(optimal_thresholds(yv, pv)["f1"], rel=1e-6)
    assert model["criteria"]["f1"]["confusion_matrix"] == binary_metrics(yt, pt, t)["confusion_matrix"]
    assert list(result["models"]["CNN"]["criteria"]) == ["f1"]


def test_compare_errors(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*not a finished training run.*metrics\.json"):
        compare_runs({"CNN": runs["CNN"], "x": empty}, tmp_path / "o")
    with pytest.raises(ValueError, match="not a folder"):
        compare_runs({"x": tmp_path / "nowhere"}, tmp_path / "o")
    with pytest.raises(ValueError, match="unknown criterion.*accuracy"):
        compare_runs({"CNN": runs["CNN"]}, tmp_path / "o", criteria=("f1", "accuracy"))
    with pytest.raises(ValueError, match="runs is empty"):
        compare_runs({}, tmp_path / "o")
    with pytest.raises(ValueError, match="does not exist here"):
        compare_runs({"CNN": runs["CNN"]}, tmp_path / "o", data=str(tmp_path / "no_data"))
    assert not (tmp_path / "o").exists()  # checks come before anything is written


def test_cli_prints_the_table(runs, tmp_path, capsys):
    args = [f"{name}={folder}" for name, folder in runs.items()]
    assert compare_main([*args, "--out", str(tmp_path / "cli"), "--criteria", "f1,gmean,youden"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "cli" / "comparison.json").read_text())
    assert result["table"] in printed and thresholds_table(result) == result["table"]
    assert printed.count("| CNN |") == 3 and printed.count("| DNN 1 |") == 3
    with pytest.raises(SystemExit) as e:
        compare_main([args[0], "--out", str(tmp_path / "cli2"), "--criteria", "auc"])
    assert e.value.code == 2 and "unknown criterion" in capsys.readouterr().err
    assert parse_runs(["a=x", "some/run"]) == {"a": "x", "run": "some/run"}


def test_plot_roc_marks_given_thresholds_at_the_reached_point():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    given = {"f1 (val)": 0.5, "gmean (val)": 0.61, "custom": 0.3}
    fig = plot_roc(y, p, label="M", thresholds=given)
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    for key, name, marker in (("f1 (val)", "F1 (val)", "o"), ("gmean (val)", "G-mean (val)", "s"),
                              ("custom", "custom", "D")):
        t = given[key]
        line = lines[f"{name} t={t:.3g} (M)"]
        m = binary_metrics(y, p, t)
        assert (line.get_xdata()[0], line.get_ydata()[0]) == pytest.approx((1 - m["specificity"], m["recall"]))
        assert line.get_marker() == marker
    assert not any("optimal" in label for label in lines)  # the optima of these data are not marked
    with pytest.raises(ValueError, match="threshold"):
        plot_roc(y, p, thresholds={"f1": 1.5})
