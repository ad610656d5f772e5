"""Trust checks for explanation maps: does the map depend on the model, and does it point at the evidence?

1. **Model-randomisation sanity check** (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
   https://arxiv.org/abs/1810.03292): re-initialise the network from the top (the head) down, one block at a
   time, *cascading* (block k stays random while block k+1 is randomised), recompute the map after each step and
   compare it with the original by **Spearman rank correlation**. A map that barely changes while the weights
   become noise explains the image (edges, contrast), not the model. :func:`model_randomisation`.
2. **Deletion and insertion curves** (Petsiuk et al. 2018, RISE, https://arxiv.org/abs/1806.07421): remove the
   pixels in the order the map ranks them (most important first) and track the class probability — a good map
   makes it fall fast (small area under the *deletion* curve); or start from an empty image and insert pixels in
   that order — a good map makes it rise fast (large area under the *insertion* curve). Both are compared with
   random maps, the baseline any map must beat. :func:`deletion_insertion`.

Choices, written down:

* **Block order** (:func:`randomisation_blocks`), read off the module tree: the top-level children that hold
  parameters, last first; a ``Sequential``/``ModuleList`` whose children all hold parameters (a stack of blocks)
  is opened one level. For the zoo: ``pneumonia_cnn`` → ``head, features.2, features.1, features.0``;
  ``cnn1``/``cnn2`` → ``classifier, features.N-1, …, features.0``; ``dnn1``/``dnn2`` → ``head, layers.N-1, …``;
  ResNet18 → ``fc, layer4.1, layer4.0, layer3.1, …, layer1.0, bn1, conv1``.
* **Re-initialisation** = each layer's own ``reset_parameters()`` (the architecture's init; BatchNorm goes back to
  weight 1, bias 0, running mean 0, variance 1), seeded with ``seed + step``, on a **deep copy** — the caller's
  model is never touched, and the global RNG state is restored afterwards.
* **Spearman** over all pixels of each map, ties averaged (``scipy.stats.rankdata``). A constant map (e.g. an
  all-zero ReLU'd Grad-CAM of a randomised model) has no ranking: its correlation with a non-constant map is
  defined as 0 (nothing of the original order survives), with another constant map as 1.
* **Deletion baseline** = the image's own **mean** (per channel), for deletion (removed pixels take it) and
  insertion (the start image). Not a blurred copy by default: pneumonia shows up as *opacity* — low-frequency
  brightness — which a blur keeps, so "deleting" by blurring would leave the evidence in place. ``"blur"``
  (Gaussian, σ = side/16, as in RISE's insertion) and constants are options.
* **Pixel order**: descending map value; ties (Grad-CAM's ReLU makes many zeros) are broken in a seeded random
  order, never raster order (which would delete the top rows first).
* **Random baseline**: ``n_random`` seeded random maps per image, uniform noise on a ``random_grid`` ×
  ``random_grid`` grid upsampled bilinearly (default 14 × 14 cells, blobs like a Grad-CAM's). A pixel-wise iid
  random order would delete scattered single pixels, which a CNN interpolates away — an unfairly weak baseline.
  ``random_grid=None`` gives that one.
* **Probability tracked**: of the explained class: softmax for two logits, ``sigmoid(±z)`` for one logit.
  **Areas**: trapezoid rule over the fraction of pixels changed, ``x ∈ [0, 1]``, so AUC ∈ [0, 1].
* **Batching**: every perturbed image of every step (and of every image, and every random map) is built from a
  rank tensor and goes through the model in chunks of ``batch_size`` — one forward per chunk, not one per step
  (default chunk: 8 images on a CPU, where bigger batches are slower per image, 64 on a GPU).
  ``batched=False`` (one forward per step and image) exists only to measure what batching buys; both give the same
  numbers. The two ends of every curve (intact image, all-baseline image) do not depend on the map: they are
  computed once per image and shared by the map and the random maps.

Example:
    >>> from lib.explain.core import prepare
    >>> x = prepare(model, test_set.images[:8])
    >>> for row in model_randomisation(model, x, classes=[1]):
    ...     print(row["step"], row["layer"], round(row["spearman"], 2))
    0 original 1.0
    1 head 0.12
    …
    >>> res = deletion_insertion(model, x, steps=32)        # Grad-CAM of each image's predicted class
    >>> res.summary()
    {'deletion_auc': 0.21, 'random_deletion_auc': 0.47, 'insertion_auc': 0.71, 'random_insertion_auc': 0.52, …}
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .core import ACCELERATOR_BATCH, CPU_BATCH, explaining, num_classes, pass_batch_size, resolve_classes
from ..errors import XcxrTypeError, XcxrValueError


def _rankdata(*args, **kwargs):  # scipy on first use: the app's first page needs no scipy
    from scipy.stats import rankdata

    return rankdata(*args, **kwargs)

__all__ = ["randomisation_blocks", "model_randomisation", "rank_correlation", "ssim",
           "perturbation_curves", "curve_auc", "deletion_insertion", "PerturbationResult", "ExplainFn", "CPU_BATCH",
           "ACCELERATOR_BATCH"]

log = logging.getLogger(__name__)

#: ``explain(model, images, classes) -> maps (B, len(classes), H, W)`` — the calling convention of
#: :func:`lib.explain.gradcam` (``classes`` may be ``None`` = all classes).
ExplainFn = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]

_MODES = ("deletion", "insertion")


def _gradcam(model: nn.Module, images: torch.Tensor, classes: Any) -> torch.Tensor:
    # imported on first use: gradcam lives in its own module, and trust checks work with any explainer
    from .gradcam import gradcam
    return gradcam(model, images, classes=classes)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4 or not len(images):
        raise XcxrTypeError("images must be a model-ready float tensor (B≥1, C, H, W) — use lib.explain.core.prepare "
                            f"for uint8 images — got {type(images).__name__} {tuple(getattr(images, 'shape', ()))}")


# --- 1. model-randomisation sanity check ----------------------------------------------------------------------

def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def randomisation_blocks(model: nn.Module) -> list[str]:
    """The re-initialisation order of the cascading sanity check: module names, top (head) first.

    Read off the module tree (see the module docstring): top-level children holding parameters, last first;
    a ``Sequential``/``ModuleList`` whose children all hold parameters is opened one level; a model with a single
    parameter-holding child (a wrapper) is looked into.

    Example:
        >>> randomisation_blocks(create_model("pneumonia_cnn"))
        ['head', 'features.2', 'features.1', 'features.0']
    """
    prefix, root = "", model
    while True:  # look through wrappers (one child that holds every parameter)
        holders = [(n, c) for n, c in root.named_children() if _has_params(c)]
        if len(holders) == 1 and not any(True for _ in root.parameters(recurse=False)) \
                and len(list(holders[0][1].children())) > 0:
            prefix, root = f"{prefix}{holders[0][0]}.", holders[0][1]
        else:
            break
    blocks: list[str] = []
    for name, child in reversed(list(root.named_children())):
        if not _has_params(child):
            continue
        grand = list(child.named_children())
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and grand and all(_has_params(g) for _, g in grand):
            blocks += [f"{prefix}{name}.{g}" for g, _ in reversed(grand)]
        else:
            blocks.append(f"{prefix}{name}")
    if not blocks:
        raise XcxrValueError(f"{type(model).__name__} has no parameters to randomise")
    return blocks


def _reinit(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()  # BatchNorm's also resets the running statistics
        elif any(True for _ in m.parameters(recurse=False)):
            log.warning("%s has parameters but no reset_parameters(); drawing them from N(0, 0.02)",
                        type(m).__name__)
            with torch.no_grad():
                for p in m.parameters(recurse=False):
                    p.normal_(0.0, 0.02)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between matching maps, over their last two dims (ties averaged).

    Args:
        a, b: maps of the same shape ``(..., H, W)``.

    Returns:
        float64 tensor of shape ``a.shape[:-2]``. A constant map against a non-constant one gives 0, two constant
        maps give 1 (see the module docstring).

    Example:
        >>> m = torch.rand(2, 8, 8)
        >>> rank_correlation(m, 2 * m + 1)
        tensor([1., 1.], dtype=torch.float64)
    """
    if a.shape != b.shape or a.ndim < 2:
        raise XcxrValueError(f"maps must have the same shape (..., H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    lead = a.shape[:-2]
    x = a.detach().double().cpu().reshape(-1, a.shape[-2] * a.shape[-1]).numpy()
    y = b.detach().double().cpu().reshape(-1, b.shape[-2] * b.shape[-1]).numpy()
    rx, ry = _rankdata(x, axis=1), _rankdata(y, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    sx, sy = np.sqrt((rx * rx).sum(1)), np.sqrt((ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(1) / (sx * sy)
    const_x, const_y = sx == 0, sy == 0
    rho = np.where(const_x & const_y, 1.0, np.where(const_x | const_y, 0.0, rho))
    return torch.from_numpy(np.clip(rho, -1.0, 1.0)).reshape(lead)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(dim=(-2, -1), keepdim=True)
    span = m.amax(dim=(-2, -1), keepdim=True) - lo
    # a constant map becomes zeros, not NaN
    return torch.where(span > 0, (m - lo) / span.clamp_min(1e-12), torch.zeros_like(m))


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of matching maps after per-map min-max scaling to [0, 1].

    Gaussian window (11 px, σ 1.5, applied as two 1-D passes), constants ``(0.01)²`` and ``(0.03)²`` for data
    range 1, mean over the map.

    Returns:
        float64 tensor of shape ``a.shape[:-2]``; 1 for identical maps.

    Example:
        >>> m = torch.rand(1, 32, 32)
        >>> round(float(ssim(m, m)), 6)
        1.0
    """
    if a.shape != b.shape or a.ndim < 2:
        raise XcxrValueError(f"maps must have the same shape (..., H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    lead, (h, w) = a.shape[:-2], a.shape[-2:]
    x = _minmax(a.detach().float().cpu()).reshape(-1, 1, h, w)
    y = _minmax(b.detach().float().cpu()).reshape(-1, 1, h, w)
    r = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian: 2·window instead of window² per pixel
        t = F.conv2d(F.pad(t, [pad, pad, 0, 0], mode="replicate"), g.reshape(1, 1, 1, -1))
        return F.conv2d(F.pad(t, [0, 0, pad, pad], mode="replicate"), g.reshape(1, 1, -1, 1))

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.double().mean(dim=(1, 2, 3)).reshape(lead)


def model_randomisation(model: nn.Module, images: torch.Tensor, classes: int | Sequence[int] | None = None,
                        explain: ExplainFn | None = None, blocks: Sequence[str] | None = None, seed: int = 0,
                        with_ssim: bool = False) -> list[dict[str, Any]]:
    """Cascading model-randomisation sanity check (Adebayo et al. 2018): rank correlation per step.

    Step 0 explains a deep copy of the model as it is; step ``k`` re-initialises block ``k`` of
    :func:`randomisation_blocks` (top first) on top of steps ``1..k-1`` and explains again. Each map is compared
    with the step-0 map of the same image and class.

    Args:
        model: any zoo model; it is deep-copied, never modified (weights, modes and hooks stay as they were).
        images: model-ready float batch ``(B, C, H, W)``.
        classes: class indices to explain (``None`` = all classes), as in :func:`lib.explain.gradcam`.
        explain: ``explain(model, images, classes) -> (B, K, H, W)`` maps; default Grad-CAM on the model's
            target layer. Signed methods: pass a wrapper that takes ``abs()`` if you want Adebayo's absolute maps.
        blocks: module names in re-initialisation order; default :func:`randomisation_blocks`.
        seed: the re-initialisation of step ``k`` is seeded with ``seed + k`` (the caller's RNG is untouched).
        with_ssim: also report the SSIM of the min-max scaled maps.

    Returns:
        One dict per step: ``{"step": k, "layer": name ("original" for step 0), "spearman": mean over images and
        classes, "spearman_per_image": [mean over classes, per image]}`` (+ ``"ssim"``).

    Raises:
        TypeError: ``images`` is not a float batch. ValueError: an unknown block name or class.

    Example:
        >>> rows = model_randomisation(model, x, classes=[1])
        >>> [(r["layer"], round(r["spearman"], 2)) for r in rows]
        [('original', 1.0), ('head', 0.1), ('features.2', 0.05), ('features.1', 0.02), ('features.0', 0.01)]
    """
    _check_images(images)
    explain = explain or _gradcam
    if classes is not None:
        classes = resolve_classes(model, classes)
    work = copy.deepcopy(model)  # the caller's model is never modified
    names = list(blocks) if blocks is not None else randomisation_blocks(work)
    modules = dict(work.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise XcxrValueError(f"unknown block name(s) {unknown}; choices: {randomisation_blocks(work)}")
    devices = [images.device] if images.device.type == "cuda" else []

    def maps() -> torch.Tensor:
        return explain(work, images, classes).detach().double().cpu()  # explainers run their own eval view

    reference = maps()
    rows: list[dict[str, Any]] = []
    for step, name in enumerate(["original"] + names):
        if step > 0:
            with torch.random.fork_rng(devices=devices):  # seeded re-init, the caller's RNG state restored
                torch.manual_seed(seed + step)
                _reinit(modules[name])
        current = reference if step == 0 else maps()
        rho = rank_correlation(reference, current)  # (B, K)
        row: dict[str, Any] = {"step": step, "layer": name, "spearman": float(rho.mean()),
                               "spearman_per_image": rho.mean(1).tolist()}
        if with_ssim:
            row["ssim"] = float(ssim(reference, current).mean())
        rows.append(row)
    return rows


# --- 2. deletion and insertion curves -------------------------------------------------------------------------

@dataclass(frozen=True)
class PerturbationResult:
    """Deletion / insertion curves of a map and of random maps, per image.

    Attributes:
        x: fraction of pixels removed (deletion) or inserted (insertion) at each step, ``(S+1,)`` from 0 to 1.
        classes: the class explained for each image ``(B,)``.
        curves: ``{"deletion": (B, S+1), "insertion": (B, S+1)}`` — probability of that class at each step.
        auc: ``{"deletion": (B,), "insertion": (B,)}`` — area under each curve, in [0, 1].
        random_curves: the same for the random maps, averaged over the ``n_random`` maps.
        random_auc: areas of the random maps' curves, averaged over the random maps ``(B,)``.
    """

    x: np.ndarray
    classes: np.ndarray
    curves: dict[str, np.ndarray]
    auc: dict[str, np.ndarray]
    random_curves: dict[str, np.ndarray]
    random_auc: dict[str, np.ndarray]

    @property
    def baseline_probability(self) -> np.ndarray:
        """Probability of the explained class for the all-baseline image (e.g. the flat mean-grey one), per image
        ``(B,)``: where insertion starts and deletion ends. A baseline is not neutral: a model may find a flat grey
        image quite like one class, and then insertion starts high and deletion climbs back to it at the end."""
        if "insertion" in self.curves:
            return self.curves["insertion"][:, 0]
        return self.curves["deletion"][:, -1]

    def summary(self) -> dict[str, float]:
        """Means over images: ``{"deletion_auc", "random_deletion_auc", "insertion_auc", …}``.

        A good map has ``deletion_auc < random_deletion_auc`` and ``insertion_auc > random_insertion_auc``.
        """
        out: dict[str, float] = {}
        for mode in self.auc:
            out[f"{mode}_auc"] = float(self.auc[mode].mean())
            if mode in self.random_auc:
                out[f"random_{mode}_auc"] = float(self.random_auc[mode].mean())
        return out


def curve_auc(curve: np.ndarray | torch.Tensor, x: np.ndarray | None = None) -> np.ndarray:
    """Area under curve(s) ``(..., S+1)`` by the trapezoid rule over ``x`` (default ``linspace(0, 1, S+1)``).

    Example:
        >>> float(curve_auc(np.array([1.0, 0.0])))
        0.5
    """
    y = np.asarray(curve.detach().cpu() if isinstance(curve, torch.Tensor) else curve, dtype=np.float64)
    xs = np.linspace(0.0, 1.0, y.shape[-1]) if x is None else np.asarray(x, dtype=np.float64)
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(xs)).sum(-1)


def _baseline_images(images: torch.Tensor, baseline: str | float | torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(images.device, images.dtype).expand_as(images)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(images, float(baseline))
    if baseline == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur
        sigma = max(images.shape[-2:]) / 16
        k = min(2 * int(3 * sigma) + 1, 2 * (min(images.shape[-2:]) // 2) - 1)  # odd, smaller than the image
        return gaussian_blur(images, [max(k, 1)] * 2, [sigma, sigma])
    raise XcxrValueError(f"baseline must be 'mean', 'blur', a float or a tensor (model space), got {baseline!r}")


def _ranks(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(R, H·W)`` long: position of every pixel in the order "highest map value first", ties random."""
    flat = maps.detach().float().cpu().reshape(len(maps), -1)
    ranks = torch.empty(flat.shape, dtype=torch.long)
    for r in range(len(flat)):
        perm = torch.randperm(flat.shape[1], generator=generator)  # random order among equal values
        order = perm[torch.argsort(flat[r, perm], descending=True, stable=True)]
        ranks[r, order] = torch.arange(flat.shape[1])
    return ranks


def _class_probability(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:  # one logit: P(class 1) = sigmoid(z), P(class 0) = sigmoid(-z)
        sign = classes.to(logits.dtype) * 2 - 1
        return torch.sigmoid(logits[:, 0] * sign)
    return torch.softmax(logits, dim=1).gather(1, classes[:, None])[:, 0]


def perturbation_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                        classes: int | Sequence[int] | torch.Tensor, mode: str = "deletion", steps: int = 50,
                        baseline: str | float | torch.Tensor = "mean", batch_size: int | None = None, batched: bool = True,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deletion or insertion curve of each image, for one map per image.

    Args:
        model: any zoo model (run in eval mode, the caller's mode restored, no gradients).
        images: model-ready float batch ``(B, C, H, W)``.
        maps: one map per image, ``(B, H, W)`` or ``(B, 1, H, W)``; resized bilinearly if not ``H×W``. Higher =
            more important (removed first / inserted first).
        classes: the class whose probability is tracked: one index for all images or one per image.
        mode: ``"deletion"`` (pixels → baseline, most important first) or ``"insertion"`` (from the baseline
            image, original pixels back, most important first).
        steps: number of steps ``S``; step ``k`` changes ``round(k·H·W/S)`` pixels.
        baseline: ``"mean"`` (each image's per-channel mean; default), ``"blur"``, a float or a tensor, in model
            space.
        batch_size: perturbed images per forward pass (all steps of all images are chunked together); ``None``:
            :data:`CPU_BATCH` on a CPU, :data:`ACCELERATOR_BATCH` on a GPU.
        batched: ``False`` runs one forward per image and step (only to measure what batching buys).
        seed: tie-breaking order among equal map values.

    Returns:
        ``(x, probs)``: ``x`` ``(S+1,)`` fractions of pixels changed, ``probs`` ``(B, S+1)`` float64.

    Example:
        >>> x_frac, p = perturbation_curves(model, x, cams[:, 1], classes=1, steps=20)
        >>> curve_auc(p, x_frac)
        array([0.18, 0.25, …])
    """
    _check_images(images)
    if mode not in _MODES:
        raise XcxrValueError(f"mode must be one of {_MODES}, got {mode!r}")
    steps, batch_size = _check_steps(steps), _check_batch(batch_size, images.device)
    b, h, w = len(images), images.shape[-2], images.shape[-1]
    cls = _per_image_classes(model, classes, b, images.device)
    maps = _one_map_per_image(maps, b, h, w)
    ranks = _ranks(maps, torch.Generator().manual_seed(seed))
    return _curves(model, images, _baseline_images(images, baseline), ranks, torch.arange(b), cls, mode, steps,
                   batch_size, batched)


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise XcxrValueError(f"steps must be a positive int, got {steps!r}")
    return steps


def _check_batch(batch_size: int | None, device: torch.device) -> int:
    if batch_size is None:
        return pass_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise XcxrValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _per_image_classes(model: nn.Module, classes: Any, b: int, device: torch.device) -> torch.Tensor:
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, int):
        classes = [classes] * b
    classes = list(classes)
    if len(classes) != b:
        raise XcxrValueError(f"classes must be one index or one per image ({b}), got {len(classes)}")
    resolve_classes(model, classes)  # ValueError for indices outside the model's labels
    return torch.tensor(classes, dtype=torch.long, device=device)


def _one_map_per_image(maps: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise XcxrTypeError(f"maps must be a tensor (B, H, W), got {type(maps).__name__}")
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise XcxrValueError(f"maps must hold one map per image, (B, H, W) or (B, 1, H, W); got {tuple(maps.shape)} "
                                 "— select the explained class's map first")
        maps = maps[:, 0]
    if maps.ndim != 3 or len(maps) != b:
        raise XcxrValueError(f"maps must have shape ({b}, H, W), got {tuple(maps.shape)}")
    if maps.shape[-2:] != (h, w):
        maps = F.interpolate(maps[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return maps


@torch.no_grad()
def _ends(model: nn.Module, images: torch.Tensor, base: torch.Tensor, batch_size: int, batched: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the intact images and of the all-baseline images ``(B, n_logits)`` each."""
    size = batch_size if batched else 1
    with explaining(model, grad=False) as net:
        return tuple(torch.cat([net(t[i:i + size]) for i in range(0, len(t), size)])  # type: ignore[return-value]
                     for t in (images, base.contiguous()))


@torch.no_grad()
def _curves(model: nn.Module, images: torch.Tensor, base: torch.Tensor, ranks: torch.Tensor, image_of: torch.Tensor,
            classes: torch.Tensor, mode: str, steps: int, batch_size: int, batched: bool,
            ends: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Curves for ``R`` orderings: row ``r`` perturbs image ``image_of[r]`` in the order ``ranks[r]``.

    The two ends of every curve (the intact image and the all-baseline image) do not depend on the map: their
    logits (``ends``, computed here when not given) are shared by the map's row, the random maps' rows and both
    modes.
    """
    h, w = images.shape[-2:]
    n_pix = h * w
    dev = images.device
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * n_pix / steps).long()  # pixels changed
    ranks, image_of, counts_dev = ranks.to(dev), image_of.to(dev), counts.to(dev)
    n_rows, inner = len(ranks), steps - 1
    out = torch.empty(n_rows, steps + 1, dtype=torch.float64)

    with explaining(model, grad=False) as net:
        # ends of the curves, once per image: deletion goes intact → baseline, insertion baseline → intact
        logits_img, logits_base = ends if ends is not None else _ends(model, images, base, batch_size, batched)
        p_img = _class_probability(logits_img, classes).double().cpu()
        p_base = _class_probability(logits_base, classes).double().cpu()
        first, last = (p_img, p_base) if mode == "deletion" else (p_base, p_img)
        out[:, 0], out[:, steps] = first[image_of.cpu()], last[image_of.cpu()]

        def perturbed(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # (row, step) pairs → images; mask = the first `count` pixels of the row's order, built per chunk
            rows, ks = flat // inner, flat % inner + 1
            mask = (ranks[rows] < counts_dev[ks][:, None]).reshape(-1, 1, h, w)
            img, fill = images[image_of[rows]], base[image_of[rows]]
            x = torch.where(mask, fill, img) if mode == "deletion" else torch.where(mask, img, fill)
            return x, classes[image_of[rows]]

        total = n_rows * inner
        probs = torch.empty(total, dtype=torch.float64)
        # batched: every (row, step) pair of every image in chunks of batch_size — one forward per chunk;
        # unbatched: the textbook loop, one forward per image and step (kept to measure the difference)
        size = batch_size if batched else 1
        for start in range(0, total, size):
            x, c = perturbed(torch.arange(start, min(start + size, total), device=dev))
            probs[start:start + len(x)] = _class_probability(net(x), c).double().cpu()
        out[:, 1:steps] = probs.reshape(n_rows, inner)
    return (counts.double() / n_pix).numpy(), out.numpy()


def _random_maps(b: int, n: int, h: int, w: int, grid: int | None, generator: torch.Generator) -> torch.Tensor:
    if grid is None:
        return torch.rand(b * n, h, w, generator=generator)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise XcxrValueError(f"random_grid must be a positive int or None, got {grid!r}")
    coarse = torch.rand(b * n, 1, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor | None = None,
                       classes: int | Sequence[int] | torch.Tensor | None = None, *, explain: ExplainFn | None = None,
                       modes: Sequence[str] = _MODES, steps: int = 50, baseline: str | float | torch.Tensor = "mean",
                       n_random: int = 3, random_grid: int | None = 14, seed: int = 0, batch_size: int | None = None,
                       batched: bool = True) -> PerturbationResult:
    """Deletion and insertion curves of a map (default: Grad-CAM) and of random maps, with their areas.

    Args:
        model: any zoo model (eval mode for the call, the caller's mode restored).
        images: model-ready float batch ``(B, C, H, W)``.
        maps: one map per image ``(B, H, W)`` / ``(B, 1, H, W)`` for the class in ``classes``; ``None`` = compute
            them with ``explain``.
        classes: class to explain and track per image (one index, one per image); ``None`` = each image's
            predicted class.
        explain: ``explain(model, images, classes) -> (B, K, H, W)``, used when ``maps`` is ``None``; default
            Grad-CAM.
        modes: which curves: ``("deletion", "insertion")`` or one of them.
        steps: number of steps (``S+1`` points from 0 % to 100 % of the pixels).
        baseline: what removed pixels become / the insertion start image: ``"mean"`` (per image and channel;
            default), ``"blur"``, a float or a tensor in model space. See the module docstring for why.
        n_random: random maps per image for the baseline (their areas are averaged); 0 skips it.
        random_grid: cells per side of the random maps (smooth blobs); ``None`` = pixel-wise random order.
        seed: random maps and tie-breaking.
        batch_size: perturbed images per forward pass; ``None``: :data:`CPU_BATCH` on a CPU,
            :data:`ACCELERATOR_BATCH` on a GPU.
        batched: ``False``: one forward per image and step (for the benchmark's before/after ratio only).

    Returns:
        :class:`PerturbationResult`.

    Raises:
        TypeError / ValueError: bad images, maps, classes, modes, steps or batch size.

    Example:
        >>> res = deletion_insertion(model, x, steps=32, modes=["deletion"])
        >>> res.auc["deletion"].mean() < res.random_auc["deletion"].mean()
        True
    """
    _check_images(images)
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes or any(m not in _MODES for m in modes):
        raise XcxrValueError(f"modes must be a non-empty list of {_MODES}, got {modes!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise XcxrValueError(f"n_random must be an int ≥ 0, got {n_random!r}")
    steps, batch_size = _check_steps(steps), _check_batch(batch_size, images.device)
    b, h, w = len(images), images.shape[-2], images.shape[-1]

    base = _baseline_images(images, baseline)
    # logits of the intact and the all-baseline images: the ends of every curve, and the predicted classes
    ends = _ends(model, images, base, batch_size, batched)
    if classes is None:  # each image's predicted class
        probs = torch.stack([_class_probability(ends[0], torch.full((b,), c, device=images.device))
                             for c in range(num_classes(model))], 1)
        classes = probs.argmax(1)
    cls = _per_image_classes(model, classes, b, images.device)

    if maps is None:
        wanted = sorted(set(cls.tolist()))
        all_maps = (explain or _gradcam)(model, images, wanted).detach()
        pick = torch.tensor([wanted.index(c) for c in cls.tolist()], device=all_maps.device)
        maps = all_maps[torch.arange(b, device=all_maps.device), pick]
    maps = _one_map_per_image(maps, b, h, w)

    gen = torch.Generator().manual_seed(seed)
    ranks = _ranks(maps, gen)
    image_of = torch.arange(b)
    if n_random:
        rand = _random_maps(b, n_random, h, w, random_grid, gen)
        ranks = torch.cat([ranks, _ranks(rand, gen)])
        image_of = torch.cat([image_of, torch.arange(b).repeat_interleave(n_random)])

    curves, auc, r_curves, r_auc = {}, {}, {}, {}
    x = np.linspace(0, 1, steps + 1)
    for mode in modes:
        # the map's rows and the random maps' rows go through the same chunked forwards
        x, p = _curves(model, images, base, ranks, image_of, cls, mode, steps, batch_size, batched, ends)
        curves[mode], auc[mode] = p[:b], curve_auc(p[:b], x)
        if n_random:
            rp = p[b:].reshape(b, n_random, steps + 1)
            r_curves[mode], r_auc[mode] = rp.mean(1), curve_auc(rp, x).mean(1)
    return PerturbationResult(x=x, classes=cls.cpu().numpy(), curves=curves, auc=auc, random_curves=r_curves,
                              random_auc=r_auc)
