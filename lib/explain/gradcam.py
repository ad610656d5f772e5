"""Grad-CAM written out in the course's seven steps, and the same maps for all classes at the cost of one pass.

Grad-CAM (Selvaraju et al., ICCV 2017, https://arxiv.org/abs/1610.02391) for class ``c`` and a conv layer with
feature maps ``A`` (channels ``k``, each ``h × w``)::

    1. forward pass, keeping A              logits = model(x)
    2. pick the target class                y_c = logit of c (for a one-logit model: +z for class 1, −z for class 0)
    3. gradients of y_c w.r.t. A            dy_c/dA                 (channels × h × w)
    4. average them over height and width   alpha_k = mean_ij dy_c/dA_kij   (one weight per channel)
    5. weighted sum of the maps             sum_k alpha_k A_k       (h × w)
    6. ReLU                                 keep what speaks *for* c
    7. upsample to the image                bilinear, to H × W

:func:`gradcam_reference` is exactly that, one line or small block per step, one backward pass per class — read it
first. :func:`gradcam` gives the same numbers (within float rounding, checked by the tests) for every requested
class from **one** forward pass:

* **CAM identity** — when the layer's maps go straight into global average pooling and a linear head
  (``pneumonia_cnn``: last ``features`` block → ``AdaptiveAvgPool2d`` → Dropout → ``Linear``; timm ResNet18:
  ``layer4`` → ``global_pool`` → ``fc``), ``dy_c/dA_kij = W_ck / (h·w)`` for every position, so step 4 is just the
  head's weights divided by ``h·w`` (Zhou et al. 2016's CAM). No backward pass at all; the forward runs without
  autograd. Dropout is the identity in eval mode, which Grad-CAM always uses.
* **Batched backward** — otherwise, one backward pass per *logit* (not per class: a class score is a fixed linear
  combination of the logits, e.g. ``−z`` for class 0 of a one-logit model), all of them in a single call with
  ``torch.autograd.grad(..., is_grads_batched=True)`` (vmap over the backward).

Options, named explicitly (see :mod:`lib.explain.postprocess`): ``method="gradcam" | "hirescam"`` (HiResCAM,
Draelos & Carin 2020, https://arxiv.org/abs/2011.08891: multiply gradients and maps element-wise *before*
summing over channels — step 4 skipped — so the map is exactly the sum of each position's contribution to the
score; equal to Grad-CAM when the gradient is the same at every position, i.e. GAP + linear heads or 1 × 1 maps),
``relu`` (``False`` = signed maps), ``upsample`` (``"bilinear"`` | ``"nearest"`` | ``"bicubic"`` | ``None`` = the
layer's own resolution), ``normalise`` (``"none"`` = the paper's raw values | ``"per_map"`` | ``"shared"``).

Caveats a student needs:

* The score is the class **logit**, not the softmax/sigmoid probability (the paper explains the pre-softmax
  score; a saturated probability has vanishing gradients).
* The model runs in ``eval()`` mode (BatchNorm in train mode would change every map); the caller's mode is restored.
* Autograd is switched on inside, even when the caller is under ``torch.no_grad()`` or ``torch.inference_mode()``.
* Maps are **not normalised** by default: their size is the amount of evidence, comparable across images of one
  model. A **constant image** gets all-zero maps: it has no spatial structure, and any pattern in its map would
  be an artefact of the zero padding at the borders (Captum and pytorch-grad-cam would show that artefact).
* Images in one batch do not interact (eval mode), so summing the scores over the batch before the backward
  pass gives every image its own gradient.

Example:
    >>> from lib.models import create_model
    >>> from lib.explain import gradcam
    >>> model = create_model("pneumonia_cnn")
    >>> x = torch.randn(4, 1, 224, 224)                   # model-ready images (see lib.explain.prepare)
    >>> maps = gradcam(model, x)                           # (4, 2, 224, 224): NORMAL and PNEUMONIA maps
    >>> maps = gradcam(model, x, classes=[1], layer="features.1", method="hirescam", normalise="per_map")
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn as nn

from ..models.layers import get_config, get_layer
from .core import capture, class_scores, explaining, resolve_classes, resolve_layer
from .postprocess import NORMALISE_MODES, UPSAMPLE_MODES, postprocess
from .postprocess import upsample as _upsample
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["METHODS", "gradcam", "gradcam_reference", "cam_head"]

#: The two ways of turning gradients and maps into one map (see the module docstring).
METHODS: tuple[str, ...] = ("gradcam", "hirescam")


# ---------------------------------------------------------------------------------------------------------------
# The seven steps, one class at a time (the course sheet)
# ---------------------------------------------------------------------------------------------------------------

def gradcam_reference(model: nn.Module, images: torch.Tensor, classes: int | Sequence[int] | None = None,
                      layer: str | None = None, *, method: str = "gradcam", relu: bool = True,
                      upsample: str | None = "bilinear") -> torch.Tensor:
    """Grad-CAM exactly as the course sheet writes it: one forward pass, then one backward pass per class.

    Slower than :func:`gradcam` (one backward per class) but every step is visible; the tests check that both agree.

    Args:
        model: a zoo model (anything with an ``xcxr_config``), in any mode; it runs in eval mode.
        images: model-ready float images ``(B, C, H, W)``.
        classes: class indices (``0`` = the first label); ``None`` = every class.
        layer: dotted module name of a conv layer; ``None`` = the model's declared target layer.
        method: ``"gradcam"`` or ``"hirescam"`` (skips step 4: gradient × map element-wise).
        relu: step 6; ``False`` keeps signed maps.
        upsample: step 7's interpolation mode, or ``None`` to keep the layer's resolution.

    Returns:
        ``(B, len(classes), H, W)`` maps, unnormalised.

    Example:
        >>> maps = gradcam_reference(create_model("cnn1"), torch.randn(2, 1, 224, 224), classes=[0, 1])
    """
    classes = _check(model, images, classes, layer, method, upsample)
    with explaining(model) as net:                                 #    eval mode, thread-private hooks
        name, module = resolve_layer(net, layer)
        with capture({name: module}) as store:
            x = _as_input(images)
            logits = net(x)                                        # 1. forward pass; the hook keeps the maps A
        A = _captured(store, name)                                 #    A: (B, channels, h, w)
        maps = []
        for c in classes:
            y_c = class_scores(net, logits, [c])[:, 0]             # 2. the target class's score: its logit (B,)
            dA, = torch.autograd.grad(y_c.sum(), A, retain_graph=True)   # 3. dy_c/dA; the sum keeps images apart
            if method == "gradcam":
                alpha = dA.mean(dim=(2, 3), keepdim=True)          # 4. channel weights: mean over height, width
                cam = (alpha * A).sum(dim=1)                       # 5. weighted sum of the feature maps
            else:                                                  #    HiResCAM: no averaging, gradient × map
                cam = (dA * A).sum(dim=1)                          #    element-wise, summed over channels
            if relu:
                cam = cam.clamp(min=0)                             # 6. ReLU: keep only evidence *for* class c
            maps.append(cam.detach())
        cams = torch.stack(maps, dim=1)                            #    (B, len(classes), h, w)
    cams = _zero_constant_images(cams, images)
    if upsample is not None:                                       # 7. upsample to the image (bilinear = paper)
        cams = _upsample(cams, images.shape[-2:], upsample, clip_negative=relu)
    return cams


# ---------------------------------------------------------------------------------------------------------------
# All classes from one pass
# ---------------------------------------------------------------------------------------------------------------

def gradcam(model: nn.Module, images: torch.Tensor, classes: int | Sequence[int] | None = None,
            layer: str | None = None, *, method: str = "gradcam", relu: bool = True,
            upsample: str | None = "bilinear", normalise: str = "none", fast: bool = True) -> torch.Tensor:
    """Grad-CAM maps of ``images`` for every class in ``classes``, from one forward pass.

    Args:
        model: a zoo model (anything with an ``xcxr_config``), in any mode: it runs in ``eval()`` mode and its own
            mode (per sub-module) is restored afterwards.
        images: model-ready float images ``(B, C, H, W)`` (through the model's preprocessing, see
            :func:`lib.explain.prepare`).
        classes: class indices into the model's labels (``0`` = NORMAL, ``1`` = PNEUMONIA), one int or a list
            (repeats allowed); ``None`` = every class. For a one-logit model class 1 explains ``+logit`` and class
            0 explains ``−logit``.
        layer: dotted name of the layer whose maps are explained (``"features.1"``, ``"layer3"``); ``None`` = the
            model's declared target layer (the last conv stage). The fully connected DNNs have none: ``ValueError``.
        method: ``"gradcam"`` (the paper) or ``"hirescam"`` (Draelos & Carin 2020).
        relu: apply the ReLU of step 6 (the paper). ``False`` returns signed maps.
        upsample: ``"bilinear"`` (the paper), ``"nearest"``, ``"bicubic"`` — or ``None`` to return the maps at the
            layer's resolution ``(h, w)``.
        normalise: ``"none"`` (default: the paper's raw values), ``"per_map"`` or ``"shared"`` — see
            :func:`lib.explain.postprocess.normalise`.
        fast: ``True`` = the one-pass path (CAM identity or batched backward); ``False`` = :func:`gradcam_reference`.

    Returns:
        ``(B, len(classes), H, W)`` float maps (``(B, len(classes), h, w)`` with ``upsample=None``), detached.

    Raises:
        ValueError: a model without conv feature maps, an unknown layer or class, a layer whose output is not
            ``(B, channels, h, w)``, a layer whose output is overwritten in place later, or a bad option value.
        TypeError: ``images`` is not a 4-D float tensor.

    Example:
        >>> model = create_model("pneumonia_cnn")
        >>> maps = gradcam(model, torch.randn(2, 1, 224, 224))       # (2, 2, 224, 224)
        >>> normal, pneumonia = maps.unbind(1)
    """
    if normalise not in NORMALISE_MODES:
        raise XcxrValueError(f"normalise must be one of {NORMALISE_MODES}, got {normalise!r}")
    if not fast:
        maps = gradcam_reference(model, images, classes, layer, method=method, relu=relu, upsample=upsample)
        return postprocess(maps, relu=False, upsample_mode=None, normalise_mode=normalise)
    classes = _check(model, images, classes, layer, method, upsample)
    with explaining(model) as net:                                  # eval mode, thread-private hooks
        name, module = resolve_layer(net, layer)
        head = cam_head(net, name)
        with capture({name: module}) as store:
            x = _as_input(images)
            with torch.no_grad() if head is not None else contextlib.nullcontext():
                logits = net(x)                                     # the one forward pass
        A = _captured(store, name)
        h, w = A.shape[-2:]
        # Class scores are linear in the logits: score_k = sum_j M[k, j] logit_j (M picks a logit, or negates the
        # single logit of a sigmoid model), so their gradients are the same combinations of the logits' gradients.
        n_logits = logits.shape[1]
        M = class_scores(net, torch.eye(n_logits, dtype=A.dtype, device=A.device), classes).T   # (classes, logits)
        if head is not None and head.in_features != A.shape[1]:
            raise XcxrValueError(f"{get_config(net)['architecture']} declares cam_head {get_config(net)['cam_head']!r} "
                                 f"with {head.in_features} inputs, but layer {name!r} has {A.shape[1]} channels; "
                                 "fix the model's config (cam_head must be the linear layer right after the pooling)")
        if head is not None:
            # CAM identity: dy/dA_kij = W_jk / (h·w) at every position, so no backward pass is needed.
            grad = (M @ head.weight.to(A.dtype)) / (h * w)                               # (classes, channels)
            grad = grad[None].expand(A.shape[0], -1, -1)                                # (B, classes, channels)
            cams = torch.einsum("bkc,bchw->bkhw", grad, A)   # gradcam and hirescam agree: the gradient is flat
        else:
            used = [j for j in range(n_logits) if bool(M[:, j].any())]
            dlogits = _logit_gradients(logits, A, used)                          # (len(used), B, channels, h, w)
            if method == "gradcam":
                alpha = torch.einsum("kj,jbc->bkc", M[:, used], dlogits.mean(dim=(-2, -1)))  # (B, classes, ch.)
                cams = torch.einsum("bkc,bchw->bkhw", alpha, A)
            else:
                cams = torch.einsum("kj,jbchw,bchw->bkhw", M[:, used], dlogits, A)
        cams = cams.detach()
    cams = _zero_constant_images(cams, images)
    return postprocess(cams, images.shape[-2:] if upsample else None, relu=relu, upsample_mode=upsample,
                       normalise_mode=normalise)


def _logit_gradients(logits: torch.Tensor, A: torch.Tensor, used: list[int]) -> torch.Tensor:
    """``(len(used), B, channels, h, w)``: gradients of the logits ``used`` w.r.t. ``A``, one backward call for all."""
    eye = torch.eye(logits.shape[1], dtype=logits.dtype, device=logits.device)[used]        # (n_used, n_logits)
    grad_outputs = eye[:, None, :].expand(len(used), logits.shape[0], logits.shape[1])      # one-hot per logit
    if len(used) == 1:
        dA, = torch.autograd.grad(logits, A, grad_outputs=grad_outputs[0])
        return dA[None]
    dA, = torch.autograd.grad(logits, A, grad_outputs=grad_outputs, is_grads_batched=True)
    return dA


def cam_head(model: nn.Module, layer: str) -> nn.Linear | None:
    """The linear head when ``layer``'s maps feed global average pooling and then that head directly, else ``None``.

    A model declares this in its config: ``cam_head`` names the head (``"head"`` for ``pneumonia_cnn``: last
    ``features`` block → ``AdaptiveAvgPool2d(1)`` → Dropout → ``Linear``; ``"fc"`` for the timm ResNet18s:
    ``layer4`` → average ``global_pool`` → ``fc``), and the identity holds for its ``target_layer``. Dropout is the
    identity in eval mode, which Grad-CAM always uses. Then Grad-CAM's channel weights are ``W / (h·w)`` (CAM,
    Zhou et al. 2016) and no backward pass is needed; the tests check that these maps equal the seven steps'.

    Example:
        >>> cam_head(create_model("pneumonia_cnn"), "features.2")
        Linear(in_features=32, out_features=2, bias=True)
        >>> cam_head(create_model("pneumonia_cnn"), "features.1") is None      # not the layer before the pooling
        True
    """
    cfg = get_config(model)
    name = cfg.get("cam_head")
    if not name or layer != cfg.get("target_layer"):
        return None
    head = get_layer(model, name)
    return head if isinstance(head, nn.Linear) else None


# ---------------------------------------------------------------------------------------------------------------
# Checks and contexts shared by both paths
# ---------------------------------------------------------------------------------------------------------------

def _check(model: nn.Module, images: torch.Tensor, classes: int | Sequence[int] | None, layer: str | None,
           method: str, upsample: str | None) -> list[int]:
    if method not in METHODS:
        raise XcxrValueError(f"method must be one of {METHODS}, got {method!r}")
    if upsample is not None and upsample not in UPSAMPLE_MODES:
        raise XcxrValueError(f"upsample must be one of {UPSAMPLE_MODES} or None (layer resolution), got {upsample!r}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise XcxrTypeError(f"images must be model-ready float images (B, C, H, W) (use lib.explain.prepare for uint8 "
                            f"images; add a batch axis with images[None]); got {got}")
    cfg = get_config(model)
    if images.shape[1] != cfg.get("in_chans", images.shape[1]):
        raise XcxrValueError(f"images have {images.shape[1]} channels but {cfg['architecture']} takes {cfg['in_chans']} "
                             "(its config's in_chans); preprocess them with lib.explain.prepare")
    resolve_layer(model, layer)  # an unknown layer is an error before any work
    if any(p.is_inference() for p in model.parameters()):
        raise XcxrValueError("the model's parameters were created under torch.inference_mode(), so autograd cannot "
                             "use them; build or load the model outside inference_mode to compute Grad-CAM")
    return resolve_classes(model, classes)


def _as_input(images: torch.Tensor) -> torch.Tensor:
    # A fresh leaf that requires grad: then A requires grad even when every parameter is frozen; clone() turns an
    # inference-mode tensor into a normal one (call inside explaining(), i.e. outside inference mode).
    return (images.clone() if images.is_inference() else images.detach()).requires_grad_(True)


def _captured(store: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in store:
        raise XcxrValueError(f"layer {name!r} did not run in the forward pass; pick a layer the model uses")
    A = store[name]
    if not isinstance(A, torch.Tensor) or A.ndim != 4:
        shape = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise XcxrValueError(f"layer {name!r} outputs {shape}; Grad-CAM needs a layer with (B, channels, h, w) feature "
                             "maps (a conv layer or block)")
    if A._version != getattr(store, "versions", {}).get(name, A._version):
        raise XcxrValueError(f"the output of layer {name!r} is modified in place later in the forward pass (e.g. by "
                             "'+=' or an in-place ReLU), so its captured maps are not that layer's; pick the module "
                             "after the in-place operation (e.g. the block's activation or the whole block)")
    return A


def _zero_constant_images(cams: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """All-zero maps for constant images: no spatial structure to explain (see the module docstring)."""
    # per channel: a constant grey image normalised with per-channel (ImageNet) mean/std has 3 different constants
    flat = images.detach().flatten(2)
    constant = (flat.amax(dim=2) == flat.amin(dim=2)).all(dim=1)
    return cams.masked_fill(constant[:, None, None, None], 0.0) if bool(constant.any()) else cams
