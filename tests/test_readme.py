"""The README's promises: its code example runs and its results table matches the bundled model's metrics."""
from __future__ import annotations

import json
import re

from conftest import ROOT


def _block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- readme-example: {marker} -->", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_seven_step_gradcam_example_runs_and_matches_the_library(monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(_block("seven-steps"), "README.md", "exec"), {})  # its own assert compares with lib.explain


def test_results_table_matches_the_bundled_model():
    text = (ROOT / "README.md").read_text()
    test = json.loads((ROOT / "models" / "pneumonia_cnn" / "metrics.json").read_text())["test"]
    row = re.search(r"\| per image \| (.*) \|", text).group(1).replace("*", "").split(" | ")
    keys = ["accuracy", "precision", "recall", "specificity", "f1", "auc"]
    assert [float(v) for v in row] == [round(test[k], 3) for k in keys]
