"""What every custom model of the zoo shares: the Hub mixin and the ``xcxr_config`` contract."""
from __future__ import annotations

import copy
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
    """The output of one image on the meta device (shapes only), or ``None`` when the size does not fit."""
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_chans, img_size, img_size, device="meta"))
    except RuntimeError:
        return None
    return out if out.numel() > 0 else None


def flat_size(features: nn.Module, in_chans: int, img_size: int, name: str) -> int:
    """Number of values ``features`` outputs for one image: computed by a dry run, never hard-coded.

    The dry run happens on PyTorch's ``meta`` device (shapes only: no memory, no arithmetic), so it costs a few
    milliseconds whatever the size. Raises ``ValueError`` naming the smallest input size that works when
    ``img_size`` is too small (found by doubling, then bisection: a handful of dry runs).
    """
    meta = features if all(p.device.type == "meta" for p in features.parameters()) \
        else copy.deepcopy(features).to("meta")
    meta.eval()
    out = _dry_run(meta, in_chans, img_size)
    if out is None:
        raise XcxrValueError(f"{name}: img_size={img_size} is too small for this network's strides and pools; "
                             f"{_smallest_size(meta, in_chans, img_size)}")
    return int(out[0].numel())


def _smallest_size(meta: nn.Module, in_chans: int, img_size: int, limit: int = 4096) -> str:
    lo, hi = img_size, img_size * 2
    while hi <= limit and _dry_run(meta, in_chans, hi) is None:
        lo, hi = hi, hi * 2
    if hi > limit:
        return f"no input up to {limit} px fits: use fewer strides or pools"
    while hi - lo > 1:  # lo does not fit, hi does
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _dry_run(meta, in_chans, mid) is not None else (mid, hi)
    return f"use img_size ≥ {hi}"
