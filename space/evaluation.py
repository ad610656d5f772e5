"""A model on a whole data split, shared by the Outcomes and Model report tabs: the splits offered, loading them,
the cached predictions and the threshold presets.

UI glue only: the images come from :func:`lib.data.load_split`, the probabilities from
:func:`lib.explain.predict_split` (one pass per model and split, cached in memory and on disk) and the presets from
:func:`lib.explain.threshold_presets`.

Data: the course's ``val`` and ``test`` splits, bundled in ``data/chest_xray`` (byte-identical to
``../shared/data/chest_xray/{val,test}``; ``$XCXR_DATA_ROOT`` points elsewhere), so a fresh offline clone, the
Space and a local install offer the same splits, image ids, presets and outcome ranks; plus the 100 bundled
``examples``. Presets are computed on the validation split when there is one and applied to the chosen split;
otherwise on the chosen split itself (then they are optimistic, and the note says so).

Predictions: a model folder may carry its predictions on these splits (``predictions/``, written by
``python -m train.predictions``); they are used when their key (weights + split) matches, so Outcomes and the
Model report answer right after a start.

Thresholds have one grammar everywhere (the preset radio, links ``threshold=…`` or ``preset=…``, the "Reproduce in
Python" snippets): a preset name — ``f1``, ``gmean``, ``youden`` (:data:`CHOSEN_ON_VALIDATION`: computed on the
validation split), ``model`` (the model's own, from its config) or ``0.5`` — or a number in [0, 1]
(:func:`parse_threshold`, :func:`resolve_threshold`). A name survives retraining: the number it stands for is
recomputed for the model shown. Thresholds that are optimal on the split shown are called
:data:`BEST_ON_SPLIT` (the ROC's marks, the report's note): they are optimistic, never presets.
"""
from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn

from lib.data import load_split
from lib.data.datasets import cache_dir
from lib.errors import XcxrError, XcxrValueError
from lib.explain import predict_split, threshold_presets
from lib.models import get_config

from .context import AppContext
from .links import LinkParams

__all__ = ["data_root", "data_choices", "default_split", "load_data", "predict", "warm_up", "initial_threshold",
           "initial_threshold_spec", "presets_for", "preset_threshold", "preset_choice", "PRESET_LABELS", "BUNDLED",
           "ThresholdError", "parse_threshold", "threshold_text", "default_threshold_spec", "resolve_threshold",
           "threshold_from_link", "split_from_link", "evaluation_from_link", "setting_key", "describe_threshold",
           "spec_for", "CHOSEN_ON_VALIDATION", "BEST_ON_SPLIT", "load_split_call", "predict_call", "prediction_lines",
           "threshold_lines"]

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "examples" / "chest_xray_test"
#: The course's validation and test splits, shipped with the app (data/README.md).
COURSE_SPLITS = REPO / "data" / "chest_xray"
#: Preset keys of :func:`lib.explain.threshold_presets` and how the radio button names them.
PRESET_LABELS = {"0.5": "0.5", "f1": "F1", "gmean": "G-mean", "youden": "Youden", "model": "model's own"}
#: Other spellings a link may use for a preset (compared case-insensitively).
_PRESET_ALIASES = {"g-mean": "gmean", "g_mean": "gmean", "youden j": "youden", "youden_j": "youden",
                   "model's own": "model", "own": "model"}
#: How presets are named (computed on the validation split, applied to the split shown) …
CHOSEN_ON_VALIDATION = "chosen on validation"
#: … and how thresholds optimal on the split shown itself are named (the ROC's marks, the report's note).
BEST_ON_SPLIT = "best on this split (optimistic)"
#: Decoded splits kept in memory (split, image size); a split of the course data is a few hundred MB at 224 px.
_MAX_SPLITS = 6


def data_root() -> Path:
    """The course data folder with split sub-folders: ``$XCXR_DATA_ROOT``, else the bundled ``data/chest_xray``."""
    env = os.environ.get("XCXR_DATA_ROOT")
    return Path(env) if env else COURSE_SPLITS


def data_choices() -> list[tuple[str, str]]:
    """``(label, value)`` pairs for the split dropdown: test/val of the course data when present, bundled always."""
    root = data_root()
    out = [(f"{s} split ({root.name})", s) for s in ("test", "val") if (root / s).is_dir()]
    out.append((f"bundled examples ({sum(1 for _ in BUNDLED.glob('*/*'))} test images)", "examples"))
    return out


def default_split() -> str:
    """The split the tabs open with: the course test split when present, else the bundled examples."""
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
        while len(_DATA) > _MAX_SPLITS:
            _DATA.popitem(last=False)
    return ds


def predict(model: nn.Module, ds: Any) -> Any:
    """:func:`lib.explain.predict_split`, cached in memory and on disk (next to the decoded-image cache), so a
    restarted app does not run the model over a split again."""
    source = getattr(model, "xcxr_source", None)  # the model's folder: predictions shipped with it
    shipped = [Path(source) / "predictions"] if source else []
    return predict_split(model, ds, cache_dir=cache_dir().parent / "predictions", read_dirs=shipped)


def warm_up(ctx: AppContext, split: str | None = None) -> None:
    """Run the default model over ``split`` (default: the first split offered) once, so the Outcomes and Model
    report tabs answer at once. The app calls this in a background thread at start."""
    m = ctx.model(None)
    predict(m, load_data(split or default_split(), int(get_config(m)["img_size"])))


def initial_threshold(ctx: AppContext) -> float:
    """The default model's own threshold (its config, chosen on its validation split), else 0.5 — read from its
    config.json, so building the page never waits for the model to load."""
    cfg = ctx.catalog.saved_config(ctx.default_model or "")
    if cfg is None:
        try:
            cfg = get_config(ctx.model(None))
        except XcxrError:  # no model loads: the tab still builds; running it shows the reason
            return 0.5
    t = cfg.get("threshold")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 else 0.5


def initial_threshold_spec(ctx: AppContext) -> str:
    """The threshold the tabs open with, as a link names it: ``"model"`` (the default model's own) when its config
    has one, else ``"0.5"`` — the same number as :func:`initial_threshold`."""
    cfg = ctx.catalog.saved_config(ctx.default_model or "")
    if cfg is None:
        try:
            cfg = get_config(ctx.model(None))
        except XcxrError:
            return "0.5"
    return "model" if _own_threshold(cfg) is not None else "0.5"


def _own_threshold(cfg: dict) -> float | None:
    t = cfg.get("threshold")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 else None


def _validation() -> str | None:
    """The split presets are computed on: ``val`` when present, else ``None`` (= the chosen split itself)."""
    return "val" if (data_root() / "val").is_dir() else None


def presets_for(model: nn.Module, split: str) -> tuple[dict[str, float], str]:
    """``threshold_presets`` on the validation split (or ``split`` itself) and a sentence saying which."""
    size = int(get_config(model)["img_size"])
    val = _validation()
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


def preset_threshold(model: nn.Module, name: str, split: str, key: str) -> tuple[float, str]:
    """``(threshold, note)`` for the preset ``key`` (a :data:`PRESET_LABELS` key) of model ``name`` on ``split``."""
    presets, text = presets_for(model, split)
    if key not in presets:
        raise gr.Error(f"preset {key!r} is not available for {name}: {sorted(presets)}")
    return presets[key], f"{PRESET_LABELS[key]} threshold = {presets[key]:.4f}. {text}"


class ThresholdError(XcxrValueError):
    """A threshold that is neither a preset name nor a number in [0, 1], or a preset this model does not have; the
    message says what to give instead."""


def _names() -> str:
    return ", ".join(PRESET_LABELS)


def parse_threshold(text: str | float) -> str | float:
    """A threshold as a link or the API gives it: a preset key of :data:`PRESET_LABELS` (``"gmean"``; also
    ``"G-mean"``, case-insensitive) or a number in [0, 1] (``"0.5123"`` → ``0.5123``).

    ``"0.5"`` is the preset ``"0.5"``. :class:`ThresholdError` for anything else.

    Example:
        >>> parse_threshold("G-mean"), parse_threshold(" 0.25 ")
        ('gmean', 0.25)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        shown = repr(text)
    else:
        raw = str(text if text is not None else "").strip()
        key = raw.lower()
        key = _PRESET_ALIASES.get(key, key)
        if key in PRESET_LABELS:
            return key
        if not raw:
            raise ThresholdError(f"the threshold is empty; give a preset name ({_names()}) or a number between 0 "
                                 "and 1")
        shown = repr(raw if len(raw) <= 40 else raw[:37] + "…")
        try:
            value = float(raw)
        except ValueError:
            raise ThresholdError(f"threshold {shown} is neither a preset name ({_names()}) nor a number between 0 "
                                 "and 1") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ThresholdError(f"threshold {shown} is out of range: give a number between 0 and 1, or a preset name "
                             f"({_names()})")
    return value


def threshold_text(value: str | float) -> str:
    """How a threshold is written into a link: a preset key as it is, a number with 6 significant digits
    (``0.712``, not the slider's ``0.7120000000000001``).

    Example:
        >>> threshold_text(0.7120000000000001), threshold_text("G-mean")
        ('0.712', 'gmean')
    """
    parsed = parse_threshold(value)
    return parsed if isinstance(parsed, str) else f"{parsed:.6g}"


def default_threshold_spec(model: nn.Module) -> str:
    """``"model"`` when the model's config has a threshold of its own, else ``"0.5"``."""
    return "model" if _own_threshold(get_config(model)) is not None else "0.5"


def resolve_threshold(model: nn.Module, name: str, split: str, text: str | float) -> tuple[float, str]:
    """``(threshold, description)`` of ``text`` (:func:`parse_threshold`) for model ``name`` on ``split``.

    Presets are :func:`presets_for` (computed on the validation split when there is one), so a preset name gives
    the number of the model shown — the name survives retraining. The description says where the number comes
    from: ``"G-mean, chosen on validation"``, ``"the model's own, chosen on validation by training"``,
    ``"set by hand"``. :class:`ThresholdError` for a bad text or a preset the model lacks (``model`` without a
    threshold in its config).

    Example:
        >>> resolve_threshold(model, "pneumonia_cnn", "test", "gmean")
        (0.6241…, 'G-mean, chosen on validation')
    """
    spec = parse_threshold(text)
    if not isinstance(spec, str):
        return spec, "set by hand"
    if spec == "0.5":
        return 0.5, "0.5, the usual default"
    if spec == "model":
        own = _own_threshold(get_config(model))
        if own is None:
            raise ThresholdError(f"{name} has no threshold of its own in its config.json; choose another preset "
                                 f"({', '.join(k for k in PRESET_LABELS if k != 'model')}) or a number")
        return own, "the model's own, chosen on validation by training"
    presets, _ = presets_for(model, split)
    if spec not in presets:  # pragma: no cover - threshold_presets always has the data-driven three
        raise ThresholdError(f"preset {spec!r} is not available for {name}: {sorted(presets)}")
    val = _validation()
    where = CHOSEN_ON_VALIDATION if val else "chosen on this split (optimistic: no validation split here)"
    return presets[spec], f"{PRESET_LABELS[spec]}, {where}"


def describe_threshold(model: nn.Module, name: str, split: str, threshold: float,
                       spec: str | None = None) -> tuple[str, str]:
    """``(description, presets note)`` of a threshold the visitor chose as ``spec`` (a preset name or a number,
    :func:`parse_threshold`): the presets with that value, the chosen one first (``"G-mean = Youden = model's own,
    chosen on validation"``: one number can be several presets), ``"0.5, the usual default"``, else ``"set by
    hand"``. The note is :func:`presets_for`'s sentence when ``spec`` is a preset computed on data, else ``""``.

    The data-driven presets (f1, gmean, youden) are computed only when ``spec`` is one of them — the visitor chose
    it, so they are at hand; a number is never worth a pass of the model over the validation split. Nothing fails:
    a preset that cannot be computed is simply not named."""
    t = float(threshold)
    try:
        chosen = parse_threshold(spec) if spec not in (None, "") else None
    except ThresholdError:
        chosen = None
    presets: dict[str, float] = {"0.5": 0.5}
    own = _own_threshold(get_config(model))
    if own is not None:
        presets["model"] = own
    note = ""
    if chosen in ("f1", "gmean", "youden"):
        try:
            computed, note = presets_for(model, split)
            presets.update(computed)
        except (XcxrError, gr.Error, ValueError):  # e.g. one class only: no data-driven presets
            pass
    same = [k for k in ("gmean", "f1", "youden", "model") if k in presets and abs(presets[k] - t) <= 1e-9]
    if chosen in same:
        same.remove(chosen)
        same.insert(0, chosen)
    if same:
        data_driven = any(k != "model" for k in same)
        where = CHOSEN_ON_VALIDATION if _validation() or not data_driven else "chosen on this split (optimistic)"
        return " = ".join(PRESET_LABELS[k] for k in same) + f", {where}", note if data_driven else ""
    if abs(t - 0.5) <= 1e-9:
        return "0.5, the usual default", ""
    return "set by hand", ""


def split_from_link(p: LinkParams, default: str | None = None) -> str:
    """The ``split`` parameter if it is one this app offers, else ``default`` (the first offered) and a problem."""
    values = [v for _, v in data_choices()]
    return p.choice("split", values, default=default or values[0], what="split")


def threshold_from_link(p: LinkParams, model: nn.Module, name: str, split: str) -> tuple[float, str, str]:
    """``(threshold, spec, description)`` from a link's ``threshold=`` or its alias ``preset=`` (the grammar of
    :func:`parse_threshold`); ``spec`` is what a copied link writes back (:func:`threshold_text`). Absent → the
    model's default (:func:`default_threshold_spec`); a bad value → that default and a problem in ``p`` (a
    warning toast once ``p.warn()`` runs)."""
    given = [k for k in ("threshold", "preset") if p.has(k)]
    if len(given) == 2 and p.raw("threshold") != p.raw("preset"):
        p.problem("both threshold and preset are set; threshold was used (give one of them)")
    for key in given[:1]:
        text = p.raw(key) or ""
        try:
            t, desc = resolve_threshold(model, name, split, text)
            return t, threshold_text(text), desc
        except ThresholdError as e:
            p.problem(str(e) if key == "threshold" else str(e).replace("threshold", "preset", 1))
    spec = default_threshold_spec(model)
    t, desc = resolve_threshold(model, name, split, spec)
    return t, spec, desc


def evaluation_from_link(ctx: AppContext, p: LinkParams) -> tuple[str, nn.Module, str, float, str, str]:
    """What a link to Outcomes or the Model report evaluates: ``(model name, model, split, threshold, threshold
    spec, its description)``. The model is the link's when the app can load it (:func:`space.app.read_link` has
    already named a bad one), else the default; split and threshold as :func:`split_from_link` and
    :func:`threshold_from_link` read them."""
    asked = p.raw("model")
    name = asked if asked in ctx.catalog.available() else ctx.default_model
    split = split_from_link(p)
    model = ctx.model(name)
    t, spec, desc = threshold_from_link(p, model, name, split)
    return name, model, split, t, spec, desc


def setting_key(name: str | None, split: str | None, threshold: float | None) -> str:
    """What a tab's shown result belongs to (model, split, threshold): a result is stale once the inputs' key
    differs from the key stored with it."""
    t = "" if threshold is None else f"{float(threshold):.9g}"
    return f"{name or ''}|{split or ''}|{t}"


def _repo_path(path: Path) -> tuple[str, bool]:
    """``path`` relative to the repository when inside it (``True``), else its name (``False``)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix(), True
    except ValueError:
        return p.name, False


def load_split_call(split: str, size: str = "size") -> str:
    """The ``load_split(…)`` call that loads ``split`` as :func:`load_data` does, with a path relative to the
    repository (snippets run from its root)."""
    if split == "examples":
        root, inside = _repo_path(BUNDLED)
        call = f"load_split({root!r}, None, {size})"
    else:
        root, inside = _repo_path(data_root())
        call = f"load_split({root!r}, {split!r}, {size})"
    return call + ("" if inside else "  # the course data folder on your disk")


def _shipped(model: nn.Module) -> str | None:
    """The model's ``predictions/`` folder relative to the repository, when it is inside it."""
    source = getattr(model, "xcxr_source", None)
    if source:
        folder, inside = _repo_path(Path(source) / "predictions")
        if inside and (REPO / folder).is_dir():
            return folder
    return None


def prediction_lines(model: nn.Module) -> list[str]:
    """The lines :func:`predict_call` needs first (``shipped = [...]``, when the model ships predictions)."""
    folder = _shipped(model)
    if folder is None:
        return []
    return [f"shipped = [{folder!r}]  # predictions shipped with the model: the app's numbers, no pass needed"]


def predict_call(model: nn.Module, data: str = "data") -> str:
    """The ``predict_split(…)`` call of :func:`predict`: with the predictions shipped in the model's folder when
    that folder is in the repository (after :func:`prediction_lines`)."""
    if _shipped(model) is not None:
        return f"predict_split(model, {data}, read_dirs=shipped)"
    return f"predict_split(model, {data})"


def threshold_lines(model: nn.Module, split: str, text: str | float) -> list[str]:
    """Lines that set ``t`` as :func:`resolve_threshold` does (presets: ``threshold_presets`` on the validation
    split); they use ``model``, ``size`` and ``load_split`` / ``predict_split`` / ``threshold_presets``."""
    spec = parse_threshold(text)
    if not isinstance(spec, str):
        return [f"t = {spec!r}  # set by hand"]
    if spec == "0.5":
        return ["t = 0.5"]
    if spec == "model":
        return ['t = get_config(model)["threshold"]  # the model\'s own, chosen on validation by training']
    val = _validation()
    if val == split:
        return [f"t = threshold_presets(pred)[{spec!r}]  # {PRESET_LABELS[spec]}, chosen on {split} (also shown)"]
    if val is None:
        return [f"t = threshold_presets(pred)[{spec!r}]  # {PRESET_LABELS[spec]} on the split itself: optimistic"]
    return [f"val = {load_split_call(val)}",
            f"t = threshold_presets({predict_call(model, 'val')})[{spec!r}]"
            f"  # {PRESET_LABELS[spec]}, {CHOSEN_ON_VALIDATION}"]


def preset_choice(**kwargs: Any) -> gr.Radio:
    """The preset radio of both tabs (choosing one sets the threshold slider; moving the slider unselects it).
    ``value``: the preset selected at first (default none)."""
    kwargs.setdefault("value", None)
    kwargs.setdefault("label", "Preset (chosen on validation)")
    return gr.Radio(choices=[(v, k) for k, v in PRESET_LABELS.items()], **kwargs)


def spec_for(model: nn.Module, name: str, split: str, t: float, spec: str | None) -> str:
    """What a link or a snippet writes for threshold ``t``: ``spec`` when it stands for ``t`` (a preset name of this
    model, or the same number), else ``t`` as a number (:func:`threshold_text`)."""
    try:
        if spec and abs(resolve_threshold(model, name, split, spec)[0] - float(t)) <= 1e-9:
            return threshold_text(spec)
    except ThresholdError:
        pass
    return threshold_text(float(t))
