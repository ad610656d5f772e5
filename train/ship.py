"""Ship a finished training run with the app: a small copy whose numbers are those of the shipped weights.

``python -m train.ship RUN_FOLDER --out models/NAME [--half] [--data data/chest_xray]``

1. loads the run (``config.json`` + ``model.safetensors``), optionally rounds its weights to float16 (``--half``:
   half the bytes in the repository; loaded back as float32);
2. evaluates **those** weights: the operating threshold again on the validation split with the run's own rule,
   the test metrics at it (so the model card and ``metrics.json`` describe exactly what ships);
3. writes the Hub-ready folder (config, weights, ``metrics.json``, ``history.json``, ``train_args.json`` with
   ``out`` set to the new folder, plots, model card) and the predictions on the app's splits
   (:func:`lib.explain.ship_predictions`), so the app answers Outcomes at once.

The output folder follows the rules of every writer here (:mod:`lib.out_folders`): new, empty or a run of ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import safetensors.torch
import torch

from lib.data import load_split
from lib.errors import XcxrError
from lib.explain import ship_predictions
from lib.metrics import evaluate_predictions, optimal_thresholds
from lib.models import get_config, load_model, predict_proba, save_model
from lib.out_folders import check_out_folder
from lib.reporting import write_run_report

ROOT = Path(__file__).resolve().parents[1]


def ship(run: Path, out: Path, data: Path, half: bool = False) -> dict:
    """Do the three steps of the module docstring; returns the new ``metrics.json`` content."""
    check_out_folder(out, "run")
    model = load_model(run)
    if half:  # evaluate what ships: weights rounded to float16, computed in float32
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    args = json.loads((run / "train_args.json").read_text())
    history = json.loads((run / "history.json").read_text())
    old = json.loads((run / "metrics.json").read_text())
    rule = args.get("threshold_rule", "youden")
    size = int(get_config(model)["img_size"])
    val, test = (load_split(data, s, size, progress=False) for s in ("val", "test"))
    p_val, p_test = (predict_proba(model, ds.images).double().numpy() for ds in (val, test))
    threshold = 0.5 if rule == "0.5" else float(optimal_thresholds(val.labels.numpy(), p_val)[rule])
    metrics = {**old, "threshold": threshold,
               "val": evaluate_predictions(val.labels.numpy(), p_val, threshold, val.patient_ids),
               "test": evaluate_predictions(test.labels.numpy(), p_test, threshold, test.patient_ids),
               "shipped": {"from": str(run), "weights": "float16" if half else "float32"}}
    model.xcxr_config.update(threshold=threshold, threshold_rule=f"{rule} on the validation split")
    out.mkdir(parents=True, exist_ok=True)
    args["out"] = str(out)
    (out / "train_args.json").write_text(json.dumps(args, indent=1))  # the marker of a run folder, first
    save_model(model, out)
    if half:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, str(out / "model.safetensors"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    write_run_report(out, model, metrics, history, args, test, p_test)
    ship_predictions(load_model(out), out, [val, test])
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished training run folder (python -m train … --out)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (e.g. models/NAME)")
    parser.add_argument("--half", action="store_true", help="store the weights as float16 (loaded as float32)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "chest_xray",
                        help="folder with the val/test splits (default: the bundled course splits)")
    a = parser.parse_args(argv)
    try:
        metrics = ship(a.run, a.out, a.data, a.half)
    except XcxrError as e:
        parser.exit(2, f"error: {e}\n")
    t = metrics["test"]
    print(f"{a.out}: test AUC {t['auc']:.4f}, accuracy {t['accuracy']:.4f} at threshold {metrics['threshold']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
