"""A model card's "Use" section works literally for someone who never cloned this repository.

The project is built as the package ``xcxr`` (``pyproject.toml``: lib/ under the import name ``xcxr``) and installed
into an empty folder; a subprocess whose ``sys.path`` holds that folder and site-packages but not this repository
(``lib`` must not be importable) runs the card's code, with the placeholders replaced by a repo pushed to the Hub
emulator, and prints the same probability as the in-repo ``lib``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib.data import load_grey
from lib.models import create_model, predict_proba, push_folder, save_model
from lib.reporting import CODE_REPO_PLACEHOLDER, MODEL_REPO_PLACEHOLDER, usage_snippet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = next((ROOT / "examples" / "chest_xray_test" / "PNEUMONIA").glob("*.jpeg"))


@pytest.fixture(scope="module")
def xcxr_site(tmp_path_factory) -> Path:
    """``pip install`` of this project (its pyproject.toml) into an empty folder, from a copy of the sources."""
    src, site = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (site / "xcxr" / "models" / "hub.py").is_file() and not (site / "lib").exists()
    return site


def _code_blocks(markdown: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", markdown, flags=re.S)


def _run_card(card: str, repo: str, site: Path, workdir: Path) -> float:
    """Run the card's Python block in a subprocess without this repository on sys.path; return the printed P."""
    code = _code_blocks(card, "python")[0].replace(MODEL_REPO_PLACEHOLDER, repo)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-c", "import sys\ntry:\n    import lib\nexcept ImportError:\n    pass\n"
                           "else:\n    sys.exit('lib is importable: the test would not show anything')\n" + code],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"P\(PNEUMONIA\) = ([0-9.]+)", done.stdout)
    assert match, done.stdout
    return float(match.group(1))


@pytest.mark.parametrize("arch", ["pneumonia_cnn", "resnet18_scratch"])
def test_the_cards_use_section_works_without_a_clone(arch, hub, hf_cache, xcxr_site, tmp_path):
    torch.manual_seed(0)
    model = create_model(arch, img_size=64).eval()
    repo = f"student/card-{arch}"
    push_folder(save_model(model, tmp_path / "model"), repo)
    card = usage_snippet(model.xcxr_config)
    if arch == "pneumonia_cnn":  # the custom model: install the package, as the card says
        install = _code_blocks(card, "bash")[0]
        assert f"git+https://huggingface.co/spaces/{CODE_REPO_PLACEHOLDER}" in install and "xcxr" in install
    else:
        assert "No code of this project is needed" in card
    work = tmp_path / "work"
    work.mkdir()
    grey = load_grey(EXAMPLE, size=64)
    Image.fromarray(grey).save(work / "xray.png")
    p = _run_card(card, repo, xcxr_site, work)
    expected = float(predict_proba(model, torch.from_numpy(np.asarray(grey))[None, None])[0])
    assert p == pytest.approx(expected, abs=1e-3)
