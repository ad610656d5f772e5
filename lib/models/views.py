"""A thread-private, eval-mode view of a model that many threads share: :func:`eval_view`.

The app serves a whole class with **one** model object. Two things an explanation usually does to a model are not
safe when other threads run the same object at the same time:

* **forward hooks** (Grad-CAM's captured feature maps, Captum's layer and ReLU hooks) fire for *every* forward pass
  of the module, so a hook installed by thread A also records the forward pass thread B is running — A then
  explains B's image, without any error;
* **``model.eval()``** writes each module's ``training`` flag, which every other thread's forward reads.

:func:`eval_view` avoids both without a lock: it returns a *shallow structural copy* of the module tree — new
module objects with their own hook tables and their own ``training`` flags (all ``False``), holding the **same**
parameter and buffer tensors (no weights are copied; a view of ResNet18 costs about 0.4 ms, of the course CNN
0.1 ms, on this project's 2-core test machine). Hooks registered on the view fire only for forward passes
through the view, i.e. only in the thread that made it; the shared model's flags are never touched. Hooks already
on the shared model are kept (they are part of its behaviour). :func:`in_eval` skips the copy when the model is
already in eval mode and the caller installs no hooks other threads could reach.

What is still shared, by design: the weights. Training the shared model (an optimiser step, or BatchNorm running
statistics updated by a forward pass in training mode) while another thread explains it changes the numbers that
explanation reads — explain a model that is not being trained, or a copy of it.

Limitation: sub-modules kept outside ``nn.Module``'s registry (in a plain Python list or dict attribute instead of
an ``nn.ModuleList``/``nn.ModuleDict``) are not copied; every model of the zoo registers all of its sub-modules.

Example:
    >>> view = eval_view(model)             # model may be in train mode and used by other threads
    >>> view.training, model.training       # the shared model keeps its mode
    (False, True)
    >>> view(x)                             # the same weights, eval-mode BatchNorm and dropout
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

__all__ = ["eval_view", "in_eval"]


def eval_view(model: nn.Module) -> nn.Module:
    """A shallow copy of ``model``'s module tree in eval mode that shares its parameters and buffers.

    Args:
        model: any ``nn.Module`` (a zoo model, or anything else).

    Returns:
        A module of the same class and structure, every sub-module in eval mode, whose parameters and buffers are
        the very tensors of ``model`` (so gradients w.r.t. them are gradients w.r.t. ``model``'s weights), and
        whose hooks and ``training`` flags are its own. ``model`` is not modified.

    Example:
        >>> view = eval_view(create_model("pneumonia_cnn"))
        >>> view.features[0].conv1.weight is model.features[0].conv1.weight
        True
    """
    return _clone(model, {})


def in_eval(model: nn.Module) -> nn.Module:
    """``model`` itself when every sub-module is already in eval mode, else :func:`eval_view` of it.

    For code that needs eval mode and installs no hooks, or only hooks that ignore other threads (such as
    :func:`lib.explain.core.capture`): the shared, already-eval model of the app then costs nothing extra.

    Example:
        >>> net = in_eval(model)       # model in train mode → a view; in eval mode → model
    """
    return eval_view(model) if any(m.training for m in model.modules()) else model


def _clone(module: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    if id(module) in memo:  # a sub-module used twice stays one object in the view
        return memo[id(module)]
    new = module.__class__.__new__(module.__class__)
    memo[id(module)] = new
    state = module.__dict__.copy()
    for key, value in state.items():
        # dicts and sets are the per-module tables (_parameters, _buffers, _modules, the hook tables, the set of
        # non-persistent buffers, configs): copied, so what is registered on the view stays on the view. Tensors
        # inside them are the same objects. (Exact types: checking them is the cheap part of a view.)
        if type(value) in _TABLES:
            state[key] = value.copy()
    state["_modules"] = {name: (None if child is None else _clone(child, memo))
                         for name, child in module._modules.items()}
    state["training"] = False  # what Module.eval() sets (a module overriding train() gets no call: none here do)
    new.__dict__ = state
    return new


_TABLES = (dict, OrderedDict, set)
