"""Compare finished training runs: ROC curves, F1/G-mean thresholds (chosen on validation), confusion matrices.

    python -m train.compare CNN1=runs/cnn1 DNN1=runs/dnn1 --out reports/compare
    python -m train.compare CNN1=runs/cnn1 ResNet18=runs/resnet18 --out reports/compare --criteria f1,gmean,youden
    python -m train.compare runs/cnn1 runs/dnn1 --out reports/compare --data ../shared/data/chest_xray

Each argument is ``NAME=RUN_DIR`` (or just ``RUN_DIR``: the folder name is the display name). Every run is
evaluated on the validation and test splits it was trained with (rebuilt from its train_args.json; ``--data``
points at the data set if it moved). Thresholds are chosen on validation and applied to test. Writes roc.png,
confusion_matrices.png, filters_<name>.png, thresholds.md and comparison.json into ``--out`` and prints the
markdown table. Thin over :func:`lib.compare.compare_runs`. A problem with the input (:class:`lib.errors.XcxrError`)
ends with ``error: …`` and exit status 2; anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lib.errors import XcxrValueError

__all__ = ["main", "parse_runs"]


def parse_runs(items: Sequence[str]) -> dict[str, str]:
    """``["CNN1=runs/cnn1", "runs/dnn1"]`` → ``{"CNN1": "runs/cnn1", "dnn1": "runs/dnn1"}``.

    Example:
        >>> parse_runs(["CNN1=runs/cnn1", "runs/dnn1/"])
        {'CNN1': 'runs/cnn1', 'dnn1': 'runs/dnn1/'}
    """
    runs: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep:  # a bare folder: its own name is the label
            name, folder = Path(item).name or item, item
        if not name or not folder:
            raise XcxrValueError(f"{item!r}: expected NAME=RUN_DIR")
        if name in runs:
            raise XcxrValueError(f"the name {name!r} is given twice; names label the curves and must differ")
        runs[name] = folder
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR", help="finished training folders to compare")
    p.add_argument("--out", type=Path, required=True, help="folder for the figures, thresholds.md, comparison.json: "
                   "new, empty or a comparison report of ours (any other folder is refused)")
    p.add_argument("--criteria", default="f1,gmean", help="comma-separated: f1, gmean, youden")
    p.add_argument("--split", default="test", choices=["test", "val"], help="split the thresholds are applied to")
    p.add_argument("--data", default=None, help="data folder or .npz, instead of the one in train_args.json")
    p.add_argument("--batch-size", type=int, default=128, help="inference batch size")
    p.add_argument("--progress", action="store_true", help="progress bars while decoding images")
    a = p.parse_args(argv)
    # Imported after parsing so that --help is instant (torch, matplotlib).
    from lib.compare import compare_runs
    from lib.errors import XcxrError
    try:
        runs = parse_runs(a.runs)
        criteria = [c.strip() for c in a.criteria.split(",") if c.strip()]
        result = compare_runs(runs, a.out, criteria=criteria, split=a.split, data=a.data, progress=a.progress,
                              batch_size=a.batch_size)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        p.exit(2, f"error: {e}\n")
    print(result["table"])
    print(f"\nwritten to {a.out}: roc.png, confusion_matrices.png, "
          + ", ".join(m["files"]["filters"] for m in result["models"].values()) + ", thresholds.md, comparison.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
