"""What every tab shares: the model catalog, the examples, image loading, error conversion, deep-link hooks.

Deep links: the app reads the URL's query parameters on page load (``?tab=heatmaps&model=pneumonia_cnn&example=
PNEUMONIA/person1071_virus_1774.jpeg&outcome=FP&index=3``). It selects the tab, and sets every model and example
dropdown registered with :meth:`AppContext.register_model_choice` / :meth:`AppContext.register_example_choice`.
A tab that wants the other parameters (``outcome``, ``index``…) either registers a handler with
:meth:`AppContext.on_link` — ``fn(params: dict[str, str]) -> update or tuple of updates`` for its ``outputs`` — or
listens to ``ctx.link_params`` (a ``gr.State`` holding the whole query dict; its ``.change`` fires after load).
To have the "Copy link" button write those parameters back, a tab adds ``(param, component)`` pairs to
``ctx.link_extras[tab_id]`` while it builds.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import torch.nn as nn

from lib.data import ImageError, load_grey
from lib.models import get_config

from .catalog import CatalogError, ModelCatalog
from .examples import ExampleSet

__all__ = ["AppContext", "load_image", "model_choice", "example_choice", "ui_errors", "TAB_IDS", "default_model_name"]

#: Tab ids, in order: used by ``gr.Tab(id=...)``, the ``tab`` query parameter and the copied link.
TAB_IDS = ["classify", "heatmaps", "filters", "feature_maps", "outcomes", "report", "trust"]


@dataclass
class AppContext:
    """Shared state for the tabs (see the module docstring for deep links)."""

    catalog: ModelCatalog
    examples: ExampleSet
    model_dropdowns: list[gr.Dropdown] = field(default_factory=list)
    example_dropdowns: list[gr.Dropdown] = field(default_factory=list)
    link_handlers: list[tuple[Callable[[dict], Any], list]] = field(default_factory=list)
    link_params: Any = None  # gr.State with the query dict, created by the app inside the Blocks
    #: tab id -> (fn, inputs, outputs) run when the tab is opened (click or deep link) so it never shows empty.
    on_open: dict[str, tuple[Callable, list, list]] = field(default_factory=dict)
    #: tab id -> [(query parameter, component)] that the "Copy link" button adds to the link when that tab is open
    #: (the values the tab reads back from a deep link, e.g. outcomes: split, threshold, outcome, index).
    link_extras: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    _locks: dict[int, threading.RLock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default_model(self) -> str | None:
        return self.catalog.default()

    def model(self, name: str | None) -> nn.Module:
        """The catalog model ``name`` (default if empty); :class:`gr.Error` with the reason when unavailable."""
        try:
            return self.catalog.get(name or None)
        except CatalogError as e:
            raise gr.Error(str(e)) from e

    def model_lock(self, model: nn.Module) -> threading.RLock:
        """One lock per model object: methods that register hooks on a shared model must not interleave."""
        with self._locks_guard:
            return self._locks.setdefault(id(model), threading.RLock())

    def register_model_choice(self, dd: gr.Dropdown) -> gr.Dropdown:
        self.model_dropdowns.append(dd)
        return dd

    def register_example_choice(self, dd: gr.Dropdown) -> gr.Dropdown:
        self.example_dropdowns.append(dd)
        return dd

    def load_image(self, upload: Any, example_id: str | None, model: nn.Module,
                   original: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """See :func:`load_image`."""
        return _load_image(self.examples, upload, example_id, model, original)

    def on_link(self, fn: Callable[[dict], Any], outputs: list) -> None:
        """Run ``fn(query_params)`` on page load; its return value updates ``outputs``."""
        self.link_handlers.append((fn, list(outputs)))


def default_model_name(ctx: AppContext) -> str | None:
    return ctx.default_model


def model_choice(ctx: AppContext, label: str = "Model", register: bool = True, **kwargs: Any) -> gr.Dropdown:
    """A model dropdown: available models by name, unavailable ones shown with their reason (selecting one errors)."""
    choices = []
    for e in ctx.catalog.entries():
        shown = f"{e.name} ({e.source})" if e.available else f"{e.name} — unavailable: {(e.reason or '')[:80]}"
        choices.append((shown, e.name))
    dd = gr.Dropdown(choices=choices, value=ctx.default_model, label=label, allow_custom_value=True, **kwargs)
    return ctx.register_model_choice(dd) if register else dd


#: Upload types offered by the file picker (DICOM via lib.data.load_grey); the original file reaches load_grey.
FILE_TYPES = [".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"]


def upload_choice(label: str = "Upload an X-ray (PNG, JPEG, 16-bit PNG, DICOM)", **kwargs: Any) -> gr.File:
    """The upload field of every image tab: ``gr.File`` so 16-bit PNGs and DICOMs arrive untouched."""
    return gr.File(label=label, file_types=FILE_TYPES, type="filepath", **kwargs)


def example_choice(ctx: AppContext, label: str = "…or pick a bundled example (folder = true label)",
                   register: bool = True, value: str | None = None, **kwargs: Any) -> gr.Dropdown:
    """An example dropdown over ``ctx.examples`` (ids like ``"PNEUMONIA/person1071_virus_1774.jpeg"``)."""
    dd = gr.Dropdown(choices=list(ctx.examples), value=value, label=label, allow_custom_value=True, **kwargs)
    return ctx.register_example_choice(dd) if register else dd


def _upload_path(upload: Any) -> str | None:
    if upload is None or upload == "":
        return None
    if isinstance(upload, dict):  # defensive: a FileData-like dict
        upload = upload.get("path")
    if isinstance(upload, (list, tuple)):
        upload = upload[0] if upload else None
    return str(upload) if upload else None


def load_image(*args: Any, original: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``load_image([ctx,] upload, example_id, model)``: the upload (preferred) or the example as
    ``(grey uint8 at the model's size, grey uint8 original)``.

    The original file reaches :func:`lib.data.load_grey` untouched (16-bit PNG, DICOM…). Any decode problem becomes a
    ``gr.Error`` that names it. ``original=False`` skips the second decode and returns ``None`` for it. Without a
    context the bundled examples are used. Also available as ``ctx.load_image(upload, example_id, model)``.
    """
    if args and isinstance(args[0], AppContext):
        ctx_examples, (upload, example_id, model) = args[0].examples, args[1:]
    else:
        ctx_examples, (upload, example_id, model) = _default_examples(), args
    return _load_image(ctx_examples, upload, example_id, model, original)


@functools.lru_cache(maxsize=1)
def _default_examples() -> ExampleSet:
    return ExampleSet()


def _load_image(examples: ExampleSet, upload: Any, example_id: str | None, model: nn.Module,
                original: bool) -> tuple[np.ndarray, np.ndarray | None]:
    path = _upload_path(upload)
    shown = Path(path).name if path else None
    if path is None:
        if not example_id:
            raise gr.Error("No image: upload an X-ray (PNG, JPEG, 16-bit PNG, DICOM) or pick a bundled example.")
        try:
            path = str(examples.path(example_id))
        except KeyError:
            raise gr.Error(f"Unknown example {example_id!r}; pick one from the list.") from None
        shown = example_id
    size = int(get_config(model)["img_size"])
    try:
        small = load_grey(path, size)
        full = load_grey(path) if original else None
    except ImageError as e:
        raise gr.Error(_name_upload(str(e), path, shown)) from e
    except MemoryError as e:
        raise gr.Error(f"{shown}: the image is too large to decode in memory; downscale it") from e
    except Exception as e:  # noqa: BLE001 - any other decoder failure is still a bad upload, not a server error
        raise gr.Error(f"{shown}: the file could not be read as an image ({type(e).__name__}: {e})") from e
    return small, full


def _name_upload(msg: str, path: str, shown: str | None) -> str:
    """Replace the server's temp path in a message by the file's name."""
    return msg.replace(path, shown or Path(path).name)


def ui_errors(fn: Callable) -> Callable:
    """Decorator: library errors (``ValueError``, ``TypeError``, ``CatalogError``…) reach the user as ``gr.Error``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageError, CatalogError, ValueError, TypeError, KeyError) as e:
            raise gr.Error(str(e)) from e
        except MemoryError as e:
            raise gr.Error("out of memory for this request; try a smaller image or a cheaper method") from e
        except Exception as e:  # noqa: BLE001
            raise gr.Error(f"unexpected error ({type(e).__name__}: {e})") from e

    return wrapper
