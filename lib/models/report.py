"""The Ljubljana report's models: two fully connected networks and two CNNs, each with one output logit.

One logit means a sigmoid output trained with ``BCEWithLogitsLoss(pos_weight=n_neg/n_pos)``; the logit is
positive for the positive class (PNEUMONIA / severe). Flatten sizes depend on the input size (the report used
512×512, our data is 224×224), so they are computed by a dry run, never hard-coded.

* ``dnn1``: Flatten → Linear(H·W → 512) → BatchNorm1d → ReLU → Linear(512 → 1)
* ``dnn2``: Flatten → H·W → 512 → 256 → 128 → 32 (each Linear → BatchNorm1d → ReLU) → Linear(32 → 1)
* ``cnn1``: 4 conv stages (1→4 k7 s2, 4→8 k7 s2, 8→16 k5 s2, 16→64 k3 s1; each Conv → BN → ReLU → MaxPool 2)
  → Linear(→ 512) → ReLU → Linear(512 → 1)
* ``cnn2``: 7 conv stages (1→4 k7 s2 +pool, 4→8 k7 s2 +pool, 8→16 k5 s2, 16→32 k5 s2, 32→64 k3 +pool,
  64→128 k3, 128→256 k3; each Conv → BN → ReLU) → Linear(→ 512) → ReLU → Linear(512 → 1)

Grad-CAM target of the CNNs: the ReLU output of the last conv stage, *before* its pooling (at 224 px that map
is 3×3 for cnn1 and 2×2 for cnn2 — coarse, which is itself a lesson). The DNNs have no spatial feature maps,
so no Grad-CAM layer; their "filters" are the first Linear layer's rows seen as H×W images.

Example:
    >>> m = create_model("cnn1", img_size=512)     # the report's input size
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn

from .base import DEFAULT_LABELS, GREY_MEAN, GREY_STD, XcxrModule, flat_size
from .registry import register_model
from ..errors import XcxrValueError

__all__ = ["DNN", "ReportCNN", "dnn1", "dnn2", "cnn1", "cnn2"]


class DNN(XcxrModule):
    """Fully connected network on the flattened image; ``hidden`` lists the hidden widths."""

    def __init__(self, hidden: Sequence[int] = (512,), num_classes: int = 1, in_chans: int = 1, img_size: int = 224,
                 mean: Sequence[float] = GREY_MEAN, std: Sequence[float] = GREY_STD,
                 labels: Sequence[str] = DEFAULT_LABELS, architecture: str = "dnn") -> None:
        super().__init__()
        sizes = [in_chans * img_size * img_size] + [int(h) for h in hidden]
        self.layers = nn.Sequential(*[
            nn.Sequential(OrderedDict(linear=nn.Linear(a, b), bn=nn.BatchNorm1d(b), act=nn.ReLU()))
            for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nn.Linear(sizes[-1], num_classes)
        # no spatial feature maps: no Grad-CAM layer; the "feature maps" are the hidden layers' units
        self._set_config(num_classes, labels, in_chans, img_size, mean, std, architecture=architecture,
                         first_layer="layers.0.linear", target_layer=None, cam_head=None,
                         feature_stages=[f"layers.{i}" for i in range(len(sizes) - 1)], hidden=list(sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x.flatten(1)))


def _stage(c_in: int, c_out: int, k: int, s: int, pool: bool) -> nn.Sequential:
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(
        conv=nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2), bn=nn.BatchNorm2d(c_out), act=nn.ReLU())
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class ReportCNN(XcxrModule):
    """Conv stages → Flatten → Linear(→ 512) → ReLU → Linear(512 → num_classes).

    ``stages`` is a list of ``(c_out, kernel, stride, pool)``; the input width comes from ``in_chans``.
    """

    def __init__(self, stages: Sequence[Sequence] = (), hidden: int = 512, num_classes: int = 1, in_chans: int = 1,
                 img_size: int = 224, mean: Sequence[float] = GREY_MEAN, std: Sequence[float] = GREY_STD,
                 labels: Sequence[str] = DEFAULT_LABELS, architecture: str = "report_cnn") -> None:
        super().__init__()
        stages = [(int(c), int(k), int(s), bool(p)) for c, k, s, p in stages]
        if not stages:
            raise XcxrValueError(f"{architecture}: stages must list at least one (c_out, kernel, stride, pool)")
        chans = [in_chans] + [c for c, *_ in stages]
        self.features = nn.Sequential(*[_stage(a, c, k, s, p) for a, (c, k, s, p) in zip(chans[:-1], stages)])
        n_flat = flat_size(self.features, in_chans, img_size, architecture)
        self.classifier = nn.Sequential(OrderedDict(
            fc1=nn.Linear(n_flat, hidden), act=nn.ReLU(), fc2=nn.Linear(hidden, num_classes)))
        # the Grad-CAM layer: the last stage's ReLU output, before its pooling; the flatten + MLP head is not CAM
        self._set_config(num_classes, labels, in_chans, img_size, mean, std, architecture=architecture,
                         first_layer="features.0.conv", target_layer=f"features.{len(stages) - 1}.act",
                         cam_head=None, feature_stages=[f"features.{i}" for i in range(len(stages))],
                         stages=[list(s) for s in stages], hidden=hidden, flat_features=n_flat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


_CNN1 = [(4, 7, 2, True), (8, 7, 2, True), (16, 5, 2, True), (64, 3, 1, True)]
_CNN2 = [(4, 7, 2, True), (8, 7, 2, True), (16, 5, 2, False), (32, 5, 2, False), (64, 3, 1, True),
         (128, 3, 1, False), (256, 3, 1, False)]


@register_model(options=DNN, fixed=("architecture",))
def dnn1(**cfg) -> DNN:
    """Report DNN1: H·W → 512 → 1."""
    return DNN(hidden=cfg.pop("hidden", (512,)), architecture="dnn1", **cfg)


@register_model(options=DNN, fixed=("architecture",))
def dnn2(**cfg) -> DNN:
    """Report DNN2: H·W → 512 → 256 → 128 → 32 → 1."""
    return DNN(hidden=cfg.pop("hidden", (512, 256, 128, 32)), architecture="dnn2", **cfg)


@register_model(options=ReportCNN, fixed=("architecture",))
def cnn1(**cfg) -> ReportCNN:
    """Report CNN1: four conv stages with pooling, then 512 → 1."""
    return ReportCNN(stages=cfg.pop("stages", _CNN1), architecture="cnn1", **cfg)


@register_model(options=ReportCNN, fixed=("architecture",))
def cnn2(**cfg) -> ReportCNN:
    """Report CNN2: seven conv stages (pooling after 1, 2 and 5), then 512 → 1."""
    return ReportCNN(stages=cfg.pop("stages", _CNN2), architecture="cnn2", **cfg)
