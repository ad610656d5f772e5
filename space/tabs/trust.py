"""Trust tab: can the Grad-CAM of the current image be trusted? Two checks from the literature.

UI glue only:

* :func:`lib.explain.model_randomisation` — the cascading model-randomisation sanity check (Adebayo et al. 2018):
  re-initialise the network from the head down and compare each new map with the original (Spearman). The maps
  after each step are shown; they are the maps that function computed (recorded through its ``explain`` hook, which
  calls the same :func:`lib.explain.gradcam` as its default), drawn with :func:`lib.explain.overlay`.
* :func:`lib.explain.deletion_insertion` — deletion and insertion curves of the map and of random maps (Petsiuk et
  al. 2018), with their areas, and the probability of the baseline image they start / end at
  (:attr:`lib.explain.PerturbationResult.baseline_probability`).

The verdict comes first, in one sentence (:func:`verdict`); "how to read this" sits beside the curves, with this
image's own numbers (:func:`curves_help`). The checks cost 10–100 forward passes, so a changed input clears the
results and waits for "Run the checks"; opening the tab (or a deep link to it) runs them when nothing is shown for
the current inputs. Link parameters: ``class``, ``steps``, ``seed``.

API: ``/trust`` (image, model, example, class, steps, seed → randomisation rows, table, step maps, deletion /
insertion curves, AUC table, verdict).
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch

from lib.explain import deletion_insertion, gradcam, model_randomisation, overlay, prepare
from lib.models import get_config, predict_proba

from ..context import AppContext, TabSpec, image_inputs, load_image
from ..errors import ui_errors
from ..fair_queue import expensive_when
from ..links import LinkParams, link_pending
from ..snippets import code_box, header, image_path, model_lines

__all__ = ["build", "run_trust", "PREDICTED", "RHO_PASS", "STEPS", "verdict", "curves_help", "snippet",
           "PRESS_RUN"]

PREDICTED = "predicted class"
#: The randomisation check counts as passed when ρ (the map vs the original model's map) falls below this at some
#: step: the ranking of the map's pixels has then largely changed with the weights.
RHO_PASS = 0.5
#: Deletion / insertion steps: (smallest, largest, default).
STEPS = (4, 100, 32)
MAX_SEED = 2**31 - 1
#: Shown instead of results that belonged to other inputs (the checks are too slow to rerun on every change).
PRESS_RUN = ("The inputs changed: press **Run the checks** to see whether the Grad-CAM of this image can be trusted "
             "(a few seconds; longer for a ResNet).")

RANDOMISATION_HELP = f"""**How to read the randomisation check.** The network's blocks are replaced by random
weights, from the head down, one more at each step (cumulative), and the Grad-CAM is recomputed (maps on the right,
each on its own colour scale). A map that explains the *model* must change: its rank correlation ρ with the original
map falls towards 0 (a negative ρ, a flipped ranking, is a change too).
**Passing** (here: ρ below {RHO_PASS} at some step): the map depends on what the network learned.
**Failing**: ρ stays high while the weights are noise — the map shows the image (edges, contrast), not the model,
and should not be used as an explanation. Neither check says the model is *right*."""


def verdict(label: str, rows: list[dict], summary: dict[str, float]) -> str:
    """Both checks in one sentence, e.g. "Grad-CAM for PNEUMONIA passes the randomisation check (ρ falls to 0.12)
    and beats random maps on deletion but not insertion."."""
    later = [r for r in rows if r["step"] > 0]
    if later:
        low = min(later, key=lambda r: r["spearman"])
        if low["spearman"] < RHO_PASS:
            first = (f"passes the randomisation check (ρ falls to {low['spearman']:.2f} after randomising "
                     f"{low['layer']})")
        else:
            first = f"fails the randomisation check (ρ stays at {low['spearman']:.2f} or above)"
    else:
        first = "has no randomisation check (the model has no blocks to randomise)"
    beats = {mode: _beats(mode, summary) for mode in ("deletion", "insertion")}
    if None in beats.values():
        second = "has no random maps to compare with"
    elif all(beats.values()):
        second = "beats random maps on deletion and insertion"
    elif beats["deletion"]:
        second = "beats random maps on deletion but not insertion"
    elif beats["insertion"]:
        second = "beats random maps on insertion but not deletion"
    else:
        second = "does not beat random maps on deletion or insertion"
    return f"Grad-CAM for {label} {first} and {second}."


def _beats(mode: str, summary: dict[str, float]) -> bool | None:
    rnd = summary.get(f"random_{mode}_auc")
    if rnd is None:
        return None
    return summary[f"{mode}_auc"] < rnd if mode == "deletion" else summary[f"{mode}_auc"] > rnd


def _auc_verdict(mode: str, summary: dict[str, float]) -> str:
    beats = _beats(mode, summary)
    return "—" if beats is None else "better than random" if beats else "NOT better than random"


def curves_help(data: dict) -> str:
    """"How to read this" for the deletion / insertion curves, with this image's numbers: the probability of the
    intact image and of the baseline (the flat mean-grey image insertion starts from and deletion ends at)."""
    label, p_img, p_base = data["label"], data["probability"], data["baseline_probability"]
    if p_base >= 0.5:
        base = (f"This model finds a flat grey image **{label}-like**: a baseline is not neutral. So insertion can "
                f"start near {p_base:.2f} and deletion climb back to it at the end, whatever the map.")
    else:
        base = (f"It is far from {label}, so insertion starts low and deletion ends low, as in the textbook picture. "
                "Another baseline (a blur, black) would give other curves: a baseline is never neutral.")
    return "\n".join([
        "**How to read the curves.**",
        "",
        "*Deletion* (left): the image's pixels are replaced by its mean grey, most important first (by the map). "
        "*Insertion* (right): start from that flat mean-grey image and put the pixels back in the same order.",
        "",
        f"**The baseline** — the flat mean-grey image — gets **P({label}) = {p_base:.3f}**; the intact image "
        f"{p_img:.3f}. {base}",
        "",
        "Half-replaced images look like no X-ray, so the curves may swing in between: compare the Grad-CAM curve "
        "with the random maps' curve, not with an ideal shape.",
        "",
        "**A good explanation**: its deletion curve falls below the random one early (smaller area) and its "
        "insertion curve rises above it early (larger area). **A useless one** follows the random curve, or does "
        "worse.",
    ])


def _resolve_class(model: torch.nn.Module, grey: torch.Tensor, target: str | None) -> tuple[int, float]:
    """(class index to explain, P(class 1) of the image)."""
    cfg = get_config(model)
    labels = list(cfg.get("labels") or ["0", "1"])
    p1 = float(predict_proba(model, grey)[0])
    if not target or target == PREDICTED:
        return (1 if p1 >= float(cfg.get("threshold", 0.5) or 0.5) else 0), p1
    if target in labels:
        return labels.index(target), p1
    raise gr.Error(f"class must be {PREDICTED!r} or one of {labels}, got {target!r}")


def run_trust(ctx: AppContext, image: Any, model_name: str | None, example_id: str | None,
              target: str | None = PREDICTED, steps: int = STEPS[2], seed: int = 0, progress: Any = None) -> tuple:
    """Both checks for one image; see :func:`build` for the outputs."""
    step = progress or (lambda *a, **k: None)
    step(0.02, desc="loading")
    m = ctx.model(model_name)
    cfg = get_config(m)
    labels = list(cfg.get("labels") or ["0", "1"])
    small, _ = load_image(ctx, image, example_id, m, original=False)
    grey = torch.from_numpy(np.ascontiguousarray(small))[None, None]
    c, p1 = _resolve_class(m, grey, target)
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
        # ρ first: a gallery caption is cut at the tile's width, and the number is what the step is about
        what = "original" if r["step"] == 0 else f"{r['layer']} random"
        gallery.append((overlay(small, maps[0, 0].numpy()), f"ρ {r['spearman']:.2f} · {what}"))

    step(0.5, desc="deletion and insertion curves")
    res = deletion_insertion(m, x, classes=[c], steps=steps, seed=seed)
    curves = {}
    for mode in ("deletion", "insertion"):
        frames = [pd.DataFrame({"fraction of pixels": res.x, "probability": res.curves[mode][0],
                                "map": CURVES[0]})]
        if mode in res.random_curves:
            frames.append(pd.DataFrame({"fraction of pixels": res.x, "probability": res.random_curves[mode][0],
                                        "map": CURVES[1]}))
        curves[mode] = pd.concat(frames, ignore_index=True)
    summary = res.summary()
    auc_table = [[mode, round(summary[f"{mode}_auc"], 4), round(summary.get(f"random_{mode}_auc", float("nan")), 4),
                  _auc_verdict(mode, summary)] for mode in ("deletion", "insertion")]
    randomisation = [{k: r[k] for k in ("step", "layer", "spearman")} for r in rows]
    chosen = "the predicted class" if not target or target == PREDICTED else "as chosen"
    head = (f"**{verdict(labels[c], randomisation, summary)}**\n\n"
            f"Explained class {labels[c]} ({chosen}; P({labels[1]}) = {p1:.3f}) · {steps} steps · seed {seed}.")
    step(1.0, desc="done")
    data = {"class": c, "label": labels[c], "target": target or PREDICTED, "steps": steps, "seed": seed,
            "inputs": _inputs_id(image, model_name, example_id, target, steps, seed),
            "randomisation": randomisation, "deletion_insertion": summary,
            "probability": float(res.curves["deletion"][0][0]),
            "baseline_probability": float(res.baseline_probability[0])}
    return data, table, gallery, curves["deletion"], curves["insertion"], auc_table, head


def snippet(ctx: AppContext, upload: Any, model_name: str | None, example: str | None, cls: int, steps: int,
            seed: int, label: str | None = None, predicted: bool = False) -> str:
    """The code behind the view: leaves ``rows`` (the randomisation table: step, layer, spearman), ``summary``
    (deletion / insertion areas of the map and of the random maps) and ``baseline_p`` for class ``cls``."""
    load = model_lines(ctx, model_name)
    why = "the predicted class at the model's threshold" if predicted else "the class chosen in the app"
    lines = header("Trust: the randomisation check and the deletion / insertion curves") + [
        "import torch",
        "",
        "from lib.data import load_grey",
        "from lib.explain import deletion_insertion, model_randomisation, prepare",
        "from lib.models import get_config, load_model",
        "",
        *load[2:],
        f"path = {image_path(ctx, upload, example)}",
        'grey = load_grey(path, get_config(model)["img_size"])  # uint8, decoded and resized as the app does',
        "x = prepare(model, torch.from_numpy(grey)[None, None])",
        f"c = {int(cls)}  # {label + ': ' if label else ''}{why}",
        f"randomised = model_randomisation(model, x, classes=[c], seed={int(seed)})  # Grad-CAM after each step",
        'rows = [{k: r[k] for k in ("step", "layer", "spearman")} for r in randomised]',
        f"res = deletion_insertion(model, x, classes=[c], steps={int(steps)}, seed={int(seed)})",
        "summary = res.summary()  # areas: the map's and the random maps'",
        "baseline_p = float(res.baseline_probability[0])  # P(class c) of the flat mean-grey image",
    ]
    return "\n".join(lines) + "\n"


#: The curves' legend: the Grad-CAM map and the mean of the random maps.
CURVES = ("Grad-CAM", "random (mean of 3)")


def _no_curves() -> pd.DataFrame:
    """A curve frame without points (NaN), with both legend entries: what a plot shows between two results."""
    return pd.DataFrame({"fraction of pixels": [np.nan] * 2, "probability": [np.nan] * 2, "map": list(CURVES)})


def _key(image: Any, model: str | None, example: str | None, cls: str | None, steps: Any, seed: Any) -> str:
    """What the shown results were computed from (a changed input clears them; opening the tab skips a rerun)."""
    try:
        steps, seed = int(steps), int(seed or 0)
    except (TypeError, ValueError):
        pass
    return json.dumps([str(image or ""), model or "", example or "", cls or PREDICTED, steps, seed], default=str)


def _inputs_id(*inputs: Any) -> str:
    """A short digest of :func:`_key` (it holds an upload's server path, which the public result must not show)."""
    return hashlib.sha256(_key(*inputs).encode()).hexdigest()[:16]


def build(ctx: AppContext) -> TabSpec:
    """The Trust tab (call inside ``with gr.Tab("Trust"):``)."""
    with gr.Row():
        with gr.Column(scale=1):
            inp = image_inputs(ctx)
        with gr.Column(scale=1):
            target = gr.Radio(choices=[PREDICTED, *ctx.labels()], value=PREDICTED, label="Explained class")
            steps = gr.Slider(STEPS[0], STEPS[1], value=STEPS[2], step=1, label="Deletion/insertion steps")
            seed = gr.Number(value=0, precision=0, label="Seed (randomisation and random maps)")
            go = gr.Button("Run the checks", variant="primary")
    # every event that reads the steps (the button, opening the tab, a deep link) is an expensive one
    expensive_when(steps, range(STEPS[0], STEPS[1] + 1))
    summary = gr.Markdown("Opening this tab runs the checks for the image on the left; **Run the checks** reruns "
                          "them after a change.", elem_id="trust-verdict")
    data = gr.JSON(label="Numbers", visible=False)
    shown_key = gr.State(None)  # the inputs the results on screen belong to
    opened = gr.State(False)  # the tab has run once (a deep link's first "open" waits for the link's parameters)
    with gr.Row():
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=["step", "randomised block", "Spearman ρ vs original"],
                                 label="Model-randomisation sanity check", interactive=False)
            gr.Markdown(RANDOMISATION_HELP)
        maps = gr.Gallery(label="Grad-CAM after each randomisation step", columns=3, height=360, format="png",
                          allow_preview=True, scale=3)
    with gr.Row(equal_height=False):
        deletion = gr.LinePlot(x="fraction of pixels", y="probability", color="map", title="Deletion",
                               y_lim=[0, 1], height=300, scale=2)
        insertion = gr.LinePlot(x="fraction of pixels", y="probability", color="map", title="Insertion",
                                y_lim=[0, 1], height=300, scale=2)
        with gr.Column(scale=2, min_width=300):
            curves_text = gr.Markdown()
    aucs = gr.Dataframe(headers=["curve", "Grad-CAM AUC", "random AUC", "verdict"], label="Areas under the curves",
                        interactive=False)
    code = code_box()

    @ui_errors
    def run(image: Any, model_name: str | None, example_id: str | None, cls: str | None, n_steps: float,
            s: float, progress: gr.Progress = gr.Progress()) -> tuple:
        return run_trust(ctx, image, model_name, example_id, cls, int(n_steps), int(s or 0), progress)

    @ui_errors
    def finish(result: dict | None, image: Any, model_name: str | None, example_id: str | None, cls: str | None,
               n_steps: float, s: float) -> tuple:
        """After a run: the curves' "how to read" with its numbers, the code, what the results belong to, and that
        the tab has shown results — or, when an input changed while the checks ran, the results go (stale)."""
        if not result:
            return [gr.skip()] * 11
        if result.get("inputs") != _inputs_id(image, model_name, example_id, cls, n_steps, s):
            return clear()
        code_text = snippet(ctx, image, model_name, example_id, result["class"], result["steps"], result["seed"],
                            result["label"], predicted=result["target"] == PREDICTED)
        key = _key(image, model_name, example_id, cls, n_steps, s)
        return (*[gr.skip()] * 7, curves_help(result), code_text, key, True)

    def open_run(image: Any, model_name: str | None, example_id: str | None, cls: str | None, n_steps: float,
                 s: float, key: str | None, opened: bool, request: gr.Request = None,
                 progress: gr.Progress = gr.Progress()):
        """Opening the tab: run the checks unless the results shown already belong to these inputs."""
        skip = [gr.skip()] * 12
        if (not image and not example_id) or key == _key(image, model_name, example_id, cls, n_steps, s):
            return skip
        if link_pending(request, "trust", opened):
            return skip
        # the results, then `check` changes: `finish` fills the rest, or clears them if an input changed meanwhile
        return [*run(image, model_name, example_id, cls, n_steps, s, progress), *skip[:4], time.monotonic()]

    def clear():
        # the curves get a frame without points, not None: a LinePlot emptied by None after a tab switch breaks the
        # page's resize code, and one given an empty frame draws nothing afterwards (Gradio 6.31)
        return None, None, None, _no_curves(), _no_curves(), None, PRESS_RUN, "", "", None, gr.skip()

    def class_choices(model_name: str | None, current: str | None) -> gr.Radio:
        # another model may name its classes differently: the choice goes back to the predicted class only when
        # the current one is not a class of the new model (a deep link's class, set meanwhile, is kept)
        choices = [PREDICTED, *ctx.labels(model_name)]
        return gr.Radio(choices=choices) if current in choices else gr.Radio(choices=choices, value=PREDICTED)

    def from_link(q: dict) -> tuple:
        p = LinkParams(q, "trust")
        name = q.get("model") if q.get("model") in ctx.catalog.names() else None
        choices = [PREDICTED, *ctx.labels(name)]
        cls = (gr.Radio(choices=choices, value=p.choice("class", choices, default=PREDICTED,
                                                         aliases={"predicted": PREDICTED}))
               if p.has("class") else gr.skip())
        n = p.integer("steps", STEPS[0], STEPS[1], default=STEPS[2]) if p.has("steps") else gr.skip()
        s = p.integer("seed", 0, MAX_SEED, default=0) if p.has("seed") else gr.skip()
        p.warn()
        return cls, n, s

    inputs = [inp.upload, inp.model, inp.example, target, steps, seed]
    outputs = [data, table, maps, deletion, insertion, aucs, summary]
    after = [curves_text, code, shown_key, opened]
    # set by the "open" step when its results arrive (a component the page holds, so that its change fires)
    check = gr.Number(None, visible="hidden", label="trust results arrived", interactive=False)
    go.click(run, inputs, outputs, api_name="trust", concurrency_id="expensive", concurrency_limit=1) \
        .success(finish, [data, *inputs], [*outputs, *after], api_visibility="private", queue=False)
    check.change(finish, [data, *inputs], [*outputs, *after], api_visibility="private", queue=False)
    inp.model.change(class_choices, [inp.model, target], target, api_visibility="private", queue=False)
    # Any changed input: the results of the old ones go at once, and the page says to run the checks again.
    cleared = [*outputs, *after]
    inp.picked.then(clear, None, cleared, api_visibility="private", queue=False)
    for component in (inp.model, target, steps, seed):
        component.change(clear, None, cleared, api_visibility="private", queue=False)
    inp.upload.upload(clear, None, cleared, api_visibility="private", queue=False)
    inp.upload.clear(clear, None, cleared, api_visibility="private", queue=False)
    return TabSpec(model=inp.model, example=inp.example,
                   on_open=(open_run, [*inputs, shown_key, opened], [*outputs, *after, check]),
                   on_link=(from_link, [target, steps, seed]),
                   link_extras=[("class", target), ("steps", steps), ("seed", seed)], result_id="trust-verdict")
