""""Reproduce in Python": the ``lib`` calls behind what a tab shows, as code a student copies into a notebook.

Every tab has a collapsed box (:func:`code_box`) under its results that is filled together with them: the exact
calls, with the model, image and settings of the view. The pieces every snippet shares are here (how to load the
model and the image); each tab writes its own calls (``snippet(...)`` in ``space/tabs/<tab>.py``).

Convention, checked by ``tests/test_snippets.py``, which executes each tab's snippet and compares it with the view:

* the snippet runs as it is from the repository root (``python``, a notebook started there, or with the ``xcxr``
  package installed: ``import lib`` works either way); it imports what it uses and needs nothing else;
* it leaves what the view shows in named variables, documented in the tab's ``snippet`` docstring (e.g. ``shown``:
  the displayed images, ``uint8`` arrays in display order; ``probabilities``: a dict; ``table``: rows);
* it prints nothing the student did not ask for, and stays short: one call per concept, with a comment where the
  app chooses a default.

An upload has no path the student can use; its snippet names ``"my_xray.png"`` and says so in a comment.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import torch.nn as nn

from .context import AppContext

__all__ = ["code_box", "model_lines", "image_path", "REPO", "UPLOAD_PATH", "header"]


REPO = Path(__file__).resolve().parents[1]
#: What an uploaded file is called in a snippet (the server's temporary path is of no use to anyone).
UPLOAD_PATH = "my_xray.png"


def code_box(label: str = "Reproduce in Python") -> gr.Code:
    """A collapsed accordion holding a read-only, copyable code box (call inside the tab's layout)."""
    with gr.Accordion(label, open=False):
        gr.Markdown("The `lib` calls that produce the view above, with its model, image and settings. Run them from "
                    "the repository root (or after `pip install -e .`) in Python or a notebook.")
        return gr.Code(language="python", interactive=False, show_label=False, lines=6)


def _shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when it is inside it (``models/pneumonia_cnn``), else its last part:
    a server's absolute folders are never written into a page."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return p.name


def model_lines(ctx: AppContext, name: str | None, model: nn.Module | None = None) -> list[str]:
    """The lines that load model ``name`` as ``model`` (from its Hub repo, or its folder)."""
    m = model if model is not None else ctx.model(name)
    repo = getattr(m, "xcxr_repo", None)
    lines = ["from lib.models import load_model", ""]
    if repo:
        repo_id, revision = repo
        rev = f", revision={revision!r}" if revision else ""
        lines.append(f"model = load_model({repo_id!r}{rev})  # from the Hugging Face Hub")
        return lines
    source = getattr(m, "xcxr_source", None)
    if source:
        shown = _shown_path(source)
        inside = not Path(shown).is_absolute() and (REPO / shown).resolve() == Path(source).resolve()
        lines.append(f"model = load_model({shown!r})" + ("" if inside else "  # the model's folder on your disk"))
    else:
        lines.append('model = load_model("path/to/your_model")  # the folder (or Hub repo) you opened in the app')
    return lines


def image_path(ctx: AppContext, upload: Any, example: str | None) -> str:
    """The Python literal of the image's path: the bundled example's path in the repository, or
    :data:`UPLOAD_PATH` for an upload."""
    if upload:
        return repr(UPLOAD_PATH) + "  # the file you uploaded"
    if example and example in ctx.examples:
        return repr(_shown_path(ctx.examples.path(example)))
    return repr(UPLOAD_PATH)


def header(title: str) -> list[str]:
    """The snippet's first line: what it reproduces."""
    return [f"# {title} — the same calls as the app"]
