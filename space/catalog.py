"""The models the app offers: bundled folders, local training runs and Hub repos, loaded lazily and cached.

A model that cannot be loaded is listed as unavailable with the reason; it never crashes the app.

Example:
    >>> cat = ModelCatalog()
    >>> cat.names()[0]
    'pneumonia_cnn'
    >>> model = cat.get("pneumonia_cnn")
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from lib.errors import XcxrError
from lib.models import load_model

from .errors import log_incident

__all__ = ["ModelCatalog", "ModelEntry", "CatalogError", "hub_repos_from_config", "DEFAULT_MODEL"]

ROOT = Path(__file__).resolve().parents[1]
#: The bundled model shown first.
DEFAULT_MODEL = "pneumonia_cnn"
HUB_CONFIG = Path(__file__).with_name("hub_models.yaml")


class CatalogError(XcxrError, RuntimeError):
    """A model is unknown or cannot be loaded; the message says why (``ui_errors`` shows it to the visitor)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model in the catalog. ``source`` is ``"bundled"``, ``"study"``, ``"run"`` or ``"hub"``."""

    name: str
    source: str
    location: str
    available: bool
    reason: str | None = None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_repos_from_config(path: str | os.PathLike = HUB_CONFIG) -> list[str]:
    """Hub repo ids from ``XCXR_HUB_MODELS`` (comma list) if set, else from ``space/hub_models.yaml``."""
    env = os.environ.get("XCXR_HUB_MODELS")
    if env is not None:
        return [r.strip() for r in env.split(",") if r.strip()]
    p = Path(path)
    if not p.is_file():
        return []
    import yaml

    try:
        data: Any = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
        return []
    items = data.get("models", []) if isinstance(data, dict) else data
    return [str(r).strip() for r in (items or []) if str(r).strip()]


def _model_folders(root: Path, depth: int) -> list[Path]:
    """Folders under ``root`` (up to ``depth`` levels) holding a ``config.json``, sorted."""
    if not root.is_dir():
        return []
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                (found if (sub / "config.json").is_file() else nxt).append(sub)
        level = nxt
    return found


class ModelCatalog:
    """Bundled models (``models_dir``), the studies' best models (``studies_dir``), local runs (``runs_dir``) and Hub
    repos, loaded on first use and cached.

    Thread-safe: one lock guards loading, so concurrent requests load a model once.
    """

    def __init__(self, models_dir: str | os.PathLike = "models",
                 runs_dir: str | os.PathLike | None = None,
                 hub_repos: list[str] | None = None,
                 studies_dir: str | os.PathLike = "studies") -> None:
        self.models_dir = Path(models_dir) if Path(models_dir).is_absolute() or Path(models_dir).is_dir() \
            else ROOT / models_dir
        runs = runs_dir if runs_dir is not None else os.environ.get("XCXR_RUNS_DIR", "runs")
        self.runs_dir = Path(runs) if Path(runs).is_absolute() or Path(runs).is_dir() else ROOT / runs
        self.studies_dir = Path(studies_dir) if Path(studies_dir).is_absolute() else ROOT / studies_dir
        self.hub_repos = list(hub_repos) if hub_repos is not None else hub_repos_from_config()
        self._lock = threading.RLock()
        self._models: dict[str, nn.Module] = {}
        self._errors: dict[str, str] = {}
        self._locations: dict[str, tuple[str, str]] = {}  # name -> (source, location)
        self._scan()

    # -- listing -----------------------------------------------------------------------------------------------
    def _scan(self) -> None:
        locs: dict[str, tuple[str, str]] = {}
        for d in _model_folders(self.models_dir, 1):
            locs[d.name] = ("bundled", str(d))
        for d in _model_folders(self.runs_dir, 3):
            name = "run:" + d.relative_to(self.runs_dir).as_posix()
            locs[name] = ("run", str(d))
        # The best small models of the course studies (studies/<study>/results/<variant>/best/<model>/).
        for d in _model_folders(self.studies_dir, 5):
            parts = [p for p in d.relative_to(self.studies_dir).parts if p not in ("results", "best")]
            locs["study:" + "/".join(parts)] = ("study", str(d))
        for repo in self.hub_repos:
            locs.setdefault(repo, ("hub", repo))
        with self._lock:
            self._locations = locs

    def refresh(self) -> None:
        """Scan the folders again (new training runs); loaded models stay cached."""
        self._scan()

    def _try_load(self, name: str) -> None:
        source, location = self._locations[name]
        if name in self._models or name in self._errors:
            return
        if source == "hub" and _offline():
            self._errors[name] = f"{location}: offline (HF_HUB_OFFLINE is set); Hub models are not tried"
            return
        try:
            self._models[name] = load_model(location)
        except XcxrError as e:  # a bad folder or repo: lib's message says what is wrong
            self._errors[name] = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a bug while loading: unavailable, logged, never crashes the app
            incident = log_incident(f"loading model {name!r}")
            self._errors[name] = f"{type(e).__name__} while loading (error id {incident} in the server log)"

    def entries(self) -> list[ModelEntry]:
        """All models, each tried once (cached): available ones first, the bundled default first of all."""
        with self._lock:
            for name in self._locations:
                self._try_load(name)
            out = [ModelEntry(n, s, loc, n in self._models, self._errors.get(n))
                   for n, (s, loc) in self._locations.items()]
        order = {"bundled": 0, "study": 1, "run": 2, "hub": 3}
        return sorted(out, key=lambda e: (not e.available, e.name != DEFAULT_MODEL, order[e.source], e.name))

    def names(self) -> list[str]:
        """Entry names, available ones first, the bundled default first."""
        return [e.name for e in self.entries()]

    def available(self) -> list[str]:
        """Names of the models that load."""
        return [e.name for e in self.entries() if e.available]

    def default(self) -> str | None:
        """The default model's name (the bundled ``pneumonia_cnn`` when present), or ``None`` if none loads."""
        names = self.available()
        return names[0] if names else None

    def get(self, name: str | None) -> nn.Module:
        """The loaded model ``name`` (cached); :class:`CatalogError` with the reason when unknown or unavailable."""
        if not name:
            name = self.default()
            if name is None:
                raise CatalogError("no model is available; check the models/ folder")
        with self._lock:
            if name not in self._locations:
                self._scan()
            if name not in self._locations:
                raise CatalogError(f"unknown model {name!r}; available: {self.available()}")
            self._try_load(name)
            if name in self._models:
                return self._models[name]
            raise CatalogError(f"model {name!r} is unavailable: {self._errors.get(name)}")
