"""Your model: a visitor opens a model they trained and looks at it in every tab — in their own session only.

A student who trained a model (``python -m train … --push-to-hub OWNER/NAME`` in the course's GPU lab, or in a
notebook) opens it in the "Your model" panel at the top of the page, by Hub repo id (with an access token for a
private repo) or by uploading its ``config.json`` and ``model.safetensors``. It then appears as ``yours:<name>``
in every tab's model dropdown of *that browser tab* (its Gradio session), and nowhere else.

Where things are:

* :class:`VisitorModels` (``ctx.visitors``) holds the models: ``{session hash: (name, model)}``, at most one per
  session (opening another replaces it), at most :data:`MAX_MODELS` and :data:`MAX_BYTES` of weights in all (the
  least recently used are dropped beyond that), each dropped after :data:`IDLE_S` seconds unused and when its
  session ends (``demo.unload``: the browser tab was closed or reloaded). ``ctx.model(name)`` resolves a
  ``yours:`` name through :meth:`VisitorModels.get` for the session of the running request only (Gradio's request
  context, :func:`current_session`), so another visitor who sends the same name is told "unknown model".
* Validation is :mod:`lib.models`' job: :func:`lib.models.download_model` (the repo id, the config and the files'
  sizes, each before the download it guards; nothing through the shared Hugging Face cache) and
  :func:`lib.models.load_model` (option bounds, budgets, the safetensors header against the built model). This
  module only puts the two files in a private temporary folder, removed once the model is in memory.
* Loading runs in a small worker pool of its own; the request waits at most the catalogue's
  :data:`space.catalog.LOAD_WAIT_S` and then says "still loading" (the model is added when it is done), and the
  open events have a queue lane of their own, so a slow download never holds other visitors' requests.
* The access token is an argument of one download and nothing else: it is not stored (not in a ``gr.State``,
  not in the model's entry, not in any output: the box is emptied), never logged (an unexpected error's
  traceback is logged with the token blanked out), never echoed in a message and never part of a link.
* :func:`build` makes the panel (an accordion above the tabs); :meth:`YourModelPanel.wire` connects it to every
  model dropdown registered with :meth:`space.context.AppContext.offer_models`, once the tabs exist. API:
  ``/your_model_hub`` (repo_id, token), ``/your_model_upload`` (config, weights), ``/your_model_forget``.

Settings (environment, read at import): ``XCXR_VISITOR_MODELS`` (default 20), ``XCXR_VISITOR_MODEL_BYTES``
(default 1 GiB), ``XCXR_VISITOR_IDLE_S`` (default 1800).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
import torch.nn as nn
from gradio.context import LocalContext

from lib.data.images import MAX_FILE_BYTES
from lib.errors import XcxrError
from lib.models import MAX_WEIGHTS_BYTES, count_parameters, download_model, get_config, load_model
from lib.models.hub import CONFIG_NAME, MAX_CONFIG_BYTES, WEIGHTS_NAME

from .catalog import LOAD_WAIT_S, CatalogError
from .errors import incident_message, public_text, ui_errors

if TYPE_CHECKING:
    from .context import AppContext

__all__ = ["VisitorModels", "YourModelPanel", "build", "current_session", "PREFIX", "MAX_MODELS", "MAX_BYTES",
           "IDLE_S", "LANE"]

log = logging.getLogger("space")


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


#: Model names of this kind belong to one session: ``yours:OWNER/NAME`` (Hub) or ``yours:upload``.
PREFIX = "yours:"
#: Visitor models held at once, over all sessions (the least recently used beyond it is dropped).
MAX_MODELS = int(_env("XCXR_VISITOR_MODELS", 20))
#: Their weights in memory at most, in all (a ResNet18 is 45 MB; the catalogue has a budget of its own).
MAX_BYTES = int(_env("XCXR_VISITOR_MODEL_BYTES", 2**30))
#: A visitor model unused this long (seconds) is dropped.
IDLE_S = _env("XCXR_VISITOR_IDLE_S", 1800)
#: Loads waiting or running at once, over all sessions; one more is told to try again in a minute.
MAX_PENDING = 6
#: The queue lane of the open events (they mostly wait for the load worker), apart from the interactive one; the
#: app gives it :data:`MAX_PENDING` places (``space.app.LANES``).
LANE = "your_model"


def current_session() -> str | None:
    """The Gradio session hash of the request being handled on this thread (``None`` outside a request).

    Gradio sets the request in a context variable for every event handler (``gradio.utils.get_function_with_locals``,
    the same one ``gr.Request`` parameters come from); ``space.fair_queue`` copies it to the expensive lane's threads.
    """
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) if request is not None else None


def _weights_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@dataclass
class _Held:
    name: str
    model: nn.Module
    size: int
    last_used: float


class VisitorModels:
    """The visitors' own models, one per Gradio session, bounded in number, bytes and idle time (module doc).

    Example:
        >>> vm = VisitorModels()
        >>> name = vm.open_repo("session-1", "someone/xcxr-cnn")  # doctest: +SKIP
        >>> vm.get(name, session="session-1")  # doctest: +SKIP
    """

    def __init__(self, max_models: int = MAX_MODELS, max_bytes: int = MAX_BYTES, idle_s: float = IDLE_S,
                 wait_s: float | None = None, workers: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_models, self.max_bytes, self.idle_s = int(max_models), int(max_bytes), float(idle_s)
        self._clock = clock  # seconds, for the idle timeout (tests pass their own)
        self.wait_s = LOAD_WAIT_S if wait_s is None else float(wait_s)
        self._lock = threading.Lock()  # guards the two tables; never held while a model loads
        self._held: OrderedDict[str, _Held] = OrderedDict()  # session -> model, least recently used first
        # session -> (what is loading, a ticket naming this load, its future)
        self._pending: dict[str, tuple[str, object, Future]] = {}
        self._ended: set[object] = set()  # tickets of loads whose session ended: still counted until they finish
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visitor-model")
        self._sweeper: threading.Thread | None = None

    # -- names -------------------------------------------------------------------------------------------------
    @staticmethod
    def owns(name: Any) -> bool:
        """True for a ``yours:`` name (resolved here, never by the catalogue)."""
        return isinstance(name, str) and name.startswith(PREFIX)

    def name_of(self, session: str | None) -> str | None:
        """The name of ``session``'s model, or ``None``."""
        with self._lock:
            held = self._held.get(session or "")
            return held.name if held else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def held_bytes(self) -> int:
        """Weights of all visitor models in memory, in bytes."""
        with self._lock:
            return sum(h.size for h in self._held.values())

    # -- using -------------------------------------------------------------------------------------------------
    def get(self, name: str, session: str | None = None) -> nn.Module:
        """The model ``name`` of ``session`` (default: the running request's); :class:`CatalogError` "unknown model"
        for any other session, and for a model that was dropped."""
        session = current_session() if session is None else session
        self.sweep()
        with self._lock:
            held = self._held.get(session or "")
            if held is not None and held.name == name:
                held.last_used = self._clock()
                self._held.move_to_end(session)
                return held.model
            loading = self._pending.get(session or "")
        if loading is not None and loading[0] == name:
            raise CatalogError(f"your model {name!r} is still loading; try again in a moment")
        raise CatalogError(f"unknown model {str(name)[:100]!r}: a model opened under 'Your model' is seen only in "
                           f"the browser tab that opened it, and is dropped when that tab closes or after "
                           f"{self.idle_s / 60:g} minutes unused; open it again there")

    def drop(self, session: str | None) -> bool:
        """Forget ``session``'s model; a load it has running is not kept when it finishes (and counts towards
        :data:`MAX_PENDING` until then, so closing tabs cannot queue unbounded work). True when there was a model."""
        with self._lock:
            pending = self._pending.get(session or "")
            if pending is not None:
                self._ended.add(pending[1])
            held = self._held.pop(session or "", None)
        if held is not None:
            log.info("visitor model %s dropped (session ended or forgotten)", held.name)
        return held is not None

    def sweep(self) -> None:
        """Drop the models unused for :attr:`idle_s` seconds."""
        cutoff = self._clock() - self.idle_s
        with self._lock:
            idle = [s for s, h in self._held.items() if h.last_used < cutoff]
            for s in idle:
                log.info("visitor model %s dropped after %g s unused", self._held.pop(s).name, self.idle_s)

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(max(1.0, min(60.0, self.idle_s / 4)))
            self.sweep()

    # -- opening -----------------------------------------------------------------------------------------------
    def open_repo(self, session: str | None, repo_id: str, token: str | None = None) -> str:
        """Load the Hub model ``repo_id`` for ``session`` (``token``: for a private repo; used for the download
        only) and return its name, ``yours:OWNER/NAME``. Waits at most :attr:`wait_s` seconds."""
        repo_id = (repo_id or "").strip()
        token = (token or "").strip() or None
        if not repo_id:
            raise CatalogError("give a Hub repo id of the form OWNER/NAME")

        def load() -> nn.Module:
            with tempfile.TemporaryDirectory(prefix="xcxr-yours-") as tmp:  # mode 0700: this process only
                # no token given: none is sent at all (never this server's own HF_TOKEN)
                return load_model(download_model(repo_id, tmp, token=token or False))

        return self._open(session, PREFIX + repo_id, load, token)

    def open_files(self, session: str | None, config: str | os.PathLike, weights: str | os.PathLike) -> str:
        """Load an uploaded ``config.json`` + ``model.safetensors`` for ``session``; returns ``yours:upload``.

        Sizes are checked before a byte is read (config at most 1 MB, weights at most
        :data:`lib.models.MAX_WEIGHTS_BYTES`); then the two files are copied, before this returns, into a private
        temporary folder of their own (so the uploads may be deleted at once), which :func:`lib.models.load_model`
        reads and which is removed right after. Called again while that load runs, it waits for it again."""
        name = PREFIX + "upload"
        with self._lock:
            loading = self._pending.get(session or "", (None,))[0] == name
        if loading:  # pressed again while it loads: the files were copied already (and their uploads deleted)
            return self._open(session, name, None, None)
        config, weights = _uploaded(config, CONFIG_NAME, MAX_CONFIG_BYTES), \
            _uploaded(weights, WEIGHTS_NAME, MAX_WEIGHTS_BYTES)
        tmp = Path(tempfile.mkdtemp(prefix="xcxr-yours-"))  # mode 0700: this process only
        folder = tmp / "yours" / "upload"  # load_model's messages name it "yours/upload"
        try:
            folder.mkdir(parents=True)
            shutil.copyfile(config, folder / CONFIG_NAME)
            shutil.copyfile(weights, folder / WEIGHTS_NAME)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CatalogError("the uploaded files could not be read on the server; upload them again") from None

        def load() -> nn.Module:
            try:
                return load_model(folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        return self._open(session, name, load, None, unused=lambda: shutil.rmtree(tmp, ignore_errors=True))

    def _open(self, session: str | None, name: str, load: Callable[[], nn.Module] | None, secret: str | None,
              unused: Callable[[], None] | None = None) -> str:
        """Start ``load`` for ``session`` in the pool (or join the load of ``name`` that runs for it already), wait at
        most :attr:`wait_s`; ``unused()`` runs when ``load`` is not started (refused, or joined another)."""
        started = False
        try:
            if not session:
                raise CatalogError("'Your model' needs a session: open the page (or a gradio_client) and try again")
            with self._lock:
                pending = self._pending.get(session)
                if pending is not None and pending[0] != name:
                    raise CatalogError(f"{pending[0]!r} is still loading; wait for it before opening another model")
                if pending is None and load is None:  # the load that was joined has finished meanwhile
                    held = self._held.get(session)
                    if held is not None and held.name == name:
                        return name
                    raise CatalogError(f"{name!r} did not load; open it again")
                if pending is None:
                    if len(self._pending) >= MAX_PENDING:
                        raise CatalogError("many visitors are opening models right now; try again in a minute")
                    ticket = object()
                    future = self._pool.submit(self._load, session, ticket, name, load, secret)
                    pending = self._pending[session] = (name, ticket, future)
                    started = True
        finally:
            if not started and unused is not None:
                unused()
        try:
            pending[2].result(timeout=self.wait_s)
        except FutureTimeout:
            raise CatalogError(f"{name!r} is still loading (a large download?); it is added to the model lists "
                               "when it is done: press the button again in a moment") from None
        return name

    def _load(self, session: str, ticket: object, name: str, load: Callable[[], nn.Module],
              secret: str | None) -> nn.Module:
        """Worker: load, then keep the model for ``session`` (unless the session ended meanwhile). ``secret``: the
        token, only to blank it out of an error report."""
        try:
            model = load()
        except XcxrError as e:  # a refused repo or file: lib's one-line reason
            self._forget_pending(session, ticket)
            raise CatalogError(_blank(_one_line(str(e)), secret)) from None
        except MemoryError:
            self._forget_pending(session, ticket)
            raise CatalogError("the model does not fit in the server's memory now; try again later") from None
        except Exception as e:  # noqa: BLE001 - a bug: logged (token blanked out), the visitor gets an error id
            self._forget_pending(session, ticket)
            incident = secrets.token_hex(3)
            log.error("error id %s: opening visitor model %s failed\n%s", incident, name,
                      _blank("".join(traceback.format_exception(e)), secret))
            raise CatalogError(incident_message(incident)) from None
        model.xcxr_source = None  # its temporary folder is gone: nothing is read from it again
        held = _Held(name, model, _weights_bytes(model), self._clock())
        with self._lock:
            if self._pending.get(session, (None, None))[1] is not ticket:
                return model
            del self._pending[session]
            if ticket in self._ended:  # the session ended (the tab closed, or "Forget") while it loaded
                self._ended.discard(ticket)
                return model
            self._held.pop(session, None)  # one per session: the new one replaces the old
            self._held[session] = held
            dropped = self._evict(keep=session)
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_forever, daemon=True, name="visitor-models")
                self._sweeper.start()
        for old in dropped:
            log.info("visitor model %s dropped: %d visitor models / %d MB at most", old, self.max_models,
                     self.max_bytes // 2**20)
        log.info("visitor model %s opened (%d held)", name, len(self))
        return model

    def _forget_pending(self, session: str, ticket: object) -> None:
        with self._lock:
            self._ended.discard(ticket)
            if self._pending.get(session, (None, None))[1] is ticket:
                del self._pending[session]

    def _evict(self, keep: str) -> list[str]:
        """Caller holds the lock: drop least recently used models beyond the caps (never ``keep``'s)."""
        dropped = []
        total = sum(h.size for h in self._held.values())
        for s in list(self._held):
            if len(self._held) <= self.max_models and total <= self.max_bytes:
                break
            if s != keep:
                held = self._held.pop(s)
                total -= held.size
                dropped.append(held.name)
        return dropped


def _uploaded(path: Any, expected: str, max_bytes: int) -> Path:
    """An uploaded file's path after the checks that need no reading: a regular file (not a link), not empty, at
    most ``max_bytes``."""
    if isinstance(path, dict):
        path = path.get("path")
    if not path:
        raise CatalogError(f"upload both {CONFIG_NAME} and {WEIGHTS_NAME} (the two files of a training run)")
    p = Path(path)
    try:
        st = p.lstat()
    except OSError:
        raise CatalogError(f"{expected}: this upload is no longer on the server; upload it again") from None
    if not stat.S_ISREG(st.st_mode):
        raise CatalogError(f"{expected}: not a regular file")
    if st.st_size == 0 or st.st_size > max_bytes:
        raise CatalogError(f"{expected}: {st.st_size / 2**20:.1f} MB; it must be a non-empty file of at most "
                           f"{max_bytes / 2**20:g} MB")
    return p


def _blank(text: str, secret: str | None) -> str:
    return text.replace(secret, "[token]") if secret else text


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(public_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- the panel ---------------------------------------------------------------------------------------------------
@dataclass
class YourModelPanel:
    """The "Your model" accordion's components (made by :func:`build`); :meth:`wire` connects them."""

    ctx: "AppContext"
    repo: gr.Textbox
    token: gr.Textbox
    open_hub: gr.Button
    config: gr.File
    weights: gr.File
    open_files: gr.Button
    forget: gr.Button
    status: gr.Markdown

    def choices(self, session: str | None) -> list:
        """One update per registered model dropdown: its own choices, plus ``session``'s model if it has one."""
        name = self.ctx.visitors.name_of(session)
        extra = [(f"{name} (your model, only you see it)", name)] if name else []
        return [gr.Dropdown(choices=[*base(), *extra]) for _, base in self.ctx.model_inputs]

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the buttons to every model dropdown registered so far (call after the tabs are built)."""
        vm = self.ctx.visitors
        dropdowns = [dd for dd, _ in self.ctx.model_inputs]

        def opened(name: str, session: str) -> str:
            m = vm.get(name, session)
            cfg = get_config(m)
            return (f"**Opened `{name}`**: {cfg.get('architecture')}, {count_parameters(m):,} parameters, "
                    f"{cfg.get('img_size')}×{cfg.get('img_size')} px input, labels {list(cfg.get('labels', []))}. "
                    "It is now in every tab's model list — for you only, in this browser tab; pick it there. "
                    f"It is dropped when you close the tab, after {vm.idle_s / 60:g} minutes unused, or when you "
                    "open another.")

        @ui_errors
        def open_hub(repo_id: str, token: str, request: gr.Request):
            session = getattr(request, "session_hash", None)
            name = vm.open_repo(session, repo_id, token)
            return (opened(name, session), "", *self.choices(session))  # "": the token box is emptied

        @ui_errors
        def open_files(config: str | None, weights: str | None, request: gr.Request):
            from .context import discard_upload

            session = getattr(request, "session_hash", None)
            try:
                name = vm.open_files(session, config, weights)
            finally:  # copied (or refused): the uploads are of no further use
                for path in (config, weights):
                    if path:
                        discard_upload(path)
            return (opened(name, session), None, None, *self.choices(session))

        @ui_errors
        def forget(request: gr.Request):
            session = getattr(request, "session_hash", None)
            text = "Your model was dropped." if vm.drop(session) else "You have no model open."
            return (text, *self.choices(session))

        def ended(request: gr.Request):  # the browser tab closed or reloaded: its session is over
            vm.drop(getattr(request, "session_hash", None))

        lane = dict(concurrency_id=LANE, concurrency_limit=MAX_PENDING)
        hub_outputs = [self.status, self.token, *dropdowns]
        self.open_hub.click(open_hub, [self.repo, self.token], hub_outputs, api_name="your_model_hub", **lane)
        self.repo.submit(open_hub, [self.repo, self.token], hub_outputs, api_visibility="private", **lane)
        self.open_files.click(open_files, [self.config, self.weights],
                              [self.status, self.config, self.weights, *dropdowns], api_name="your_model_upload",
                              **lane)
        self.forget.click(forget, None, [self.status, *dropdowns], api_name="your_model_forget", queue=False)
        demo.unload(ended)


def build(ctx: "AppContext") -> YourModelPanel:
    """The "Your model" accordion (call where it should appear, inside the ``gr.Blocks``); then, once every tab
    exists, ``panel.wire(demo)``. Needs ``ctx.visitors`` (a :class:`VisitorModels`); makes one if missing."""
    if ctx.visitors is None:
        ctx.visitors = VisitorModels()
    upload_mb = min(MAX_WEIGHTS_BYTES, MAX_FILE_BYTES) // 2**20
    with gr.Accordion("Your model: look inside a model you trained", open=False, elem_id="your-model"):
        gr.Markdown(
            "Trained a model in the course (`python -m train … --push-to-hub OWNER/NAME`, or in a notebook)? "
            "Open it here, by its Hub repo id or by uploading its `config.json` and `model.safetensors`, and it "
            "appears as `yours:…` in every tab's model list — **for you only**, in this browser tab. It is "
            "checked first (a known architecture, sizes within the app's limits, weights that match the config).")
        with gr.Row():
            with gr.Column():
                repo = gr.Textbox(label="Hub repo id", placeholder="OWNER/NAME", max_lines=1,
                                  elem_id="your-model-repo")
                token = gr.Textbox(label="Access token (private repos only; used for this one download, never "
                                         "stored)", type="password", max_lines=1, elem_id="your-model-token")
                open_hub = gr.Button("Open from the Hub", variant="primary", elem_id="your-model-open-hub")
            with gr.Column():
                config = gr.File(label=f"config.json (up to {MAX_CONFIG_BYTES // 2**20} MB)", file_types=[".json"],
                                 type="filepath", elem_id="your-model-config")
                weights = gr.File(label=f"model.safetensors (up to {upload_mb} MB here; larger ones, up to "
                                        f"{MAX_WEIGHTS_BYTES // 2**20} MB, through the Hub)",
                                  file_types=[".safetensors"], type="filepath", elem_id="your-model-weights")
                open_files = gr.Button("Open the uploaded files", elem_id="your-model-open-files")
        with gr.Row():
            status = gr.Markdown(elem_id="your-model-status")
            forget = gr.Button("Forget my model", size="sm", scale=0)
    return YourModelPanel(ctx, repo, token, open_hub, config, weights, open_files, forget, status)
