"""First-layer "filters" of any zoo model as one grid image (or a matplotlib Figure).

What is shown, per model (the layer is the config's ``first_layer``, see :func:`lib.models.first_layer`):

* **conv stems** (``pneumonia_cnn``: 8 kernels 3×3; ``cnn1``/``cnn2``: 4 kernels 7×7; ResNet18: 64 kernels 7×7): each
  output filter's kernel, **per input channel**. For the 3-channel ImageNet stems (``resnet18_pretrained*``) the
  grey X-ray is fed on all three channels, so the kernel the grey image effectively meets is the **sum over the
  channels** (what timm's ``in_chans=1`` does with pretrained weights) — shown as an extra panel "Σ channels".
* **fully connected DNNs** (``dnn1``/``dnn2``): the first Linear layer's rows, each reshaped to the ``H×W`` input
  image it is multiplied with — a "filter" as large as the image. There are 512; the first ``max_filters`` are shown
  (:func:`filter_summary` says how many).

Scales (diverging colour map, white = 0, red = positive, blue = negative with the default ``"RdBu_r"``):

* ``scale="common"``: one limit ``±max|w|`` shared by all kernels of the per-channel panels, so filters can be
  compared in strength (dead filters look white). The channel-sum panel adds three kernels, so it has its own
  common limit.
* ``scale="per_filter"``: every kernel on its own ``±max|w|`` — shows each pattern, hides the magnitudes.

Example:
    >>> from lib.models import create_model
    >>> img = filter_grid(create_model("resnet18_pretrained", pretrained=False))    # R, G, B and Σ panels
    >>> img.dtype, img.shape[2]
    (dtype('uint8'), 3)
    >>> fig = filter_grid(create_model("cnn1"), as_figure=True)                      # with titles and colour bars
"""
from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from ..models.layers import first_layer, get_config
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["filter_grid", "filter_weights", "filter_summary", "FilterView"]

_SCALES = ("common", "per_filter")
_EPS = 1e-12


class FilterView(NamedTuple):
    """One panel of the grid: a name (``"channel 0"``, ``"Σ channels"``) and kernels ``(n, kh, kw)``."""

    name: str
    kernels: torch.Tensor


def filter_weights(model: nn.Module) -> tuple[str, torch.Tensor]:
    """``(layer name, weights (out, in_chans, kh, kw))`` of the first layer; DNN rows reshaped to the input image.

    Example:
        >>> filter_weights(create_model("pneumonia_cnn"))[1].shape
        torch.Size([8, 1, 3, 3])
    """
    name, layer = first_layer(model)
    w = layer.weight.detach().float().cpu()
    if isinstance(layer, nn.Linear):
        cfg = get_config(model)
        c, s = int(cfg["in_chans"]), int(cfg["img_size"])
        if w.shape[1] != c * s * s:
            raise XcxrValueError(f"{name}: {w.shape[1]} inputs do not match in_chans×img_size² = {c}×{s}²")
        return name, w.reshape(w.shape[0], c, s, s)   # the order Flatten used: channel, row, column
    if w.ndim != 4:
        raise XcxrTypeError(f"first layer {name!r} is a {type(layer).__name__}; expected Conv2d or Linear")
    return name, w


def _views(w: torch.Tensor, per_channel: bool, include_channel_sum: bool) -> list[FilterView]:
    c = w.shape[1]
    if c == 1:
        return [FilterView("channel 0", w[:, 0])]
    views = [FilterView(f"channel {i}", w[:, i]) for i in range(c)] if per_channel else []
    if include_channel_sum or not per_channel:
        views.append(FilterView("Σ channels", w.sum(1)))
    return views


def filter_summary(model: nn.Module, max_filters: int = 64) -> str:
    """One sentence on what :func:`filter_grid` shows for ``model`` (layer, kernel size, how many).

    Example:
        >>> filter_summary(create_model("dnn1", img_size=32))
        'dnn1 layers.0.linear: 512 rows of 1024 weights, shown as 1×32×32 images (first 64 of 512)'
    """
    cfg = get_config(model)
    name, w = filter_weights(model)
    n, c, kh, kw = w.shape
    shown = f"first {min(n, max_filters)} of {n}" if n > max_filters else f"all {n}"
    if isinstance(first_layer(model)[1], nn.Linear):
        return (f"{cfg['architecture']} {name}: {n} rows of {c * kh * kw} weights, shown as {c}×{kh}×{kw} images "
                f"({shown})")
    extra = " (grey image on all 3 channels: Σ channels is the kernel it effectively meets)" if c == 3 else ""
    return f"{cfg['architecture']} {name}: {n} kernels {kh}×{kw} on {c} input channel{'s' if c > 1 else ''} " \
           f"({shown}){extra}"


def _rgb(kernels: torch.Tensor, limits: torch.Tensor, cmap: mcolors.Colormap) -> np.ndarray:
    u = 0.5 + 0.5 * (kernels / limits.clamp_min(_EPS)[:, None, None])  # symmetric around 0: 0 → the map's middle
    return cmap(u.clamp(0, 1).numpy())[..., :3]


def _grid(tiles: np.ndarray, ncols: int, zoom: int, gap: int, background: float) -> np.ndarray:
    n, h, w, _ = tiles.shape
    tiles = tiles.repeat(zoom, axis=1).repeat(zoom, axis=2)  # nearest: one weight = one zoom×zoom square
    h, w = h * zoom, w * zoom
    rows = math.ceil(n / ncols)
    out = np.full((rows * (h + gap) - gap, ncols * (w + gap) - gap, 3), background, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return out


def filter_grid(model: nn.Module, per_channel: bool = True, scale: str = "common", include_channel_sum: bool = True,
                max_filters: int = 64, cmap: str = "RdBu_r", as_figure: bool = False, zoom: int | None = None,
                gap: int = 1) -> np.ndarray | Figure:
    """Grid image of the first layer's kernels, one panel per input channel (plus Σ channels for RGB stems).

    Args:
        model: any zoo model.
        per_channel: one panel per input channel; ``False`` shows only the channel sum (= the only channel for
            grey models).
        scale: ``"common"`` (one symmetric limit for all kernels) or ``"per_filter"`` (each its own).
        include_channel_sum: add the "Σ channels" panel for multi-channel stems (ignored for grey models).
        max_filters: show at most this many filters (the first ones) — the DNNs have 512.
        cmap: a diverging matplotlib colour map (0 must sit in the middle).
        as_figure: return a matplotlib Figure with panel titles and colour bars instead of the array.
        zoom: pixels per weight (default: about 32 px per kernel side, 1 for the image-sized DNN rows).
        gap: pixels between kernels (panels are 4·gap apart).

    Returns:
        ``uint8 (H, W, 3)`` RGB grid (panels side by side, filters row-major within a panel), or a Figure.

    Example:
        >>> filter_grid(create_model("pneumonia_cnn"), scale="per_filter").shape   # 8 kernels 3×3 × zoom 10, 3×3 grid
        (92, 92, 3)
    """
    if scale not in _SCALES:
        raise XcxrValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise XcxrValueError(f"max_filters must be a positive int, got {max_filters!r}")
    if zoom is not None and (not isinstance(zoom, int) or zoom < 1):
        raise XcxrValueError(f"zoom must be a positive int or None, got {zoom!r}")
    if not isinstance(gap, int) or gap < 0:
        raise XcxrValueError(f"gap must be a non-negative int, got {gap!r}")
    colour_map = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    name, w = filter_weights(model)
    w = w[:max_filters]
    n, _, kh, kw = w.shape
    views = _views(w, per_channel, include_channel_sum)
    zoom = zoom or max(1, 32 // max(kh, kw))
    ncols = math.ceil(math.sqrt(n))
    panels, limits = [], []
    # The common limit is shared by the per-channel panels; the channel sum adds three kernels, so its own.
    channel_max = max((float(v.kernels.abs().max()) for v in views if v.name != "Σ channels"), default=0.0)
    for v in views:
        if scale == "per_filter":
            lim = v.kernels.abs().flatten(1).amax(1)
        else:
            common = float(v.kernels.abs().max()) if v.name == "Σ channels" else channel_max
            lim = torch.full((n,), common)
        limits.append(float(lim.max()))
        panels.append(_grid(_rgb(v.kernels, lim, colour_map), ncols, zoom, gap, background=0.25))
    if as_figure:
        return _figure(model, views, panels, limits, scale, colour_map, max_filters)
    sep = np.ones((panels[0].shape[0], 4 * gap if gap else 4, 3))  # white between panels
    parts = [p for pair in zip(panels, [sep] * len(panels)) for p in pair][:-1]
    return np.clip(np.round(np.concatenate(parts, axis=1) * 255), 0, 255).astype(np.uint8)


def _figure(model: nn.Module, views: list[FilterView], panels: list[np.ndarray], limits: list[float], scale: str,
            cmap: mcolors.Colormap, max_filters: int) -> Figure:
    fig = Figure(figsize=(3.2 * len(panels) + 0.6, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, view, panel, lim in zip(axes, views, panels, limits):
        ax.imshow(panel, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(view.name if scale == "per_filter" else f"{view.name} (±{lim:.3g})", fontsize=9)
        if scale == "common":
            sm = ScalarMappable(norm=mcolors.Normalize(-max(lim, _EPS), max(lim, _EPS)), cmap=cmap)
            fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    fig.suptitle(f"{filter_summary(model, max_filters)}; scale: "
                 f"{'common, symmetric around 0' if scale == 'common' else 'per filter, symmetric around 0'}",
                 fontsize=9, wrap=True)
    return fig
