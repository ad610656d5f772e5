"""What a model config may ask for: option bounds, and the parameter and activation budgets of a loaded model.

A model folder or Hub repo is **input**: its ``config.json`` decides how large a network gets built. Without bounds a
folder dropped into ``runs/`` could ask for ``img_size: 60000`` (one forward pass: 46 s and 7 GB), ``widths: [6000,
6000]`` (4.3 GB) or twelve stride-2 stages on a 1-pixel input. So, before anything is allocated:

1. :func:`check_options` — every option the zoo knows is checked against :data:`OPTION_LIMITS` (also by
   :func:`~lib.models.create_model`, so training gets the same clear message);
2. :func:`check_budget` — the model is built on PyTorch's ``meta`` device (shapes only, no memory) and one image is
   run through it there: at most :data:`MAX_PARAMETERS` parameters and :data:`MAX_ACTIVATIONS` activation values
   per image (what Grad-CAM keeps for its backward pass), and the layers the explainers use must exist.

=====================  ===========================================================================================
option                 allowed
=====================  ===========================================================================================
``img_size``           int, 8 … 1024 (the course uses 224, the report 512)
``in_chans``           1 or 3
``num_classes``        1 (sigmoid) or 2 (softmax)
``labels``             two distinct non-empty names of at most 64 characters
``mean``, ``std``      1 or 3 finite floats per list; mean in [0, 1], std in [0.001, 10]
``widths``             1 … 8 ints, each 1 … 1024 (``pneumonia_cnn``)
``hidden``             an int or 1 … 8 ints, each 1 … 4096 (``dnn1/2``, ``cnn1/2``)
``stages``             1 … 12 ``[channels 1…1024, kernel 1…15, stride 1…4, pool bool]`` (``cnn1/2``)
``dropout``            float in [0, 1); ``drop_rate`` the same (ResNet18)
``negative_slope``     float in [0, 1]
``pretrained``         bool
=====================  ===========================================================================================

Budgets (one image, float32): ResNet18 at 224 px has 11.2 M parameters and 9 M activation values, the course CNN
18 k and 4.4 M. :data:`MAX_PARAMETERS` = 50 M (200 MB of weights) and :data:`MAX_ACTIVATIONS` = 64 M (256 MB)
leave room for the report's models at 512 px while refusing what would take a free Space (16 GB, shared by a
class) down. A model file may declare bounds of its own options with ``register_model(limits=...)``.

Example:
    >>> check_options("pneumonia_cnn", {"widths": [6000, 6000]})
    Traceback (most recent call last):
    lib.errors.XcxrValueError: pneumonia_cnn: widths[0] = 6000 is out of bounds; allowed: 1 … 1024
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from ..errors import XcxrValueError

__all__ = ["OPTION_LIMITS", "MAX_PARAMETERS", "MAX_ACTIVATIONS", "check_options", "check_budget", "is_plain", "Check"]

#: Parameters a loaded model may have (50 M float32 = 200 MB).
MAX_PARAMETERS = 50_000_000
#: Activation values one image may produce in one forward pass, summed over all layers (64 M float32 = 256 MB).
MAX_ACTIVATIONS = 64_000_000

#: ``check(name, value) -> None`` raising :class:`XcxrValueError` with a message that names the bound.
Check = Callable[[str, Any], None]


def _int(lo: int, hi: int) -> Check:
    def check(name: str, v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise XcxrValueError(f"{name} = {v!r} is out of bounds; allowed: {lo} … {hi}")
    return check


def _float(lo: float, hi: float, hi_open: bool = False) -> Check:
    def check(name: str, v: Any) -> None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v \
            and (v < hi if hi_open else v <= hi)
        if not ok:
            raise XcxrValueError(f"{name} = {v!r} is out of bounds; allowed: {lo} … {hi}{' (excluded)' if hi_open else ''}")
    return check


def _choice(*allowed: Any) -> Check:
    def check(name: str, v: Any) -> None:
        if isinstance(v, bool) != isinstance(allowed[0], bool) or v not in allowed:
            raise XcxrValueError(f"{name} = {v!r} is not allowed; choose one of {list(allowed)}")
    return check


def _list(item: Check, lo: int, hi: int, scalar_ok: bool = False) -> Check:
    def check(name: str, v: Any) -> None:
        if scalar_ok and not isinstance(v, (list, tuple)):
            item(name, v)
            return
        if not isinstance(v, (list, tuple)) or not lo <= len(v) <= hi:
            n = len(v) if isinstance(v, (list, tuple)) else type(v).__name__
            raise XcxrValueError(f"{name} must be a list of {lo} … {hi} entries, got {n}")
        for i, x in enumerate(v):
            item(f"{name}[{i}]", x)
    return check


def _labels(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or len(set(map(str, v))) != 2 \
            or not all(isinstance(s, str) and 0 < len(s.strip()) <= 64 for s in v):
        raise XcxrValueError(f"{name} must be two distinct non-empty class names of at most 64 characters, got {v!r}")


def _stage(name: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise XcxrValueError(f"{name} must be [channels, kernel, stride, pool], got {v!r}")
    _int(1, 1024)(f"{name} channels", v[0])
    _int(1, 15)(f"{name} kernel", v[1])
    _int(1, 4)(f"{name} stride", v[2])
    _choice(True, False)(f"{name} pool", v[3])


def _nullable(check: Check) -> Check:
    def inner(name: str, v: Any) -> None:
        if v is not None:
            check(name, v)
    return inner


#: The bounds of every option the zoo's models take (see the module docstring's table).
OPTION_LIMITS: dict[str, Check] = {
    "img_size": _int(8, 1024),
    "in_chans": _choice(1, 3),
    "num_classes": _choice(1, 2),
    "labels": _labels,
    "mean": _list(_float(0.0, 1.0), 1, 3),
    "std": _nullable(_list(_float(0.001, 10.0), 1, 3)),
    "widths": _list(_int(1, 1024), 1, 8),
    "hidden": _list(_int(1, 4096), 1, 8, scalar_ok=True),
    "stages": _list(_stage, 1, 12),
    "dropout": _float(0.0, 1.0, hi_open=True),
    "drop_rate": _float(0.0, 1.0, hi_open=True),
    "negative_slope": _float(0.0, 1.0),
    "pretrained": _choice(True, False),
}
OPTION_LIMITS["mean"] = _nullable(OPTION_LIMITS["mean"])  # the ResNet18s pick ImageNet's or the grey default


def check_options(arch: str, options: Mapping[str, Any], extra: Mapping[str, Check] | None = None) -> None:
    """Raise :class:`XcxrValueError` (naming the option and its bound) for any option out of bounds.

    Args:
        arch: the architecture's name, for the message.
        options: the options ``create_model(arch, **options)`` gets.
        extra: bounds a model declared for options of its own (``register_model(limits=...)``); they win.
    """
    limits = {**OPTION_LIMITS, **(extra or {})}
    for key, value in options.items():
        check = limits.get(key)
        if check is not None:
            try:
                check(key, value)
            except XcxrValueError as e:
                raise XcxrValueError(f"{arch}: {e}") from None
        elif not is_plain(value):
            raise XcxrValueError(f"{arch}: option {key} = {str(value)[:60]!r} must be a number, a string of at "
                                 "most 256 characters, a bool or null (no bounds are declared for it)")


def is_plain(v: Any, max_chars: int = 256) -> bool:
    """``None``, a bool, an int, a finite float or a string of at most ``max_chars`` characters."""
    return v is None or isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v)) \
        or (isinstance(v, str) and len(v) <= max_chars)


def check_budget(model: nn.Module, max_parameters: int = MAX_PARAMETERS,
                 max_activations: int = MAX_ACTIVATIONS) -> dict[str, int]:
    """Check a model built on the ``meta`` device against the budgets; returns ``{"parameters", "activations"}``.

    Runs one image of the config's size through the model on the meta device (shapes only: no memory, a few
    milliseconds) and sums every leaf module's output size. Also checks that the layers the explainers use
    (``target_layer``, ``cam_head``, ``first_layer``, ``feature_stages``) are real sub-modules.

    Raises:
        XcxrValueError: over a budget, a named layer that does not exist, or a forward pass that fails.

    Example:
        >>> with torch.device("meta"):
        ...     m = create_model("resnet18_scratch")
        >>> check_budget(m)
        {'parameters': 11170753, 'activations': 8982529}
    """
    from .layers import get_config

    cfg = get_config(model)
    arch = cfg.get("architecture")
    names = dict(model.named_modules())
    wanted = [cfg.get("target_layer"), cfg.get("cam_head"), cfg.get("first_layer"), *(cfg.get("feature_stages") or [])]
    missing = [n for n in wanted if n and n not in names]
    if missing:
        raise XcxrValueError(f"{arch}: its config names layers it does not have: {missing}")
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > max_parameters:
        raise XcxrValueError(f"{arch}: {n_params / 1e6:.1f} M parameters is more than the {max_parameters / 1e6:g} M "
                             "a model may have here; use smaller widths, fewer stages or a smaller img_size")
    total = [0]

    def count(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        size, chans = int(cfg["img_size"]), int(cfg["in_chans"])
        with torch.no_grad():
            model(torch.zeros(1, chans, size, size, device="meta"))
    except (RuntimeError, ValueError) as e:
        raise XcxrValueError(f"{arch}: an image of {cfg.get('img_size')} px cannot pass through this network "
                             f"({str(e)[:160]})") from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if total[0] > max_activations:
        raise XcxrValueError(f"{arch}: one image makes {total[0] / 1e6:.0f} M activation values, more than the "
                             f"{max_activations / 1e6:g} M allowed here; use a smaller img_size or narrower layers")
    return {"parameters": int(n_params), "activations": int(total[0])}
