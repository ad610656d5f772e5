"""lib.training and the ``python -m train`` / ``python -m train.evaluate`` command lines, on tiny data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
import yaml

from conftest import CHEST_XRAY, ROOT, needs_data
from lib.models import get_config, load_model
from lib.training import CHECKPOINT_FILE, TrainConfig, TrainingError, fit, read_checkpoint_meta
from train.__main__ import build_parser, main as train_main
from train.evaluate import main as evaluate_main

HUB_FILES = {"config.json", "model.safetensors", "README.md", "metrics.json", "history.json", "train_args.json",
             "training_curves.png", "roc.png", "confusion_matrix.png"}


def tiny(xray_folder, out, **kw) -> TrainConfig:
    base = dict(model="pneumonia_cnn", data=str(xray_folder), out=str(out), epochs=3, batch_size=8, img_size=32,
                lr=3e-3, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def weights(folder) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(os.path.join(folder, "model.safetensors"))


def test_fit_writes_a_hub_ready_folder_and_learns(xray_folder, tmp_path):
    out = tmp_path / "run"
    metrics = fit(tiny(xray_folder, out, epochs=4))
    assert HUB_FILES <= {p.name for p in out.iterdir()}
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_auc", "lr"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["test"]["auc"] > 0.9  # a bright blob is easy to find
    assert metrics["best_epoch"] == max(history, key=lambda h: h["val_auc"])["epoch"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["threshold"] == metrics["threshold"] and cfg["img_size"] == 32
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc-by-4.0" and meta["library_name"] == "pytorch" and "roc_auc" in meta["metrics"]
    assert meta["model-index"][0]["results"][0]["metrics"]
    assert "python -m train pneumonia_cnn" in card and "| operating |" in card
    args = json.loads((out / "train_args.json").read_text())
    assert args["lr"] == 3e-3 and args["epochs"] == 4
    # the folder loads and predicts like the best epoch it saved
    m = load_model(out)
    assert get_config(m)["threshold"] == metrics["threshold"]


def test_one_logit_model_trains_with_bce(xray_folder, tmp_path):
    metrics = fit(tiny(xray_folder, tmp_path / "dnn", model="dnn1", epochs=2))
    history = json.loads((tmp_path / "dnn" / "history.json").read_text())
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert get_config(load_model(tmp_path / "dnn"))["num_classes"] == 1
    assert 0 <= metrics["test"]["accuracy"] <= 1


def test_resume_gives_the_same_result_as_an_uninterrupted_run(xray_folder, tmp_path):
    kw = dict(augment=True, model_options={"dropout": 0.2}, gamma=0.8)
    fit(tiny(xray_folder, tmp_path / "straight", **kw))
    fit(tiny(xray_folder, tmp_path / "resumed", epochs=1, **kw))
    fit(tiny(xray_folder, tmp_path / "resumed", resume=True, **kw))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "straight" / "history.json").read_text())
    hb = json.loads((tmp_path / "resumed" / "history.json").read_text())
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in h]  # noqa
    assert strip(ha) == strip(hb)


def test_resume_after_a_kill(xray_folder, tmp_path):
    """A real SIGKILL mid-run, then --resume: the same weights as a run that was never interrupted."""
    args = ["pneumonia_cnn", "--data", str(xray_folder), "--batch-size", "8", "--img-size", "32", "--lr", "3e-3",
            "--device", "cpu", "--no-progress"]
    out = tmp_path / "killed"
    # the same thread count as this process: float sums in another order would differ in the last bit
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "train", *args, "--out", str(out), "--epochs", "1000"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / CHECKPOINT_FILE
    deadline = time.time() + 120
    while time.time() < deadline and not state.exists():
        time.sleep(0.05)
    time.sleep(0.3)  # let it get into a later epoch, possibly into writing the next checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run never wrote a checkpoint"
    done = read_checkpoint_meta(out / "checkpoint")["epoch"]
    assert 1 <= done < 1000
    target = str(done + 2)  # --epochs may change on --resume; the schedule does not depend on it
    train_main(args + ["--out", str(out), "--resume", "--epochs", target])
    train_main(args + ["--out", str(tmp_path / "straight"), "--epochs", target])
    a, b = weights(tmp_path / "straight"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_settings_and_existing_runs_are_not_overwritten(xray_folder, tmp_path):
    out = tmp_path / "run"
    fit(tiny(xray_folder, out, epochs=1))
    with pytest.raises(TrainingError, match="already holds a training checkpoint.*--resume"):
        fit(tiny(xray_folder, out, epochs=1))
    with pytest.raises(TrainingError, match="lr: was 0.003, now 0.1"):
        fit(tiny(xray_folder, out, epochs=2, lr=0.1, resume=True))


def test_single_folder_data_gets_a_patient_disjoint_validation_split(tmp_path):
    from conftest import make_xray_folder
    root = make_xray_folder(tmp_path / "flat", n_per_class=16, splits=None)
    metrics = fit(tiny(root, tmp_path / "run", epochs=1, val_fraction=0.25))
    assert metrics["test"] is None and metrics["val"]["n"] > 0


def test_cli_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--lr", "--weight-decay", "--gamma", "--img-size", "--seed", "--resume",
                 "--device", "--push-to-hub", "--augment", "--option"):
        assert flag in text
    assert "(default: 0.001)" in text and "(default: 1.0)" in text


def test_cli_bad_data_exits_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["pneumonia_cnn", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["pneumonia_cnn", "--data", "x", "--out", "y", "--option", "widths"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_model_options_are_typed(xray_folder, tmp_path):
    train_main(["pneumonia_cnn", "--data", str(xray_folder), "--out", str(tmp_path / "o"), "--epochs", "1",
                "--img-size", "32", "--option", "widths=4,8", "--option", "dropout=0.5", "--no-progress"])
    cfg = get_config(load_model(tmp_path / "o"))
    assert cfg["widths"] == [4, 8] and cfg["dropout"] == 0.5


def test_evaluate_cli_json_and_plots(xray_folder, tmp_path, capsys):
    fit(tiny(xray_folder, tmp_path / "run", epochs=2))
    capsys.readouterr()
    evaluate_main([str(tmp_path / "run"), "--data", str(xray_folder), "--split", "test", "--json",
                   "--out", str(tmp_path / "eval")])
    r = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "precision", "recall", "f1", "auc", "confusion_matrix", "thresholds"):
        assert key in r
    assert set(r["thresholds"]) >= {"f1", "gmean", "youden"}
    assert sum(map(sum, r["confusion_matrix"])) == r["n_images"] == 24
    assert r["per_patient"]["n_patients"] == 12  # two images per patient in the fixture
    assert r["threshold"] == get_config(load_model(tmp_path / "run"))["threshold"]
    for png in ("roc.png", "confusion_matrix.png", "confusion_matrix_f1.png", "confusion_matrix_gmean.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 1000
    evaluate_main([str(tmp_path / "run"), "--data", str(xray_folder), "--threshold", "0.5"])
    assert "| operating | 0.5000 |" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- errors of the commands
def _cli_cases(tmp_path):
    """(module, function main() calls first, argv) for every command-line entry point."""
    return [("train.__main__", "fit", ["pneumonia_cnn", "--data", "x", "--out", str(tmp_path / "o")]),
            ("train.evaluate", "evaluate", ["runs/x", "--data", "x"]),
            ("train.sweep", "load_sweep", ["sweep.yaml", "--out", str(tmp_path / "o")]),
            ("lib.compare", "compare_runs", ["a=runs/a", "--out", str(tmp_path / "o")]),
            ("train.figures", "render", ["runs/x", "--data", "x", "--out", str(tmp_path / "o")]),
            ("train.make_synthetic_ct", "make_synthetic_ct", [str(tmp_path / "ct")])]


@pytest.mark.parametrize("case", range(6))
def test_every_command_shows_a_library_error_as_one_line_and_lets_a_bug_through(case, tmp_path, monkeypatch,
                                                                                capsys):
    import importlib

    from lib.errors import XcxrValueError
    module, func, argv = _cli_cases(tmp_path)[case]
    cli = importlib.import_module("train.compare" if module == "lib.compare" else module)

    def raise_(exc):
        def f(*args, **kwargs):
            raise exc
        return f

    monkeypatch.setattr(importlib.import_module(module), func, raise_(XcxrValueError("the input is wrong: do X")))
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and capsys.readouterr().err.endswith("error: the input is wrong: do X\n")
    # a plain ValueError / TypeError is a bug in the code, not a problem with the input: it is not turned into a
    # message (the interpreter prints its traceback and exits with 1)
    for bug in (ValueError("a bug"), TypeError("another bug")):
        monkeypatch.setattr(importlib.import_module(module), func, raise_(bug))
        with pytest.raises(type(bug), match="bug"):
            cli.main(argv)
        assert "error:" not in capsys.readouterr().err


def test_a_bug_in_the_train_command_exits_with_its_traceback(tmp_path):
    code = ("import sys, train.__main__ as m\n"
            "def fit(cfg):\n    raise ValueError('a bug, not an input problem')\n"
            "m.fit = fit\nsys.exit(m.main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, "pneumonia_cnn", "--data", "x", "--out", str(tmp_path / "o")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: a bug, not an input problem" in proc.stderr
    assert "error:" not in proc.stderr


# ------------------------------------------------------------------------------------ TrainConfig field kinds
def test_every_train_config_field_says_what_it_affects_and_the_derived_sets_are_unchanged():
    import dataclasses

    import lib.compare
    import lib.sweep
    import lib.training
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("affects") in lib.training.AFFECTS, f.name
    # Regression check: the sets as they were written out by hand before they were derived from the metadata
    # (with patient_level under its new name, decide_per_patient).
    assert lib.training._RESUMABLE == {"epochs", "resume", "overwrite", "push_to_hub", "private", "device", "progress"}
    assert lib.sweep._RUNNER_OWNED == {"out", "resume", "overwrite", "progress", "push_to_hub", "private"}
    assert lib.sweep._IGNORED_IN_COMPARISON == {"out", "resume", "overwrite", "progress", "push_to_hub", "private",
                                                "device", "epochs"}
    assert lib.compare._NOT_SPLIT_FIELDS == {
        "model", "out", "epochs", "batch_size", "lr", "weight_decay", "gamma", "device", "augment", "hflip",
        "threshold_rule", "decide_per_patient", "pretrained_file", "model_options", "resume", "overwrite",
        "push_to_hub", "private", "progress"}
    assert lib.training.fields_affecting("split") == {"data", "img_size", "seed", "val_fraction", "max_images"}
    with pytest.raises(ValueError, match="unknown kind"):
        lib.training.fields_affecting("colour")


def test_renamed_field_old_name_still_reads():
    from lib.training import upgrade_args
    cfg = tiny("data", "out", decide_per_patient=True)
    with pytest.warns(DeprecationWarning, match="decide_per_patient"):
        assert cfg.patient_level is True
    assert upgrade_args({"patient_level": True, "lr": 0.1}) == {"decide_per_patient": True, "lr": 0.1}
    assert upgrade_args({"patient_level": True, "decide_per_patient": False}) == {"decide_per_patient": False}


def test_resume_reads_a_checkpoint_written_before_a_field_was_renamed(xray_folder, tmp_path):
    out = tmp_path / "run"
    fit(tiny(xray_folder, out, epochs=1))
    path = out / "checkpoint" / CHECKPOINT_FILE
    meta = read_checkpoint_meta(out / "checkpoint")
    meta["args"]["patient_level"] = meta["args"].pop("decide_per_patient")  # as an older version wrote it
    with safetensors.safe_open(str(path), framework="pt") as f:
        raw = json.loads(f.metadata()["meta"])
    raw["args"] = meta["args"]
    safetensors.torch.save_file(safetensors.torch.load_file(path), path, metadata={"meta": json.dumps(raw)})
    with pytest.raises(TrainingError, match="decide_per_patient: was False, now True"):
        fit(tiny(xray_folder, out, epochs=2, resume=True, decide_per_patient=True))
    assert fit(tiny(xray_folder, out, epochs=2, resume=True))["best_epoch"] in (1, 2)


# ----------------------------------------------------------------------------------- the epoch's AUC, output
def test_fit_scores_epochs_with_lib_metrics_roc_auc_identical_to_the_former_sklearn_call(xray_folder, tmp_path,
                                                                                          monkeypatch):
    """fit's per-epoch AUC (which picks the best epoch) is lib.metrics.roc_auc; it equals what the loop computed
    before with its own sklearn call, on the same float32 probabilities, per image and per patient."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    import lib.training
    from lib.metrics import roc_auc

    def former_auc(y, p):  # lib.training._auc, as it was
        return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None

    seen = []

    def checked(y, p):
        got = roc_auc(y, p)
        assert got == former_auc(y, p)  # exactly, not approximately
        seen.append((len(y), got))
        return got

    monkeypatch.setattr(lib.training, "roc_auc", checked)
    fit(tiny(xray_folder, tmp_path / "run", epochs=2, decide_per_patient=True))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [a for _, a in seen] == [v for h in history for v in (h["val_auc"], h["val_auc_image"])]
    assert [n for n, _ in seen] == [12, 24, 12, 24]  # per patient (two images each), then per image
    rng = np.random.default_rng(0)
    for _ in range(20):  # ties, float32, one class
        y = rng.integers(0, 2, 30)
        p = rng.choice(np.linspace(0, 1, 7), 30).astype(np.float32)
        assert roc_auc(y, p) == former_auc(y, p)
    assert roc_auc(np.ones(4, int), np.full(4, 0.5, np.float32)) is None is former_auc(np.ones(4, int), np.zeros(4))


def test_without_a_terminal_fit_prints_one_plain_line_per_epoch(xray_folder, tmp_path, capfd):
    """Under nohup, in CI or a pipe (stdout/stderr not a terminal) no progress-bar redraws, one line per epoch."""
    fit(tiny(xray_folder, tmp_path / "run", epochs=3, progress=True))
    out, err = capfd.readouterr()
    text = out + err
    assert "\r" not in text and "\x1b[" not in text  # no carriage-return redraws, no cursor movement
    lines = [ln for ln in text.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]
    assert all("train loss" in ln and "val loss" in ln and "val AUC" in ln and ln.endswith(" s") for ln in lines)
    assert len(text.encode()) < 4000, text


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import io

    from lib.training import _progress_bars

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert _progress_bars(True) and not _progress_bars(False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not _progress_bars(True)


@needs_data
def test_real_data_quick_run(tmp_path):
    metrics = fit(TrainConfig(model="pneumonia_cnn", data=str(CHEST_XRAY), out=str(tmp_path / "real"), epochs=1,
                              img_size=64, max_images=96, progress=False, device="cpu"))
    assert metrics["test"]["n"] == 96 and metrics["val"]["auc"] is not None
