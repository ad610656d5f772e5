"""Captum attribution methods behind one verb: ``attribute(model, images, targets, method=...)``.

Every method returns **one H×W map per image and target class**, a float tensor ``(B, len(targets), H, W)`` on
the images' device, in the input's pixel grid. The wrappers are thin: the attribution itself is always Captum's
(https://captum.ai); this module only fixes the choices a student should see written down.

Choices made here, for every method (see :mod:`lib.explain.core` for the package conventions):

* **Class target = class score = logit**, via :func:`~lib.explain.core.class_scores`: the model is wrapped in a
  small module that outputs one score per class, so Captum's ``target=`` indexes *classes*. For a one-logit
  (sigmoid) model the scores are ``(-z, +z)``: the NORMAL map is the map of the negated logit. Never the
  probability (the sigmoid/softmax saturates and couples the classes).
* **Eval mode** is forced for the call through :func:`~lib.explain.core.explaining`, a thread-private view of the
  model that shares its weights: the caller's model keeps its mode, and Captum's hooks (GuidedBackprop's ReLU
  hooks, the layer hooks of LayerGradCam) sit on the view, so forward passes of other threads through the same
  model never reach them. Gradients are enabled even when the caller is inside ``torch.no_grad()``/
  ``inference_mode()``. Captum removes its hooks in ``finally`` blocks; the tests check that no hook is left, also
  after an exception.
* **Targets in one call**: the batch is repeated once per target class and Captum's per-example ``target`` list
  picks the class, so one Captum call serves all images × classes.
* **Channels** (only 3-channel models — the ImageNet-pretrained ResNet18 gets the grey image on three channels):
  gradient-type attributions (saliency, smoothgrad, guided_backprop, integrated_gradients) are **summed over
  channels** (``channel_reduce="sum"``). For the repeated grey image this is the chain rule: the derivative with
  respect to the one grey pixel is the sum over its three copies (up to the per-channel 1/std). With ``abs=True``
  Captum takes ``|grad|`` per channel first, so the sum is ``Σ_c |∂s/∂x_c|``; Simonyan et al.'s
  ``"max_abs"`` (max over channels of ``|attr|``) is available. Occlusion gives every channel the same value (the
  window covers all channels), so its default is ``"mean"``. Layer Grad-CAM has no input channels.

Methods (options in brackets, defaults first):

=======================  =========================================================================================
``saliency``             Captum ``Saliency``: ``|∂ score / ∂ x|`` [``abs=True``; ``abs=False`` keeps the sign].
``integrated_gradients`` Captum ``IntegratedGradients`` (its Gauss–Legendre rule) [``n_steps=50``,
                         ``internal_batch_size=64`` images per pass, ``baseline="black"``]. Signed; sums to
                         ``score(x) − score(baseline)`` (completeness).
``smoothgrad``           Captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"`` [``nt_samples=25``,
                         ``nt_samples_batch_size=None`` = as many as fit in 64 images per pass, ``noise=0.15`` of
                         the full intensity range, ``abs=True``, ``seed=0``].
``guided_backprop``      Captum ``GuidedBackprop``. Signed. Only ``nn.ReLU`` *modules* are modified: the course CNN
                         uses LeakyReLU, for which it equals the plain gradient (a warning is logged).
``occlusion``            Captum ``Occlusion``: ``score(x) − score(x with a square patch set to the baseline)``,
                         averaged over the windows covering each pixel [``sliding_window=round(H/8)`` (28 px at
                         224), ``stride=window//2``, ``baseline="black"``, ``perturbations_per_eval`` = as many as
                         fit in 64 images per pass]. Signed; costs one forward per window position.
``layer_gradcam``        Captum ``LayerGradCam`` on the model's target layer (or ``layer=NAME``), with
                         ``relu_attributions=True`` (the paper's ReLU; Captum's default is *signed*) and
                         ``LayerAttribution.interpolate(..., "bilinear")`` (Captum's default is *nearest*)
                         [``relu=True``, ``interpolate_mode="bilinear"``]. Not defined for the fully connected DNNs
                         (``ValueError``).
=======================  =========================================================================================

Baselines (integrated gradients, occlusion): ``"black"`` = the zero-intensity image **in model space**, i.e.
``(0 − mean) / std`` per channel (what a black pixel becomes after :class:`~lib.data.Preprocess`);
``"mean"`` = model-space zero, i.e. the normalisation mean grey; or a float / tensor in model space.

Maps are **not normalised** (use :mod:`lib.explain.postprocess` / :func:`lib.explain.overlay.overlay` for that).

Example:
    >>> from lib.models import create_model
    >>> from lib.explain.core import prepare
    >>> m = create_model("pneumonia_cnn", img_size=64)
    >>> x = prepare(m, torch.zeros(2, 1, 64, 64, dtype=torch.uint8))
    >>> attribute(m, x, [0, 1], method="integrated_gradients", n_steps=16).shape
    torch.Size([2, 2, 64, 64])
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ..models.layers import get_config
from .core import class_scores, explaining, num_classes, pass_batch_size, resolve_classes, resolve_layer
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["attribute", "list_methods", "ClassScoreModel", "baseline_tensor"]

log = logging.getLogger(__name__)


_CHANNEL_REDUCE = ("sum", "mean", "max_abs")


class ClassScoreModel(nn.Module):
    """Wrap a zoo model so it outputs one score (logit) per **class**: Captum's ``target=c`` then means class c.

    Two-logit models: the logits unchanged. One-logit models: ``(-z, +z)`` (see
    :func:`~lib.explain.core.class_scores`). The wrapped model is a child module, so Captum's layer and ReLU hooks
    find its layers.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.classes = list(range(num_classes(model)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return class_scores(self.model, self.model(x), self.classes)


def baseline_tensor(model: nn.Module, images: torch.Tensor, baseline: str | float | torch.Tensor = "black"
                    ) -> torch.Tensor | float:
    """The reference input of integrated gradients and occlusion, in model space (see the module docstring).

    Args:
        model: a zoo model (its config gives ``mean``/``std``).
        images: the model-ready batch ``(B, C, H, W)`` (for device, dtype and channels).
        baseline: ``"black"`` (zero intensity, normalised), ``"mean"`` (model-space 0), a float or a tensor
            broadcastable to ``images``.

    Returns:
        A tensor broadcastable to ``images`` (``(1, C, 1, 1)`` for the named baselines), or the float given.

    Example:
        >>> baseline_tensor(create_model("pneumonia_cnn"), torch.zeros(1, 1, 8, 8)).flatten().tolist()
        [-2.0]
    """
    if isinstance(baseline, torch.Tensor):
        return baseline.to(images.device, images.dtype)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return float(baseline)
    if baseline == "mean":
        return 0.0
    if baseline == "black":
        cfg = get_config(model)
        c = images.shape[1]
        mean = torch.tensor(cfg["mean"], dtype=images.dtype, device=images.device).expand(c)
        std = torch.tensor(cfg["std"], dtype=images.dtype, device=images.device).expand(c)
        return ((0.0 - mean) / std).reshape(1, c, 1, 1)
    raise XcxrValueError(f"baseline must be 'black', 'mean', a float or a tensor, got {baseline!r}")


# --- one small function per method: (wrapped model, inputs, per-example targets, options) → Captum attribution ----

def _saliency(net: ClassScoreModel, x: torch.Tensor, t: list[int], *, abs: bool = True) -> torch.Tensor:
    from captum.attr import Saliency  # on first use: captum costs ~1 s to import

    return Saliency(net).attribute(x, target=t, abs=bool(abs))


def _integrated_gradients(net: ClassScoreModel, x: torch.Tensor, t: list[int], *, n_steps: int = 50,
                          internal_batch_size: int | None = None,
                          baseline: str | float | torch.Tensor = "black") -> torch.Tensor:
    from captum.attr import IntegratedGradients  # on first use: captum costs ~1 s to import

    _positive_int("n_steps", n_steps)
    if internal_batch_size is None:  # images × steps per pass: see lib.explain.core.CPU_BATCH
        internal_batch_size = pass_batch_size(x.device)
    _positive_int("internal_batch_size", internal_batch_size)
    return IntegratedGradients(net).attribute(
        x, baselines=baseline_tensor(net.model, x, baseline), target=t, n_steps=int(n_steps), method="gausslegendre",
        internal_batch_size=internal_batch_size)


def _smoothgrad(net: ClassScoreModel, x: torch.Tensor, t: list[int], *, nt_samples: int = 25,
                nt_samples_batch_size: int | None = None, noise: float = 0.15, abs: bool = True,
                seed: int | None = 0) -> torch.Tensor:
    from captum.attr import NoiseTunnel, Saliency  # on first use: captum costs ~1 s to import

    _positive_int("nt_samples", nt_samples)
    if not 0.0 <= float(noise):
        raise XcxrValueError(f"noise must be ≥ 0 (a fraction of the intensity range), got {noise!r}")
    if nt_samples_batch_size is None:  # as many noisy copies of the whole batch as fit in one pass
        nt_samples_batch_size = max(1, min(int(nt_samples), pass_batch_size(x.device) // len(x)))
    _positive_int("nt_samples_batch_size", nt_samples_batch_size)
    # SmoothGrad's σ is a fraction of the input range (Smilkov et al. 2017: 10–20 %). Intensities [0, 1] span
    # 1/std in model space; one σ for all channels (Captum takes one per input tensor).
    std = torch.tensor(get_config(net.model)["std"], dtype=torch.float64)
    sigma = float(noise) * float((1.0 / std).mean())

    def run() -> torch.Tensor:
        return NoiseTunnel(Saliency(net)).attribute(
            x, nt_type="smoothgrad", nt_samples=int(nt_samples), nt_samples_batch_size=int(nt_samples_batch_size),
            stdevs=sigma, target=t, abs=bool(abs))

    if seed is None:
        return run()
    # Reproducible noise without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        return run()


def _guided_backprop(net: ClassScoreModel, x: torch.Tensor, t: list[int]) -> torch.Tensor:
    from captum.attr import GuidedBackprop  # on first use: captum costs ~1 s to import

    if not any(isinstance(m, nn.ReLU) for m in net.modules()):
        log.warning("%s has no nn.ReLU modules (e.g. LeakyReLU only): guided backprop equals the plain gradient",
                    get_config(net.model)["architecture"])
    return GuidedBackprop(net).attribute(x, target=t)


def _occlusion(net: ClassScoreModel, x: torch.Tensor, t: list[int], *, sliding_window: int | None = None,
               stride: int | None = None, baseline: str | float | torch.Tensor = "black",
               perturbations_per_eval: int | None = None) -> torch.Tensor:
    from captum.attr import Occlusion  # on first use: captum costs ~1 s to import

    c, h, w = x.shape[1:]
    window = sliding_window if sliding_window is not None else max(1, round(min(h, w) / 8))
    _positive_int("sliding_window", window)
    if window > min(h, w):
        raise XcxrValueError(f"sliding_window must be ≤ the image side {min(h, w)}, got {window}")
    stride = stride if stride is not None else max(1, window // 2)
    _positive_int("stride", stride)
    if perturbations_per_eval is None:
        perturbations_per_eval = max(1, pass_batch_size(x.device) // len(x))
    _positive_int("perturbations_per_eval", perturbations_per_eval)
    with torch.no_grad():  # a perturbation method: forward passes only, no graph to keep
        return Occlusion(net).attribute(
            x, sliding_window_shapes=(c, int(window), int(window)), strides=(c, int(stride), int(stride)),
            baselines=baseline_tensor(net.model, x, baseline), target=t,
            perturbations_per_eval=int(perturbations_per_eval))


def _layer_gradcam(net: ClassScoreModel, x: torch.Tensor, t: list[int], *, layer: str | None = None,
                   relu: bool = True, interpolate_mode: str = "bilinear") -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam  # on first use: captum costs ~1 s to import

    if interpolate_mode not in ("nearest", "bilinear", "bicubic", "area"):
        raise XcxrValueError(f"interpolate_mode must be one of 'nearest', 'bilinear', 'bicubic', 'area', "
                             f"got {interpolate_mode!r}")
    name, module = resolve_layer(net.model, layer)  # ValueError for the DNNs (no spatial maps)
    cam = LayerGradCam(net, module).attribute(x, target=t, relu_attributions=bool(relu), attr_dim_summation=True)
    if cam.ndim != 4:
        raise XcxrValueError(f"layer {name!r} of {get_config(net.model)['architecture']} has no spatial feature maps "
                             f"(output of {cam.ndim - 1} dims after the batch); choose a conv layer")
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode)


_METHODS: dict[str, tuple[Callable[..., torch.Tensor], str]] = {
    # name: (function, default channel reduction)
    "saliency": (_saliency, "sum"),
    "integrated_gradients": (_integrated_gradients, "sum"),
    "smoothgrad": (_smoothgrad, "sum"),
    "guided_backprop": (_guided_backprop, "sum"),
    "occlusion": (_occlusion, "mean"),
    "layer_gradcam": (_layer_gradcam, "sum"),
}


def list_methods() -> list[str]:
    """Names accepted by :func:`attribute`'s ``method``, in a teaching order (cheap → expensive, then Grad-CAM)."""
    return list(_METHODS)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise XcxrValueError(f"{name} must be a positive int, got {value!r}")


def _options(method: str, fn: Callable[..., torch.Tensor], options: dict[str, Any]) -> None:
    import inspect

    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise XcxrTypeError(f"attribute(method={method!r}) got unknown option(s) {unknown}; allowed: "
                            f"{allowed + ['channel_reduce']}")


def _reduce_channels(attr: torch.Tensor, how: str) -> torch.Tensor:
    if attr.shape[1] == 1:
        return attr[:, 0]
    if how == "sum":
        return attr.sum(1)
    if how == "mean":
        return attr.mean(1)
    return attr.abs().amax(1)  # "max_abs"


def attribute(model: nn.Module, images: torch.Tensor, targets: int | Sequence[int] | None = None,
              method: str = "saliency", **options: Any) -> torch.Tensor:
    """Attribution maps of one Captum method, one ``H×W`` map per image and target class.

    Args:
        model: a zoo model (see :func:`lib.models.create_model`); put in eval mode for the call, its modes restored.
        images: model-ready float batch ``(B, C, H, W)`` (see :func:`lib.explain.core.prepare`).
        targets: class indices (0 = NORMAL, 1 = PNEUMONIA), one int, or ``None`` for all classes. The score
            explained is the class **logit** (``-z`` for class 0 of a one-logit model).
        method: one of :func:`list_methods`.
        **options: the method's options (module docstring table), plus ``channel_reduce`` =
            ``"sum"`` | ``"mean"`` | ``"max_abs"`` for 3-channel inputs.

    Returns:
        Float tensor ``(B, len(targets), H, W)``, detached, unnormalised, on the images' device. ``abs``-methods
        (saliency and smoothgrad by default) are ≥ 0; the others are signed; layer Grad-CAM is ReLU'd.

    Raises:
        ValueError: unknown ``method``, bad ``targets``, bad option values, Grad-CAM on a model without
            spatial feature maps.
        TypeError: ``images`` not a float tensor, unknown option names.

    Example:
        >>> m = create_model("resnet18_scratch", img_size=64)
        >>> x = torch.randn(1, 1, 64, 64)
        >>> attribute(m, x, None, method="saliency").shape       # both classes
        torch.Size([1, 2, 64, 64])
        >>> attribute(m, x, 1, method="layer_gradcam").shape     # PNEUMONIA only
        torch.Size([1, 1, 64, 64])
    """
    if method not in _METHODS:
        raise XcxrValueError(f"method must be one of {list_methods()}, got {method!r}")
    fn, default_reduce = _METHODS[method]
    reduce = options.pop("channel_reduce", default_reduce)
    if reduce not in _CHANNEL_REDUCE:
        raise XcxrValueError(f"channel_reduce must be one of {list(_CHANNEL_REDUCE)}, got {reduce!r}")
    _options(method, fn, options)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise XcxrTypeError(f"images must be a model-ready float tensor (B, C, H, W) — use lib.explain.core.prepare for "
                            f"uint8 images — got {type(images).__name__} {getattr(images, 'dtype', '')}")
    cfg = get_config(model)
    if images.ndim != 4 or images.shape[1] != cfg["in_chans"] or len(images) == 0:
        raise XcxrValueError(f"images must have shape (B≥1, {cfg['in_chans']}, H, W) for {cfg['architecture']}, "
                             f"got {tuple(images.shape)}")
    if any(p.is_inference() for p in model.parameters()):
        raise XcxrValueError("the model's parameters were created under torch.inference_mode(), so autograd cannot use "
                             "them; build or load the model outside inference_mode")
    classes = resolve_classes(model, targets)
    b, k = len(images), len(classes)
    # Gradients are needed even when the caller is in no_grad/inference mode (the app's predict path often is).
    with explaining(model, foreign_hooks=True) as net:  # eval, autograd on, Captum's hooks on a private view
        # One Captum call for all images × targets: row i*k + j is image i explained for class classes[j].
        # repeat_interleave copies, so this is a normal tensor (also for inference tensors) and the caller's
        # images stay untouched; gradient methods need it to require grad (Captum would warn and set it).
        x = images.detach().repeat_interleave(k, dim=0).requires_grad_(method != "occlusion")
        t = classes * b
        attr = fn(ClassScoreModel(net), x, t, **options)
    return _reduce_channels(attr.detach(), reduce).reshape(b, k, *attr.shape[-2:])
