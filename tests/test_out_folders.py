"""``--out`` never destroys (lib.out_folders): every writer refuses a folder that is not one of ours, before writing.

The measured problem: ``python -m train … --out .`` overwrote the repository's README.md (the Space's front matter)
and config.json. Here every command (train, train.sweep, train.figures, train.compare, train.evaluate) is pointed at
a folder holding a README.md and a config.json, with and without ``--overwrite``: a non-zero exit, and every file's
bytes and mtime unchanged, no file added. Symbolic links are refused too; our own folders keep working (resume,
overwrite, a comparison written twice), and every file a writer leaves is one its kind lists.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_xray_folder
from lib.errors import XcxrError
from lib.out_folders import KINDS, OutFolderError, check_out_folder, foreign_entries
from lib.training import CHECKPOINT_DIR, CHECKPOINT_FILE, TrainConfig, TrainingError, fit

BUNDLED = ROOT / "models" / "pneumonia_cnn"   # a run folder of ours (train_args.json, weights, card, plots)
TINY = ["--epochs", "1", "--img-size", "32", "--batch-size", "8", "--device", "cpu", "--no-progress",
        "--option", "widths=4,8"]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): kind, bytes (files) or target (links), mtime, mode."""
    shot = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_symlink():
                content = ("link", os.readlink(path))
            elif path.is_dir():
                content = ("dir", None)
            else:
                content = ("file", path.read_bytes())
            shot[str(path.relative_to(folder))] = (content, st.st_mtime_ns, st.st_mode)
    return shot


@pytest.fixture
def foreign(tmp_path) -> Path:
    """A folder that is not ours: a Space-like README.md (front matter) and a config.json."""
    folder = tmp_path / "space_repo"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntitle: My Space\nsdk: gradio\napp_file: app.py\n---\n# keep me\n")
    (folder / "config.json").write_text('{"mine": true}\n')
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_xray_folder(tmp_path_factory.mktemp("outdata") / "xray", n_per_class=8, size=32)


def refused(main, argv, capsys) -> str:
    """Run a command's main(argv): it must exit with a non-zero status; returns its stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code not in (0, None)
    return capsys.readouterr().err


# ------------------------------------------------------------------------------------- the measured problem
@pytest.mark.parametrize("extra", [[], ["--overwrite"], ["--resume"]], ids=["plain", "overwrite", "resume"])
def test_train_refuses_a_folder_that_is_not_a_run_and_changes_nothing(foreign, data, extra, capsys):
    from train.__main__ import main as train_main
    before = snapshot(foreign)
    err = refused(train_main, ["pneumonia_cnn", "--data", str(data), "--out", str(foreign), *TINY, *extra], capsys)
    assert snapshot(foreign) == before
    assert err.startswith("error: ") and str(foreign) in err
    assert "README.md" in err and "config.json" in err and "no train_args.json" in err
    assert "choose a new or empty folder" in err


def test_train_subprocess_on_a_repository_like_folder(foreign, data):
    """The measured case, as a user runs it: a folder with a LICENSE, README.md and config.json; exit 2."""
    (foreign / "LICENSE").write_text("MIT\n")
    before = snapshot(foreign)
    for extra in ([], ["--overwrite"]):
        proc = subprocess.run([sys.executable, "-m", "train", "pneumonia_cnn", "--data", str(data), "--out",
                               str(foreign), *TINY, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "LICENSE" in proc.stderr and "Traceback" not in proc.stderr
        assert snapshot(foreign) == before


@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_sweep_refuses_a_foreign_root_a_foreign_run_folder_and_foreign_results(foreign, data, tmp_path, extra,
                                                                                capsys):
    from train.sweep import main as sweep_main
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump({"name": "t", "base": {"model": "pneumonia_cnn", "data": str(data),
                                                           "img_size": 32, "epochs": 1, "batch_size": 8,
                                                           "model_options": {"widths": [4, 8]}},
                                      "runs": [{"name": "a"}]}))
    before = snapshot(foreign)
    err = refused(sweep_main, [str(config), "--out", str(foreign), "--no-results", *extra], capsys)
    assert snapshot(foreign) == before and "README.md" in err
    # a sweep folder of ours whose run folder "a" holds someone else's files
    root = tmp_path / "sweep_root"
    root.mkdir()
    shutil.copytree(foreign, root / "a")
    before = snapshot(root)
    err = refused(sweep_main, [str(config), "--out", str(root), "--no-results", *extra], capsys)
    assert snapshot(root) == before and "a/" in err
    # a foreign results folder: refused before any training (the runs folder is not even created)
    before = snapshot(foreign)
    err = refused(sweep_main, [str(config), "--out", str(tmp_path / "new_runs"), "--results", str(foreign), *extra],
                  capsys)
    assert snapshot(foreign) == before and not (tmp_path / "new_runs").exists()


def test_figures_compare_and_evaluate_refuse_foreign_folders(foreign, tmp_path, capsys):
    from train.compare import main as compare_main
    from train.evaluate import main as evaluate_main
    from train.figures import main as figures_main
    run = tmp_path / "run"
    shutil.copytree(BUNDLED, run)
    before, run_before = snapshot(foreign), snapshot(run)
    examples = str(ROOT / "examples" / "chest_xray_test")
    refused(figures_main, [str(run), "--data", examples, "--out", str(foreign)], capsys)
    refused(compare_main, [f"A={run}", "--out", str(foreign)], capsys)
    refused(evaluate_main, [str(run), "--data", examples, "--out", str(foreign)], capsys)
    # a report over a run folder would replace its metrics.json, roc.png…: a run is not a report of ours
    for main, argv in ((evaluate_main, [str(run), "--data", examples, "--out", str(run)]),
                       (compare_main, [f"A={run}", "--out", str(run)]),
                       (figures_main, [str(run), "--data", examples, "--out", str(run)])):
        err = refused(main, argv, capsys)
        assert "train_args.json" in err or "history.json" in err
    assert snapshot(foreign) == before and snapshot(run) == run_before


# ------------------------------------------------------------------------------------------------ symlinks
def test_symbolic_links_are_refused(tmp_path, data, capsys):
    from train.__main__ import main as train_main
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    err = refused(train_main, ["pneumonia_cnn", "--data", str(data), "--out", str(link), *TINY], capsys)
    assert "symbolic link" in err and not any(target.iterdir())

    # a run folder of ours whose README.md is a link to another file: never written through, --overwrite or not
    run = tmp_path / "run"
    shutil.copytree(BUNDLED, run)
    precious = tmp_path / "precious.md"
    precious.write_text("---\ntitle: keep\n---\n")
    (run / "README.md").unlink()
    (run / "README.md").symlink_to(precious)
    before, precious_before = snapshot(run), snapshot(tmp_path / "elsewhere")
    mtime = precious.stat().st_mtime_ns
    for extra in ([], ["--overwrite"], ["--resume"]):
        err = refused(train_main, ["pneumonia_cnn", "--data", str(data), "--out", str(run), *TINY, *extra], capsys)
        assert "README.md (a symbolic link)" in err
    assert snapshot(run) == before and precious.read_text() == "---\ntitle: keep\n---\n"
    assert precious.stat().st_mtime_ns == mtime and snapshot(tmp_path / "elsewhere") == precious_before

    # a link as a checkpoint folder, or as a run folder of a sweep
    run2 = tmp_path / "run2"
    shutil.copytree(BUNDLED, run2)
    (run2 / CHECKPOINT_DIR).symlink_to(target, target_is_directory=True)
    with pytest.raises(OutFolderError, match="checkpoint .a symbolic link"):
        check_out_folder(run2, "run")
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "a").symlink_to(BUNDLED, target_is_directory=True)
    with pytest.raises(OutFolderError, match="a .a symbolic link"):
        check_out_folder(root, "sweep")


# ------------------------------------------------------------------------------------- recognising our own
def test_check_out_folder_states(tmp_path):
    assert check_out_folder(tmp_path / "absent", "run") == "absent"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"\0")
    assert check_out_folder(tmp_path / "empty", "run") == "empty"
    assert check_out_folder(BUNDLED, "run") == "ours"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutFolderError, match="is a file"):
        check_out_folder(tmp_path / "file", "run")
    with pytest.raises(XcxrError, match="kind must be one of"):
        check_out_folder(tmp_path, "nope")


def test_our_file_names_without_our_marker_are_not_ours(tmp_path):
    folder = tmp_path / "hub_copy"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("train_args.json"))
    with pytest.raises(OutFolderError, match=r"no train_args.json"):
        check_out_folder(folder, "run")
    (folder / "train_args.json").write_text('{"model": "x"}')  # not our settings
    assert foreign_entries(folder, "run") == ["(no train_args.json (or checkpoint/state.safetensors) with this "
                                              "project's training settings)"]
    shutil.copy2(BUNDLED / "train_args.json", folder / "train_args.json")
    assert check_out_folder(folder, "run") == "ours"
    (folder / "notes.txt").write_text("mine")  # one file that no run writes: no longer ours
    assert foreign_entries(folder, "run") == ["notes.txt"]


def test_refusal_names_the_first_few_entries(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}.txt").write_text("x")
    with pytest.raises(OutFolderError) as exc:
        check_out_folder(tmp_path, "compare")
    message = str(exc.value)
    assert "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 4 more" in message and "f5.txt" not in message
    assert str(tmp_path) in message and "choose a new or empty folder" in message


def test_a_run_killed_during_its_first_checkpoint_is_ours(tmp_path):
    (tmp_path / "run" / CHECKPOINT_DIR).mkdir(parents=True)
    (tmp_path / "run" / CHECKPOINT_DIR / (CHECKPOINT_FILE + ".tmp")).write_bytes(b"partial")
    assert check_out_folder(tmp_path / "run", "run") == "ours"
    (tmp_path / "run" / CHECKPOINT_DIR / "other.bin").write_bytes(b"?")
    with pytest.raises(OutFolderError, match="checkpoint/other.bin"):
        check_out_folder(tmp_path / "run", "run")


def test_a_run_killed_while_safetensors_writes_is_ours(tmp_path):
    """safetensors writes ``.tmpXXXXXX`` beside the file and renames it: a SIGKILL in between leaves it (CI saw it)."""
    import threading

    import safetensors.torch
    import torch
    probe = tmp_path / "probe"
    probe.mkdir()
    seen: set[str] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(os.listdir(probe))
    watcher = threading.Thread(target=watch)
    watcher.start()
    for _ in range(10):
        safetensors.torch.save_file({"w": torch.zeros(1000, 1000)}, str(probe / CHECKPOINT_FILE))
    done.set()
    watcher.join()
    temporary = sorted(seen - {CHECKPOINT_FILE})
    assert temporary, "safetensors no longer writes through a temporary file: drop SAFETENSORS_TMP"
    run = tmp_path / "run"
    (run / CHECKPOINT_DIR).mkdir(parents=True)
    (run / CHECKPOINT_DIR / temporary[0]).write_bytes(b"partial")     # killed while writing checkpoint n
    assert check_out_folder(run, "run") == "ours"                     # (the first: nothing else there yet)
    args = {"model": "pneumonia_cnn", "data": "x", "out": str(run), "epochs": 9, "lr": 1e-3, "seed": 0}
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(run / CHECKPOINT_DIR / CHECKPOINT_FILE),
                                metadata={"meta": json.dumps({"args": args})})      # checkpoint n - 1
    (run / temporary[-1]).write_bytes(b"partial")      # save_model's model.safetensors goes the same way
    assert check_out_folder(run, "run") == "ours"
    (run / ".tmp_not_ours.txt").write_bytes(b"?")
    with pytest.raises(OutFolderError, match="tmp_not_ours"):
        check_out_folder(run, "run")


def test_the_kinds_list_the_names_the_writers_use():
    from lib.models.hub import CONFIG_NAME, WEIGHTS_NAME
    run = KINDS["run"]
    assert run.subfolder_kinds(CHECKPOINT_DIR) == ("checkpoint",)
    assert KINDS["checkpoint"].allows_file(CHECKPOINT_FILE) and KINDS["checkpoint"].allows_file(CHECKPOINT_FILE + ".tmp")
    for name in (CONFIG_NAME, WEIGHTS_NAME, CONFIG_NAME + ".tmp", WEIGHTS_NAME + ".tmp"):
        assert run.allows_file(name), name


# --------------------------------------------------------------------------- our own folders keep working
def test_own_run_folders_are_resumed_and_overwritten_and_every_file_is_listed(data, tmp_path, capsys):
    from train.__main__ import main as train_main
    out = tmp_path / "run"
    argv = ["pneumonia_cnn", "--data", str(data), "--out", str(out), *TINY]
    assert train_main(argv) == 0
    assert check_out_folder(out, "run") == "ours" and (out / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()
    err = refused(train_main, argv, capsys)
    assert "already holds a training checkpoint" in err
    assert train_main(argv + ["--overwrite"]) == 0
    assert train_main(argv + ["--resume", "--epochs", "2"]) == 0  # the last --epochs counts
    assert len(json.loads((out / "history.json").read_text())) == 2
    # a finished run without its checkpoint (an exported best run, the bundled model): --overwrite, not silently
    shutil.rmtree(out / CHECKPOINT_DIR)
    err = refused(train_main, argv, capsys)
    assert "already holds a training run" in err and "--overwrite" in err
    assert train_main(argv + ["--overwrite"]) == 0 and check_out_folder(out, "run") == "ours"
    # the bundled model's folder is a run of ours: it may be trained again with --overwrite
    bundled = tmp_path / "bundled"
    shutil.copytree(BUNDLED, bundled)
    with pytest.raises(TrainingError, match="already holds a training run"):
        fit(TrainConfig(model="pneumonia_cnn", data=str(data), out=str(bundled), epochs=1))


def test_reports_are_ours_and_written_again(data, tmp_path, capsys):
    from train.compare import main as compare_main
    from train.evaluate import main as evaluate_main
    from train.figures import main as figures_main
    run = tmp_path / "run"
    fit(TrainConfig(model="pneumonia_cnn", data=str(data), out=str(run), epochs=1, img_size=32, batch_size=8,
                    device="cpu", progress=False, model_options={"widths": [4, 8]}))
    for _ in range(2):  # the second time into the report of the first
        assert compare_main([f"A={run}", "--out", str(tmp_path / "cmp")]) == 0
        assert figures_main([str(run), "--data", str(data), "--split", "test", "--per-class", "2",
                             "--out", str(tmp_path / "fig")]) == 0
        assert evaluate_main([str(run), "--data", str(data), "--out", str(tmp_path / "ev")]) == 0
    capsys.readouterr()
    assert check_out_folder(tmp_path / "cmp", "compare") == "ours"
    assert check_out_folder(tmp_path / "fig", "figures") == "ours"
    assert check_out_folder(tmp_path / "ev", "evaluation") == "ours"
    assert json.loads((tmp_path / "fig" / "figures.json").read_text())["files"][0] == "gradcam_10x2.png"


def test_sweep_folders_and_results_are_ours_and_the_sweep_file_is_never_overwritten(data, tmp_path, capsys):
    from train.sweep import main as sweep_main
    doc = {"name": "t", "base": {"model": "pneumonia_cnn", "data": str(data), "img_size": 32, "epochs": 1,
                                 "batch_size": 8, "model_options": {"widths": [4, 8]}},
           "runs": [{"name": "a"}, {"name": "b", "lr": 0.01}], "compare": True, "bundle_best": ["pneumonia_cnn"]}
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(doc))
    argv = [str(config), "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    assert sweep_main(argv) == 0 and sweep_main(argv) == 0  # the second run finds its own folders
    capsys.readouterr()
    assert check_out_folder(tmp_path / "runs", "sweep") == "ours"
    assert check_out_folder(tmp_path / "res", "sweep") == "ours"
    assert (tmp_path / "res" / "best" / "pneumonia_cnn" / "train_args.json").is_file()
    # the sweep file in a folder of its own, used as --out: refused, not rewritten
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(config, alone / "sweep.yaml")
    before = snapshot(alone)
    err = refused(sweep_main, [str(alone / "sweep.yaml"), "--out", str(alone), "--no-results"], capsys)
    assert "sweep file itself" in err and snapshot(alone) == before


def test_fake_trainer_run_folders_count_as_ours(tmp_path):
    """Run folders with only some of the files (a killed run's, a test's fake trainer's) are ours by their marker."""
    cfg = TrainConfig(model="pneumonia_cnn", data="x", out=str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "train_args.json").write_text(json.dumps(asdict(cfg)))
    (tmp_path / "r" / "metrics.json").write_text("{}")
    assert check_out_folder(tmp_path / "r", "run") == "ours"
