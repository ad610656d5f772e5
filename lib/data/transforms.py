"""Preprocessing (the model's own, read from its config) and optional train-time augmentation.

Both work on whole batches of tensors, on whatever device the batch is on, so the training loop never
goes back to PIL.

:class:`Preprocess` turns ``uint8 (B,1,H,W)`` into the float input a model expects: resize to the model's
input size (bilinear, antialiased), scale to [0, 1], repeat the grey channel when the model takes three
channels (ImageNet-pretrained ResNet18), subtract ``mean`` and divide by ``std`` per channel. Build it from
the model's config (``Preprocess.from_config(model.xcxr_config)``) — never copy the numbers by hand.

:class:`Augment` applies small random affine changes and brightness/contrast jitter. Horizontal flips are
**off by default**: a chest X-ray is not left-right symmetric (the heart sits on the left, the L/R marker
and text are burned in), so a flipped film is an image no scanner produces, and flipping teaches the model
to ignore the side of a finding. Turn them on only as a deliberate experiment (``hflip=0.5``).

Example:
    >>> pre = Preprocess(img_size=224, mean=(0.5,), std=(0.25,), in_chans=1)
    >>> x = pre(torch.zeros(2, 1, 224, 224, dtype=torch.uint8))
    >>> x.shape, float(x[0, 0, 0, 0])
    (torch.Size([2, 1, 224, 224]), -2.0)
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from ..errors import XcxrValueError

__all__ = ["Preprocess", "Augment"]


class Preprocess:
    """uint8 grey batch → normalised float model input. See the module docstring."""

    def __init__(self, img_size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 in_chans: int = 1) -> None:
        self.size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if in_chans not in (1, 3):
            raise XcxrValueError(f"in_chans must be 1 or 3, got {in_chans}")
        if len(mean) not in (1, in_chans) or len(std) not in (1, in_chans):
            raise XcxrValueError(f"mean/std need 1 or {in_chans} values, got {list(mean)} / {list(std)}")
        if any(s <= 0 for s in std):
            raise XcxrValueError(f"std must be positive, got {list(std)}")
        self.in_chans = in_chans
        self.mean = torch.tensor([float(m) for m in mean]).expand(in_chans).reshape(1, in_chans, 1, 1).clone()
        self.std = torch.tensor([float(s) for s in std]).expand(in_chans).reshape(1, in_chans, 1, 1).clone()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Preprocess":
        """Build from a model config dict with keys ``img_size``, ``mean``, ``std``, ``in_chans``."""
        return cls(cfg["img_size"], cfg["mean"], cfg["std"], cfg.get("in_chans", 1))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] != 1:
            raise XcxrValueError(f"expected grey images of shape (B, 1, H, W), got {tuple(images.shape)}")
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __repr__(self) -> str:
        return (f"Preprocess(img_size={self.size}, mean={self.mean.flatten().tolist()}, "
                f"std={self.std.flatten().tolist()}, in_chans={self.in_chans})")


class Augment:
    """Random affine (rotation, scale, shift) + brightness/contrast jitter on a float batch in [0, 1].

    Apply it to ``uint8 / 255`` images *before* :class:`Preprocess` normalises them. Deterministic given the
    ``torch.Generator`` passed to :meth:`__call__`, which is what makes ``--resume`` reproducible.

    Args:
        degrees: maximum rotation (±).
        scale: maximum relative zoom (±).
        shift: maximum translation as a fraction of the side (±).
        brightness, contrast: maximum relative jitter (±).
        hflip: probability of a horizontal flip (0 by default; see the module docstring).
    """

    def __init__(self, degrees: float = 10.0, scale: float = 0.1, shift: float = 0.05, brightness: float = 0.1,
                 contrast: float = 0.1, hflip: float = 0.0) -> None:
        self.degrees, self.scale, self.shift = degrees, scale, shift
        self.brightness, self.contrast, self.hflip = brightness, contrast, hflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = x.shape[0]

        def u(lo: float, hi: float) -> torch.Tensor:  # uniform draws on the CPU generator
            return torch.rand(b, generator=generator) * (hi - lo) + lo

        angle = u(-self.degrees, self.degrees) * math.pi / 180
        zoom = u(1 - self.scale, 1 + self.scale)
        tx, ty = u(-self.shift, self.shift) * 2, u(-self.shift, self.shift) * 2
        flip = torch.where(torch.rand(b, generator=generator) < self.hflip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        # border padding: an X-ray's edge is not black, zero padding would add a fake frame
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        gain = u(1 - self.contrast, 1 + self.contrast).to(x).view(b, 1, 1, 1)
        bias = u(-self.brightness, self.brightness).to(x).view(b, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * gain + mean + bias).clamp(0, 1)

    def __repr__(self) -> str:
        return (f"Augment(degrees={self.degrees}, scale={self.scale}, shift={self.shift}, "
                f"brightness={self.brightness}, contrast={self.contrast}, hflip={self.hflip})")
