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
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn

from lib.data import load_split
from lib.data.datasets import cache_dir
from lib.errors import XcxrError
from lib.explain import predict_split, threshold_presets
from lib.models import get_config

from .context import AppContext

__all__ = ["data_root", "data_choices", "default_split", "load_data", "predict", "warm_up", "initial_threshold",
           "presets_for", "preset_threshold", "preset_choice", "PRESET_LABELS", "BUNDLED"]

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "examples" / "chest_xray_test"
#: The course's validation and test splits, shipped with the app (data/README.md).
COURSE_SPLITS = REPO / "data" / "chest_xray"
#: Preset keys of :func:`lib.explain.threshold_presets` and how the radio button names them.
PRESET_LABELS = {"0.5": "0.5", "f1": "F1", "gmean": "G-mean", "youden": "Youden", "model": "model's own"}
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


def preset_choice(**kwargs: Any) -> gr.Radio:
    """The preset radio of both tabs (nothing selected: choosing one sets the threshold slider)."""
    return gr.Radio(choices=[(v, k) for k, v in PRESET_LABELS.items()], value=None, label="Preset", **kwargs)
