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

Titles: :func:`filter_panel` is the grid with the model and the layer written above it (:func:`with_title`, drawn
into the pixels, so a downloaded PNG still says what it shows), enlarged to a readable width.

Example:
    >>> from lib.models import create_model
    >>> img = filter_grid(create_model("resnet18_pretrained", pretrained=False))    # R, G, B and Σ panels
    >>> img.dtype, img.shape[2]
    (dtype('uint8'), 3)
    >>> fig = filter_grid(create_model("cnn1"), as_figure=True)                      # with titles and colour bars
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..models.layers import first_layer, get_config
from ..errors import XcxrTypeError, XcxrValueError
from .overlay import _font as _default_font

if TYPE_CHECKING:  # matplotlib is imported on first use (0.3 s of the app's start otherwise)
    import matplotlib.colors as mcolors
    from matplotlib.figure import Figure

__all__ = ["filter_grid", "filter_weights", "filter_summary", "filter_panel", "with_title", "FilterView"]

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
    import matplotlib

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
    import matplotlib.colors as mcolors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

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


@functools.lru_cache(maxsize=64)
def _font(size: int, bold: bool = False):
    """DejaVu Sans (shipped with matplotlib: ×, Σ, ρ and · are in it) at ``size`` px; Pillow's default otherwise."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans",
                                                                 weight="bold" if bold else "normal"),
                                     fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except (OSError, ValueError):
        return _default_font(size)


def with_title(rgb: np.ndarray, lines: str | Sequence[str], size: int = 16, min_size: int = 12,
               width: int | None = None, margin: int = 0) -> np.ndarray:
    """``rgb`` with text lines on a white band above it (the first line bold, the others grey).

    The text is drawn into the pixels, so a downloaded image still says what it shows. A line wider than the image
    is drawn smaller (down to ``min_size`` px), then the image is padded with white on both sides to fit it.

    Args:
        rgb: ``uint8 (H, W, 3)``.
        lines: one line or several (empty lines are skipped).
        size: font size in pixels of the first line (the others are 2 px smaller).
        min_size: the smallest font size used to fit a long line (at most ``size``).
        width: the width of the result (default: the image's, or wider when a line needs it).
        margin: blank pixels above the text (room for a label a viewer lays over the image's top-left corner,
            such as a Gradio gallery's).

    Returns:
        ``uint8 (band + H, W', 3)``, the image unchanged below the band (centred when padded).

    Example:
        >>> with_title(np.zeros((64, 64, 3), np.uint8), ["pneumonia_cnn", "features.0.conv1"]).shape[:2] > (64, 64)
        True
    """
    from PIL import Image, ImageDraw

    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise XcxrTypeError(f"rgb must be a uint8 array (H, W, 3), got {a.dtype} {a.shape}")
    texts = [lines] if isinstance(lines, str) else [str(t) for t in lines]
    texts = [t for t in texts if t]
    if not texts:
        return a
    if int(margin) < 0:
        raise XcxrValueError(f"margin must be ≥ 0, got {margin}")
    if int(size) < 1 or int(min_size) < 1:
        raise XcxrValueError(f"size and min_size must be ≥ 1, got size={size}, min_size={min_size}")
    min_size = min(int(min_size), int(size))  # a small title is never drawn larger than asked
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad = max(3, size // 4)
    target = max(int(width or 0), a.shape[1])
    fonts, widths = [], []
    for i, t in enumerate(texts):
        s = max(int(min_size), int(size) - (2 if i else 0))
        while s > min_size and probe.textlength(t, font=_font(s, i == 0)) > target - 2 * pad:
            s -= 1
        fonts.append(_font(s, i == 0))
        widths.append(int(np.ceil(probe.textlength(t, font=fonts[-1]))))
    out_w = max(target, max(widths) + 2 * pad)
    heights = [int(f.size) + max(2, int(f.size) // 4) for f in fonts]
    band = Image.new("RGB", (out_w, int(margin) + pad + sum(heights) + pad // 2), "white")
    draw = ImageDraw.Draw(band)
    y = int(margin) + pad
    for i, (t, f, h) in enumerate(zip(texts, fonts, heights)):
        draw.text((out_w // 2, y + h // 2), t, fill=(20, 20, 20) if i == 0 else (80, 80, 80), font=f, anchor="mm")
        y += h
    body = np.full((a.shape[0], out_w, 3), 255, np.uint8)
    left = (out_w - a.shape[1]) // 2
    body[:, left:left + a.shape[1]] = a
    return np.concatenate([np.asarray(band), body], axis=0)


def filter_panel(model: nn.Module, scale: str = "common", title: str | Sequence[str] | None = None,
                 min_width: int = 256, max_filters: int = 64, margin: int = 0, **grid_kwargs) -> np.ndarray:
    """:func:`filter_grid` enlarged to at least ``min_width`` pixels (nearest: one weight = one square), with the
    model and the layer written above it (:func:`with_title`).

    Args:
        model: any zoo model.
        scale: as in :func:`filter_grid`.
        title: the first line(s); default the model's architecture. The layer line (``"layer features.0.conv1 ·
            8 kernels 3×3"``) and, for multi-channel stems, the panels' order follow.
        min_width: the grid's smallest width in pixels (the zoom is raised until it is reached; never lowered).
        margin: blank pixels above the title (see :func:`with_title`).
        max_filters, grid_kwargs: passed to :func:`filter_grid` (not ``zoom``, chosen here, nor ``as_figure``).

    Returns:
        ``uint8 (H, W, 3)`` RGB.

    Example:
        >>> filter_panel(create_model("pneumonia_cnn"), title="pneumonia_cnn (trained from scratch)").shape[1] >= 256
        True
    """
    if "zoom" in grid_kwargs or "as_figure" in grid_kwargs:
        raise XcxrValueError("filter_panel chooses the zoom and returns an array; call filter_grid for those options")
    gap = int(grid_kwargs.get("gap", 1))
    name, w = filter_weights(model)
    n, c, kh, kw = w[:max_filters].shape
    n_panels = len(_views(w[:max_filters], grid_kwargs.get("per_channel", True),
                          grid_kwargs.get("include_channel_sum", True)))
    ncols = math.ceil(math.sqrt(n))
    zoom = max(1, 32 // max(kh, kw))

    def width(z: int) -> int:
        return n_panels * (ncols * (kw * z + gap) - gap) + (n_panels - 1) * (4 * gap if gap else 4)

    while width(zoom) < min_width and zoom < 64:
        zoom += 1
    grid = filter_grid(model, scale=scale, max_filters=max_filters, zoom=zoom, **grid_kwargs)
    cfg = get_config(model)
    head = [title] if isinstance(title, str) else list(title or [str(cfg.get("architecture", "model"))])
    if isinstance(first_layer(model)[1], nn.Linear):
        layer = f"layer {name} · {min(n, len(w))} of {len(w)} rows as {kh}×{kw} images"
    else:
        layer = f"layer {name} · {len(w) if len(w) <= max_filters else f'{n} of {len(w)}'} kernels {kh}×{kw}"
    lines = head + [layer]
    if n_panels > 1:
        names = [v.name.replace("channel ", "ch ").replace("Σ channels", "sum of channels")
                 for v in _views(w[:max_filters], grid_kwargs.get("per_channel", True),
                                 grid_kwargs.get("include_channel_sum", True))]
        lines.append("panels, left to right: " + " | ".join(names))
    return with_title(grid, lines, margin=margin)
