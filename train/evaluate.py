"""Evaluate a trained model (a run folder or a Hub repo) on a data split.

    python -m train.evaluate runs/cnn --data ../shared/data/chest_xray --split test
    python -m train.evaluate space/models/pneumonia_cnn --data ../shared/data/chest_xray --split test --json
    python -m train.evaluate OWNER/NAME --data ../shared/data/chest_xray --out reports/cnn

Reports accuracy, precision, recall, specificity, F1, confusion matrix and ROC AUC at the model's operating
threshold (chosen on the validation split during training and stored in config.json; ``--threshold`` overrides
it), the thresholds that maximise F1, G-mean and Youden's J with the metrics at each, and the same per patient
(mean probability over a patient's images) where file names carry patient ids. ``--out`` writes the ROC curve
with the F1 and G-mean points marked and confusion-matrix plots (a new, empty or earlier evaluation folder; never the
run folder itself, whose metrics.json and plots it would replace). A problem with the input
(:class:`lib.errors.XcxrError`) ends with ``error: …`` and exit status 2; anything else is a bug (traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from lib.data import load_split
from lib.errors import XcxrError
from lib.metrics import evaluate_predictions, per_patient_section
from lib.models import get_config, load_model, predict_proba
from lib.out_folders import check_out_folder

__all__ = ["evaluate", "main"]


def evaluate(model_id: str, data: str, split: str = "test", threshold: float | None = None,
             batch_size: int = 128) -> dict[str, Any]:
    """Load ``model_id``, predict ``split`` of ``data`` and return :func:`lib.metrics.evaluate_predictions` output
    plus ``model``, ``split``, ``n_images`` and ``threshold_source``."""
    model = load_model(model_id)
    cfg = get_config(model)
    ds = load_split(data, split, cfg["img_size"], progress=False)
    if threshold is None:
        threshold, source = float(cfg.get("threshold", 0.5)), cfg.get("threshold_rule", "default 0.5")
    else:
        source = "--threshold"
    prob = predict_proba(model, ds.images, batch_size=batch_size).numpy()
    result = evaluate_predictions(ds.labels.numpy(), prob, threshold, ds.patient_ids)
    result.update(model=str(model_id), architecture=cfg["architecture"], data=str(data), split=split,
                  n_images=len(ds), classes=ds.classes, threshold_source=source)
    result["_probabilities"] = prob  # for plots; dropped from the JSON
    result["_labels"] = ds.labels.numpy()
    return result


def _print_table(r: dict[str, Any]) -> None:
    from lib.reporting import metrics_table
    print(f"{r['architecture']} on {r['data']} [{r['split']}], {r['n_images']} images; "
          f"threshold {r['threshold']:.4f} ({r['threshold_source']})")
    print(metrics_table(r))
    print(f"confusion matrix [[TN, FP], [FN, TP]]: {r['confusion_matrix']}")
    patients = per_patient_section(r)
    if patients:
        print(f"\nper patient ({patients['n_patients']} patients):")
        print(metrics_table(patients))


def _write_plots(r: dict[str, Any], out: Path) -> None:
    from lib.metrics.plots import plot_confusion_matrix, plot_roc, save_figure
    check_out_folder(out, "evaluation")  # again, right before writing (main checked before the predictions)
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in r.items() if not k.startswith("_")}
    (out / "metrics.json").write_text(json.dumps(public, indent=1))  # first: the marker of an evaluation of ours
    save_figure(plot_roc(r["_labels"], r["_probabilities"], label=r["architecture"]), out / "roc.png")
    save_figure(plot_confusion_matrix(r["confusion_matrix"], class_names=tuple(r["classes"]),
                                      title=f"threshold {r['threshold']:.3f} ({r['threshold_source']})"),
                out / "confusion_matrix.png")
    for rule in ("f1", "gmean"):
        m = r["thresholds"].get(rule)
        if m:
            save_figure(plot_confusion_matrix(m["confusion_matrix"], class_names=tuple(r["classes"]),
                                              title=f"{rule}-optimal threshold {m['threshold']:.3f}"),
                        out / f"confusion_matrix_{rule}.png")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="a training output folder or a Hub repo id OWNER/NAME")
    p.add_argument("--data", required=True, help="data folder or .npz (as for training)")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's)")
    p.add_argument("--batch-size", type=int, default=128, help="inference batch size")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--out", type=Path, default=None, help="write ROC / confusion-matrix plots and metrics.json here "
                   "(new, empty or an evaluation folder of ours; any other folder, e.g. the run's, is refused)")
    a = p.parse_args(argv)
    try:
        if a.out:  # refused before the predictions: new, empty or an evaluation folder of ours
            check_out_folder(a.out, "evaluation")
        r = evaluate(a.model, a.data, a.split, a.threshold, a.batch_size)
        if a.out:
            _write_plots(r, a.out)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        p.exit(2, f"error: {e}\n")
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}))
    else:
        _print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
