"""Render the course figures from a trained model and a folder of test images.

    python -m train.figures models/pneumonia_cnn --data examples/chest_xray_test --out docs/figures

writes ``gradcam_10x2.png`` (the Lübeck figure: ten test images × Grad-CAM for both classes) and
``saliency_outcomes.png`` (the Ljubljana figure: saliency maps of a true positive, true negative, false positive
and false negative — the most confident of each at the model's threshold), and ``figures.json`` (what was rendered).
The README's figures come from this command on the bundled model and the bundled examples. ``--out`` must be new,
empty or a figures folder of ours (with its ``figures.json``): any other folder is refused before anything is
written (:mod:`lib.out_folders`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from lib.data import load_split
from lib.errors import XcxrError
from lib.explain import gradcam_figure, outcomes, predict_split, saliency_outcomes_figure
from lib.explain.figures import pick_rows
from lib.metrics.plots import save_figure
from lib.models import get_config, load_model
from lib.out_folders import check_out_folder

__all__ = ["render", "main"]


def render(model_id: str, data: str, out: Path, split: str | None = None, per_class: int = 5, seed: int = 0,
           method: str = "saliency") -> list[Path]:
    """Write the two figures and ``figures.json`` to ``out``; returns the figures' paths.

    ``out`` is absent, empty or a figures folder of ours; any other folder raises
    :class:`lib.out_folders.OutFolderError` before anything is written.
    """
    check_out_folder(out, "figures")
    model = load_model(model_id)
    cfg = get_config(model)
    ds = load_split(data, split, cfg["img_size"], progress=False)
    rows = pick_rows(ds.labels, per_class, seed, n_classes=len(ds.classes))  # the app's Heatmaps grid draws the same
    out.mkdir(parents=True, exist_ok=True)
    about = {"model": str(model_id), "data": str(data), "split": split, "per_class": per_class, "seed": seed,
             "method": method, "files": []}
    marker = out / "figures.json"  # first: the marker of a figures folder of ours, even if a figure then fails
    marker.write_text(json.dumps(about, indent=1))
    written = [save_figure(gradcam_figure(model, ds.images[rows], labels=ds.labels[rows].tolist(),
                                          title=f"Grad-CAM of {cfg['architecture']} ({cfg['target_layer']}), "
                                                "logits, shared scale per image"),
                           out / "gradcam_10x2.png")]
    threshold = float(cfg.get("threshold", 0.5))
    res = outcomes(predict_split(model, ds), threshold)
    examples = {name: ds.images[getattr(res, name.lower())[0]] for name in ("TP", "TN", "FP", "FN")
                if getattr(res, name.lower())}
    if examples:
        written.append(save_figure(saliency_outcomes_figure(model, examples, method=method, threshold=threshold),
                                   out / "saliency_outcomes.png"))
    marker.write_text(json.dumps({**about, "files": [p.name for p in written]}, indent=1))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.figures", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="a training output folder or a Hub repo id OWNER/NAME")
    p.add_argument("--data", required=True, help="class-folder data (e.g. examples/chest_xray_test)")
    p.add_argument("--split", default=None, help="split folder when --data has train/val/test")
    p.add_argument("--out", type=Path, default=Path("docs/figures"),
                   help="output folder: new, empty or a figures folder of ours (any other folder is refused)")
    p.add_argument("--per-class", type=int, default=5, help="images per class in the Grad-CAM figure")
    p.add_argument("--seed", type=int, default=0, help="which images are drawn")
    p.add_argument("--method", default="saliency", help="attribution method of the outcomes figure")
    a = p.parse_args(argv)
    try:
        for path in render(a.model, a.data, a.out, a.split, a.per_class, a.seed, a.method):
            print(path)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        p.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
