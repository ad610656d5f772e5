"""What every custom model of the zoo shares: the Hub mixin and the ``xcxr_config`` contract."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin
from ..errors import XcxrValueError

__all__ = ["XcxrModule", "GREY_MEAN", "GREY_STD", "DEFAULT_LABELS", "flat_size"]

#: Normalisation for grey X-rays trained from scratch: roughly the pixel mean/std of the Kermany images.
GREY_MEAN: tuple[float, ...] = (0.5,)
GREY_STD: tuple[float, ...] = (0.25,)
DEFAULT_LABELS: tuple[str, ...] = ("NORMAL", "PNEUMONIA")


class XcxrModule(nn.Module, PyTorchModelHubMixin, library_name="xcxr", license="cc-by-4.0",
                 pipeline_tag="image-classification", tags=["medical-imaging", "chest-x-ray", "explainability"]):
    """Base of the custom models: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from
    ``huggingface_hub.PyTorchModelHubMixin`` (config.json + model.safetensors, never pickle).

    Subclasses call :meth:`_set_config` at the end of ``__init__`` with their options and the names of the layers
    the explainers need (see :mod:`lib.models.registry` for what each key means).
    """

    def _set_config(self, num_classes: int, labels: Sequence[str], in_chans: int, img_size: int,
                    mean: Sequence[float], std: Sequence[float], *, architecture: str, first_layer: str,
                    target_layer: str | None, cam_head: str | None, feature_stages: Sequence[str],
                    **extra: Any) -> None:
        if num_classes not in (1, 2):
            raise XcxrValueError(f"{architecture}: num_classes must be 1 (sigmoid) or 2 (softmax), got {num_classes}")
        if len(labels) != 2:
            raise XcxrValueError(f"{architecture}: labels must name the 2 classes, got {list(labels)}")
        self.xcxr_config: dict[str, Any] = {
            "architecture": architecture, "num_classes": int(num_classes), "labels": list(labels),
            "in_chans": int(in_chans), "img_size": int(img_size), "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "target_layer": target_layer, "cam_head": cam_head,
            "feature_stages": list(feature_stages), "first_layer": first_layer, "hub_format": "xcxr",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in extra.items()},
        }


def _dry_run(features: nn.Module, in_chans: int, img_size: int) -> torch.Tensor | None:
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_chans, img_size, img_size))
    except RuntimeError:
        return None
    return out if out.numel() > 0 else None


def flat_size(features: nn.Module, in_chans: int, img_size: int, name: str) -> int:
    """Number of values ``features`` outputs for one image: computed by a dry run, never hard-coded.

    Raises ``ValueError`` naming the smallest input size that works when ``img_size`` is too small.
    """
    was_training = features.training
    features.eval()
    try:
        out = _dry_run(features, in_chans, img_size)
        if out is None:
            smallest = next((s for s in range(img_size + 1, 4097) if _dry_run(features, in_chans, s) is not None), None)
            raise XcxrValueError(f"{name}: img_size={img_size} is too small for this network's strides and pools; "
                                 f"use img_size ≥ {smallest}")
    finally:
        features.train(was_training)
    return int(out[0].numel())
