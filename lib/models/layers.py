"""Find the layers the explanations need, by name, the same way for every zoo model."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
import torch.nn as nn
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["get_config", "get_layer", "target_layer", "first_layer", "conv_layers", "count_parameters",
           "model_fingerprint", "weights_revision", "hash_tensor"]


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


def hash_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes (of its CPU copy) into the hash ``h``."""
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    # bytes of the CPU copy; .contiguous() so that views hash like the tensor they show
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_fingerprint(model: nn.Module) -> str:
    """A hash (32 hex digits) of everything a prediction depends on: the weights, the architecture and the
    preprocessing of the config. Two models with the same fingerprint give the same probabilities; a retrained
    model has another one (the key of cached and shipped predictions, and of :func:`weights_revision`)."""
    cfg = get_config(model)
    h = hashlib.blake2b(digest_size=16)
    # what predict_proba depends on besides the weights: the preprocessing and the architecture
    h.update(json.dumps([cfg.get("architecture"), cfg.get("mean"), cfg.get("std"), cfg.get("img_size"),
                         cfg.get("num_classes")]).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        hash_tensor(h, t)
    return h.hexdigest()


def weights_revision(model: nn.Module) -> str:
    """The model's revision as a link or a course sheet pins it (``rev=…``): the first 10 hex digits of
    :func:`model_fingerprint`. It changes when the model is retrained, whatever its folder or repo is called.

    Computed once per model object and weights version (a ResNet18 takes ~0.1 s to hash); changing the weights in
    place (training) gives a new revision.

    Example:
        >>> weights_revision(load_model("models/pneumonia_cnn"))      # doctest: +SKIP
        '3f9c0a1b2d'
    """
    version = (tuple(t._version for t in model.state_dict(keep_vars=True).values()),
               tuple(t.data_ptr() for t in model.state_dict(keep_vars=True).values()))
    cached = model.__dict__.get("_xcxr_revision")
    if cached is not None and cached[0] == version:
        return cached[1]
    rev = model_fingerprint(model)[:10]
    model.__dict__["_xcxr_revision"] = (version, rev)
    return rev
