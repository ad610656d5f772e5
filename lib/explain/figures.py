"""The course figures, rendered from a model and uint8 images: matplotlib Figures (Agg, never shown).

* :func:`gradcam_figure` — the Lübeck practical's figure: N (= 10) test images × both classes, Grad-CAM overlays.
  Rows = images; columns = the X-ray, the NORMAL map, the PNEUMONIA map; each row titled with the true label and
  ``P(pneumonia)``.
* :func:`saliency_outcomes_figure` — the Ljubljana report's figure: saliency maps of one true positive, true
  negative, false positive and false negative (any method of :func:`lib.explain.attribution.attribute`).

Scales, stated in the figures: Grad-CAM maps are the raw (unnormalised, ReLU'd, bilinear) maps of
:func:`lib.explain.gradcam.gradcam` shown on a scale **shared by both classes of an image** by default, so the class
the model barely sees stays dim (``normalise="per_map"`` gives pytorch-grad-cam's per-map min–max;
``normalise="none"`` one scale for the whole figure). The scores explained are logits.

Example:
    >>> from lib.models import create_model
    >>> from lib.explain.overlay import to_png_bytes
    >>> m = create_model("pneumonia_cnn", img_size=64)
    >>> imgs = torch.randint(0, 256, (10, 1, 64, 64), dtype=torch.uint8)
    >>> fig = gradcam_figure(m, imgs, labels=[0] * 5 + [1] * 5)
    >>> png = to_png_bytes(fig)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..models.layers import get_config
from ..models.outputs import positive_probability
from .attribution import attribute, list_methods
from .core import explaining, prepare
from .gradcam import gradcam
from .overlay import as_grey_uint8, overlay
from ..errors import XcxrTypeError, XcxrValueError

if TYPE_CHECKING:  # matplotlib is imported on first use (0.3 s of the app's start otherwise)
    from matplotlib.figure import Figure

__all__ = ["gradcam_figure", "saliency_outcomes_figure", "pick_rows", "OUTCOMES"]

#: The four outcomes of :func:`saliency_outcomes_figure`, in display order.
OUTCOMES: tuple[str, ...] = ("TP", "TN", "FP", "FN")
_GRADCAM_SCALES = ("shared", "per_map", "none")
_SALIENCY_SCALES = ("shared", "per_map")


def _as_uint8_batch(images: Any, name: str = "images") -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images.detach().cpu()
    if t.dtype != torch.uint8:
        raise XcxrTypeError(f"{name} must be uint8 grey images (N, 1, H, W), got dtype {t.dtype}")
    if t.ndim == 3:  # (N, H, W)
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] != 1 or len(t) == 0:
        raise XcxrValueError(f"{name} must have shape (N, 1, H, W) with N ≥ 1, got {tuple(t.shape)}")
    return t


def pick_rows(labels: Any, per_class: int = 5, seed: int = 0, n_classes: int | None = None) -> list[int]:
    """The images of the course figure: for each class in order, ``per_class`` indices drawn at random.

    The draw is ``torch.randperm`` of each class's indices with one ``torch.Generator`` seeded with ``seed``, in
    class order, so the same labels, ``per_class`` and ``seed`` give the same rows everywhere (``python -m
    train.figures`` for the README's figure, the app's Heatmaps grid). A class with fewer images gives all of them.

    Args:
        labels: the class index of every image (a 1-D tensor, array or list), e.g. ``ImageSet.labels``.
        per_class: images drawn per class (≥ 1).
        seed: the generator's seed.
        n_classes: the number of classes (default: the largest label + 1).

    Returns:
        Indices into ``labels``: class 0's rows first, then class 1's…

    Example:
        >>> rows = pick_rows(ds.labels, per_class=5, seed=0)     # the README's 10 × 2 figure
        >>> fig = gradcam_figure(model, ds.images[rows], labels=ds.labels[rows].tolist())
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise XcxrValueError(f"per_class must be a whole number ≥ 1, got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise XcxrValueError(f"seed must be a whole number, got {seed!r}")
    y = torch.as_tensor(np.asarray(labels.tolist() if hasattr(labels, "tolist") else labels, dtype=np.int64))
    if y.ndim != 1:
        raise XcxrValueError(f"labels must be one class index per image (1-D), got shape {tuple(y.shape)}")
    if n_classes is None:
        n_classes = int(y.max()) + 1 if len(y) else 0
    g = torch.Generator().manual_seed(seed)
    rows: list[int] = []
    for c in range(int(n_classes)):
        idx = (y == c).nonzero().flatten()
        rows += idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
    return rows


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with explaining(model, grad=False) as net:
        return positive_probability(net(x)).float().cpu()


def gradcam_figure(model: nn.Module, images_uint8: Any, labels: Sequence[int] | None = None,
                   layer: str | None = None, normalise: str = "shared", cmap: str = "jet", alpha: float = 0.5,
                   colorbar: bool = True, title: str | None = None, panel_size: float = 2.2) -> Figure:
    """Grad-CAM overlays of N images for both classes: rows = images, columns = image, NORMAL map, PNEUMONIA map.

    Args:
        model: a zoo model with conv feature maps (the DNNs raise ``ValueError``).
        images_uint8: grey images ``uint8 (N, 1, H, W)`` (numpy or torch), N = 10 for the course figure; the model's
            own preprocessing is applied (:func:`lib.explain.core.prepare`).
        labels: the true class indices (0/1) for the row titles, or ``None``.
        layer: the Grad-CAM layer, default the model's target layer.
        normalise: ``"shared"`` (both classes of an image on one scale, 0 … their max), ``"per_map"`` (each map
            min–max), ``"none"`` (one raw scale for the whole figure).
        cmap, alpha: overlay colour map and heatmap weight.
        colorbar: add one colour bar (in units of the chosen scale).
        title: figure title; default names the model, layer and scale.
        panel_size: inches per panel.

    Returns:
        A matplotlib Figure (Agg canvas).

    Example:
        >>> fig = gradcam_figure(model, test_images[:10], test_labels[:10])
        >>> fig.savefig("gradcam_10x2.png")
    """
    if normalise not in _GRADCAM_SCALES:
        raise XcxrValueError(f"normalise must be one of {list(_GRADCAM_SCALES)}, got {normalise!r}")
    imgs = _as_uint8_batch(images_uint8, "images_uint8")
    n = len(imgs)
    if labels is not None:
        labels = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
        if len(labels) != n:
            raise XcxrValueError(f"labels must have one entry per image ({n}), got {len(labels)}")
    cfg = get_config(model)
    names = cfg["labels"]
    x = prepare(model, imgs)
    maps = gradcam(model, x, classes=[0, 1], layer=layer).cpu().double()   # (N, 2, H, W), raw ReLU'd logit maps
    probs = _probabilities(model, x)
    # Scale limits, one (lo, hi) per image: what makes maps comparable is said in the title.
    if normalise == "shared":
        his = maps.flatten(1).amax(1).tolist()
    elif normalise == "none":
        his = [float(maps.max())] * n
    else:
        his = [None] * n

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3 * panel_size + (0.6 if colorbar else 0), n * panel_size + 0.5), dpi=100,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 3, squeeze=False)
    headers = ["image", f"Grad-CAM {names[0]}", f"Grad-CAM {names[1]}"]
    for i in range(n):
        grey = as_grey_uint8(imgs[i, 0])
        axes[i, 0].imshow(grey, cmap="gray", vmin=0, vmax=255)
        true = names[labels[i]] if labels is not None else "?"
        axes[i, 0].set_title(f"true: {true}\nP({names[1].lower()}) = {float(probs[i]):.2f}", fontsize=8)
        for j in range(2):
            vmin, vmax = (None, None) if his[i] is None else (0.0, his[i])
            axes[i, j + 1].imshow(overlay(grey, maps[i, j], cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax))
            if i == 0:
                axes[i, j + 1].set_title(headers[j + 1], fontsize=9)
        for ax in axes[i]:
            ax.set_axis_off()
    if colorbar:
        top = 1.0 if normalise != "none" else max(float(maps.max()), 1e-12)
        label = {"shared": "fraction of the image's max (both classes)", "per_map": "per-map min–max",
                 "none": "Grad-CAM (logit evidence)"}[normalise]
        cb = fig.colorbar(ScalarMappable(Normalize(0.0, top), cmap=cmap), ax=axes[:, 1:], shrink=min(1.0, 3.0 / n),
                          fraction=0.05)
        cb.set_label(label, fontsize=8)
    scale_txt = {"shared": "scale shared by both classes of each image", "per_map": "each map min–max",
                 "none": "one scale for all maps"}[normalise]
    layer_name = layer or cfg.get("target_layer")
    fig.suptitle(title or f"{cfg['architecture']}: Grad-CAM of the class logits at {layer_name} ({scale_txt})",
                 fontsize=10)
    return fig


def saliency_outcomes_figure(model: nn.Module, examples: Mapping[str, Any], method: str = "saliency",
                             target: str | int = "predicted", threshold: float = 0.5,
                             normalise: str = "shared", clip_percentile: float = 99.0, cmap: str = "inferno",
                             alpha: float = 0.6, title: str | None = None, panel_size: float = 2.4,
                             **options: Any) -> Figure:
    """Attribution maps of a TP, TN, FP and FN example: columns = outcomes; rows = the X-ray, the map over it.

    Args:
        model: any zoo model.
        examples: ``{"TP": image, "TN": image, "FP": image, "FN": image}``, each a grey ``uint8 (H, W)`` or
            ``(1, H, W)``. Missing keys or ``None`` give an empty panel ("none at this threshold").
        method: one of :func:`lib.explain.attribution.list_methods` (default Captum ``Saliency``, ``abs=True``).
        target: the class whose logit is explained: ``"predicted"`` (at ``threshold``) or a class index.
        threshold: decision threshold on ``P(positive)`` for the "predicted" target and the titles.
        normalise: ``"shared"`` (one scale for the four maps: magnitudes comparable) or ``"per_map"``.
        clip_percentile: the scale's top is this percentile of the map values (saliency maps have a few extreme
            pixels that would make everything else dark — Captum's ``visualize_image_attr`` clips at 98 %);
            100 = the max. Signed methods are shown as ``|attribution|``.
        cmap, alpha: overlay colour map and heatmap weight.
        title: figure title; default names the model, method and target.
        panel_size: inches per panel.
        **options: passed to :func:`~lib.explain.attribution.attribute` (``n_steps=…``, ``abs=…``).

    Returns:
        A matplotlib Figure (Agg canvas).

    Example:
        >>> fig = saliency_outcomes_figure(model, {"TP": tp, "TN": tn, "FP": fp, "FN": fn}, method="smoothgrad")
    """
    unknown = sorted(set(examples) - set(OUTCOMES))
    if unknown:
        raise XcxrValueError(f"examples keys must be among {list(OUTCOMES)}, got {unknown}")
    if method not in list_methods():
        raise XcxrValueError(f"method must be one of {list_methods()}, got {method!r}")
    if normalise not in _SALIENCY_SCALES:
        raise XcxrValueError(f"normalise must be one of {list(_SALIENCY_SCALES)}, got {normalise!r}")
    if target != "predicted" and target not in (0, 1):
        raise XcxrValueError(f"target must be 'predicted', 0 or 1, got {target!r}")
    if not 0.0 < float(clip_percentile) <= 100.0:
        raise XcxrValueError(f"clip_percentile must be in (0, 100], got {clip_percentile!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise XcxrValueError(f"threshold must be in [0, 1], got {threshold!r}")
    cfg = get_config(model)
    names = cfg["labels"]
    present = [k for k in OUTCOMES if examples.get(k) is not None]
    greys = {k: as_grey_uint8(examples[k]) for k in present}
    results: dict[str, tuple[np.ndarray, float, int]] = {}
    if present:
        x = torch.cat([prepare(model, torch.from_numpy(greys[k])[None, None]) for k in present])
        probs = _probabilities(model, x)
        classes = [int(p >= threshold) if target == "predicted" else int(target) for p in probs.tolist()]
        attr = attribute(model, x, None, method=method, **options).cpu().double()   # (n, 2, H, W)
        for i, k in enumerate(present):
            results[k] = (attr[i, classes[i]].abs().numpy(), float(probs[i]), classes[i])
    tops = {k: float(np.percentile(v[0], clip_percentile)) for k, v in results.items()}
    shared_top = max(tops.values(), default=0.0)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * panel_size, 2 * panel_size + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4, squeeze=False)
    for j, k in enumerate(OUTCOMES):
        for ax in axes[:, j]:
            ax.set_axis_off()
        if k not in results:
            axes[0, j].set_title(f"{k}: none at this threshold", fontsize=8)
            continue
        amap, p, c = results[k]
        top = shared_top if normalise == "shared" else tops[k]
        axes[0, j].imshow(greys[k], cmap="gray", vmin=0, vmax=255)
        axes[0, j].set_title(f"{k}: P({names[1].lower()}) = {p:.2f}", fontsize=8)
        axes[1, j].imshow(overlay(greys[k], amap, cmap=cmap, alpha=alpha, vmin=0.0, vmax=max(top, 1e-12)))
        axes[1, j].set_title(f"map of {names[c]}", fontsize=8)
    scale_txt = "one scale for the four maps" if normalise == "shared" else "each map its own scale"
    fig.suptitle(title or f"{cfg['architecture']}: {method} of the class logit, threshold {threshold:g} "
                          f"({scale_txt}, top = {clip_percentile:g}th percentile)", fontsize=10)
    return fig
