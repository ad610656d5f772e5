"""What every tab shares: the model catalog, the examples, image loading, the input widgets, and :class:`TabSpec`.

Each tab module has ``build(ctx: AppContext) -> TabSpec``, called inside ``with gr.Tab(...)``. The spec tells the app
what to wire across tabs:

* ``model`` / ``example``: the tab's own dropdowns. A deep link (``?tab=heatmaps&model=pneumonia_cnn&example=
  PNEUMONIA/person1071_virus_1774.jpeg``) sets every tab's dropdowns; the "Copy link" button reads the open tab's.
* ``on_link``: ``(fn, outputs)``; ``fn(query params: dict[str, str])`` runs on the page load of a link to this tab
  (the app calls only the linked tab's) and updates ``outputs`` (the Outcomes tab reads ``outcome``, ``index``…).
  ``link_extras``: the ``(param, component)`` pairs the copy button writes back into the link for this tab.
* ``link_reads``: further parameters ``on_link`` reads; ``result_id``: the element a deep link scrolls into view.
  Link parameters are read through :class:`space.links.LinkParams` (bad values → a warning toast).
* ``on_open``: ``(fn, inputs, outputs)`` run when the tab is opened (a click or a deep link), so it is never empty;
  ``on_load``: steps run in order once the page has loaded (the Classify tab's first classification).

Errors shown to visitors are :mod:`space.errors`' business (``ui_errors``).
"""
from __future__ import annotations

import collections
import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
import numpy as np
import torch.nn as nn

from lib.data import IMAGE_SUFFIXES, ImageError, load_grey
from lib.data.images import MAX_FILE_BYTES, DecodeBusyError
from lib.errors import XcxrError
from lib.models import get_config

from .catalog import ModelCatalog
from .errors import log_incident, public_text
from .examples import ExampleSet

if TYPE_CHECKING:
    from .visitor_models import VisitorModels

__all__ = ["AppContext", "TabSpec", "ImageInputs", "image_inputs", "load_image", "model_choice", "example_choice",
           "example_label", "upload_choice", "discard_upload", "TAB_IDS", "FILE_TYPES"]

log = logging.getLogger("space")

#: Tab ids, in order: used by ``gr.Tab(id=...)``, the ``tab`` query parameter and the copied link.
TAB_IDS = ["classify", "heatmaps", "filters", "feature_maps", "outcomes", "report", "trust"]

#: One event's ``(fn, inputs, outputs)``.
Step = tuple[Callable[..., Any], list, Any]


@dataclass
class TabSpec:
    """What a tab's ``build()`` hands back to the app (see the module docstring); every field is optional."""

    model: gr.Dropdown | None = None
    example: gr.Dropdown | None = None
    on_open: Step | None = None
    on_load: list[Step] = field(default_factory=list)
    on_link: tuple[Callable[[dict], Any], list] | None = None
    link_extras: list[tuple[str, Any]] = field(default_factory=list)
    #: query parameters ``on_link`` reads besides those of ``link_extras`` (e.g. ``image``), so the app does not
    #: call them unknown
    link_reads: list[str] = field(default_factory=list)
    #: ``elem_id`` of the element a deep link scrolls into view once the tab's result is computed
    result_id: str | None = None


@dataclass
class AppContext:
    """What every tab reads: the model catalog, the bundled examples and the visitors' own models
    (:mod:`space.visitor_models`: ``yours:…`` names, each for one session only)."""

    catalog: ModelCatalog
    examples: ExampleSet
    visitors: "VisitorModels | None" = None
    #: Every dropdown of model names with a function giving its own choices (:meth:`offer_models`).
    model_inputs: list[tuple[gr.Dropdown, Callable[[], list]]] = field(default_factory=list, repr=False)

    @property
    def default_model(self) -> str | None:
        """The name of the model every dropdown starts at (``None`` when no model loads)."""
        return self.catalog.default()

    def model(self, name: str | None) -> nn.Module:
        """The catalog model ``name`` (the default if empty); :class:`space.catalog.CatalogError` (an
        ``XcxrError``, shown to the visitor by ``ui_errors``) with the reason when it is unknown or unavailable.

        A ``yours:`` name is the running request's session's own model (:mod:`space.visitor_models`); for any other
        session it is an unknown model."""
        if self.visitors is not None and self.visitors.owns(name):
            return self.visitors.get(name)
        return self.catalog.get(name or None)

    def offer_models(self, dropdown: gr.Dropdown, choices: Callable[[], list]) -> gr.Dropdown:
        """Register a dropdown of model names and the function that gives its own choices: the "Your model"
        panel adds a visitor's model to each (for that visitor's session only). Returns ``dropdown``."""
        self.model_inputs.append((dropdown, choices))
        return dropdown

    def labels(self, name: str | None = None) -> list[str]:
        """The class names of model ``name`` (default: the default model) from its config; generic names when it
        does not load (the UI still builds; running it shows why)."""
        labels = (self.catalog.saved_config(name or self.default_model or "") or {}).get("labels")
        if isinstance(labels, list) and len(labels) == 2 and all(isinstance(x, str) and x for x in labels):
            return [x[:64] for x in labels]  # from config.json: building the page never waits for a model to load
        try:
            return [str(label) for label in get_config(self.model(name))["labels"]]
        except XcxrError:
            return ["class 0", "class 1"]

    def load_image(self, upload: Any, example_id: str | None, model: nn.Module,
                   original: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """See :func:`load_image`."""
        return _load_image(self.examples, upload, example_id, model, original)


def model_choice(ctx: AppContext, label: str = "Model", **kwargs: Any) -> gr.Dropdown:
    """A model dropdown: available models by name, unavailable ones shown with their reason (selecting one errors).
    Registered with :meth:`AppContext.offer_models`, so a visitor's own model joins it for their session."""
    def choices() -> list[tuple[str, str]]:
        out = []
        for e in ctx.catalog.entries():
            reason = public_text(e.reason or "")[:80]  # a load error may name server folders
            shown = f"{e.name} ({e.source})" if e.available else f"{e.name} — unavailable: {reason}"
            out.append((shown, e.name))
        return out

    dropdown = gr.Dropdown(choices=choices(), value=ctx.default_model, label=label, allow_custom_value=True,
                           **kwargs)
    return ctx.offer_models(dropdown, choices)


#: Upload types offered by the file picker (DICOM via lib.data.load_grey); the original file reaches load_grey.
#: Gradio refuses any other name on the server too. The size limit is Gradio's, in space/app.py:
#: ``launch(max_file_size=MAX_FILE_BYTES)`` (lib.data.images), so an oversized upload is cut off while it streams in.
FILE_TYPES = list(IMAGE_SUFFIXES)


def upload_choice(label: str = f"Upload an X-ray (PNG, JPEG, DICOM, TIFF, WebP…; up to {MAX_FILE_BYTES // 2**20} MB)",
                  **kwargs: Any) -> gr.File:
    """The upload field of every image tab: ``gr.File`` so 16-bit PNGs and DICOMs arrive untouched."""
    return gr.File(label=label, file_types=FILE_TYPES, type="filepath", **kwargs)


def example_label(example_id: str) -> str:
    """What the example dropdown shows for an id: the file name, then the true label (its folder) —
    ``"person1071_virus_1774.jpeg (PNEUMONIA)"`` for ``"PNEUMONIA/person1071_virus_1774.jpeg"``."""
    folder, _, name = example_id.rpartition("/")
    return f"{name} ({folder})" if folder else name


def example_choice(ctx: AppContext, label: str = "…or pick a bundled example (true label in brackets)",
                   value: str | None = None, **kwargs: Any) -> gr.Dropdown:
    """An example dropdown over ``ctx.examples``: it shows file names with the true label
    (:func:`example_label`), its value is the example's id (``"PNEUMONIA/person1071_virus_1774.jpeg"``), the one
    deep links, the API and :func:`load_image` use."""
    choices = [(example_label(e), e) for e in ctx.examples]
    return gr.Dropdown(choices=choices, value=value, label=label, allow_custom_value=True, **kwargs)


@dataclass(frozen=True)
class ImageInputs:
    """The input trio of every image tab. ``picked``: the event "an example was chosen and the upload cleared";
    chain on it (``.then``) to react to a new example, so the cleared upload is what the next step sees."""

    upload: gr.File
    example: gr.Dropdown
    model: gr.Dropdown
    picked: Any


def image_inputs(ctx: AppContext, below_example: Callable[[], Any] | None = None) -> ImageInputs:
    """Upload field, example dropdown and model dropdown, in that order (``below_example()`` builds extra components
    between the example and the model dropdown). The example starts at the first one of the default model's last
    class (``PNEUMONIA/…`` for the bundled model), else the first example."""
    upload = upload_choice()
    first = ctx.examples.first(ctx.labels()[-1]) or ctx.examples.first()
    example = example_choice(ctx, value=first)
    if below_example is not None:
        below_example()
    model = model_choice(ctx)
    # An upload wins over the example in load_image, so choosing an example must drop the previous upload.
    picked = example.change(lambda: None, None, upload, api_visibility="private", queue=False)
    return ImageInputs(upload, example, model, picked)


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


def _upload_dir() -> Path:
    """Gradio's folder for uploads and cached files (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _is_upload(path: str | Path) -> bool:
    """True for a file inside Gradio's upload folder, and outside the repository and the examples folder (in case
    ``GRADIO_TEMP_DIR`` was pointed at, or above, one of them)."""
    p = Path(path).resolve()
    root = _upload_dir()
    repo = Path(__file__).resolve().parents[1]
    if p == root or root not in p.parents:
        return False
    return not (p == repo or repo in p.parents or _default_examples().root.resolve() in p.parents)


def discard_upload(path: str | Path) -> bool:
    """Delete a refused upload's temporary copy, and its folder when that is left empty; True when deleted.

    A refused file is of no further use, and a visitor who keeps uploading bad files would otherwise fill the disk
    until Gradio's hourly clean-up. Only files in Gradio's upload folder are touched (:func:`_is_upload`) — never a
    bundled example or any other file.
    """
    p = Path(path)
    if not _is_upload(p) or not p.is_file():
        return False
    try:
        p.unlink()
        if p.parent != _upload_dir():
            p.parent.rmdir()  # Gradio keeps each upload in a folder of its own; fails (kept) when not empty
    except OSError:
        pass
    log.info("removed refused upload %s", p.name)
    return True


class _Refusals:
    """Why the most recent refused uploads were refused, by their path in Gradio's upload folder.

    Gradio names an upload by the hash of its bytes, so visitors who send the same file at the same time share one
    temporary copy: the first refusal removes it while the others are still on their way. They get the same reason
    from here instead of "this upload is no longer on the server". Bounded (the last :attr:`KEEP`).
    """

    KEEP = 256

    def __init__(self) -> None:
        self._why: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, path: str | Path, message: str) -> None:
        key = str(Path(path).resolve())
        with self._lock:
            self._why[key] = message
            self._why.move_to_end(key)
            while len(self._why) > self.KEEP:
                self._why.popitem(last=False)

    def get(self, path: str | Path) -> str | None:
        with self._lock:
            return self._why.get(str(Path(path).resolve()))


_refusals = _Refusals()


def _refuse_upload(path: str, message: str, **error: Any) -> gr.Error:
    """Remember why, remove the temporary copy, and return the error to raise (``error``: ``gr.Error`` options)."""
    _refusals.remember(path, message)
    discard_upload(path)
    return gr.Error(message, **error)


def _load_image(examples: ExampleSet, upload: Any, example_id: str | None, model: nn.Module,
                original: bool) -> tuple[np.ndarray, np.ndarray | None]:
    path = _upload_path(upload)
    shown = Path(path).name if path else None
    uploaded = path is not None  # an upload, not a bundled example: removed when it is refused
    if uploaded and not Path(path).exists() and _is_upload(path):
        if (why := _refusals.get(path)) is not None:  # the same file, refused for another visitor a moment ago
            raise gr.Error(why)
        raise gr.Error(f"{public_text(shown or '')}: this upload is no longer on the server (a refused file is "
                       "removed at once, any other after an hour); upload the file again.")
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
    except DecodeBusyError as e:  # not the file's fault: kept, so that "try again in a moment" works
        raise gr.Error(public_text(_name_upload(str(e), path, shown))) from e
    except ImageError as e:  # a bad file: the message is for the user, with the upload's own name
        if uploaded and not Path(path).exists() and (why := _refusals.get(path)) is not None:
            raise gr.Error(why) from e  # removed under this request by another visitor's refusal of the same file
        msg = public_text(_name_upload(str(e), path, shown))
        raise (_refuse_upload(path, msg) if uploaded else gr.Error(msg)) from e
    except XcxrError:
        raise  # another deliberate error, not about the file: ui_errors shows its message
    except MemoryError as e:
        msg = f"{public_text(shown)}: the image is too large to decode in memory; downscale it"
        raise (_refuse_upload(path, msg) if uploaded else gr.Error(msg)) from e
    except Exception:  # noqa: BLE001 - a decoder failure lib did not foresee: still a bad upload, not a crash
        # its text is internal (decoder names, temp paths): logged with the traceback, not shown
        incident = log_incident(f"decoding {shown!r}")
        msg = f"{public_text(shown)}: the file could not be read as an image (error id {incident})."
        raise (_refuse_upload(path, msg, print_exception=False) if uploaded
               else gr.Error(msg, print_exception=False)) from None
    return small, full


def _name_upload(msg: str, path: str, shown: str | None) -> str:
    """Replace the server's temp path in a message by the file's name."""
    return msg.replace(path, shown or Path(path).name)

