"""What a visitor sees when a request fails: a short message, never a server path, never a traceback.

Three kinds of failure (see :mod:`lib.errors`):

* ``gr.Error`` raised by the app, and :class:`lib.errors.XcxrError` (every deliberate library error, and
  :class:`space.catalog.CatalogError`): the message is written for the user and is shown as it is, with absolute
  server paths shortened (:func:`public_text`).
* ``MemoryError``: a short hint.
* Anything else is a bug. Its traceback goes to the server log under a short random error id
  (:func:`log_incident`), and the visitor sees only a generic message with that id: an exception's own text can
  hold internals (paths, tensor shapes, library versions) that the public has no use for.

Example:
    >>> @ui_errors
    ... def handler(x):
    ...     raise RuntimeError("boom in /home/me/app/lib/x.py")
    >>> handler(1)  # doctest: +SKIP
    gradio.exceptions.Error: 'Something went wrong on the server (error id 3f9c1a). Please try again; ...'
"""
from __future__ import annotations

import functools
import logging
import ntpath
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable, TypeVar

import gradio as gr

from lib.errors import XcxrError

__all__ = ["ui_errors", "public_text", "log_incident", "incident_message", "OUT_OF_MEMORY"]

log = logging.getLogger("space")

F = TypeVar("F", bound=Callable[..., Any])

#: The repository root: paths inside it are shown relative to it (``models/pneumonia_cnn/config.json``).
ROOT = Path(__file__).resolve().parents[1]
OUT_OF_MEMORY = "Out of memory for this request; try a smaller image or a cheaper method."

# One path segment: no whitespace, separators, quotes, brackets or ':' (messages read "path: reason").
_SEG = r"[^\s/\\'\"`<>|;:,()\[\]{}]+"
# An absolute POSIX path with at least one segment, not preceded by a word character, '.', ':', '/' or '~' (so
# "a/b", "../x", URLs and "~/x" are left alone), or a Windows drive path.
_ABS_PATH = re.compile(rf"(?<![\w.:/~-])/{_SEG}(?:/{_SEG})*/?|\b[A-Za-z]:\\(?:{_SEG}\\?)*")


def _short(match: re.Match) -> str:
    text = match.group(0)
    path = text.rstrip(".")  # a full stop ending the sentence is not part of the path
    tail = text[len(path):]
    if re.match(r"[A-Za-z]:\\", path):
        return (ntpath.basename(path.rstrip("\\")) or "…") + tail
    norm = os.path.normpath(path)
    root = str(ROOT)
    if norm == root:
        return "the app folder" + tail
    if norm.startswith(root + os.sep):
        return Path(norm).relative_to(ROOT).as_posix() + tail
    return (Path(norm).name or "…") + tail


def public_text(message: str) -> str:
    """``message`` with every absolute path shortened: relative to the repository inside it, else the basename.

    Example:
        >>> public_text("/tmp/gradio/5f0c/x.png: not an image")
        'x.png: not an image'
    """
    return _ABS_PATH.sub(_short, str(message))


def incident_message(incident: str) -> str:
    """The generic message a visitor sees for a bug (``incident``: the id in the server log)."""
    return (f"Something went wrong on the server (error id {incident}). Please try again; "
            "if it keeps happening, report this id.")


def log_incident(what: str) -> str:
    """Log the exception being handled, with its traceback, under a new short random id; return the id.

    Call it inside an ``except`` block.
    """
    incident = secrets.token_hex(3)
    log.exception("error id %s: %s", incident, what)
    return incident


def ui_errors(fn: F) -> F:
    """Decorator for event handlers: every failure reaches the visitor as a short ``gr.Error`` (see the module doc)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as e:
            e.message = public_text(e.message)  # Gradio sends .message to the browser
            raise
        except XcxrError as e:
            raise gr.Error(public_text(str(e))) from e
        except MemoryError as e:
            raise gr.Error(OUT_OF_MEMORY) from e
        except Exception:  # noqa: BLE001 - anything else is a bug: log it, show only its id
            incident = log_incident(f"unexpected error in {getattr(fn, '__qualname__', fn)!s}")
            # already logged with its traceback: Gradio need not print it again, nor chain the original
            raise gr.Error(incident_message(incident), print_exception=False) from None

    return wrapper  # type: ignore[return-value]
