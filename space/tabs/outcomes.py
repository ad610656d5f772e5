"""Outcomes tab: TP / TN / FP / FN galleries of a model on a data split at a decision threshold.

UI glue only: the probabilities come from :func:`lib.explain.predict_split` (one pass per model and split, cached
in memory by content), the four lists from :func:`lib.explain.outcomes`, the presets from
:func:`lib.explain.threshold_presets` and the heatmaps from :func:`lib.explain.gradcam` + :func:`lib.explain.overlay`.

Data: the ``val``/``test`` split folders of ``../shared/data/chest_xray`` (or ``$XCXR_DATA_ROOT``) when present,
else the bundled ``examples/chest_xray_test`` (so a fresh offline clone works). Presets are computed on the
validation split when there is one and applied to the chosen split; otherwise on the chosen split itself (then
they are optimistic, and the tab says so).

API: ``/outcomes`` (model, split, threshold → counts, TP, TN, FP, FN galleries, note), ``/outcome_presets``
(model, split, preset → threshold, note), ``/outcome_heatmaps`` (model, split, threshold, outcome, rank →
heatmaps). Deep links: ``?tab=outcomes&model=…&split=test&outcome=FP&index=3[&threshold=0.5]`` — handled by a
``load`` event registered here, and by :func:`open_outcome` for the core.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import contextlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from lib.data import load_split
from lib.data.datasets import cache_dir
from lib.explain import gradcam, outcomes, overlay, predict_split, prepare, threshold_presets
from lib.explain.outcomes import OUTCOMES
from lib.models import get_config

from space.context import AppContext, model_choice, ui_errors

__all__ = ["build", "open_outcome", "compute_outcomes", "data_choices", "load_data", "get_model",
           "presets_for", "initial_threshold", "predict", "warm_up", "GALLERY_SIZE", "PRESET_LABELS"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "examples" / "chest_xray_test"
#: Examples shown per outcome gallery (the most confident first); the counts are always complete.
GALLERY_SIZE = 24
THUMB = 160
PRESET_LABELS = {"0.5": "0.5", "f1": "F1", "gmean": "G-mean", "youden": "Youden", "model": "model's own"}
_NULL = contextlib.nullcontext()
OUTCOME_NAMES = {"TP": "true positives", "TN": "true negatives", "FP": "false positives", "FN": "false negatives"}


# --- shared glue (also used by the report and trust tabs) ----------------------------------------------------

def data_root() -> Path:
    """The course data folder with split sub-folders (``$XCXR_DATA_ROOT`` or ``../shared/data/chest_xray``)."""
    env = os.environ.get("XCXR_DATA_ROOT")
    return Path(env) if env else (REPO.parent / "shared" / "data" / "chest_xray")


def data_choices() -> list[tuple[str, str]]:
    """``(label, value)`` pairs for the split dropdown: test/val of the course data when present, bundled always."""
    root = data_root()
    out = [(f"{s} split ({root.name})", s) for s in ("test", "val") if (root / s).is_dir()]
    out.append((f"bundled examples ({sum(1 for _ in BUNDLED.glob('*/*'))} test images)", "examples"))
    return out


def default_split() -> str:
    return data_choices()[0][1]


_DATA: "OrderedDict[tuple[str, int], Any]" = OrderedDict()
_DATA_LOCK = threading.Lock()


def load_data(split: str, img_size: int) -> Any:
    """The :class:`lib.data.ImageSet` of ``split`` (``"test"``, ``"val"`` or ``"examples"``), kept in memory."""
    key = (split, int(img_size))
    with _DATA_LOCK:
        if key in _DATA:
            _DATA.move_to_end(key)
            return _DATA[key]
    if split == "examples":
        ds = load_split(BUNDLED, None, img_size, progress=False)
    elif split in ("test", "val") and (data_root() / split).is_dir():
        ds = load_split(data_root(), split, img_size, progress=False)
    else:
        raise gr.Error(f"unknown data split {split!r}; choose one of {[v for _, v in data_choices()]}")
    with _DATA_LOCK:
        _DATA[key] = ds
        while len(_DATA) > 6:
            _DATA.popitem(last=False)
    return ds


def predict(model: Any, ds: Any) -> Any:
    """:func:`lib.explain.predict_split`, cached in memory and on disk (next to the decoded-image cache), so a
    restarted app does not run the model over a split again."""
    return predict_split(model, ds, cache_dir=cache_dir().parent / "predictions")


def warm_up(ctx: AppContext, split: str | None = None) -> None:
    """Run the default model over ``split`` (default: the first split offered) once, so the Outcomes and Model
    report tabs answer at once. The core may call this in a background thread at start."""
    m = ctx.model(None)
    predict(m, load_data(split or default_split(), int(get_config(m)["img_size"])))


def initial_threshold(ctx: AppContext) -> float:
    """The default model's own threshold (its config, chosen on its validation split), else 0.5."""
    try:
        t = get_config(ctx.model(None)).get("threshold")
    except Exception:  # noqa: BLE001 - no model loads: the tab still builds; running it shows the reason
        return 0.5
    return float(t) if isinstance(t, (int, float)) and 0 <= t <= 1 else 0.5


def get_model(ctx: AppContext, name: str | None) -> Any:
    """The catalog model ``name`` (the default when empty); ``gr.Error`` with the reason when unavailable."""
    return ctx.model(name)


def _validation(split: str) -> str | None:
    """The split presets are computed on: ``val`` when present, else ``None`` (= the chosen split itself)."""
    return "val" if (data_root() / "val").is_dir() else None


def presets_for(model: Any, split: str) -> tuple[dict[str, float], str]:
    """``threshold_presets`` on the validation split (or ``split`` itself) and a sentence saying which."""
    size = int(get_config(model)["img_size"])
    val = _validation(split)
    pred = predict(model, load_data(val or split, size))
    presets = threshold_presets(pred)
    if val and val != split:
        note = f"Presets chosen on the **{val}** split and applied to **{split}** (no tuning on the data shown)."
    elif val == split:
        note = f"Presets chosen on the **{val}** split itself, which is also the split shown: optimistic."
    else:
        note = (f"No validation split here: presets chosen on **{split}** itself, the split shown — optimistic "
                "(on the course data they come from the val split).")
    return presets, note


# --- outcomes ------------------------------------------------------------------------------------------------

_THUMBS: dict[tuple[str, int], str] = {}
_THUMB_DIR = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "xcxr_outcome_thumbs"


def _thumb(ds: Any, index: int) -> str:
    """A small PNG of image ``index`` (rendered once per image, kept on disk)."""
    key = (ds.paths[index], int(ds.images.shape[-1]))
    path = _THUMBS.get(key)
    if path is None or not os.path.exists(path):
        _THUMB_DIR.mkdir(parents=True, exist_ok=True)
        digest = hashlib.blake2b(f"{key}".encode(), digest_size=10).hexdigest()
        path = str(_THUMB_DIR / f"{digest}.png")
        if not os.path.exists(path):
            img = Image.fromarray(ds.images[index, 0].numpy()).resize((THUMB, THUMB), Image.BILINEAR)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            img.save(tmp, format="PNG")
            os.replace(tmp, path)
        _THUMBS[key] = path
    return path


def compute_outcomes(model: Any, split: str, threshold: float) -> tuple[Any, Any, Any]:
    """``(dataset, predictions, outcomes)`` — the one cached pass, then the threshold."""
    ds = load_data(split, int(get_config(model)["img_size"]))
    pred = predict(model, ds)
    return ds, pred, outcomes(pred, float(threshold))


def _default_threshold(pred: Any) -> float:
    return float(pred.model_threshold) if pred.model_threshold is not None else 0.5


def _gallery(ds: Any, pred: Any, res: Any, name: str) -> list[tuple[str, str]]:
    pos = pred.classes[1] if len(pred.classes) > 1 else "positive"
    return [(_thumb(ds, i), f"#{r + 1} · P({pos.lower()}) = {pred.probability[i]:.3f}")
            for r, i in enumerate(res[name][:GALLERY_SIZE])]


def _heatmaps(model: Any, ds: Any, pred: Any, res: Any, outcome: str, rank: int, ctx: Any = None
              ) -> tuple[Any, Any, str]:
    """Grad-CAM of both classes for the ``rank``-th (1-based) example of ``outcome``, on one shared colour scale."""
    outcome = str(outcome).upper()
    if outcome not in OUTCOMES:
        raise gr.Error(f"outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
    items = res[outcome]
    if not items:
        raise gr.Error(f"there are no {OUTCOME_NAMES[outcome]} at threshold {res.threshold:.3f}")
    if not 1 <= int(rank) <= len(items):
        raise gr.Error(f"index must be between 1 and {len(items)} for {outcome} at threshold {res.threshold:.3f}, "
                       f"got {rank}")
    i = items[int(rank) - 1]
    grey = ds.images[i:i + 1]
    with (ctx.model_lock(model) if ctx is not None else _NULL):  # hooks on a shared model must not interleave
        maps = gradcam(model, prepare(model, grey))[0].cpu().numpy()  # (2, H, W): both classes, ReLU, bilinear
    vmax = float(maps.max()) if maps.max() > 0 else 1.0
    labels = list(get_config(model).get("labels") or pred.classes)
    imgs = [overlay(grey[0, 0].numpy(), maps[c], vmin=0.0, vmax=vmax) for c in range(maps.shape[0])]
    caption = (f"**{outcome} #{rank}** of {len(items)} — `{Path(pred.path[i]).name}`, true label "
               f"**{pred.classes[int(pred.label[i])]}**, P({pred.classes[1].lower()}) = {pred.probability[i]:.3f} "
               f"at threshold {res.threshold:.3f}. Grad-CAM of each class's **logit** (ReLU, bilinear), both maps on "
               f"one colour scale (0 … {vmax:.3g}) so their strength can be compared. Red = the regions whose "
               "activation raised that class's score; it does not say *why*, nor that the model is right.")
    return imgs[0], imgs[1] if len(imgs) > 1 else None, caption


def open_outcome(model: Any, split: str, outcome: str, index: int, threshold: float | None = None,
                 ctx: Any = None) -> tuple[Any, Any, str]:
    """The heatmaps (both classes) and a caption of example ``index`` (1-based rank) of ``outcome``.

    ``model`` is a loaded model, or a model name when ``ctx`` is given. ``threshold=None``: the model's own
    threshold (from its config) or 0.5. For deep links: ``?tab=outcomes&model=…&split=test&outcome=FP&index=3``.
    """
    if isinstance(model, str):
        if ctx is None:
            raise ValueError("pass ctx to open a model by name")
        model = get_model(ctx, model)
    ds = load_data(split, int(get_config(model)["img_size"]))
    pred = predict(model, ds)
    t = _default_threshold(pred) if threshold is None else float(threshold)
    return _heatmaps(model, ds, pred, outcomes(pred, t), outcome, int(index), ctx)


def build(ctx: Any) -> None:
    """The Outcomes tab (call inside ``with gr.Tab("Outcomes"):``)."""
    splits = data_choices()
    gr.Markdown("Every image of a split, sorted into **true/false positives/negatives** at a decision threshold "
                "(positive iff P(pneumonia) ≥ threshold). Each gallery starts with the case the model was surest "
                f"about — for the errors, the most confident mistakes. Up to {GALLERY_SIZE} shown per outcome. "
                "Click an image to see its Grad-CAM for both classes.")
    with gr.Row():
        model = model_choice(ctx)
        split = gr.Dropdown(choices=splits, value=splits[0][1], label="Data split")
    with gr.Row():
        threshold = gr.Slider(0.0, 1.0, value=initial_threshold(ctx), step=0.001, label="Threshold", scale=3)
        preset = gr.Radio(choices=[(v, k) for k, v in PRESET_LABELS.items()], value=None, label="Preset", scale=3)
        refresh = gr.Button("Show outcomes", variant="primary", scale=1)
    note = gr.Markdown()
    counts = gr.JSON(label="Counts", visible=False)  # the counts are in the note; the JSON is for the API
    galleries = {}
    for pair in (("TP", "FP"), ("TN", "FN")):
        with gr.Row():
            for name in pair:
                galleries[name] = gr.Gallery(label=f"{name} — {OUTCOME_NAMES[name]}", columns=4, height=330,
                                             format="png", allow_preview=False, elem_id=f"outcomes-{name.lower()}")
    galleries = {n: galleries[n] for n in OUTCOMES}
    with gr.Row():
        sel_outcome = gr.Dropdown(choices=list(OUTCOMES), value="FP", label="Outcome", scale=1)
        sel_rank = gr.Number(value=1, precision=0, minimum=1, label="Rank (1 = most confident)", scale=1)
        show = gr.Button("Show heatmaps", scale=1)
    caption = gr.Markdown()
    with gr.Row():
        heat0 = gr.Image(label="Grad-CAM: NORMAL", format="png", interactive=False, elem_id="outcomes-heat-0")
        heat1 = gr.Image(label="Grad-CAM: PNEUMONIA", format="png", interactive=False, elem_id="outcomes-heat-1")

    @ui_errors
    def run(name: str, split_name: str, t: float, progress: gr.Progress = gr.Progress()) -> tuple:
        progress(0.05, desc="loading the model")
        m = get_model(ctx, name)
        progress(0.2, desc="loading the images")
        ds = load_data(split_name, int(get_config(m)["img_size"]))
        progress(0.4, desc="running the model on the split (once, cached)")
        pred = predict(m, ds)
        res = outcomes(pred, float(t))
        progress(0.8, desc="thumbnails")
        gals = [_gallery(ds, pred, res, n) for n in OUTCOMES]
        text = (f"**{name}** on **{split_name}** ({len(pred)} images) at threshold **{float(t):.3f}**: "
                + ", ".join(f"{k} {v}" for k, v in res.counts.items()) + ".")
        return (res.counts, *gals, text)

    outputs = [counts, *galleries.values(), note]
    evt = dict(fn=run, inputs=[model, split, threshold], outputs=outputs, concurrency_limit=2)
    gr.on([threshold.release, model.change, split.change], **evt, api_visibility="private")
    refresh.click(**evt, api_name="outcomes")

    @ui_errors
    def apply_preset(name: str, split_name: str, key: str | None) -> tuple[float, str]:
        if not key:
            return gr.update(), gr.update()
        m = get_model(ctx, name)
        presets, text = presets_for(m, split_name)
        if key not in presets:
            raise gr.Error(f"preset {key!r} is not available for {name}: {sorted(presets)}")
        return presets[key], f"{PRESET_LABELS[key]} threshold = {presets[key]:.4f}. {text}"

    preset.input(apply_preset, [model, split, preset], [threshold, note], api_name="outcome_presets").then(
        **evt, api_visibility="private")

    @ui_errors
    def heat(name: str, split_name: str, t: float, outcome: str, rank: float) -> tuple:
        m = get_model(ctx, name)
        ds, pred, res = compute_outcomes(m, split_name, float(t))
        return _heatmaps(m, ds, pred, res, outcome, int(rank or 1), ctx)

    def picker(outcome: str):
        # one handler per gallery: the gallery a click came from is known when the handler is made
        @ui_errors
        def pick(name: str, split_name: str, t: float, evt: gr.SelectData) -> tuple:
            rank = int(evt.index) + 1
            return (outcome, rank, *heat(name, split_name, t, outcome, rank))
        return pick

    show.click(heat, [model, split, threshold, sel_outcome, sel_rank], [heat0, heat1, caption],
               api_name="outcome_heatmaps")
    for outcome_name, g in galleries.items():
        g.select(picker(outcome_name), [model, split, threshold], [sel_outcome, sel_rank, heat0, heat1, caption],
                 api_visibility="private")

    # deep link: ?tab=outcomes&model=…&split=…&outcome=FP&index=3[&threshold=…] (the core sets the tab and model)
    link_outputs = [split, threshold, sel_outcome, sel_rank, counts, *galleries.values(), heat0, heat1, caption]

    @ui_errors
    def from_link(q: dict) -> tuple:
        if "outcome" not in q and "index" not in q:
            return tuple(gr.update() for _ in link_outputs)
        name = q.get("model") or ctx.default_model
        split_name = q.get("split") or splits[0][1]
        m = get_model(ctx, name)
        ds = load_data(split_name, int(get_config(m)["img_size"]))
        pred = predict(m, ds)
        try:
            t = float(q["threshold"]) if q.get("threshold") else _default_threshold(pred)
            rank = int(q.get("index") or 1)
        except ValueError:
            raise gr.Error("deep link: threshold must be a number and index a whole number") from None
        outcome = (q.get("outcome") or "TP").upper()
        res = outcomes(pred, t)
        h0, h1, cap = _heatmaps(m, ds, pred, res, outcome, rank, ctx)
        gals = [_gallery(ds, pred, res, n) for n in OUTCOMES]
        return (split_name, t, outcome, rank, res.counts, *gals, h0, h1, cap)

    ctx.on_link(from_link, link_outputs)
    # for the core's "copy link" button: the query parameters this tab reads back, with the components holding them
    extras = getattr(ctx, "link_extras", None)
    if isinstance(extras, dict):
        extras["outcomes"] = [("split", split), ("threshold", threshold), ("outcome", sel_outcome), ("index", sel_rank)]
