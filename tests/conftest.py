"""Shared pytest fixtures.

The environment below is set before anything imports huggingface_hub or gradio: the Hub client reads
HF_ENDPOINT / HF_HUB_DISABLE_XET / HF_TOKEN once, at import time. No test touches the network: Hub
tests talk to the in-process emulator in ``tests/hub_emulator.py`` on 127.0.0.1.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

#: The machine's temporary folder (the browser tests keep their screenshots there, for a person to look at).
SYSTEM_TMP = tempfile.gettempdir()
_TMP = tempfile.mkdtemp(prefix="xcxr-tests-")
# Everything else temporary goes into the session's folder: gradio_client leaves an empty folder in the temporary
# folder for every file it downloads (gradio_client 2.x, Client._download_file), thousands in a full run.
tempfile.tempdir = _TMP
os.environ["TMPDIR"] = _TMP
_PID = os.getpid()


@atexit.register
def _remove_session_folder() -> None:
    """The session's Hub cache, upload folder and decode cache (about 330 MB after a full run) go when pytest exits
    (not when a forked child of it does)."""
    if os.getpid() == _PID:
        shutil.rmtree(_TMP, ignore_errors=True)


os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # huggingface_hub 2.x uploads through Xet otherwise
os.environ["HF_HOME"] = os.path.join(_TMP, "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_TMP, "gradio")
os.environ["XCXR_CACHE_DIR"] = os.path.join(_TMP, "decode_cache")
os.environ["MPLBACKEND"] = "Agg"

import torch as _torch

# Tiny test models gain nothing from a second thread, and two oversubscribed threads per process slow everything
# else on a 2-core machine (a background training run, a parallel test worker).
_torch.set_num_threads(1)

# --- Hub emulator (tests/hub_emulator.py) ------------------------------------------------------------------------
# huggingface_hub reads HF_ENDPOINT (and builds its URL templates from it) once, at import time, so the emulator's
# port is chosen here, before any test module imports huggingface_hub / timm. The emulator itself only starts when a
# test asks for the `hub` fixture. State is shared for the whole session: use distinct repo ids per test (or
# `hub.reset()`). `hf_cache` gives a test its own empty download cache.
import socket as _socket

import pytest as _pytest


def _free_port() -> int:
    with _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_PORT = _free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ.setdefault("HF_TOKEN", "hf_test_token_not_secret")


@_pytest.fixture(scope="session")
def hub():
    """The in-process Hub emulator on HF_ENDPOINT; yields a started `tests.hub_emulator.HubEmulator`."""
    try:
        from hub_emulator import HubEmulator  # tests/ is on sys.path (pytest's default "prepend" import mode)
    except ImportError:  # pragma: no cover - e.g. --import-mode=importlib
        from tests.hub_emulator import HubEmulator

    with HubEmulator(port=HUB_PORT) as emulator:
        yield emulator


@_pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Fresh, empty Hugging Face cache for one test (HF_HOME + the import-time constants derived from it)."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"
# --- end Hub emulator ------------------------------------------------------------------------------------------


# --- data fixtures ----------------------------------------------------------------------------------------------
import sys as _sys
from pathlib import Path as _Path

import numpy as _np

ROOT = _Path(__file__).resolve().parents[1]
if str(ROOT) not in _sys.path:
    _sys.path.insert(0, str(ROOT))
#: The real, openly licensed data beside the repo (see ../shared/data/README.md); tests that need it skip without it.
SHARED_DATA = ROOT.parent / "shared" / "data"
CHEST_XRAY = SHARED_DATA / "chest_xray"
needs_data = _pytest.mark.skipif(not CHEST_XRAY.is_dir(), reason="../shared/data/chest_xray is not beside the repo")


def make_xray_folder(root, n_per_class: int = 12, size: int = 48, splits=("train", "val", "test"), seed: int = 0):
    """Write a tiny, *learnable* class-folder data set: NORMAL = smooth noise, PNEUMONIA = noise + a bright blob.

    File names follow the Kermany patterns (two images per patient) so patient ids and patient-level metrics work.
    Returns ``root``. ``splits=None`` writes ``root/{NORMAL,PNEUMONIA}`` (a single split folder).
    """
    from PIL import Image

    root = _Path(root)
    rng = _np.random.default_rng(seed)
    yy, xx = _np.mgrid[:size, :size]
    for k, split in enumerate(splits or [None]):
        for cls in ("NORMAL", "PNEUMONIA"):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                img = rng.normal(90, 20, (size, size))
                if cls == "PNEUMONIA":
                    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
                    img += 120 * _np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 8) ** 2))
                patient = 1000 * (k + 1) + i // 2  # two images per patient, patients disjoint across splits
                name = (f"person{patient}_bacteria_{i}.png" if cls == "PNEUMONIA" else f"IM-{patient:04d}-{i:04d}.png")
                Image.fromarray(_np.clip(img, 0, 255).astype(_np.uint8)).save(folder / name)
    return root


@_pytest.fixture
def xray_folder(tmp_path):
    """A tiny train/val/test class-folder data set (see :func:`make_xray_folder`)."""
    return make_xray_folder(tmp_path / "xray")
# --- end data fixtures ------------------------------------------------------------------------------------------


# --- the Gradio app -----------------------------------------------------------------------------------------------
import contextlib as _contextlib
import socket as _socket2


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with _socket2.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@_contextlib.contextmanager
def launched_app(**launch_kwargs):
    """``space.app.build_app()`` served on 127.0.0.1 (a free port) for the duration of the block; yields the demo.

    Uploads are limited and the page styled as in ``space.app.main`` (``max_file_size=lib.data.images.MAX_FILE_BYTES``,
    ``css=space.app.CSS``) unless the caller says otherwise."""
    from lib.data.images import MAX_FILE_BYTES
    from space.app import CSS, build_app

    launch_kwargs.setdefault("max_file_size", MAX_FILE_BYTES)
    launch_kwargs.setdefault("css", CSS)
    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **launch_kwargs)
    try:
        yield demo
    finally:
        demo.close()


# A module that defines a module-scoped `app` fixture (a `launched_app(...)` with its own launch options) gets these
# two for free: pytest resolves `app` in the requesting module.
@_pytest.fixture(scope="module")
def demo():
    """The whole app, built (``space.app.build_app()``) but not launched: its tabs' handlers are called directly."""
    from space.app import build_app

    return build_app()


@_pytest.fixture(scope="module")
def ctx(demo):
    """The :class:`space.context.AppContext` of the module's built app (:func:`demo`)."""
    return demo.xcxr_context


@_pytest.fixture(scope="module")
def client(app):
    """A gradio_client on the module's launched app."""
    from gradio_client import Client
    return Client(app.local_url, verbose=False)


@_pytest.fixture(scope="module")
def model(app):
    """The app's default (bundled) model, as the app itself loaded it."""
    from space.catalog import DEFAULT_MODEL
    return app.xcxr_context.catalog.get(DEFAULT_MODEL)
# --- end the Gradio app -------------------------------------------------------------------------------------------
