"""Benchmark family ``explain``: what an explanation costs, as multiples of one plain forward pass.

Figures (every speed claim is a ratio of two sides measured side by side in this run, interleaved in rotating
order, median over repeats of the per-repeat ratio; absolute milliseconds are context only — they depend on the
machine and its load):

``gradcam_<model>_*`` — one 224 × 224 image, heat maps for **both** classes, for ``pneumonia_cnn`` (two logits)
and ``resnet18_scratch`` (one logit), randomly initialised (speed does not depend on the weights), in eval mode,
at the model's default Grad-CAM layer.

* *forward*: ``model(x)`` under ``torch.no_grad()`` — the floor.
* *ours*: :func:`lib.explain.gradcam` (the one-pass path: for these two models the CAM identity, so one forward
  pass without autograd plus a weighted sum and a bilinear upsample).
* *captum*: Captum ``LayerGradCam(...).attribute(x, target=c, relu_attributions=True)`` +
  ``LayerAttribution.interpolate(..., "bilinear")``, once per class (for the one-logit model, class 0 through the
  negated model — the same cost).
* *pgc*: pytorch-grad-cam ``GradCAM`` (constructed in a ``with`` block, as its README does), called once per class.
* *reference*: :func:`lib.explain.gradcam_reference` — the seven steps with one backward pass per class.

``gradcam_<model>_ours_over_forward`` (goal ≤ 1.15), ``…_captum_over_ours``, ``…_pgc_over_ours``,
``…_reference_over_forward``, and ``…_<side>_ms`` (median per call).

``--quick``: 64 px, 1 repeat, no warm-up — a smoke test; its numbers mean nothing.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from .registry import benchmark, median

MODELS = ("pneumonia_cnn", "resnet18_scratch")


def _timed(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _sides(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from lib.explain import gradcam, gradcam_reference
    from lib.models import get_config, get_layer

    cfg = get_config(model)
    layer = get_layer(model, cfg["target_layer"])
    one_logit = cfg["num_classes"] == 1
    size = tuple(x.shape[-2:])
    negated = lambda t: -model(t)  # noqa: E731  (class 0 of a one-logit model: the map of −logit)
    captum = [(LayerGradCam(negated if one_logit and c == 0 else model, layer), 0 if one_logit else c)
              for c in (0, 1)]
    targets = [[(lambda out: -out[0]) if one_logit and c == 0 else ClassifierOutputTarget(0 if one_logit else c)]
               for c in (0, 1)]

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def run_captum() -> object:
        return [LayerAttribution.interpolate(lgc.attribute(x, target=t, relu_attributions=True), size, "bilinear")
                for lgc, t in captum]

    def run_pgc() -> object:
        with GradCAM(model=model, target_layers=[layer]) as cam:
            return [cam(input_tensor=x, targets=t) for t in targets]

    return {"forward": forward, "ours": lambda: gradcam(model, x), "captum": run_captum, "pgc": run_pgc,
            "reference": lambda: gradcam_reference(model, x)}


def gradcam_figures(quick: bool, repeats: int | None = None) -> dict[str, float]:
    """The ``gradcam_*`` figures (see the module docstring); ``repeats`` overrides the default (11; quick: 1)."""
    from lib.models import create_model, get_config

    size, default_repeats, inner = (64, 1, 1) if quick else (224, 11, 2)
    repeats = repeats or default_repeats     # quick: 1 repeat; the call below doubles as the warm-up
    figures: dict[str, float] = {"gradcam_img_size": size, "gradcam_repeats": repeats,
                                 "threads": torch.get_num_threads()}
    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, img_size=size).eval()
        x = torch.randn(1, get_config(model)["in_chans"], size, size)
        sides = _sides(model, x)
        for fn in sides.values():       # warm-up: first-call allocations, lazy imports
            if not quick:
                fn()
        times: dict[str, list[float]] = {k: [] for k in sides}
        order = list(sides)
        for r in range(repeats):
            for k in order[r % len(order):] + order[:r % len(order)]:     # rotate who goes first
                times[k].append(_timed(sides[k], inner))
        ratio = lambda a, b: median([ta / tb for ta, tb in zip(times[a], times[b])])  # noqa: E731
        figures.update({
            f"gradcam_{name}_ours_over_forward": ratio("ours", "forward"),
            f"gradcam_{name}_captum_over_ours": ratio("captum", "ours"),
            f"gradcam_{name}_pgc_over_ours": ratio("pgc", "ours"),
            f"gradcam_{name}_reference_over_forward": ratio("reference", "forward"),
            f"gradcam_{name}_captum_over_forward": ratio("captum", "forward"),
            f"gradcam_{name}_pgc_over_forward": ratio("pgc", "forward"),
            **{f"gradcam_{name}_{k}_ms": 1000 * median(v) for k, v in times.items()},
        })
    return figures


@benchmark("explain", "Grad-CAM, both classes, one image: ours vs one forward pass, Captum, pytorch-grad-cam")
def run(quick: bool) -> dict[str, float]:
    """All figures of the ``explain`` family."""
    return gradcam_figures(quick)
