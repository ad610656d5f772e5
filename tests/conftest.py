"""Shared pytest fixtures.

The environment below is set before anything imports huggingface_hub or gradio: the Hub client reads
HF_ENDPOINT / HF_HUB_DISABLE_XET / HF_TOKEN once, at import time. No test touches the network: Hub
tests talk to the in-process emulator in ``tests/hub_emulator.py`` on 127.0.0.1.
"""
from __future__ import annotations

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="xcxr-tests-")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # huggingface_hub 2.x uploads through Xet otherwise
os.environ["HF_HOME"] = os.path.join(_TMP, "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_TMP, "gradio")
os.environ["XCXR_CACHE_DIR"] = os.path.join(_TMP, "decode_cache")
os.environ["MPLBACKEND"] = "Agg"

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
