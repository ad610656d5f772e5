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
``cam_head``       the ``nn.Linear`` right after global average pooling of ``target_layer``'s maps, when the
                   model has one (then Grad-CAM = CAM, no backward pass); ``None`` otherwise
``feature_stages`` module names whose outputs the "feature maps" view shows, in forward order
``first_layer``    the first layer whose weights are shown as "filters" (a conv, or the DNNs' first Linear)
``hub_format``     how :func:`~lib.models.save_model` writes the folder: ``"xcxr"`` (``PyTorchModelHubMixin``) or
                   ``"timm"`` (``timm.create_model("hf-hub:…")`` loads it without this project)
=================  ===================================================================================

The explainers and the loader read only these keys: no code outside a model's own file knows its class.
The rest of the config are the model's own options (``widths``, ``dropout``, ``stages`` …, see
:func:`model_options`), which :func:`~lib.models.load_model` hands back to :func:`create_model`.

Example:
    >>> from lib.models import create_model, list_models
    >>> list_models()
    ['cnn1', 'cnn2', 'dnn1', 'dnn2', 'pneumonia_cnn', 'resnet18_pretrained', 'resnet18_pretrained_frozen_stem', 'resnet18_scratch']
    >>> m = create_model("pneumonia_cnn", dropout=0.2)
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn

from ..errors import XcxrTypeError, XcxrValueError
from .limits import check_options

__all__ = ["register_model", "unregister_model", "create_model", "list_models", "model_entrypoint", "model_options",
           "loading_overrides"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_OPTIONS: dict[str, tuple[str, ...]] = {}
_LOADING: dict[str, dict[str, Any]] = {}
_LIMITS: dict[str, dict[str, Any]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, options: Callable[..., Any] | None = None,
                   fixed: Sequence[str] = (), loading: Mapping[str, Any] | None = None,
                   limits: Mapping[str, Any] | None = None) -> Any:
    """Decorator: register ``fn`` under its function name.

    The options ``create_model(name, **options)`` accepts are the named parameters of ``fn``; when ``fn`` takes
    ``**cfg`` and hands it to a class or builder, pass that as ``options=`` (its parameters count, minus the ones
    ``fn`` fixes itself, listed in ``fixed``), so that a mistyped option is refused with the real list.
    ``loading`` maps options that *fetch* weights (``pretrained``) to the value :func:`~lib.models.load_model`
    uses instead (``None`` = leave the option out): a saved model's weights come from its own safetensors file,
    never from what its config asks for. ``limits`` maps options of the model's own (not in
    :data:`lib.models.limits.OPTION_LIMITS`) to their bound checks (see :mod:`lib.models.limits`).

    Example:
        >>> @register_model(options=MyNet, fixed=("architecture",))
        ... def my_net(**cfg) -> MyNet:
        ...     return MyNet(architecture="my_net", **cfg)
    """
    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if fn.__name__ in _REGISTRY:
            raise XcxrValueError(f"model {fn.__name__!r} is registered twice")
        _REGISTRY[fn.__name__] = fn
        _OPTIONS[fn.__name__] = _accepted(fn, options, fixed)
        _LOADING[fn.__name__] = dict(loading or {})
        _LIMITS[fn.__name__] = dict(limits or {})
        return fn

    return register(fn) if fn is not None else register


def _accepted(fn: Callable[..., Any], options: Callable[..., Any] | None, fixed: Sequence[str]) -> tuple[str, ...]:
    def named(f: Callable[..., Any]) -> tuple[list[str], bool]:
        params = inspect.signature(f).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        return names, any(p.kind is p.VAR_KEYWORD for p in params)

    own, open_ended = named(fn)
    if open_ended:
        if options is None:
            raise XcxrTypeError(f"{fn.__name__} takes **kwargs: pass register_model(options=THE_CLASS_OR_BUILDER) "
                                "so that its accepted options are known")
        own += [n for n in named(options)[0] if n not in fixed and n not in own]
    return tuple(sorted(own))


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (a notebook cell that redefines a model, a test's toy model)."""
    model_entrypoint(name)
    for table in (_REGISTRY, _OPTIONS, _LOADING, _LIMITS):
        table.pop(name, None)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered function for ``name``; ``ValueError`` listing the valid names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise XcxrValueError(f"unknown model {name!r}; choose one of {list_models()}")
    return _REGISTRY[name]


def model_options(name: str) -> tuple[str, ...]:
    """The options ``create_model(name, ...)`` accepts, sorted.

    Example:
        >>> model_options("pneumonia_cnn")
        ('dropout', 'img_size', 'in_chans', 'labels', 'mean', 'negative_slope', 'num_classes', 'std', 'widths')
    """
    model_entrypoint(name)
    return _OPTIONS[name]


def loading_overrides(name: str) -> dict[str, Any]:
    """Options :func:`~lib.models.load_model` sets itself for ``name`` (see :func:`register_model`'s ``loading``)."""
    model_entrypoint(name)
    return dict(_LOADING[name])


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build a registered model with its config overrides (``img_size=128``, ``dropout=0.2``, …).

    Unknown config keys raise ``TypeError`` naming the key and the accepted ones; values out of the documented
    bounds (:mod:`lib.models.limits`: ``img_size`` ≤ 1024, ``widths`` ≤ 1024 …) raise ``ValueError`` naming the
    bound, before anything is built.
    """
    fn = model_entrypoint(name)
    unknown = sorted(set(cfg) - set(_OPTIONS[name]))
    if unknown:
        raise XcxrTypeError(f"{name}: unknown option(s) {unknown}; accepted options: {list(_OPTIONS[name])}")
    check_options(name, cfg, _LIMITS[name])
    return fn(**cfg)
