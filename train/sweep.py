"""Run a sweep of training runs from a YAML file and summarise it (see :mod:`lib.sweep` for the file format).

    python -m train.sweep studies/study1_finetuning/sweep.yaml --variant small
    python -m train.sweep studies/study2_model_comparison/sweep.yaml --variant small --push-to-hub MY_HF_NAME
    python -m train.sweep CONFIG.yaml --out runs/smoke --set max_images=64 --set epochs=1   # a quick check

Runs go to ``--out`` (default ``runs/<sweep name>/<variant>``, which the app lists); the summary table, figures and
comparison (no weights) are copied to ``--results`` (default ``results/<variant>`` beside a ``sweep.yaml``,
``results/<stem>-<variant>`` beside another file name), plus the
best small models named by ``bundle_best``. Run the same command again after a kill: finished runs are skipped, the
interrupted one resumes from its checkpoint. A problem with the input (:class:`lib.errors.XcxrError`: the sweep file,
data, a folder holding other settings) ends with ``error: …`` and exit status 2; anything else is a bug (traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from lib.errors import XcxrError
from lib.out_folders import check_out_folder
from lib.sweep import export_results, load_sweep, run_sweep

from .__main__ import parse_option


def default_results(config: Path, variant: str) -> Path:
    """``results/<variant>`` beside a ``sweep.yaml``; ``results/<file stem>-<variant>`` beside any other name (so
    two sweeps of one study folder do not overwrite each other's summary)."""
    sub = variant if config.stem == "sweep" else f"{config.stem}-{variant}"
    return config.parent / "results" / sub


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("config", help="sweep YAML file")
    p.add_argument("--variant", default=None, help="a named variant of the file (e.g. small)")
    p.add_argument("--out", default=None, help="folder for the runs (default runs/<name>/<variant>): new, empty or a "
                   "sweep folder of ours; any other folder is refused")
    p.add_argument("--results", default=None,
                   help="where the summary and figures are copied (default: results/<variant> beside a sweep.yaml, "
                   "results/<stem>-<variant> beside another file)")
    p.add_argument("--no-results", action="store_true", help="do not copy the summary anywhere")
    p.add_argument("--set", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="override a base training setting, repeatable: epochs=1 max_images=64 data=…")
    p.add_argument("--overwrite", action="store_true",
                   help="train again runs whose folder holds other settings (finished identical runs are kept; "
                   "a folder that is not ours is never overwritten)")
    p.add_argument("--push-to-hub", metavar="OWNER", default=None,
                   help="push the best run of each model to OWNER/<publish>-<model> (needs HF_TOKEN / hf auth login)")
    p.add_argument("--private", action="store_true", help="create pushed repos as private")
    p.add_argument("--progress", action="store_true", help="per-batch progress bars on a terminal (elsewhere one plain line per epoch)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = load_sweep(a.config, a.variant, dict(a.set))
        variant = a.variant or "default"
        out = Path(a.out or Path("runs") / cfg.name / variant)
        dest = None if a.no_results else Path(a.results) if a.results else default_results(Path(a.config), variant)
        if dest is not None:  # refused now, not after hours of training: a results folder of ours or a new one
            check_out_folder(dest, "sweep")
        summary = run_sweep(cfg, out, overwrite=a.overwrite, progress=a.progress, push_to_hub=a.push_to_hub,
                            private=a.private)
        if dest is not None:
            export_results(out, dest, summary, cfg.bundle_best)
            logging.info("summary and figures copied to %s", dest)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        parser.exit(2, f"error: {e}\n")
    except PermissionError as e:  # the machine: a run or results folder this user may not write
        parser.exit(2, f"error: {e}\n")
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
