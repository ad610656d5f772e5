"""What every explanation method shares: eval mode, hooks that always come off, layers, class scores.

Conventions (one calling convention for the whole package):

* ``images`` are **model-ready** float tensors ``(B, C, H, W)`` — already through the model's
  :class:`lib.data.Preprocess`. Use :func:`prepare` to get them from uint8 grey images.
* ``classes`` are class indices into the model's ``labels`` (0 = NORMAL, 1 = PNEUMONIA), never logit indices.
  :func:`class_scores` turns logits into one score per requested class: the logit itself for a two-logit model;
  for a one-logit (sigmoid) model ``+z`` for class 1 and ``-z`` for class 0 — the "normal" evidence is the
  evidence against pneumonia. Scores are **logits**, not probabilities (the softmax couples the classes and
  saturates; Selvaraju et al. explain the pre-softmax score).
* Every method runs the model in eval mode (BatchNorm in train mode would change every map) through
  :func:`explaining`: the caller's model keeps its mode (a thread-private view that shares the weights is used
  when it is not in eval mode already, and whenever Captum installs hooks), and the hooks a method installs see
  only that call's own forward passes, so one model object may serve many threads at once (the app does exactly
  that). Hooks are removed even when an exception is raised.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from ..data.transforms import Preprocess
from ..models.layers import get_config, get_layer, target_layer
from ..models.views import eval_view, in_eval
from ..errors import XcxrValueError

__all__ = ["explaining", "capture", "Captured", "pass_batch_size", "CPU_BATCH", "ACCELERATOR_BATCH", "resolve_layer",
           "class_scores", "resolve_classes", "prepare", "num_classes"]

log = logging.getLogger(__name__)

#: Default images per internal forward pass for methods that make many (IG steps, SmoothGrad samples, occlusion
#: windows, deletion steps) on a CPU. Small on purpose: measured on a 2-core CPU (1 thread, ``pneumonia_cnn``,
#: 224 px, ``python -m benchmarks --only explain_cost``), the per-image cost *grows* with the batch once the
#: activations of 16+ images no longer fit in the cache (50 deletion steps: 1 image/pass 0.68 s, 8/pass 0.74 s,
#: 16/pass 0.92 s, 32/pass 1.21 s). 8 keeps the Python overhead down at close to the one-image cost.
CPU_BATCH = 8
#: Default on a GPU, where one pass over many images costs about as much as one over a single image.
ACCELERATOR_BATCH = 64


def pass_batch_size(device: torch.device) -> int:
    """Default images per internal pass on ``device`` (see :data:`CPU_BATCH`)."""
    return CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH


@contextlib.contextmanager
def explaining(model: nn.Module, grad: bool = True, foreign_hooks: bool = False) -> Iterator[nn.Module]:
    """The module an explanation runs: ``model`` in eval mode, safe while other threads use ``model``.

    Yields ``model`` itself when it is already in eval mode (the app's shared models) and the caller installs only
    hooks that ignore other threads (:func:`capture`); otherwise a thread-private eval-mode view of it
    (:func:`lib.models.eval_view`, the same weights) — always with ``foreign_hooks=True``, for code that installs
    hooks of its own (Captum). Either way the shared model's ``training`` flags are never written, and no hook of
    this call sees another thread's forward pass, so any number of threads may explain and run one model object at
    once. With ``grad=True`` autograd is on inside, even when the caller is under ``torch.no_grad()`` or
    ``torch.inference_mode()`` (gradient methods need it); with ``grad=False`` the caller's grad mode is kept.

    Example:
        >>> with explaining(model) as m:          # model: shared, in any mode
        ...     logits = m(x)                     # eval-mode forward; model.training is untouched
    """
    net = eval_view(model) if foreign_hooks else in_eval(model)
    with contextlib.ExitStack() as stack:
        if grad:
            if torch.is_inference_mode_enabled():
                stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
        yield net


class Captured(dict):
    """What :func:`capture` yields: ``name → output tensor``, plus ``versions[name]``, the tensor's in-place
    version counter at capture time. If ``store[name]._version`` differs after the forward pass, a later in-place
    op (``x += shortcut``, ``ReLU(inplace=True)``) overwrote the captured maps — the values (and gradients) then
    belong to that later op, not to the named layer."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, int] = {}

    def put(self, name: str, out: object) -> None:
        self[name] = out
        if isinstance(out, torch.Tensor):
            self.versions[name] = out._version


@contextlib.contextmanager
def capture(modules: dict[str, nn.Module]) -> Iterator[Captured]:
    """Forward hooks that store each named module's output in the yielded dict; always removed on exit.

    Only a forward hook is used: gradients are taken later with ``torch.autograd.grad`` on the stored tensor,
    which works with in-place activations where full backward hooks fail. The hooks record only forward passes
    run by the thread that installed them: another thread running the same model meanwhile is not recorded.
    """
    store = Captured()
    handles = []
    owner = threading.get_ident()

    def hook(name: str, out: object) -> None:
        if threading.get_ident() == owner:
            store.put(name, out)

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda _m, _i, out, name=name: hook(name, out)))
        yield store
    finally:
        for h in handles:
            h.remove()


def resolve_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    """``(name, module)`` for ``layer``, or the model's declared Grad-CAM layer when ``None`` (logged)."""
    if layer is None:
        name, module = target_layer(model)
        log.debug("using the default target layer %r of %s", name, get_config(model)["architecture"])
        return name, module
    return layer, get_layer(model, layer)


def num_classes(model: nn.Module) -> int:
    """Number of classes the model tells apart (2 for every zoo model, one- or two-logit)."""
    return len(get_config(model)["labels"])


def resolve_classes(model: nn.Module, classes: int | Sequence[int] | None) -> list[int]:
    """Validate ``classes`` (an index, a list, or ``None`` = all classes) against the model's labels."""
    k = num_classes(model)
    if classes is None:
        return list(range(k))
    out = [classes] if isinstance(classes, int) else list(classes)
    if not out or any(not isinstance(c, int) or not 0 <= c < k for c in out):
        raise XcxrValueError(f"classes must be indices in 0..{k - 1} ({get_config(model)['labels']}), got {classes!r}")
    return out


def class_scores(model: nn.Module, logits: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """``(B, len(classes))`` class scores (logits) — see the module docstring for one-logit models."""
    if logits.shape[1] == 1:
        sign = torch.tensor([1.0 if c == 1 else -1.0 for c in classes], device=logits.device, dtype=logits.dtype)
        return logits[:, :1] * sign
    return logits[:, list(classes)]


def prepare(model: nn.Module, images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 grey images ``(B,1,H,W)`` (or ``(H,W)``) → model-ready float input, with the model's preprocessing."""
    if images_uint8.ndim == 2:
        images_uint8 = images_uint8[None, None]
    device = next(model.parameters()).device
    return Preprocess.from_config(get_config(model))(images_uint8.to(device))
