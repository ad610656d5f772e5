"""The image as it passes through the layers: activations after each block/stage, top-k channels, as grids.

:func:`feature_maps` runs **one** image through the model once (eval mode, no gradients), with forward hooks
(:func:`lib.explain.core.capture`, removed on exit) on the stages the model's config lists as ``feature_stages``
(each model file declares them; for the zoo):

=================================  ===============================================================================
model                              stages (module names, in forward order)
=================================  ===============================================================================
``pneumonia_cnn``                  ``features.0`` … ``features.N-1`` — each ConvBlock's output, after its max pool
``cnn1`` / ``cnn2``                ``features.0`` … — each conv stage's output (after its pool where it has one)
ResNet18 (all three)               ``act1`` (stem conv → BN → ReLU), ``maxpool``, ``layer1`` … ``layer4``
``dnn1`` / ``dnn2``                ``layers.0`` … — the hidden layers' outputs (after ReLU). These are **1-D**:
                                   one number per unit, no image; the stage tensor is ``(k,)`` and the renderer
                                   draws the top-k units as bars.
=================================  ===============================================================================

In every stage the ``top_k`` channels (units) with the **largest mean activation** over the map are kept, sorted
by that mean, with their channel indices. Pass ``stages=[...]`` (module names) to look at other layers.

Example:
    >>> from lib.models import create_model
    >>> from lib.explain.core import prepare
    >>> m = create_model("pneumonia_cnn", img_size=64)
    >>> x = prepare(m, torch.zeros(1, 1, 64, 64, dtype=torch.uint8))
    >>> [(s.name, tuple(s.maps.shape)) for s in feature_maps(m, x, top_k=4)]
    [('features.0', (4, 32, 32)), ('features.1', (4, 16, 16)), ('features.2', (4, 8, 8))]
    >>> grid = feature_map_grid(feature_maps(m, x)[0].maps)      # uint8 RGB tiles
    >>> tiles = feature_map_tiles(feature_maps(m, x), tile=224)   # one captioned image per channel
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.layers import get_config, get_layer
from .core import capture, explaining
from ..errors import XcxrTypeError, XcxrValueError

if TYPE_CHECKING:  # matplotlib is imported on first use (0.3 s of the app's start otherwise)
    from matplotlib.figure import Figure

__all__ = ["feature_maps", "default_stages", "feature_map_grid", "feature_map_tiles", "feature_maps_figure",
           "FeatureStage"]

_SCALES = ("per_map", "shared")
_EPS = 1e-12


class FeatureStage(NamedTuple):
    """One stage: its module name, the kept activations (``(k, h, w)``, or ``(k,)`` for 1-D layers), and their
    channel (unit) indices, sorted by mean activation, largest first."""

    name: str
    maps: torch.Tensor
    channels: list[int]


def default_stages(model: nn.Module) -> list[str]:
    """The stage names :func:`feature_maps` uses for ``model``: its config's ``feature_stages``.

    Example:
        >>> default_stages(create_model("resnet18_scratch"))
        ['act1', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    cfg = get_config(model)
    stages = cfg.get("feature_stages")
    if not stages:
        raise XcxrValueError(f"{cfg['architecture']} declares no feature_stages in its config; pass stages=[module "
                             "names]")
    return list(stages)


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, top_k: int = 8,
                 stages: Sequence[str] | None = None) -> list[FeatureStage]:
    """Activations of one image after each stage, keeping the ``top_k`` channels by mean activation.

    Args:
        model: a zoo model; run in eval mode (BatchNorm statistics), its modes restored; hooks removed on exit.
        image: one model-ready image ``(1, C, H, W)`` or ``(C, H, W)`` (see :func:`lib.explain.core.prepare`).
        top_k: channels (units) kept per stage (fewer if the stage has fewer).
        stages: module names to capture, in forward order; default :func:`default_stages`.

    Returns:
        A list of :class:`FeatureStage` ``(name, maps, channels)``: ``maps`` is ``(k, h, w)`` for conv stages and
        ``(k,)`` for fully connected layers; float32 on the CPU.

    Example:
        >>> stages = feature_maps(create_model("dnn1", img_size=32), torch.randn(1, 1, 32, 32), top_k=5)
        >>> stages[0].name, tuple(stages[0].maps.shape)       # 1-D hidden layer: 5 units
        ('layers.0', (5,))
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise XcxrValueError(f"top_k must be a positive int, got {top_k!r}")
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise XcxrTypeError("image must be a model-ready float tensor (1, C, H, W); use lib.explain.core.prepare")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or len(image) != 1:
        raise XcxrValueError(f"image must be ONE image (1, C, H, W) or (C, H, W), got {tuple(image.shape)}")
    names = list(stages) if stages is not None else default_stages(model)
    if not names:
        raise XcxrValueError("stages must name at least one module")
    for n in names:
        get_layer(model, n)  # ValueError naming the choices for an unknown name
    with explaining(model, grad=False) as net, capture({n: get_layer(net, n) for n in names}) as store:
        net(image)
    out = []
    for n in names:
        if n not in store:
            raise XcxrValueError(f"stage {n!r} did not run in the forward pass; pick a module the model uses")
        if store[n]._version != store.versions.get(n, store[n]._version):
            # e.g. a ResNet block's bn2, overwritten by the in-place `+= shortcut` and ReLU that follow it
            raise XcxrValueError(f"the output of stage {n!r} is modified in place later in the forward pass, so the "
                                 "captured maps are not that module's; pick the enclosing block or its activation")
        a = store[n][0].detach().float().cpu()
        if a.ndim == 3:    # (C, h, w): rank channels by their mean over the map
            score = a.mean(dim=(1, 2))
        elif a.ndim == 1:  # (units,): a fully connected layer, the unit's value is its mean
            score = a
        else:
            raise XcxrValueError(f"stage {n!r} outputs shape {tuple(store[n].shape)}; expected (1, C, h, w) or (1, units)")
        idx = torch.topk(score, min(top_k, len(score))).indices
        out.append(FeatureStage(n, a[idx].clone(), idx.tolist()))
    return out


def feature_map_grid(maps: torch.Tensor, ncols: int | None = None, scale: str = "per_map", cmap: str = "viridis",
                     tile: int = 64, gap: int = 2) -> np.ndarray:
    """Render a stage's maps ``(k, h, w)`` as one ``uint8 (H, W, 3)`` RGB grid of ``tile``-pixel squares.

    Maps are enlarged with **nearest** neighbours (one activation = one visible block; a smooth upsampling would
    suggest detail the layer does not have). ``scale="per_map"``: each map min–max to its own range (shows each
    pattern); ``"shared"``: one min–max for the stage (shows which channels are strong). 1-D stages ``(k,)`` are
    drawn as bars (height ∝ activation on the stage's shared scale).

    Example:
        >>> feature_map_grid(torch.rand(8, 7, 7), ncols=4, tile=32).shape
        (66, 134, 3)
    """
    if scale not in _SCALES:
        raise XcxrValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
    if not isinstance(tile, int) or tile < 1:
        raise XcxrValueError(f"tile must be a positive int, got {tile!r}")
    maps = torch.as_tensor(maps).detach().float().cpu()
    if maps.ndim == 1:
        return _bars(maps, tile)
    if maps.ndim != 3 or len(maps) == 0:
        raise XcxrValueError(f"maps must have shape (k, h, w) or (k,), got {tuple(maps.shape)}")
    k = len(maps)
    ncols = ncols or math.ceil(math.sqrt(k))
    rgb = _coloured(maps, tile, scale, cmap) / 255.0
    rows = math.ceil(k / ncols)
    out = np.ones((rows * (tile + gap) - gap, ncols * (tile + gap) - gap, 3))
    for i in range(k):
        r, c = divmod(i, ncols)
        out[r * (tile + gap):r * (tile + gap) + tile, c * (tile + gap):c * (tile + gap) + tile] = rgb[i]
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def feature_map_tiles(stages: Sequence[FeatureStage], scale: str = "per_map", cmap: str = "viridis",
                      tile: int = 224, captions: bool = True, margin: int = 0) -> list[tuple[np.ndarray, str]]:
    """One image per channel, stage after stage (strongest channel first): ``[(uint8 RGB, caption)]``.

    Each map is enlarged to ``tile × tile`` pixels with **nearest** neighbours, as in :func:`feature_map_grid`, and
    coloured with the same rules: ``scale="per_map"`` stretches each map to its own min–max, ``"shared"`` uses one
    min–max per stage (over its kept channels), so brightness compares channels of a stage. The caption
    (``"stage 2 · features.1 · ch 17"``) is drawn on a white band above the map when ``captions`` is true
    (:func:`lib.explain.filters.with_title`), so it never covers the map and a downloaded tile still says what it
    is; ``margin`` adds blank pixels above it (room for a label a viewer lays over the top-left corner). A 1-D stage
    (fully connected units) gives one bar chart of its top-k units instead (``"stage 1 · layers.0 · units 3, 17,
    …"``).

    Example:
        >>> tiles = feature_map_tiles(feature_maps(m, x, top_k=4), tile=224)
        >>> len(tiles), tiles[0][1], tiles[0][0].shape[1]
        (12, 'stage 1 · features.0 · ch 5', 224)
    """
    from .filters import with_title

    if scale not in _SCALES:
        raise XcxrValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 8:
        raise XcxrValueError(f"tile must be an int ≥ 8, got {tile!r}")
    out: list[tuple[np.ndarray, str]] = []
    for i, st in enumerate(stages):
        maps = torch.as_tensor(st.maps).detach().float().cpu()
        if maps.ndim == 1:
            units = ", ".join(str(c) for c in st.channels[:6]) + (", …" if len(st.channels) > 6 else "")
            text = f"stage {i + 1} · {st.name} · units {units}"
            bars = _bars(maps, tile // 2)
            out.append((with_title(bars, text, size=max(10, tile // 14), margin=margin) if captions else bars, text))
            continue
        if maps.ndim != 3 or len(maps) == 0:
            raise XcxrValueError(f"stage {st.name!r}: maps must have shape (k, h, w) or (k,), got {tuple(maps.shape)}")
        rgb = _coloured(maps, tile, scale, cmap)
        for j, ch in enumerate(st.channels):
            text = f"stage {i + 1} · {st.name} · ch {ch}"
            out.append((with_title(rgb[j], text, size=max(10, tile // 14), margin=margin) if captions else rgb[j],
                        text))
    return out


def _coloured(maps: torch.Tensor, tile: int, scale: str, cmap: str) -> np.ndarray:
    """``(k, h, w)`` maps enlarged to ``tile`` px (nearest: one block = one activation) and coloured: ``uint8
    (k, tile, tile, 3)``, each map on its own range (``per_map``) or all on one (``shared``)."""
    big = F.interpolate(maps[:, None], size=(tile, tile), mode="nearest")[:, 0]
    if scale == "per_map":
        lo = big.flatten(1).amin(1)[:, None, None]
        hi = big.flatten(1).amax(1)[:, None, None]
    else:
        lo, hi = big.min(), big.max()
    u = ((big - lo) / (hi - lo).clamp_min(_EPS)).clamp(0, 1).numpy()  # eps: a constant (dead) map → 0, not NaN
    import matplotlib

    return np.clip(np.round(matplotlib.colormaps[cmap](u)[..., :3] * 255), 0, 255).astype(np.uint8)


def _bars(values: torch.Tensor, tile: int) -> np.ndarray:
    k = len(values)
    h, bw = 2 * tile, max(4, tile // 4)
    lo = min(0.0, float(values.min()))
    hi = max(float(values.max()), lo + _EPS)
    out = np.full((h, k * (bw + 2), 3), 255, np.uint8)
    zero = int(round((hi - 0.0) / (hi - lo) * (h - 1)))  # the row of value 0
    import matplotlib.colors as mcolors

    colour = (np.array(mcolors.to_rgb("tab:blue")) * 255).astype(np.uint8)
    for i, v in enumerate(values.tolist()):
        y = int(round((hi - v) / (hi - lo) * (h - 1)))
        out[min(y, zero):max(y, zero) + 1, i * (bw + 2) + 1:i * (bw + 2) + 1 + bw] = colour
    out[zero] = 0  # the axis
    return out


def feature_maps_figure(stages: Sequence[FeatureStage], cmap: str = "viridis", scale: str = "per_map",
                        title: str | None = None) -> Figure:
    """All stages in one Figure: a row per stage, the top-k maps as panels titled with their channel index
    (fully connected stages: one bar chart of the top-k units).

    Example:
        >>> fig = feature_maps_figure(feature_maps(m, x), title="pneumonia_cnn, one test image")
    """
    if scale not in _SCALES:
        raise XcxrValueError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
    if not stages:
        raise XcxrValueError("stages must not be empty")
    k = max(len(s.channels) for s in stages)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 * k + 1.2, 1.6 * len(stages) + (0.4 if title else 0)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(stages), k)
    for r, s in enumerate(stages):
        if s.maps.ndim == 1:
            ax = fig.add_subplot(grid[r, :])
            ax.bar(range(len(s.channels)), s.maps.numpy(), color="tab:blue")
            ax.set_xticks(range(len(s.channels)), [str(c) for c in s.channels], fontsize=7)
            ax.set_ylabel(f"{s.name}\n(units)", fontsize=8)
            ax.tick_params(labelsize=7)
            continue
        lo, hi = float(s.maps.min()), float(s.maps.max())
        for j, ch in enumerate(s.channels):
            ax = fig.add_subplot(grid[r, j])
            m = s.maps[j].numpy()
            vmin, vmax = (float(m.min()), float(m.max())) if scale == "per_map" else (lo, hi)
            ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax if vmax > vmin else vmin + _EPS, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {ch}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{s.name}\n{tuple(s.maps.shape[1:])}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
