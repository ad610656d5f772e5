"""Heatmaps over grey X-rays: RGB arrays and matplotlib figures, the same colours in both.

* :func:`overlay` blends a matplotlib colour map of the heatmap over the grey image and returns an **RGB**
  ``uint8 (H, W, 3)`` array (never BGR: OpenCV-based tools such as pytorch-grad-cam's ``show_cam_on_image``
  default to BGR; a test checks one pixel against the colour map).
* :func:`overlay_figure` draws the same overlay on a matplotlib :class:`~matplotlib.figure.Figure` (Agg canvas,
  no pyplot, no window) with an optional colour bar in heatmap units.
* :func:`to_png_bytes` turns either into PNG bytes (lossless, so pixels can be checked).

Scale: ``vmin``/``vmax`` default to the heatmap's own min and max — per-image min-max, which hides magnitude
(a near-zero map turns bright). Pass the same ``vmin``/``vmax`` for the maps you want to compare (e.g. both classes
of one image, see :mod:`lib.explain.postprocess`). A constant heatmap maps to the colour map's low end, never NaN.

Example:
    >>> grey = np.zeros((224, 224), np.uint8)
    >>> cam = np.random.rand(7, 7)                 # resized to the image (bilinear)
    >>> rgb = overlay(grey, cam, cmap="jet", alpha=0.5)
    >>> rgb.shape, rgb.dtype
    ((224, 224, 3), dtype('uint8'))
"""
from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import XcxrTypeError, XcxrValueError

if TYPE_CHECKING:  # matplotlib is imported on first use (0.3 s of the app's start otherwise)
    import matplotlib.colors as mcolors
    from matplotlib.figure import Figure

__all__ = ["overlay", "overlay_figure", "to_png_bytes", "colorize", "as_grey_uint8", "as_heatmap", "with_colorbar",
           "symmetric_limits", "DIVERGING"]

#: The colour map of signed maps (evidence for and against): blue < 0 < red, white at 0 when the limits are
#: symmetric (:func:`symmetric_limits`). A rainbow map ("jet") puts 0 at green, which reads as "some evidence".
DIVERGING = "RdBu_r"

_EPS = 1e-12


def _cmap(cmap: str | mcolors.Colormap) -> mcolors.Colormap:
    import matplotlib
    import matplotlib.colors as mcolors

    if isinstance(cmap, mcolors.Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise XcxrValueError(f"cmap must be a matplotlib colour map name (e.g. 'jet', 'viridis', 'inferno'), "
                             f"got {cmap!r}") from None


def as_grey_uint8(image: Any) -> np.ndarray:
    """A grey image as ``uint8 (H, W)``: accepts numpy/torch ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``.

    Float images are taken as [0, 1] intensities; ``TypeError`` for other dtypes, ``ValueError`` for other shapes.
    """
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise XcxrValueError(f"grey image must have shape (H, W) or (1, H, W), got {np.shape(image)}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):  # [0, 1] intensities
        return np.clip(np.round(np.nan_to_num(a) * 255.0), 0, 255).astype(np.uint8)
    raise XcxrTypeError(f"grey image must be uint8 (or float in [0, 1]), got dtype {a.dtype}")


def as_heatmap(heatmap: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A heatmap as ``float64 (H, W)`` (NaN → 0), bilinearly resized to ``size`` = ``(H, W)`` when it differs."""
    t = heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else torch.as_tensor(np.asarray(heatmap))
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise XcxrValueError(f"heatmap must have shape (H, W), got {tuple(t.shape)}")
    t = torch.nan_to_num(t.to(torch.float64))
    if size is not None and tuple(t.shape) != tuple(size):
        # bilinear, align_corners=False: the same upsampling the Grad-CAM paper and our gradcam use
        t = F.interpolate(t[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return t.numpy()


def _limits(h: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise XcxrValueError(f"vmax must be ≥ vmin, got vmin={lo}, vmax={hi}")
    return lo, hi


def colorize(heatmap: Any, cmap: str | mcolors.Colormap = "jet", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """Heatmap → RGB ``float (H, W, 3)`` in [0, 1] through a matplotlib colour map, scaled to ``[vmin, vmax]``.

    Example:
        >>> colorize(np.array([[0.0, 1.0]]), "jet")[0, 1].round(3).tolist()   # = matplotlib's jet(1.0)[:3]
        [0.5, 0.0, 0.0]
    """
    h = as_heatmap(heatmap)
    lo, hi = _limits(h, vmin, vmax)
    # eps: a constant map (hi == lo) gives 0 everywhere (the colour map's low end), never NaN
    u = np.clip((h - lo) / max(hi - lo, _EPS), 0.0, 1.0)
    return _cmap(cmap)(u)[..., :3]


def overlay(grey_uint8: Any, heatmap: Any, cmap: str | mcolors.Colormap = "jet", alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend a coloured heatmap over a grey image: ``(1 − alpha)·grey + alpha·cmap(heatmap)``, RGB order.

    Args:
        grey_uint8: the X-ray, ``uint8 (H, W)`` (``(1, H, W)`` and torch tensors accepted).
        heatmap: float ``(h, w)``; bilinearly resized to ``(H, W)`` if its size differs.
        cmap: matplotlib colour map name or object.
        alpha: heatmap weight in [0, 1] (1 = heatmap only).
        vmin, vmax: heatmap values mapped to the colour map's ends; default the map's own min/max.

    Returns:
        ``uint8 (H, W, 3)`` RGB.

    Example:
        >>> rgb = overlay(np.zeros((4, 4), np.uint8), np.eye(4), cmap="jet", alpha=1.0)
        >>> rgb[0, 0].tolist()      # heatmap max over black, alpha 1 → jet(1.0) = dark red
        [128, 0, 0]
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise XcxrValueError(f"alpha must be in [0, 1], got {alpha!r}")
    grey = as_grey_uint8(grey_uint8)
    colour = colorize(as_heatmap(heatmap, grey.shape), cmap, vmin, vmax)
    base = np.repeat(grey[..., None].astype(np.float64) / 255.0, 3, axis=-1)
    out = (1.0 - float(alpha)) * base + float(alpha) * colour
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def overlay_figure(grey_uint8: Any, heatmap: Any, cmap: str | mcolors.Colormap = "jet", alpha: float = 0.5,
                   vmin: float | None = None, vmax: float | None = None, colorbar: bool = True,
                   title: str | None = None, colorbar_label: str | None = None,
                   figsize: tuple[float, float] = (4.0, 3.4), dpi: int = 100) -> Figure:
    """The overlay on a matplotlib Figure, with an optional colour bar in heatmap units.

    Drawn with :func:`overlay` (same pixels as the array version); the figure uses the Agg canvas and is never
    shown — save it with :func:`to_png_bytes` or ``fig.savefig``.

    Example:
        >>> fig = overlay_figure(np.zeros((64, 64), np.uint8), np.random.rand(8, 8), title="Grad-CAM PNEUMONIA",
        ...                      colorbar_label="logit evidence")
        >>> png = to_png_bytes(fig)
    """
    import matplotlib.colors as mcolors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

    grey = as_grey_uint8(grey_uint8)
    h = as_heatmap(heatmap, grey.shape)
    lo, hi = _limits(h, vmin, vmax)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(overlay(grey, h, cmap, alpha, lo, hi), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        sm = ScalarMappable(norm=mcolors.Normalize(lo, hi if hi > lo else lo + _EPS), cmap=_cmap(cmap))
        cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04)
        if colorbar_label:
            cb.set_label(colorbar_label, fontsize=8)
    return fig


def symmetric_limits(*maps: Any) -> tuple[float, float]:
    """``(-m, m)`` with ``m`` the largest ``|value|`` of ``maps``: the limits that put 0 at a diverging map's centre.

    Example:
        >>> symmetric_limits(np.array([-0.2, 0.5]), np.array([0.1]))
        (-0.5, 0.5)
    """
    def largest(h: Any) -> float:
        a = h.detach().cpu().double().numpy() if isinstance(h, torch.Tensor) else np.asarray(h, dtype=np.float64)
        return float(np.abs(np.nan_to_num(a)).max()) if a.size else 0.0
    m = max((largest(h) for h in maps), default=0.0)
    m = m if m > _EPS else 1.0
    return -m, m


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)   # Pillow ≥ 10.1: a scalable font, no file needed
    except TypeError:  # an older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def with_colorbar(rgb: Any, vmin: float, vmax: float, cmap: str | mcolors.Colormap = "jet", label: str = "",
                  ticks: int = 5, fmt: str = "{:.3g}") -> np.ndarray:
    """An RGB image with a vertical colour bar (tick values, optional label) appended on its right.

    The bar is what makes a heatmap readable: which colour is which value, and on which scale (the same
    ``vmin``/``vmax`` as the :func:`overlay` call that drew ``rgb``). It is drawn into the pixels, so a downloaded
    PNG keeps it.

    Args:
        rgb: ``uint8 (H, W, 3)``, e.g. from :func:`overlay`.
        vmin, vmax: the values at the colour map's ends.
        cmap: the colour map used for ``rgb``.
        label: a short text written along the bar (e.g. ``"Grad-CAM, shared scale"``).
        ticks: number of tick values (≥ 2), evenly spaced from ``vmin`` to ``vmax``.
        fmt: the format of the tick values.

    Returns:
        ``uint8 (H, W + bar, 3)``: the image unchanged on the left, the bar on a white strip on the right.

    Example:
        >>> img = with_colorbar(np.zeros((224, 224, 3), np.uint8), 0.0, 1.0, "jet", label="fraction of max")
        >>> img.shape[0], img.shape[1] > 224, bool((img[:, :224] == 0).all())
        (224, True, True)
    """
    from PIL import Image, ImageDraw

    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise XcxrTypeError(f"rgb must be a uint8 array (H, W, 3), got {a.dtype} {a.shape}")
    lo, hi = float(vmin), float(vmax)
    if not hi >= lo:
        raise XcxrValueError(f"vmax must be ≥ vmin, got vmin={lo}, vmax={hi}")
    if int(ticks) < 2:
        raise XcxrValueError(f"ticks must be ≥ 2, got {ticks}")
    h = a.shape[0]
    size = max(9, min(16, h // 18))                    # font size: readable at 224 px, not huge at 1024
    font = _font(size)
    pad = max(4, size // 2)
    # room for the end labels; the top eighth stays free, where an image viewer puts its buttons (Gradio's
    # download / full-screen icons would hide the bar's maximum)
    top, bottom = max(pad + size // 2, h // 8), h - pad - size // 2
    bar_h = max(2, bottom - top)
    bar_w = max(8, h // 22)
    values = np.linspace(hi, lo, int(ticks))
    texts = [fmt.format(v) for v in values]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(probe.textlength(t, font=font)) for t in texts)
    label_w = (size + pad) if label else 0
    width = pad + bar_w + 3 + text_w + pad + label_w
    strip = Image.new("RGB", (width, h), "white")
    draw = ImageDraw.Draw(strip)
    colours = _cmap(cmap)(np.linspace(1.0, 0.0, bar_h))[:, :3]    # top = vmax
    column = np.clip(np.round(colours * 255), 0, 255).astype(np.uint8)
    strip.paste(Image.fromarray(np.repeat(column[:, None, :], bar_w, axis=1)), (pad, top))
    draw.rectangle([pad - 1, top - 1, pad + bar_w, top + bar_h], outline=(60, 60, 60))
    for v, t in zip(values, texts):
        y = top + (0 if hi == lo else (hi - v) / (hi - lo) * (bar_h - 1))
        draw.line([pad + bar_w, y, pad + bar_w + 2, y], fill=(60, 60, 60))
        draw.text((pad + bar_w + 3, y), t, fill=(20, 20, 20), font=font, anchor="lm")
    if label:
        text = Image.new("RGB", (bar_h, size + 2), "white")
        ImageDraw.Draw(text).text((bar_h // 2, (size + 2) // 2), label, fill=(20, 20, 20), font=font, anchor="mm")
        strip.paste(text.rotate(90, expand=True), (width - label_w, top))
    return np.concatenate([a, np.asarray(strip)], axis=1)


def to_png_bytes(image: Figure | np.ndarray, dpi: int | None = None) -> bytes:
    """PNG bytes of a Figure or a ``uint8`` array (``(H, W)`` grey or ``(H, W, 3)`` RGB).

    Example:
        >>> to_png_bytes(np.zeros((2, 2, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    figure = sys.modules.get("matplotlib.figure")  # not imported yet: `image` cannot be a Figure
    if figure is not None and isinstance(image, figure.Figure):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if image.canvas is None or not isinstance(image.canvas, FigureCanvasAgg):
            FigureCanvasAgg(image)
        image.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return buf.getvalue()
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise XcxrTypeError(f"image must be a Figure or a uint8 array (H, W), (H, W, 3) or (H, W, 4); "
                            f"got {a.dtype} {a.shape}")
    Image.fromarray(a).save(buf, format="png")
    return buf.getvalue()
