"""The model registry: ``@register_model`` entry points, :func:`create_model`, :func:`list_models`.

As in timm, every architecture is one small decorated function that returns a ready ``nn.Module``; the
registry is the only place that maps a name to code, so the CLI, the app and ``load_model`` all agree.

Every model returned here carries ``model.xcxr_config`` — a JSON-serialisable dict that travels with the
weights in ``config.json``:

=================  ===================================================================================
key                meaning
=================  ===================================================================================
``architecture``   registry name (``pneumonia_cnn``, ``resnet18_scratch`` …)
``num_classes``    number of logits: 2 (softmax / cross-entropy) or 1 (sigmoid / BCE, logit > 0 = positive)
``labels``         class names, index 0 = negative (``NORMAL``), 1 = positive (``PNEUMONIA``)
``in_chans``       channels the network takes (1 grey, or 3 = the grey image repeated for ImageNet stems)
``img_size``       input side length in pixels
``mean``, ``std``  normalisation, per input channel, applied to pixels scaled to [0, 1]
``target_layer``   default Grad-CAM layer (dotted module name; ``None`` for the fully connected DNNs)
``first_layer``    the first layer whose weights are shown as "filters" (a conv, or the DNNs' first Linear)
=================  ===================================================================================

Example:
    >>> from lib.models import create_model, list_models
    >>> list_models()
    ['cnn1', 'cnn2', 'dnn1', 'dnn2', 'pneumonia_cnn', 'resnet18_pretrained', 'resnet18_pretrained_frozen_stem', 'resnet18_scratch']
    >>> m = create_model("pneumonia_cnn", dropout=0.2)
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "model_entrypoint"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered function for ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build a registered model with its config overrides (``img_size=128``, ``dropout=0.2``, …).

    Unknown config keys raise ``TypeError`` naming the key and the accepted ones.
    """
    fn = model_entrypoint(name)
    try:
        return fn(**cfg)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            import inspect
            allowed = sorted(inspect.signature(fn).parameters)
            raise TypeError(f"{name}: {e}; accepted options: {allowed}") from None
        raise
