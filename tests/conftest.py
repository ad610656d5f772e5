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
