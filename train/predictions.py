"""Ship a model's predictions on the app's splits inside its folder, so the app answers Outcomes at once.

``python -m train.predictions MODEL_FOLDER [MODEL_FOLDER …] [--data data/chest_xray] [--splits val test]``

Writes ``MODEL_FOLDER/predictions/predictions-<key>.npz`` per split (:func:`lib.explain.ship_predictions`; the key
hashes the weights and the split's pixels, labels and image ids) and removes stale ones. Run it after retraining a
shipped model; ``tests/test_shipped_predictions.py`` fails while a shipped folder's predictions are stale.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.data import load_split
from lib.errors import XcxrError
from lib.explain import ship_predictions
from lib.models import get_config, load_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.predictions", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="model folders (python -m train … --out, models/*)")
    parser.add_argument("--data", default=str(ROOT / "data" / "chest_xray"),
                        help="folder with the split sub-folders (default: the bundled course splits)")
    parser.add_argument("--splits", nargs="+", default=["val", "test"], help="splits to predict")
    a = parser.parse_args(argv)
    try:
        for folder in a.folders:
            model = load_model(folder)
            size = int(get_config(model)["img_size"])
            sets = [load_split(a.data, split, size, progress=False) for split in a.splits]
            for file in ship_predictions(model, folder, sets):
                print(file)
    except XcxrError as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
