"""ResNet18 from timm, in the three flavours of the Ljubljana report.

* ``resnet18_scratch`` — random init, ``in_chans=1``: the grey X-ray is the only input channel.
* ``resnet18_pretrained`` — ImageNet weights, the grey image repeated on the **three** input channels
  (``in_chans=3``), every layer trained.
* ``resnet18_pretrained_frozen_stem`` — the same, but the first convolution keeps its ImageNet kernels
  (``requires_grad=False``), so its filters can be compared with a trained stem.

Note the difference from ``timm.create_model("resnet18", pretrained=True, in_chans=1)``: that sums the pretrained
RGB kernels into one channel — a third, different model. We feed three identical channels instead, so the
pretrained stem sees the input statistics it was trained on.

The models are plain timm ``ResNet`` modules with an extra ``xcxr_config`` attribute, saved the timm way
(``timm.models.save_for_hf``), so ``timm.create_model("hf-hub:OWNER/NAME", pretrained=True)`` loads a pushed
model with no project code. Grad-CAM target: ``layer4``; first conv: ``conv1``.

Pretrained weights come through timm's usual loading (the Hugging Face Hub, ``timm/resnet18.a1_in1k``). Without
network access pass ``pretrained_file=PATH`` (a ``.safetensors`` or ``.pth`` timm resnet18 state dict), or
pre-populate the Hugging Face cache and set ``HF_HUB_OFFLINE=1``.

Example:
    >>> m = create_model("resnet18_scratch", num_classes=1)
    >>> m = create_model("resnet18_pretrained", pretrained_file="resnet18.a1_in1k.safetensors")
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch.nn as nn

from .base import DEFAULT_LABELS, GREY_MEAN, GREY_STD
from .registry import register_model
from ..errors import XcxrError, XcxrValueError

__all__ = ["PretrainedWeightsUnavailable", "resnet18_scratch", "resnet18_pretrained",
           "resnet18_pretrained_frozen_stem", "build_resnet18"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_NAME = "resnet18"
#: What the feature-map view shows: the stem (conv → BN → ReLU), its max pool, then the four residual stages.
FEATURE_STAGES = ("act1", "maxpool", "layer1", "layer2", "layer3", "layer4")
#: Options that fetch weights: loading a saved model never uses them (its weights come from model.safetensors).
_LOADING = {"pretrained": False, "pretrained_file": None}


class PretrainedWeightsUnavailable(XcxrError, RuntimeError):
    """ImageNet weights could not be fetched; the message says how to supply them."""


def build_resnet18(architecture: str, *, pretrained: bool, in_chans: int, freeze_stem: bool = False,
                   num_classes: int = 1, img_size: int = 224, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, labels: Sequence[str] = DEFAULT_LABELS,
                   pretrained_file: str | None = None, drop_rate: float = 0.0) -> nn.Module:
    """Create a timm resnet18 and attach the project config. Used by the three registered entry points."""
    if num_classes not in (1, 2):
        raise XcxrValueError(f"{architecture}: num_classes must be 1 or 2, got {num_classes}")
    mean = tuple(mean or (IMAGENET_MEAN if in_chans == 3 else GREY_MEAN))
    std = tuple(std or (IMAGENET_STD if in_chans == 3 else GREY_STD))
    kwargs: dict[str, Any] = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained and pretrained_file:
        if not os.path.isfile(pretrained_file):
            raise PretrainedWeightsUnavailable(f"{architecture}: pretrained_file {pretrained_file!r} does not exist")
        kwargs["pretrained_cfg_overlay"] = dict(file=os.path.abspath(pretrained_file))
    import timm  # on first use: timm (with torchvision) costs ~2 s to import, the app's first page needs none

    try:
        model = timm.create_model(TIMM_NAME, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not pretrained:
            raise
        raise PretrainedWeightsUnavailable(
            f"{architecture}: could not load the ImageNet weights for timm '{TIMM_NAME}' ({type(e).__name__}: "
            f"{str(e)[:200]}). Offline? Download a timm resnet18 checkpoint where you have network access "
            "(e.g. timm/resnet18.a1_in1k model.safetensors) and pass pretrained_file=PATH "
            "(CLI: --pretrained-file PATH), or copy a populated Hugging Face cache and set HF_HUB_OFFLINE=1."
        ) from e
    if freeze_stem:
        model.conv1.weight.requires_grad_(False)
    model.xcxr_config = {
        "architecture": architecture, "num_classes": num_classes, "labels": list(labels), "in_chans": in_chans,
        "img_size": int(img_size), "mean": [float(m) for m in mean], "std": [float(s) for s in std],
        # layer4 → average global_pool → (dropout, identity in eval) → fc: Grad-CAM on layer4 is CAM (cam_head)
        "target_layer": "layer4", "cam_head": "fc", "feature_stages": list(FEATURE_STAGES), "first_layer": "conv1",
        "hub_format": "timm", "timm_name": TIMM_NAME, "pretrained": bool(pretrained),
        "freeze_stem": bool(freeze_stem), "drop_rate": float(drop_rate),
    }
    return model


@register_model(options=build_resnet18, fixed=("architecture", "pretrained", "pretrained_file", "in_chans",
                                                "freeze_stem"))
def resnet18_scratch(**cfg) -> nn.Module:
    """timm ResNet18, random init, one grey input channel."""
    return build_resnet18("resnet18_scratch", pretrained=False, in_chans=1, **cfg)


@register_model(options=build_resnet18, fixed=("architecture", "in_chans", "freeze_stem"), loading=_LOADING)
def resnet18_pretrained(pretrained: bool = True, **cfg) -> nn.Module:
    """timm ResNet18 with ImageNet weights; the grey image goes to all three input channels; all layers train.

    ``pretrained=False`` builds the same network with random weights (tests, or loading a checkpoint).
    """
    return build_resnet18("resnet18_pretrained", pretrained=pretrained, in_chans=3, **cfg)


@register_model(options=build_resnet18, fixed=("architecture", "in_chans", "freeze_stem"), loading=_LOADING)
def resnet18_pretrained_frozen_stem(pretrained: bool = True, **cfg) -> nn.Module:
    """As ``resnet18_pretrained`` but the first conv keeps its ImageNet kernels (not trained)."""
    return build_resnet18("resnet18_pretrained_frozen_stem", pretrained=pretrained, in_chans=3, freeze_stem=True,
                          **cfg)
