"""Three fixes to Gradio internals: atomic writes of output images, password boxes kept out of session state, and
no per-session config copy for calls that never run.

**Atomic writes of output images in Gradio's cache, so concurrent visitors never download a half-written file.**

Why: Gradio 6.31 names a cached output file by the hash of its bytes and writes it **in place**
(``processing_utils.save_pil_to_cache`` / ``save_bytes_to_cache``: ``path.write_bytes(data)``). When two requests
produce the same image at the same time — a whole class looking at the default example — the second write truncates
the file while the first visitor's browser is still downloading it ("peer closed connection … received 0 bytes"),
measured as several failed requests per minute by ``python -m benchmarks --only load``. Writing to a temporary file
in the same folder and renaming it over the final name (``os.replace``, atomic on POSIX) fixes it: a reader holds
either the old complete file or the new complete one, which have the same bytes. Gradio's own
``save_file_to_cache`` already does exactly this.

**A password box's value is never kept.** Gradio 6.31 records every input value of every event in the session's
state (``SessionState._update_value_in_config``, called by ``Blocks.preprocess_data``), for its deep links: ``GET
/gradio_api/deep_link?session_hash=…`` writes those values to ``deep_links/<hash>/state.json`` in the upload folder,
and ``/?deep_link=<hash>`` puts them back into the page of whoever opens that link. The "Your model" access token
(``space/visitor_models.py``) must reach its one download and nothing else, so the value of a
``gr.Textbox(type="password")`` is recorded as ``""`` (every password box: a secret has no place in a link).

**A new session costs nothing until one of its events runs.** Gradio 6.31 creates a session's state when its first
event is queued, and builds there the configs of every component of the app for its deep links
(``SessionState.config_values``): about 50 ms per new session for this app, in the server's event loop. A client
that floods ``/gradio_api/call/classify`` with a new session per call, never reading the results, made the app
spend that on each accepted call, while the students' requests waited behind them in the same loop (measured:
55 ms per accepted call, 7 ms per refused one). The configs are now built on first use (the first event that runs,
or a deep link), as Gradio would build them: ``SessionState.__init__`` is Gradio's own minus that step.

:func:`install` replaces the two functions in ``gradio.processing_utils`` (every component calls them through the
module), the session state's recorder, its ``__init__`` and its ``config_values`` (a property built on first use);
:func:`check` verifies that the Gradio version is the one this was written against, so an upgrade makes
``tests/test_space_abuse.py`` fail and someone re-reads this.
"""
from __future__ import annotations

import os
import tempfile
import threading
from copy import copy
from pathlib import Path

import gradio
from gradio import processing_utils
from gradio.state_holder import SessionState

__all__ = ["install", "check", "GRADIO_VERSION_CHECKED"]

GRADIO_VERSION_CHECKED = "6.31.0"


def _write_atomically(path: Path, data: bytes) -> None:
    if path.is_file() and path.stat().st_size == len(data):
        return  # named by the hash of its bytes: a complete file of that size is this content
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:  # noqa: A002
    """``gradio.processing_utils.save_pil_to_cache``, writing the file atomically."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    _write_atomically(path, data)
    return str(path)


def save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    """``gradio.processing_utils.save_bytes_to_cache``, writing the file atomically."""
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    if not Path(file_name).suffix:
        file_name = file_name + processing_utils.detect_audio_format(data)
    path = (folder / Path(file_name).name).resolve()
    _write_atomically(path, data)
    return str(path)


def _session_state_init(self: SessionState, blocks: gradio.Blocks) -> None:
    """``SessionState.__init__`` of Gradio 6.31 without its eager ``config_values`` (see :func:`_config_values`)."""
    self.blocks_config = copy(blocks.default_config)
    self._xcxr_blocks = blocks
    self.state_data = {}
    self._state_ttl = {}
    self.is_closed = False
    self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


_CONFIG_LOCK = threading.Lock()


def _config_values(self: SessionState) -> dict:
    """The session's component configs for Gradio's deep links, computed on first use instead of when the session
    is created. Gradio 6.31 builds them for every component of the app as the session's first event is *queued*:
    about 50 ms for this app, in the server's event loop, for each new session — also for every call a flooding
    client sends and never reads (those never run, so this is never needed for them)."""
    values = self.__dict__.get("_xcxr_config_values")
    if values is None:
        with _CONFIG_LOCK:  # two first events of one session at once: one dict, so no recorded value is lost
            values = self.__dict__.get("_xcxr_config_values")
            if values is None:
                blocks = self._xcxr_blocks
                values = {k: self.blocks_config.config_for_block(k, [], v)
                          for k, v in self.blocks_config.blocks.items() if k in blocks.blocks}
                self.__dict__["_xcxr_config_values"] = values
    return values


def _set_config_values(self: SessionState, values: dict) -> None:
    self.__dict__["_xcxr_config_values"] = values


_record_value = SessionState._update_value_in_config


def _record_value_but_no_password(self: SessionState, key: int, value: object) -> None:
    """``SessionState._update_value_in_config``, recording a password box's value as ``""``."""
    block = self.blocks_config.blocks.get(key)
    if isinstance(block, gradio.Textbox) and getattr(block, "type", None) == "password":
        value = ""
    _record_value(self, key, value)


def check() -> None:
    """Raise ``RuntimeError`` when Gradio is not the version these replacements were written against."""
    if gradio.__version__ != GRADIO_VERSION_CHECKED:
        raise RuntimeError(f"space/gradio_patches.py was written for Gradio {GRADIO_VERSION_CHECKED}, found "
                           f"{gradio.__version__}: check whether save_pil_to_cache/save_bytes_to_cache still write "
                           "in place, then update or remove the patch")
    for name in ("encode_pil_to_bytes", "hash_bytes", "detect_audio_format", "save_pil_to_cache",
                 "save_bytes_to_cache"):
        if not hasattr(processing_utils, name):
            raise RuntimeError(f"gradio.processing_utils.{name} is gone: re-read space/gradio_patches.py")
    if not callable(getattr(SessionState, "_update_value_in_config", None)):
        raise RuntimeError("gradio.state_holder.SessionState._update_value_in_config is gone: re-read "
                           "space/gradio_patches.py (password boxes must stay out of the session state)")


def install() -> None:
    """Replace Gradio's two in-place cache writers by the atomic ones, and its session-state recorder by one that
    keeps no password (idempotent)."""
    check()
    processing_utils.save_pil_to_cache = save_pil_to_cache
    processing_utils.save_bytes_to_cache = save_bytes_to_cache
    SessionState._update_value_in_config = _record_value_but_no_password
    SessionState.__init__ = _session_state_init  # type: ignore[method-assign]
    SessionState.config_values = property(_config_values, _set_config_values)  # type: ignore[attr-defined]
