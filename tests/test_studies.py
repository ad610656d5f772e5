"""The four course studies (``studies/*``): every sweep file parses in every variant, and the small variant of each
runs end to end — on tiny stand-in data, one epoch — through the same command a student types.

The real small variants take minutes each on this CPU (their tables are committed under ``studies/*/results``);
what CI checks is that nothing in a study's file, its variants, the sweep runner, the comparison or the CT
pipeline breaks on the way from the command to the table and figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, make_xray_folder
from lib.sweep import load_sweep

STUDIES = ROOT / "studies"
SWEEPS = sorted(p for p in STUDIES.glob("*/*.yaml") if "base" in (yaml.safe_load(p.read_text()) or {}))
CT_DESCRIPTIONS = sorted(p for p in STUDIES.glob("*/*.yaml") if (yaml.safe_load(p.read_text()) or {}).get("kind") == "ct")


def test_there_are_four_studies_with_a_readme():
    folders = sorted(p.name for p in STUDIES.iterdir() if p.is_dir())
    assert [f.split("_")[0] for f in folders] == ["study1", "study2", "study3", "study4"]
    for f in folders:
        assert (STUDIES / f / "README.md").is_file(), f


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_variant_parses(path):
    raw = yaml.safe_load(path.read_text())
    for variant in [None, *(raw.get("variants") or {})]:
        cfg = load_sweep(path, variant)
        assert cfg.base.get("data") and (cfg.base.get("model") or cfg.models)


@pytest.mark.parametrize("path", CT_DESCRIPTIONS, ids=lambda p: p.name)
def test_ct_descriptions_point_at_the_synthetic_set(path):
    doc = yaml.safe_load(path.read_text())
    assert (path.parent / doc["root"]).resolve() == (ROOT / "runs" / "synthetic_ct" / "studies").resolve()
    assert doc["class_map"]["CT-1"] == "mild" and doc["class_map"]["CT-2"] == "severe"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Tiny versions of the three data sets the studies use."""
    from train.make_synthetic_ct import make_synthetic_ct

    root = tmp_path_factory.mktemp("study-data")
    xray = make_xray_folder(root / "xray", n_per_class=10, size=48)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        labels = np.arange(n) % 2
        images = rng.normal(100, 20, (n, 28, 28)) + labels[:, None, None] * 60
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None].astype(np.uint8)
    npz = root / "pneumoniamnist.npz"
    np.savez(npz, **arrays)
    make_synthetic_ct(root / "synthetic_ct", patients=20, slices=12, size=32)
    return {"xray": xray, "npz": npz, "ct": root / "synthetic_ct"}


def _stand_in_config(path: Path, tmp: Path, data: dict[str, Path]) -> Path:
    """The study's sweep file with its data paths pointed at the stand-ins (and CT descriptions copied beside)."""
    doc = yaml.safe_load(path.read_text())

    def swap(value: str) -> str:
        if value.endswith(".npz"):
            return str(data["npz"])
        if value.endswith(".yaml"):  # a CT description of the study: same settings, root = the stand-in volumes
            desc = yaml.safe_load((ROOT / value).read_text())
            desc["root"] = str(data["ct"] / "studies")
            copy = tmp / Path(value).name
            copy.write_text(yaml.safe_dump(desc))
            return str(copy)
        return str(data["xray"])

    def walk(node):
        if isinstance(node, dict):
            return {k: (swap(v) if k == "data" and isinstance(v, str) else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = tmp / path.name
    out.write_text(yaml.safe_dump(walk(doc), sort_keys=False))
    return out


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_small_variant_runs_end_to_end(path, stand_ins, tmp_path, capsys):
    from train.sweep import main

    config = _stand_in_config(path, tmp_path, stand_ins)
    rc = main([str(config), "--variant", "small", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
               "--set", "epochs=1", "--set", "max_images=24"])
    assert rc == 0
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    cfg = load_sweep(path, "small")
    if cfg.search:
        assert len(summary["search"]) == len(cfg.models) * len(cfg.search)
        assert set(summary["best"]) == {m["model"] for m in cfg.models}
    else:
        assert [r["run"] for r in summary["runs"]] == [r["name"] for r in cfg.runs]
    for row in summary["runs"]:
        assert row["test_auc"] is not None and 0 <= row["test_accuracy"] <= 1
    for fig in summary["figures"]:
        assert (tmp_path / "res" / fig).stat().st_size > 5000
    if cfg.compare:
        comparison = tmp_path / "res" / "comparison"
        assert (comparison / "roc.png").is_file() and (comparison / "thresholds.md").is_file()
        assert len(list(comparison.glob("filters_*.png"))) == len(cfg.models)
    if "ct" in path.stem:
        assert {r["level"] for r in summary["runs"]} == {"patient"}
    for model in cfg.bundle_best:
        assert (tmp_path / "res" / "best" / model / "model.safetensors").is_file()
    assert "| `" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ the numbers the READMEs quote
#: Column titles of the READMEs' study tables → keys of a summary.json row.
COLUMNS = {"val AUC": "val_auc", "test acc": "test_accuracy", "test ACC": "test_accuracy", "test AUC": "test_auc",
           "precision": "test_precision", "recall": "test_recall", "F1": "test_f1", "best epoch": "best_epoch",
           "threshold": "threshold", "patients": "test_patients", "per-patient acc": "test_patient_accuracy",
           "per-patient AUC": "test_patient_auc"}
READMES = [ROOT / "README.md", *sorted(STUDIES.glob("*/README.md"))]


def _quoted_tables(text: str):
    """``(summary.json path, header cells, rows)`` for every table announced by ``<!-- from PATH -->``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("<!-- from ") and line.strip().endswith("-->"):
            source = line.strip()[len("<!-- from "):-len("-->")].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("|"):
                j += 1
            table = []
            while j < len(lines) and lines[j].startswith("|"):
                table.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
                j += 1
            yield source, table[0], table[2:]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_study_tables_quote_the_committed_summaries(readme):
    """Every number in a study table of a README equals the committed summary.json, to the digits shown."""
    checked = 0
    for source, header, rows in _quoted_tables(readme.read_text()):
        summary = json.loads((ROOT / source).read_text())
        by_run = {r["run"]: r for r in summary["runs"]}
        for row in rows:
            run = row[0].split("`")[1] if "`" in row[0] else None
            if run is None:
                continue  # a published baseline, not ours
            assert run in by_run, f"{readme.name}: run {run!r} is not in {source}"
            for title, cell in zip(header, row):
                key = COLUMNS.get(title)
                if key is None or cell in ("", "–"):
                    continue
                value, cell = by_run[run][key], cell.strip("*")  # bold marks the best of a column
                digits = len(cell.split(".")[1]) if "." in cell else 0
                assert cell == f"{value:.{digits}f}", f"{readme.name}: {run} {title} {cell} ≠ {value}"
                checked += 1
    if readme != ROOT / "README.md" or "## Course studies" in readme.read_text():
        assert checked > 0, f"{readme.name} quotes no study numbers"
