"""The course's small CNN (Lübeck practical): three ConvBlocks, global average pooling, one linear layer.

Read top to bottom::

    ConvBlock(1, 8) → ConvBlock(8, 16) → ConvBlock(16, 32) → AdaptiveAvgPool2d(1) → Linear(32, 2)

    ConvBlock(c_in, c_out) = [Conv2d 3×3, padding 1, no bias → BatchNorm2d → LeakyReLU]   (c_in → c_out)
                           → [Conv2d 3×3, padding 1, no bias → BatchNorm2d → LeakyReLU]   (c_out → c_out)
                           → MaxPool2d(2)

With the defaults it has exactly **18,218** trainable parameters (checked by a test). The convolutions have
no bias because the BatchNorm right after them adds one. Two logits (NORMAL, PNEUMONIA) trained with a
class-weighted cross-entropy.

Because the last block feeds global average pooling and a linear head, Grad-CAM on ``features.2`` equals
CAM (Zhou et al. 2016): the channel weights are the head weights divided by H·W.

Fine-tuning options: ``widths`` (one entry per block, so its length is the number of blocks), ``dropout``
(before the head), ``negative_slope`` of the LeakyReLU.

Example:
    >>> m = create_model("pneumonia_cnn")                      # the course network
    >>> m = create_model("pneumonia_cnn", widths=(16, 32, 64), dropout=0.3)   # a fine-tuning variant
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn

from .base import DEFAULT_LABELS, GREY_MEAN, GREY_STD, XcxrModule
from .registry import register_model
from ..errors import XcxrValueError

__all__ = ["ConvBlock", "PneumoniaCNN", "pneumonia_cnn"]


class ConvBlock(nn.Sequential):
    """Two 3×3 conv → BN → LeakyReLU layers (the first changes the width), then 2×2 max pooling."""

    def __init__(self, c_in: int, c_out: int, negative_slope: float = 0.01) -> None:
        super().__init__(OrderedDict(
            conv1=nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(c_out),
            act1=nn.LeakyReLU(negative_slope),   # not inplace: in-place activations break gradient hooks
            conv2=nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
            bn2=nn.BatchNorm2d(c_out),
            act2=nn.LeakyReLU(negative_slope),
            pool=nn.MaxPool2d(2),
        ))


class PneumoniaCNN(XcxrModule):
    """The Lübeck ConvBlock CNN. See the module docstring."""

    def __init__(self, widths: Sequence[int] = (8, 16, 32), dropout: float = 0.0, negative_slope: float = 0.01,
                 num_classes: int = 2, in_chans: int = 1, img_size: int = 224,
                 mean: Sequence[float] = GREY_MEAN, std: Sequence[float] = GREY_STD,
                 labels: Sequence[str] = DEFAULT_LABELS) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise XcxrValueError(f"pneumonia_cnn: widths must be a non-empty list of positive ints, got {widths}")
        if not 0.0 <= dropout < 1.0:
            raise XcxrValueError(f"pneumonia_cnn: dropout must be in [0, 1), got {dropout}")
        if img_size < 2 ** len(widths):
            raise XcxrValueError(f"pneumonia_cnn: img_size={img_size} is too small for {len(widths)} pooling blocks "
                                 f"(need ≥ {2 ** len(widths)})")
        chans = [in_chans] + widths
        self.features = nn.Sequential(*[ConvBlock(a, b, negative_slope) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)
        stages = [f"features.{i}" for i in range(len(widths))]
        # the last block feeds global average pooling, then (dropout, the identity in eval mode) the linear head:
        # Grad-CAM there is CAM, with the head's weights as channel weights (cam_head)
        self._set_config(num_classes, labels, in_chans, img_size, mean, std, architecture="pneumonia_cnn",
                         first_layer="features.0.conv1", target_layer=stages[-1], cam_head="head",
                         feature_stages=stages, widths=widths, dropout=dropout, negative_slope=negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)              # (B, widths[-1], H/2^n, W/2^n)
        x = self.pool(x).flatten(1)       # global average pooling → (B, widths[-1])
        return self.head(self.dropout(x))  # (B, num_classes) logits


@register_model(options=PneumoniaCNN)
def pneumonia_cnn(**cfg) -> PneumoniaCNN:
    """The course CNN (18,218 parameters with the defaults). Options: see :class:`PneumoniaCNN`."""
    return PneumoniaCNN(**cfg)
