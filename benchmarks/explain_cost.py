"""Benchmark family ``explain_cost``: the expensive explanations, per image, as multiples of one forward pass,
with their internal passes batched (after) and one at a time (before).

One 224 × 224 test image (the first PNEUMONIA image of ``../shared/data/chest_xray/test``; random pixels without
the data), ``pneumonia_cnn`` — the bundled trained weights from ``models/pneumonia_cnn`` when they exist, random
ones otherwise (cost does not depend on the weights). Target: class 1 (PNEUMONIA), one map.

Sides (each a function call, timed on the same image in the same run, interleaved in rotating order; figures are
medians over repeats of per-repeat ratios; absolute milliseconds are context only):

* *forward*: ``model(x)`` under ``torch.no_grad()`` for the one image — the unit.
* ``ig50``: :func:`lib.explain.attribute` ``method="integrated_gradients", n_steps=50``, internal passes of
  ``internal_batch_size`` path points.
* ``smoothgrad25``: ``method="smoothgrad", nt_samples=25``, passes of ``nt_samples_batch_size`` noisy copies.
* ``occlusion``: ``method="occlusion"`` with the wrapper's window (28 px, stride 14: 225 window positions), passes
  of ``perturbations_per_eval`` occluded copies.
* ``deletion50``: :func:`lib.explain.trust.perturbation_curves`, 50 steps of the Grad-CAM map (computed once,
  outside the timing), passes of ``batch_size`` perturbed images (``batched=False`` for one at a time). The two
  ends of the curve (intact, all-baseline) are computed once either way.
* each of these three ways: ``unbatched`` = 1 image per internal pass (before), ``b8`` = 8, ``full`` = all in
  one pass (50, 25, 64 — the attribution wrapper's default for occlusion —, 51).
* ``sanity``: :func:`lib.explain.trust.model_randomisation` with Grad-CAM over the 4 blocks (5 maps, each after a
  re-initialisation of a deep copy). Nothing to batch (every step is a different model): cost only.

Figures: ``<method>_<unbatched|b8|full>_x_forward``; the before/after ratios ``<method>_b8_speedup`` and
``<method>_full_speedup`` (= unbatched time / batched time; > 1 means batching pays); ``<method>_batching_speedup``
= the same for the library's default on this device (Captum methods: ``full``; deletion: ``b8`` on a CPU —
:data:`lib.explain.core.CPU_BATCH` —, ``full`` otherwise); ``sanity_x_forward``, ``forward_ms``,
``trained_weights`` (1 = the bundled model, 2 = random weights), ``img_size``, ``repeats``, ``threads``.

``--quick``: 64 px, fewer steps/samples/windows, 1 repeat, no warm-up — a smoke test; its numbers mean nothing.
"""
from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from .registry import benchmark, median

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "pneumonia_cnn"
TEST_SPLIT = Path(os.environ.get("XCXR_BENCH_DATA", ROOT.parent / "shared" / "data" / "chest_xray")) / "test"


def _timed(fn: Callable[[], object], inner: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _model_and_image(size: int) -> tuple[torch.nn.Module, torch.Tensor, float]:
    from lib.data import load_grey
    from lib.explain.core import prepare
    from lib.models import create_model, load_model

    trained = size == 224 and (MODEL_DIR / "model.safetensors").is_file()
    if trained:
        model = load_model(MODEL_DIR)
    else:
        torch.manual_seed(0)
        model = create_model("pneumonia_cnn", img_size=size)
    model.eval()
    files = sorted((TEST_SPLIT / "PNEUMONIA").glob("*.jpeg")) if TEST_SPLIT.is_dir() else []
    if files:
        grey = torch.from_numpy(load_grey(str(files[0]), (size, size)).copy()).reshape(1, 1, size, size)
    else:
        grey = torch.randint(0, 256, (1, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return model, prepare(model, grey), 1.0 if trained else 2.0


@benchmark("explain_cost", "IG, SmoothGrad, Occlusion, sanity check, deletion curve per image ÷ one forward; "
                           "batched vs one-at-a-time internal passes")
def run(quick: bool = False) -> dict[str, float]:
    """All figures of the ``explain_cost`` family (see the module docstring)."""
    from lib.explain import attribute, gradcam
    from lib.explain.trust import model_randomisation, perturbation_curves

    size, repeats = (64, 1) if quick else (224, 3)
    ig_steps, sg_samples, del_steps = (8, 4, 8) if quick else (50, 25, 50)
    occlusion = {"sliding_window": 16, "stride": 16} if quick else {}  # quick: 16 windows instead of 225
    model, x, trained = _model_and_image(size)
    cam = gradcam(model, x, classes=[1])[:, 0]

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    ig = dict(method="integrated_gradients", n_steps=ig_steps)
    sg = dict(method="smoothgrad", nt_samples=sg_samples)
    occ = dict(method="occlusion", **occlusion)
    # per method: internal passes one image at a time ("unbatched"), 8 at a time ("b8"), all at once ("full")
    sides: dict[str, Callable[[], object]] = {"forward": forward}
    for tag, n in {"unbatched": 1, "b8": 8, "full": None}.items():
        sides.update({
            f"ig50_{tag}": partial(attribute, model, x, 1, internal_batch_size=n or ig_steps, **ig),
            f"smoothgrad25_{tag}": partial(attribute, model, x, 1, nt_samples_batch_size=n or sg_samples, **sg),
            f"occlusion_{tag}": partial(attribute, model, x, 1, perturbations_per_eval=n or 64, **occ),
            f"deletion50_{tag}": partial(perturbation_curves, model, x, cam, classes=1, steps=del_steps,
                                         batch_size=n or del_steps + 1, batched=n != 1),
        })
    sides["sanity"] = partial(model_randomisation, model, x, classes=[1])
    if not quick:
        for fn in sides.values():  # warm-up: lazy imports, first-call allocations
            fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides)
    for r in range(repeats):
        for k in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            # the forward pass is ~20 ms: average a few calls so timer noise does not dominate the unit
            times[k].append(_timed(sides[k], 5 if k == "forward" else 1))

    def ratio(a: str, b: str) -> float:
        return median([ta / tb for ta, tb in zip(times[a], times[b])])

    figures: dict[str, float] = {"img_size": size, "repeats": repeats, "threads": torch.get_num_threads(),
                                 "trained_weights": trained, "forward_ms": 1000 * median(times["forward"])}
    # the library's defaults on this device (core.CPU_BATCH = 8 on a CPU)
    default = {"ig50": "full", "smoothgrad25": "full", "occlusion": "full",
               "deletion50": "b8" if x.device.type == "cpu" else "full"}
    for method in ("ig50", "smoothgrad25", "occlusion", "deletion50"):
        for tag in ("unbatched", "b8", "full"):
            figures[f"{method}_{tag}_x_forward"] = ratio(f"{method}_{tag}", "forward")
        figures[f"{method}_b8_speedup"] = ratio(f"{method}_unbatched", f"{method}_b8")
        figures[f"{method}_full_speedup"] = ratio(f"{method}_unbatched", f"{method}_full")
        figures[f"{method}_batching_speedup"] = ratio(f"{method}_unbatched", f"{method}_{default[method]}")
    figures["sanity_x_forward"] = ratio("sanity", "forward")
    return figures
