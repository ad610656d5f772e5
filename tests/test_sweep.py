"""The sweep runner (``lib.sweep``, ``python -m train.sweep``): parsing, skip/resume, search decisions, summary, push.

Real training on tiny data (32 px, a few images) for the semantics a user relies on — a second run skips finished
folders, a killed run resumes and ends equal to an uninterrupted one, a changed setting is refused — and a fake
trainer with known validation AUCs for the one-at-a-time search decisions.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import safetensors.torch
import yaml

from conftest import make_xray_folder
from lib.sweep import SweepError, expand, load_sweep, pick_best, run_name, run_sweep
from lib.training import TrainConfig, fit

TINY = {"img_size": 32, "epochs": 1, "batch_size": 8, "device": "cpu", "model_options": {"widths": [4, 8]}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_xray_folder(tmp_path_factory.mktemp("sweepdata") / "xray", n_per_class=8, size=32)


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def list_sweep(tmp_path: Path, data: Path, **extra) -> Path:
    return write(tmp_path / "sweep.yaml", {
        "name": "tiny", "base": {"model": "pneumonia_cnn", "data": str(data), **TINY},
        "runs": [{"name": "baseline"}, {"name": "lr_high", "lr": 1e-2}], **extra})


class Recorder:
    """``fit`` that records which runs were really trained."""

    def __init__(self) -> None:
        self.trained: list[str] = []

    def __call__(self, cfg: TrainConfig):
        self.trained.append(Path(cfg.out).name)
        return fit(cfg)


# ----------------------------------------------------------------------------------------------------- parsing
def test_unknown_settings_and_keys_are_named(tmp_path, data):
    bad = write(tmp_path / "a.yaml", {"base": {"model": "pneumonia_cnn", "data": str(data), "learning_rate": 1}})
    with pytest.raises(SweepError, match=r"learning_rate.*allowed: .*lr"):
        load_sweep(bad)
    bad = write(tmp_path / "b.yaml", {"base": {"model": "x", "data": "y"}, "runz": []})
    with pytest.raises(SweepError, match=r"unknown key.*runz"):
        load_sweep(bad)
    bad = write(tmp_path / "c.yaml", {"base": {"model": "x", "data": "y", "out": "z"}})
    with pytest.raises(SweepError, match="set by the sweep runner"):
        load_sweep(bad)
    bad = write(tmp_path / "d.yaml", {"base": {"model": "x", "data": "y"}, "runs": [{"name": "a"}],
                                      "grid": {"lr": [1]}})
    with pytest.raises(SweepError, match="one of runs, grid or search"):
        load_sweep(bad)
    with pytest.raises(SweepError, match="no variant 'huge'"):
        load_sweep(list_sweep(tmp_path, data), variant="huge")
    with pytest.raises(SweepError, match="cannot read"):
        load_sweep(tmp_path / "missing.yaml")
    (tmp_path / "e.yaml").write_text("base: [unclosed")
    with pytest.raises(SweepError, match="not valid YAML"):
        load_sweep(tmp_path / "e.yaml")


def test_variants_merge_and_patch_runs_by_name(tmp_path, data):
    path = list_sweep(tmp_path, data, variants={"small": {"base": {"epochs": 3, "model_options": {"dropout": 0.1}},
                                                          "runs": {"lr_high": {"lr": 0.5}}}})
    specs = {s.name: s.settings for s in expand(load_sweep(path, "small", {"batch_size": 4}))}
    assert specs["baseline"]["epochs"] == 3 and specs["baseline"]["batch_size"] == 4
    assert specs["baseline"]["model_options"] == {"widths": [4, 8], "dropout": 0.1}  # merged, not replaced
    assert specs["lr_high"]["lr"] == 0.5
    assert expand(load_sweep(path))[1].settings["lr"] == 1e-2  # the file itself is unchanged


def test_grid_is_the_cartesian_product(tmp_path, data):
    path = write(tmp_path / "g.yaml", {"base": {"model": "pneumonia_cnn", "data": str(data)},
                                       "grid": {"lr": [1e-3, 1e-2], "batch_size": [8, 16]}})
    specs = expand(load_sweep(path))
    assert [s.name for s in specs] == ["lr=0.001__bs=8", "lr=0.001__bs=16", "lr=0.01__bs=8", "lr=0.01__bs=16"]
    assert {(s.settings["lr"], s.settings["batch_size"]) for s in specs} == {(1e-3, 8), (1e-3, 16), (1e-2, 8), (1e-2, 16)}


def test_run_names_say_what_changes():
    base = {"model": "cnn1", "lr": 1e-3, "weight_decay": 0.0, "gamma": 1.0}
    assert run_name(base, base) == "base"
    assert run_name({**base, "lr": 3e-4, "weight_decay": 1e-4}, base, "cnn1") == "cnn1__lr=0.0003__wd=0.0001"


def test_pick_best_is_the_argmax_first_on_ties_and_ignores_missing():
    assert pick_best([1, 2, 3], [0.8, 0.9, 0.85]) == 1
    assert pick_best([1, 2, 3], [0.9, 0.9, 0.85]) == 0
    assert pick_best([1, 2, 3], [None, math.nan, 0.5]) == 2
    with pytest.raises(SweepError, match="no run"):
        pick_best([1, 2], [None, None])


# --------------------------------------------------------------------------------------------- run, skip, resume
def test_second_run_skips_finished_runs_and_summary_holds_every_row(tmp_path, data):
    cfg = load_sweep(list_sweep(tmp_path, data))
    first = Recorder()
    summary = run_sweep(cfg, tmp_path / "out", trainer=first)
    assert first.trained == ["baseline", "lr_high"]
    again = Recorder()
    summary2 = run_sweep(cfg, tmp_path / "out", trainer=again)
    assert again.trained == []  # nothing trained twice
    assert [r["run"] for r in summary2["runs"]] == ["baseline", "lr_high"]
    assert [r["test_auc"] for r in summary2["runs"]] == [r["test_auc"] for r in summary["runs"]]

    out = tmp_path / "out"
    saved = json.loads((out / "summary.json").read_text())
    for row in saved["runs"]:
        metrics = json.loads((out / row["run"] / "metrics.json").read_text())
        history = json.loads((out / row["run"] / "history.json").read_text())
        assert row["best_epoch"] == metrics["best_epoch"]
        assert row["val_auc"] == max(h["val_auc"] for h in history)
        assert row["val_loss"] == history[metrics["best_epoch"] - 1]["val_loss"]
        for key in ("accuracy", "precision", "recall", "f1", "auc"):
            assert row[f"test_{key}"] == metrics["test"][key], key
        assert (out / row["run"] / "config.json").is_file() and (out / row["run"] / "README.md").is_file()
    best = max(saved["runs"], key=lambda r: r["val_auc"])["run"]
    assert saved["best"] == {"pneumonia_cnn": best}
    md = (out / "summary.md").read_text()
    assert f"`{best}` ★" in md
    # one row per run in the main table, and again in the per-patient table (the file names carry patient ids)
    assert md.count("| `") == 4 and "scored per patient" in md
    for row in saved["runs"]:
        per_patient = json.loads((out / row["run"] / "metrics.json").read_text())["test"]["per_patient"]
        assert row["test_patient_auc"] == per_patient["auc"] and row["test_patients"] == per_patient["n_patients"]
    assert "test acc" in md and "val AUC" in md
    assert (out / "curves.png").stat().st_size > 5000

    # folders written before decide_per_patient / "per_patient" were renamed: still finished, same summary rows
    for row in saved["runs"]:
        folder = out / row["run"]
        args = json.loads((folder / "train_args.json").read_text())
        args["patient_level"] = args.pop("decide_per_patient")
        (folder / "train_args.json").write_text(json.dumps(args))
        metrics = json.loads((folder / "metrics.json").read_text())
        for split in ("val", "test"):
            metrics[split]["patient_level"] = metrics[split].pop("per_patient")
        (folder / "metrics.json").write_text(json.dumps(metrics))
    old = Recorder()
    summary3 = run_sweep(cfg, out, trainer=old)
    assert old.trained == []
    assert summary3["runs"] == summary2["runs"]


def test_killed_run_resumes_and_equals_an_uninterrupted_run(tmp_path, data):
    doc = {"name": "kill", "base": {"model": "pneumonia_cnn", "data": str(data), **TINY, "epochs": 3},
           "runs": [{"name": "only"}]}
    cfg = load_sweep(write(tmp_path / "k.yaml", doc))

    class Killed(Exception):
        pass

    def killed_after_one_epoch(tc: TrainConfig):
        def stop(row):
            if row["epoch"] == 1:
                raise Killed
        return fit(tc, on_epoch_end=stop)

    with pytest.raises(Killed):
        run_sweep(cfg, tmp_path / "a", trainer=killed_after_one_epoch)
    assert not (tmp_path / "a" / "only" / "metrics.json").exists()
    assert (tmp_path / "a" / "only" / "checkpoint").is_dir()
    resumed = Recorder()
    run_sweep(cfg, tmp_path / "a", trainer=resumed)
    assert resumed.trained == ["only"]
    run_sweep(cfg, tmp_path / "b")  # uninterrupted
    a = safetensors.torch.load_file(tmp_path / "a" / "only" / "model.safetensors")
    b = safetensors.torch.load_file(tmp_path / "b" / "only" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert len(json.loads((tmp_path / "a" / "only" / "history.json").read_text())) == 3


def test_changed_settings_are_refused_then_overwritten(tmp_path, data):
    run_sweep(load_sweep(list_sweep(tmp_path, data)), tmp_path / "out")
    doc = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    doc["runs"][1]["lr"] = 5e-3
    changed = load_sweep(write(tmp_path / "sweep.yaml", doc))
    with pytest.raises(SweepError, match=r"lr_high holds a run with other settings \(lr: 0.01 → 0.005\).*--overwrite"):
        run_sweep(changed, tmp_path / "out")
    rec = Recorder()
    run_sweep(changed, tmp_path / "out", overwrite=True, trainer=rec)
    assert rec.trained == ["lr_high"]  # the unchanged baseline is kept
    assert json.loads((tmp_path / "out" / "lr_high" / "train_args.json").read_text())["lr"] == 5e-3


def test_more_epochs_continue_a_finished_run(tmp_path, data):
    path = list_sweep(tmp_path, data)
    run_sweep(load_sweep(path), tmp_path / "out")
    rec = Recorder()
    run_sweep(load_sweep(path, overrides={"epochs": 2}), tmp_path / "out", trainer=rec)
    assert rec.trained == ["baseline", "lr_high"]
    assert len(json.loads((tmp_path / "out" / "baseline" / "history.json").read_text())) == 2


# ------------------------------------------------------------------------------------------- one-at-a-time search
def fake_trainer(score):
    """A trainer that writes a finished run whose validation AUC is ``score(cfg)``, and logs the order."""
    order = []

    def train(cfg: TrainConfig):
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        auc = score(cfg)
        history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1 - auc, "val_auc": auc, "lr": cfg.lr}]
        section = {k: auc for k in ("accuracy", "precision", "recall", "specificity", "f1", "auc")} | {"n": 10}
        metrics = {"model": cfg.model, "best_epoch": 1, "threshold": 0.5, "level": "image", "val": section,
                   "test": section}
        from dataclasses import asdict
        (out / "train_args.json").write_text(json.dumps(asdict(cfg)))
        (out / "history.json").write_text(json.dumps(history))
        (out / "metrics.json").write_text(json.dumps(metrics))
        order.append((cfg.model, cfg.lr, cfg.weight_decay, cfg.gamma))
        return metrics
    train.order = order
    return train


def test_one_at_a_time_search_keeps_the_argmax_of_each_step(tmp_path):
    # Validation AUC peaks at lr 1e-3, then weight decay 1e-4 (only at that lr), then gamma 0.9.
    def score(cfg):
        return (0.9 - abs(math.log10(cfg.lr) + 3) * 0.05 + (0.03 if cfg.weight_decay == 1e-4 and cfg.lr == 1e-3 else 0)
                + (0.01 if cfg.gamma == 0.9 else 0) + (0.001 if cfg.model == "dnn2" else 0))
    doc = {"name": "search", "base": {"data": "unused", "weight_decay": 0.0, "gamma": 1.0},
           "models": ["dnn1", {"model": "dnn2", "img_size": 32}],
           "search": [{"param": "lr", "values": [1e-4, 1e-3, 1e-2]}, {"param": "weight_decay", "values": [0.0, 1e-4]},
                      {"param": "gamma", "values": [1.0, 0.9]}]}
    trainer = fake_trainer(score)
    summary = run_sweep(load_sweep(write(tmp_path / "s.yaml", doc)), tmp_path / "out", trainer=trainer)
    steps = [(s["model"], s["param"], s["picked"]) for s in summary["search"]]
    assert steps == [("dnn1", "lr", 1e-3), ("dnn1", "weight_decay", 1e-4), ("dnn1", "gamma", 0.9),
                     ("dnn2", "lr", 1e-3), ("dnn2", "weight_decay", 1e-4), ("dnn2", "gamma", 0.9)]
    # each step ran at the previous winner, and the repeated configuration (the winner itself) was not retrained
    dnn1 = [o for o in trainer.order if o[0] == "dnn1"]
    assert dnn1 == [("dnn1", 1e-4, 0.0, 1.0), ("dnn1", 1e-3, 0.0, 1.0), ("dnn1", 1e-2, 0.0, 1.0),
                    ("dnn1", 1e-3, 1e-4, 1.0), ("dnn1", 1e-3, 1e-4, 0.9)]
    assert summary["best"] == {"dnn1": "dnn1__wd=0.0001__gamma=0.9", "dnn2": "dnn2__wd=0.0001__gamma=0.9"}
    assert json.loads((tmp_path / "out" / "dnn2__base" / "train_args.json").read_text())["img_size"] == 32
    figures = sorted(p.name for p in (tmp_path / "out").glob("search_*.png"))
    assert figures == sorted(f"search_{m}_{i}_{p}.png" for m in ("dnn1", "dnn2")
                             for i, p in ((1, "lr"), (2, "weight_decay"), (3, "gamma")))
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| dnn1 | 1 | lr | 0.0001 (0.850), 0.001 (0.900), 0.01 (0.850) | **0.001** |" in md


def test_real_search_on_tiny_data(tmp_path, data):
    doc = {"name": "real", "base": {"model": "pneumonia_cnn", "data": str(data), **TINY},
           "search": [{"param": "lr", "values": [1e-3, 1e-2]}, {"param": "gamma", "values": [1.0, 0.5]}]}
    summary = run_sweep(load_sweep(write(tmp_path / "r.yaml", doc)), tmp_path / "out")
    lr_step = summary["search"][0]
    aucs = [max(h["val_auc"] for h in json.loads((tmp_path / "out" / r / "history.json").read_text()))
            for r in lr_step["runs"]]
    assert lr_step["picked"] == lr_step["values"][pick_best(lr_step["values"], aucs)]
    assert summary["search"][1]["runs"][0] == lr_step["picked_run"]  # gamma 1.0 is the lr winner itself


# --------------------------------------------------------------------------------------------------- CLI + publish
def test_cli_exports_results_and_pushes_best_run(tmp_path, data, hub, hf_cache, capsys):
    from train.sweep import main
    path = list_sweep(tmp_path, data, publish="tiny-study", bundle_best=["pneumonia_cnn"])
    rc = main([str(path), "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results"),
               "--set", "max_images=12", "--push-to-hub", "owner"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| `baseline`" in printed
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["base"]["max_images"] == 12
    best = summary["best"]["pneumonia_cnn"]
    assert summary["published"]["pneumonia_cnn"]
    files = hub.files("owner/tiny-study")
    assert files["model.safetensors"] == (tmp_path / "out" / best / "model.safetensors").read_bytes()
    assert not [f for f in files if f.startswith("checkpoint")]
    bundled = tmp_path / "results" / "best" / "pneumonia_cnn"
    assert (bundled / "model.safetensors").is_file() and not (bundled / "checkpoint").exists()
    assert (tmp_path / "results" / "curves.png").is_file() and (tmp_path / "results" / "summary.md").is_file()
    from lib.models import load_model
    assert load_model(bundled).xcxr_config["img_size"] == 32


def test_cli_without_token_says_so_and_keeps_results(tmp_path, data, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants
    from train.sweep import main
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "nowhere" / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "nowhere" / "stored"))
    rc = main([str(list_sweep(tmp_path, data)), "--out", str(tmp_path / "out"), "--no-results",
               "--push-to-hub", "owner"])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["published"] == {"pneumonia_cnn": "not pushed: no Hugging Face token"}


def test_old_setting_names_in_a_sweep_file_still_work(tmp_path, data, caplog):
    runs = [{"name": "per_image"}, {"name": "per_patient", "patient_level": True}]  # the field's old name
    path = write(tmp_path / "old.yaml", {"base": {"model": "pneumonia_cnn", "data": str(data), **TINY}, "runs": runs})
    with caplog.at_level("WARNING", logger="lib.sweep"):
        cfg = load_sweep(path)
    assert "patient_level renamed to decide_per_patient" in caplog.text
    specs = expand(cfg)
    assert specs[1].settings["decide_per_patient"] is True and "patient_level" not in specs[1].settings
    assert specs[1].train_config(tmp_path).decide_per_patient is True


def test_cli_reports_bad_config_cleanly(tmp_path, capsys):
    from train.sweep import main
    bad = write(tmp_path / "bad.yaml", {"base": {"model": "pneumonia_cnn", "data": "x", "lr_rate": 1}})
    with pytest.raises(SystemExit) as e:
        main([str(bad), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err
