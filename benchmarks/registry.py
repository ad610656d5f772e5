"""The benchmark registry: families of figures, run by ``python -m benchmarks``.

A *family* is a function ``fn(quick: bool) -> dict[str, float]`` registered with :func:`benchmark`. Each key of
the returned dict is one figure; the runner prefixes it with the family name (``training.loop_ratio``) and
prints all figures of all families as one JSON object (``--json``) or as a table.

Adding a family: create ``benchmarks/NAME.py`` with::

    from .registry import benchmark

    @benchmark("NAME", "one line saying what it measures")
    def run(quick: bool) -> dict[str, float]:
        ...
        return {"figure": value, ...}

Modules in this package are discovered automatically. ``quick=True`` must run a tiny smoke variant in a few
seconds (the test suite runs every family that way); it exercises the code, its numbers mean nothing.

Rules for figures (the machines these run on are noisy and shared): every speed *claim* is a ratio of two
sides measured side by side in the same run, interleaved, with medians over repeats — see :func:`median`.
"""
from __future__ import annotations

import importlib
import pkgutil
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["Benchmark", "benchmark", "families", "median"]

Figures = dict[str, float]


@dataclass(frozen=True)
class Benchmark:
    name: str
    doc: str
    fn: Callable[[bool], Figures]


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, doc: str = "") -> Callable[[Callable[[bool], Figures]], Callable[[bool], Figures]]:
    """Register ``fn(quick) -> {figure: number}`` as the benchmark family ``name``."""
    def register(fn: Callable[[bool], Figures]) -> Callable[[bool], Figures]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"benchmark family {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(name, doc or (fn.__doc__ or "").strip().split("\n")[0], fn)
        return fn
    return register


def families() -> dict[str, Benchmark]:
    """All registered families, importing every module of this package first."""
    import benchmarks
    for mod in pkgutil.iter_modules(benchmarks.__path__):
        if not mod.name.startswith("_") and mod.name != "registry":
            importlib.import_module(f"benchmarks.{mod.name}")
    return dict(sorted(_REGISTRY.items()))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
