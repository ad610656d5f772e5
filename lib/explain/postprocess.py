"""Post-processing of class-activation maps, made explicit: ReLU, upsampling, normalisation.

Libraries disagree silently on these steps, and each choice changes what a student sees:

* **ReLU** — Grad-CAM as published (Selvaraju et al. 2017, eq. 2) keeps only the positive evidence for the class.
  Captum's ``LayerGradCam`` returns *signed* maps unless ``relu_attributions=True``. ``relu=False`` here keeps the
  sign (negative = evidence *against* the class).
* **Upsampling** — the paper upsamples bilinearly; Captum's ``LayerAttribution.interpolate`` defaults to
  *nearest*; torch-cam's overlays use *bicubic*. Here the mode is always named. ``align_corners=False`` (half-pixel
  centres, what ``cv2.resize`` and Captum use). Bicubic overshoots: after a ReLU its result is clipped at 0 so a
  ReLU'd map stays non-negative.
* **Normalisation** — pytorch-grad-cam min-max normalises every map on its own *before* resizing. Per-map
  min-max hides magnitude: a near-zero map becomes as bright as a strong one. ``"shared"`` divides all the
  class maps of one image by one number (their common maximum absolute value), so the map of the class the
  model barely sees stays dim next to the one it sees clearly.

Defaults are the paper's: ReLU, bilinear, no normalisation. Order: ReLU → upsample → normalise (the ReLU acts on
the layer-resolution map, as in the paper, Captum and pytorch-grad-cam).

Example:
    >>> cams = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.5, 1.0], [1.5, 2.0]]]])   # (B=1, K=2, 2, 2)
    >>> postprocess(cams, size=(4, 4))[0, 0, 0].tolist()                                # ReLU + bilinear
    [1.0, 1.25, 1.75, 2.0]
    >>> normalise(cams, "shared")[0, :, 1, 1].tolist()   # one scale per image: the weaker class stays weaker
    [1.0, 0.5]
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from ..errors import XcxrTypeError, XcxrValueError

__all__ = ["UPSAMPLE_MODES", "NORMALISE_MODES", "EPS", "upsample", "normalise", "postprocess"]

#: Interpolation modes accepted by :func:`upsample` (``None`` anywhere a mode is asked for = keep the layer size).
UPSAMPLE_MODES: tuple[str, ...] = ("bilinear", "nearest", "bicubic")
#: Normalisations accepted by :func:`normalise`.
NORMALISE_MODES: tuple[str, ...] = ("none", "per_map", "shared")
#: Added to denominators so a zero (or constant) map normalises to zeros, never NaN. The same value and formula as
#: pytorch-grad-cam's ``scale_cam_image`` (``(x - min) / (max - min + 1e-7)``), so the two agree to float precision.
EPS: float = 1e-7


def _check_maps(maps: torch.Tensor, name: str = "maps") -> None:
    if not isinstance(maps, torch.Tensor) or not maps.is_floating_point() or maps.ndim != 4:
        got = f"{maps.dtype} tensor of shape {tuple(maps.shape)}" if isinstance(maps, torch.Tensor) else type(maps)
        raise XcxrTypeError(f"{name} must be a float tensor (B, K, H, W) (images × classes × height × width), got {got}")


def upsample(maps: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear", *,
             clip_negative: bool = False) -> torch.Tensor:
    """Resize ``(B, K, h, w)`` maps to ``size`` with ``mode`` (``align_corners=False``).

    Args:
        maps: ``(B, K, h, w)`` float maps.
        size: output ``(H, W)`` or one int for a square.
        mode: ``"bilinear"`` (the paper), ``"nearest"`` (shows the layer's true resolution) or ``"bicubic"``.
        clip_negative: clip the result at 0. Used after a ReLU with ``"bicubic"``, which overshoots below zero
            next to sharp edges; bilinear and nearest never leave the input range.

    Returns:
        ``(B, K, H, W)`` maps.

    Example:
        >>> upsample(torch.tensor([[[[0.0, 1.0]]]]), (1, 4)).flatten().tolist()
        [0.0, 0.25, 0.75, 1.0]
    """
    _check_maps(maps)
    if mode not in UPSAMPLE_MODES:
        raise XcxrValueError(f"upsample mode must be one of {UPSAMPLE_MODES} (or None = no upsampling), got {mode!r}")
    size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(maps.shape[-2:]) == size:
        return maps
    # align_corners only exists for the interpolating modes; nearest takes none
    kw = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(maps, size=size, mode=mode, **kw)
    return out.clamp_min(0) if clip_negative and mode == "bicubic" else out


def normalise(maps: torch.Tensor, mode: str = "per_map", eps: float = EPS) -> torch.Tensor:
    """Rescale ``(B, K, H, W)`` maps for display.

    Args:
        maps: ``(B, K, H, W)`` float maps (B images × K classes).
        mode: ``"none"`` — unchanged (the raw Grad-CAM magnitudes, comparable across images of one model);
            ``"per_map"`` — min-max per image and class to [0, 1] (pytorch-grad-cam's choice; hides magnitude);
            ``"shared"`` — each image's K maps divided by one number, their largest absolute value, so ReLU'd maps
            land in [0, 1] and signed maps in [-1, 1] with 0 still meaning "no evidence", and the classes stay
            comparable.
        eps: added to the denominator so zero or constant maps give zeros, not NaN.

    Returns:
        maps of the same shape; zero maps stay zero in every mode.

    Example:
        >>> m = torch.tensor([[[[0.0, 2.0]], [[0.0, 1.0]]]])           # two classes, one image
        >>> normalise(m, "per_map")[0, :, 0, 1], normalise(m, "shared")[0, :, 0, 1]
        (tensor([1.0000, 1.0000]), tensor([1.0000, 0.5000]))
    """
    _check_maps(maps)
    if mode not in NORMALISE_MODES:
        raise XcxrValueError(f"normalise mode must be one of {NORMALISE_MODES}, got {mode!r}")
    if mode == "none":
        return maps
    if mode == "per_map":
        lo = maps.amin(dim=(2, 3), keepdim=True)
        hi = maps.amax(dim=(2, 3), keepdim=True)
        return (maps - lo) / (hi - lo + eps)
    scale = maps.abs().amax(dim=(1, 2, 3), keepdim=True)    # one number per image, shared by its K class maps
    return maps / (scale + eps)


def postprocess(maps: torch.Tensor, size: int | Sequence[int] | None = None, *, relu: bool = True,
                upsample_mode: str | None = "bilinear", normalise_mode: str = "none", eps: float = EPS) -> torch.Tensor:
    """ReLU → upsample → normalise, each step named. Defaults = the Grad-CAM paper (ReLU, bilinear, raw values).

    Args:
        maps: ``(B, K, h, w)`` signed maps at the layer's resolution (e.g. ``gradcam(..., relu=False, upsample=None)``).
        size: output ``(H, W)`` (usually the input image size); ``None`` keeps ``(h, w)``.
        relu: keep only positive evidence (the paper). ``False`` keeps signed maps.
        upsample_mode: one of :data:`UPSAMPLE_MODES`, or ``None`` to keep the layer resolution.
        normalise_mode: one of :data:`NORMALISE_MODES` (see :func:`normalise`).
        eps: see :func:`normalise`.

    Returns:
        ``(B, K, H, W)`` maps.

    Example:
        >>> signed = torch.tensor([[[[-1.0, 3.0]]]])
        >>> postprocess(signed, (1, 4), relu=False).flatten().tolist()          # signed, bilinear
        [-1.0, 0.0, 2.0, 3.0]
        >>> postprocess(signed, (1, 4)).flatten().tolist()                      # ReLU first, then bilinear
        [0.0, 0.75, 2.25, 3.0]
    """
    _check_maps(maps)
    if relu:
        maps = maps.clamp_min(0)        # step 6 of Grad-CAM: only features that raise the class score
    if size is not None and upsample_mode is not None:
        maps = upsample(maps, size, upsample_mode, clip_negative=relu)
    elif upsample_mode is not None and upsample_mode not in UPSAMPLE_MODES:
        raise XcxrValueError(f"upsample mode must be one of {UPSAMPLE_MODES} or None, got {upsample_mode!r}")
    return normalise(maps, normalise_mode, eps)
