"""Find the layers the explanations need, by name, the same way for every zoo model."""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["get_config", "get_layer", "target_layer", "first_layer", "conv_layers", "count_parameters"]


def get_config(model: nn.Module) -> dict[str, Any]:
    """The model's ``xcxr_config`` (see :mod:`lib.models.registry`); ``TypeError`` for a foreign model."""
    cfg = getattr(model, "xcxr_config", None)
    if not isinstance(cfg, dict):
        raise XcxrTypeError(f"{type(model).__name__} has no xcxr_config; build it with lib.models.create_model or "
                            "load_model")
    return cfg


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (dotted, as in ``model.named_modules()``); ``ValueError`` lists choices."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise XcxrValueError(f"{get_config(model)['architecture']} has no layer {name!r}; "
                             f"conv layers: {conv_layers(model)}")
    return modules[name]


def target_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the default Grad-CAM layer; ``ValueError`` for models without feature maps."""
    cfg = get_config(model)
    name = cfg.get("target_layer")
    if not name:
        raise XcxrValueError(f"{cfg['architecture']} is fully connected: it has no spatial feature maps, so Grad-CAM is "
                             "not defined; use a saliency method instead")
    return name, get_layer(model, name)


def first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the first layer (a conv, or the DNNs' first Linear), whose weights are "filters"."""
    name = get_config(model)["first_layer"]
    return name, get_layer(model, name)


def conv_layers(model: nn.Module) -> list[str]:
    """Names of all Conv2d layers, in forward order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
