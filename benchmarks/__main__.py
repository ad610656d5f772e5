"""``python -m benchmarks [--json] [--quick] [--only NAME ...]`` — run the benchmark families.

Prints one JSON object with one key per figure (``--json``), or a readable table. ``--quick`` runs a tiny smoke
variant of every family (seconds; used by ``tests/test_benchmarks.py``; the numbers mean nothing). See
:mod:`benchmarks.registry` for how to add a family.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

from .registry import families


def _format(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e9:
        return f"{int(value)}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _run(registry: dict, names: list[str], quick: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"[benchmarks] {name}{' (quick)' if quick else ''} …", file=sys.stderr, flush=True)
        result = registry[name].fn(quick)
        for key, value in result.items():
            value = float(value)
            if not math.isfinite(value):
                raise RuntimeError(f"benchmark {name}: figure {key} is not finite ({value})")
            figures[f"{name}.{key}"] = value
        print(f"[benchmarks] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    registry = families()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (figure → number)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke variant (seconds; numbers mean nothing)")
    parser.add_argument("--only", action="append", choices=sorted(registry), metavar="NAME",
                        help=f"run only this family (repeatable): {', '.join(sorted(registry))}")
    parser.add_argument("--list", action="store_true", help="list the families and exit")
    args = parser.parse_args(argv)
    if args.list:
        for b in registry.values():
            print(f"{b.name:12s} {b.doc}")
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # every temporary file of the run (and of the apps it starts) in one folder, removed at the end: gradio_client
    # leaves an empty folder in the temporary folder for every file it downloads (thousands in the load family)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    work = tempfile.mkdtemp(prefix="xcxr-bench-")
    tempfile.tempdir, os.environ["TMPDIR"] = work, work
    try:
        figures = _run(registry, args.only or list(registry), args.quick)
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        width = max((len(k) for k in figures), default=10)
        print(f"{'figure':{width}s}  value")
        print(f"{'-' * width}  {'-' * 12}")
        for key, value in figures.items():
            print(f"{key:{width}s}  {_format(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
