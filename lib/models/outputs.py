"""From logits to the positive-class probability, for one- and two-logit models alike."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data.transforms import Preprocess
from .layers import get_config
from .views import in_eval
from ..errors import XcxrValueError

__all__ = ["positive_probability", "predict_proba"]


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """``P(class 1)``: ``sigmoid(z)`` for one logit, ``softmax(z)[:, 1]`` for two."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise XcxrValueError(f"expected logits of shape (B, 1) or (B, 2), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 128,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Positive-class probabilities for uint8 grey images ``(N,1,H,W)``, with the model's own preprocessing.

    The model runs in eval mode (through :func:`~lib.models.views.in_eval`): its own mode is never changed, so
    other threads may use it meanwhile.
    """
    pre = Preprocess.from_config(get_config(model))
    device = device or next(model.parameters()).device
    net = in_eval(model)
    out = [positive_probability(net(pre(images[i:i + batch_size].to(device)))).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0)
