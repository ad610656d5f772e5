"""Trust tab: can the Grad-CAM of the current image be trusted? Two checks from the literature.

UI glue only:

* :func:`lib.explain.model_randomisation` — the cascading model-randomisation sanity check (Adebayo et al. 2018):
  re-initialise the network from the head down and compare each new map with the original (Spearman). The maps
  after each step are shown; they are the maps that function computed (recorded through its ``explain`` hook, which
  calls the same :func:`lib.explain.gradcam` as its default), drawn with :func:`lib.explain.overlay`.
* :func:`lib.explain.deletion_insertion` — deletion and insertion curves of the map and of random maps (Petsiuk et
  al. 2018), with their areas.

API: ``/trust`` (image, model, example, class, steps, seed → randomisation rows, table, step maps, deletion /
insertion curves, AUC table, caption).
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch

from lib.explain import deletion_insertion, gradcam, model_randomisation, overlay, prepare
from lib.models import get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors

__all__ = ["build", "run_trust", "PREDICTED"]

PREDICTED = "predicted class"
CAPTION = """**How to read this.**
*Randomisation sanity check*: the network's layers are replaced by random weights, from the head down, one block
at a time (cumulative), and the Grad-CAM is recomputed. A map that **explains the model** must change: its rank
correlation (Spearman ρ) with the original map should drop towards 0 (or below: a flipped ranking is a change too)
once the head or the last blocks are random.
**Passing**: ρ falls well below 1 after the first steps. **Failing**: ρ stays high while the weights are noise —
then the map mostly shows the image (edges, contrast), not what the model learned, and should not be used as an
explanation. (Maps are drawn each on its own scale; ρ only compares their ranking.)

*Deletion / insertion*: pixels are replaced by the image's mean in the order the map ranks them (deletion), or put
back into a mean-grey image in that order (insertion), and the probability of the explained class is tracked. A map
that points at the evidence makes the probability **fall fast on deletion (small area)** and **rise fast on insertion
(large area)**. **Passing**: deletion AUC below, and insertion AUC above, the random maps' AUC (smooth random blobs,
the baseline any map must beat). **Failing**: no better than random. Neither check says the model is *right* — only
whether the map reflects what the model does."""


def run_trust(ctx: AppContext, image: Any, model_name: str | None, example_id: str | None,
              target: str | None = PREDICTED, steps: int = 32, seed: int = 0, progress: Any = None) -> tuple:
    """Both checks for one image; see :func:`build` for the outputs."""
    step = progress or (lambda *a, **k: None)
    step(0.02, desc="loading")
    m = ctx.model(model_name)
    cfg = get_config(m)
    labels = list(cfg.get("labels") or ["0", "1"])
    small, _ = load_image(ctx, image, example_id, m, original=False)
    grey = torch.from_numpy(np.ascontiguousarray(small))[None, None]
    p1 = float(predict_proba(m, grey)[0])
    if not target or target == PREDICTED:
        c = 1 if p1 >= float(cfg.get("threshold", 0.5) or 0.5) else 0
    elif target in labels:
        c = labels.index(target)
    else:
        raise gr.Error(f"class must be {PREDICTED!r} or one of {labels}, got {target!r}")
    steps, seed = int(steps), int(seed)
    if not 2 <= steps <= 200:
        raise gr.Error(f"steps must be between 2 and 200, got {steps}")
    x = prepare(m, grey)

    step(0.1, desc="randomisation sanity check")
    recorded: list[torch.Tensor] = []

    def recording_gradcam(model: torch.nn.Module, images: torch.Tensor, classes: Any) -> torch.Tensor:
        maps = gradcam(model, images, classes=classes)  # the same call as model_randomisation's default
        recorded.append(maps.detach().cpu())
        return maps

    rows = model_randomisation(m, x, classes=[c], explain=recording_gradcam, seed=seed)
    table = [[r["step"], r["layer"], round(r["spearman"], 4)] for r in rows]
    # recorded[0] is the reference (step 0); then one map per randomisation step
    gallery = []
    for r, maps in zip(rows, recorded):
        what = "original model" if r["step"] == 0 else f"after randomising {r['layer']}"
        gallery.append((overlay(small, maps[0, 0].numpy()), f"{r['step']}: {what} · ρ = {r['spearman']:.2f}"))

    step(0.5, desc="deletion and insertion curves")
    res = deletion_insertion(m, x, classes=[c], steps=steps, seed=seed)
    curves = {}
    for mode in ("deletion", "insertion"):
        frames = [pd.DataFrame({"fraction of pixels": res.x, "probability": res.curves[mode][0],
                                "map": "Grad-CAM"})]
        if mode in res.random_curves:
            frames.append(pd.DataFrame({"fraction of pixels": res.x, "probability": res.random_curves[mode][0],
                                        "map": "random (mean of 3)"}))
        curves[mode] = pd.concat(frames, ignore_index=True)
    summary = res.summary()
    auc_table = [[mode, round(summary[f"{mode}_auc"], 4), round(summary.get(f"random_{mode}_auc", float("nan")), 4),
                  _verdict(mode, summary)] for mode in ("deletion", "insertion")]
    first_random = next((r["spearman"] for r in rows if r["step"] == 1), None)
    head = (f"Explained class **{labels[c]}** (P({labels[1]}) = {p1:.3f}). "
            + (f"After randomising the head ρ = {first_random:.2f}; after all blocks ρ = {rows[-1]['spearman']:.2f}. "
               if first_random is not None else "")
            + f"Deletion AUC {summary['deletion_auc']:.3f} vs random "
            + f"{summary.get('random_deletion_auc', float('nan')):.3f}; "
            + f"insertion AUC {summary['insertion_auc']:.3f} vs random "
            + f"{summary.get('random_insertion_auc', float('nan')):.3f}.\n\n")
    step(1.0, desc="done")
    data = {"class": c, "randomisation": [{k: r[k] for k in ("step", "layer", "spearman")} for r in rows],
            "deletion_insertion": summary}
    return data, table, gallery, curves["deletion"], curves["insertion"], auc_table, head + CAPTION


def _verdict(mode: str, summary: dict[str, float]) -> str:
    rnd = summary.get(f"random_{mode}_auc")
    if rnd is None:
        return "—"
    better = summary[f"{mode}_auc"] < rnd if mode == "deletion" else summary[f"{mode}_auc"] > rnd
    return "better than random" if better else "NOT better than random"


def build(ctx: AppContext) -> TabSpec:
    """The Trust tab (call inside ``with gr.Tab("Trust"):``)."""
    with gr.Row():
        with gr.Column(scale=1):
            inp = image_inputs(ctx)
        with gr.Column(scale=1):
            target = gr.Radio(choices=[PREDICTED, *ctx.labels()], value=PREDICTED, label="Explained class")
            steps = gr.Slider(4, 100, value=32, step=1, label="Deletion/insertion steps")
            seed = gr.Number(value=0, precision=0, label="Seed (randomisation and random maps)")
            go = gr.Button("Run the checks", variant="primary")
    summary = gr.Markdown()
    data = gr.JSON(label="Numbers", visible=False)
    with gr.Row():
        table = gr.Dataframe(headers=["step", "randomised block", "Spearman ρ vs original"],
                             label="Model-randomisation sanity check", interactive=False)
        maps = gr.Gallery(label="Grad-CAM after each randomisation step", columns=5, height=300, format="png",
                          allow_preview=True)
    with gr.Row():
        deletion = gr.LinePlot(x="fraction of pixels", y="probability", color="map", title="Deletion",
                               y_lim=[0, 1], height=260)
        insertion = gr.LinePlot(x="fraction of pixels", y="probability", color="map", title="Insertion",
                                y_lim=[0, 1], height=260)
    aucs = gr.Dataframe(headers=["curve", "Grad-CAM AUC", "random AUC", "verdict"], label="Areas under the curves",
                        interactive=False)

    @ui_errors
    def run(image: Any, model_name: str | None, example_id: str | None, cls: str | None, n_steps: float,
            s: float, progress: gr.Progress = gr.Progress()) -> tuple:
        return run_trust(ctx, image, model_name, example_id, cls, int(n_steps), int(s or 0), progress)

    go.click(run, [inp.upload, inp.model, inp.example, target, steps, seed],
             [data, table, maps, deletion, insertion, aucs, summary], api_name="trust",
             concurrency_id="expensive", concurrency_limit=1)

    def class_choices(model_name: str | None) -> gr.Radio:
        # another model may name its classes differently; the choice goes back to the predicted class
        return gr.Radio(choices=[PREDICTED, *ctx.labels(model_name)], value=PREDICTED)

    inp.model.change(class_choices, inp.model, target, api_visibility="private", queue=False)
    return TabSpec(model=inp.model, example=inp.example)
