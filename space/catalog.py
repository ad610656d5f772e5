"""The models the app offers: bundled folders, local training runs and Hub repos, loaded lazily and cached.

A model that cannot be loaded is listed as unavailable with the reason; it never crashes the app.

Example:
    >>> cat = ModelCatalog()
    >>> cat.names()[0]
    'pneumonia_cnn'
    >>> model = cat.get("pneumonia_cnn")
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch.nn as nn

from lib.errors import XcxrError
from lib.models import check_model, folder_file, load_model

from .errors import log_incident, public_text

__all__ = ["ModelCatalog", "ModelEntry", "CatalogError", "hub_repos_from_config", "hub_models_from_config",
           "shipped_models", "DEFAULT_MODEL", "LOAD_WAIT_S", "MAX_LOADED_BYTES"]

ROOT = Path(__file__).resolve().parents[1]
#: The bundled model shown first.
DEFAULT_MODEL = "pneumonia_cnn"
HUB_CONFIG = Path(__file__).with_name("hub_models.yaml")
#: How long a request waits for a model that is loading before it is told to try again.
LOAD_WAIT_S = 20.0
#: Weights of loaded models kept in memory at once (the least recently used beyond it are dropped).
MAX_LOADED_BYTES = 1 * 2**30


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


def hub_models_from_config(path: str | os.PathLike = HUB_CONFIG, use_env: bool = True) -> dict[str, str]:
    """The Hub models to list, as ``{name shown in the app: repo id}``, from ``XCXR_HUB_MODELS`` if set (and
    ``use_env``), else from ``space/hub_models.yaml``.

    Both accept two forms: a list of repo ids (each listed under its repo id; ``XCXR_HUB_MODELS=a/b,c/d``) and
    names mapped to repos (``models: {pneumonia_cnn: OWNER/xcxr-pneumonia_cnn}``; ``XCXR_HUB_MODELS=name=a/b,…``).
    A mapped name is what the app shows and deep links use (``?model=pneumonia_cnn``): ``python -m space.deploy``
    writes the mapping so a Space offers the local names with the models loaded from the Hub. A local model of
    the same name wins (see :class:`ModelCatalog`).

    Example:
        >>> os.environ["XCXR_HUB_MODELS"] = "pneumonia_cnn=someone/xcxr-pneumonia_cnn,someone/other"
        >>> hub_models_from_config()
        {'pneumonia_cnn': 'someone/xcxr-pneumonia_cnn', 'someone/other': 'someone/other'}
    """
    env = os.environ.get("XCXR_HUB_MODELS") if use_env else None
    if env is not None:
        pairs = [item.split("=", 1) if "=" in item else (item, item) for item in env.split(",")]
        return {n.strip(): r.strip() for n, r in pairs if n.strip() and r.strip()}
    p = Path(path)
    if not p.is_file():
        return {}
    import yaml

    try:
        data: Any = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
        return {}
    items = data.get("models", []) if isinstance(data, dict) else data
    if isinstance(items, dict):
        return {str(n).strip(): str(r).strip() for n, r in items.items() if str(n).strip() and r and str(r).strip()}
    return {str(r).strip(): str(r).strip() for r in (items or []) if str(r).strip()}


def hub_repos_from_config(path: str | os.PathLike = HUB_CONFIG) -> list[str]:
    """The repo ids of :func:`hub_models_from_config` (``XCXR_HUB_MODELS`` or ``space/hub_models.yaml``)."""
    return list(hub_models_from_config(path).values())


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


def shipped_models(models_dir: str | os.PathLike, studies_dir: str | os.PathLike) -> dict[str, Path]:
    """``{name: folder}`` of the models that ship with the project, named as the app lists them: each
    ``models/<name>/`` as ``<name>``, and each study's best model ``studies/<study>/results/<variant>/best/<model>/``
    as ``study:<study>/<variant>/<model>``. ``python -m space.deploy`` publishes exactly these."""
    out = {d.name: d for d in _model_folders(Path(models_dir), 1)}
    studies = Path(studies_dir)
    for d in _model_folders(studies, 5):
        parts = [p for p in d.relative_to(studies).parts if p not in ("results", "best")]
        out["study:" + "/".join(parts)] = d
    return out


class ModelCatalog:
    """Bundled models (``models_dir``), the studies' best models (``studies_dir``), local runs (``runs_dir``) and Hub
    repos, loaded on first use and cached.

    Every folder and repo is input (anything can be dropped into ``runs/``), so:

    * **Listing costs the start nothing.** Each folder and repo gets :func:`lib.models.check_model` (its config
      against the zoo's bounds and budgets, the model built on the meta device: milliseconds, no weights read; a
      repo's config.json downloaded) in the background worker pool; one that fails is listed as unavailable with
      a one-line reason from then on (and asking for it before gives the same reason).
    * **Loading is lazy, off the request path, and bounded in time and memory.** A model loads in a small worker
      pool the first time someone asks for it; the asking request waits at most :data:`LOAD_WAIT_S` and then
      gets "still loading, try again", so one slow download never holds a request (or the start) for long, and
      no lock is held while loading, so other visitors and other models are never delayed. Loaded models are
      kept while their weights total at most :data:`MAX_LOADED_BYTES`; beyond that the least recently used
      (never the default model) is dropped and reloads on its next use.
    """

    def __init__(self, models_dir: str | os.PathLike = "models",
                 runs_dir: str | os.PathLike | None = None,
                 hub_repos: list[str] | Mapping[str, str] | None = None,
                 studies_dir: str | os.PathLike = "studies", defer_checks: bool = False) -> None:
        self.models_dir = Path(models_dir) if Path(models_dir).is_absolute() or Path(models_dir).is_dir() \
            else ROOT / models_dir
        runs = runs_dir if runs_dir is not None else os.environ.get("XCXR_RUNS_DIR", "runs")
        self.runs_dir = Path(runs) if Path(runs).is_absolute() or Path(runs).is_dir() else ROOT / runs
        self.studies_dir = Path(studies_dir) if Path(studies_dir).is_absolute() else ROOT / studies_dir
        # {name: repo id}: a list lists each repo under its id; a mapping under its name (hub_models_from_config)
        hubs = hub_repos if hub_repos is not None else hub_models_from_config()
        self.hub_models = dict(hubs) if isinstance(hubs, Mapping) else {r: r for r in hubs}
        self.hub_repos = list(self.hub_models.values())
        self._lock = threading.Lock()  # guards the tables below; never held while a model loads
        self._models: OrderedDict[str, nn.Module] = OrderedDict()  # loaded, least recently used first
        self._errors: dict[str, str] = {}
        self._checked: set[str] = set()
        self._loading: dict[str, Future] = {}
        self._locations: dict[str, tuple[str, str]] = {}  # name -> (source, location)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")
        self._pending: list[Future] = []
        self._checks_started = not defer_checks
        self._scan()

    # -- listing -----------------------------------------------------------------------------------------------
    def _scan(self) -> None:
        locs: dict[str, tuple[str, str]] = {}
        shipped = shipped_models(self.models_dir, self.studies_dir)
        for name, d in shipped.items():
            if not name.startswith("study:"):
                locs[name] = ("bundled", str(d))
        for d in _model_folders(self.runs_dir, 3):
            name = "run:" + d.relative_to(self.runs_dir).as_posix()
            locs[name] = ("run", str(d))
        for name, d in shipped.items():
            if name.startswith("study:"):
                locs[name] = ("study", str(d))
        for name, repo in self.hub_models.items():  # a local model of the same name wins
            locs.setdefault(name, ("hub", repo))
        with self._lock:
            self._locations = locs
        pending = []
        for name, (source, location) in locs.items():
            if source == "hub" and _offline():
                with self._lock:
                    self._errors.setdefault(name, f"{location}: offline (HF_HUB_OFFLINE is set); Hub models are "
                                                  "not tried")
            elif self._checks_started:  # in the background: the start never waits (a ResNet18 imports timm…)
                pending.append(self._pool.submit(self._check, name, location))
        self._pending = pending

    def start_checks(self) -> None:
        """Start the config checks of a catalogue made with ``defer_checks=True`` (the app: once its page is built,
        so the checks' imports do not compete with the start for the two cores)."""
        if not self._checks_started:
            self._checks_started = True
            self._scan()

    def wait_checked(self, timeout: float | None = None) -> None:
        """Wait until the checks of the last scan are done (tests and tools; the app never waits for them)."""
        futures_wait(self._pending, timeout)

    def _check(self, name: str, location: str) -> None:
        """Config-only checks of a local folder (no weights read); a failure makes the entry unavailable."""
        with self._lock:
            if name in self._checked or name in self._models or name in self._errors:
                return
        try:
            check_model(location)
            reason = None
        except XcxrError as e:
            reason = _one_line(str(e))
        except Exception:  # noqa: BLE001 - a bug while checking: unavailable, logged, never crashes the app
            reason = f"could not be checked (error id {log_incident(f'checking model {name!r}')} in the server log)"
        with self._lock:
            self._checked.add(name)
            if reason is not None:
                self._errors[name] = reason

    def refresh(self) -> None:
        """Scan the folders again (new training runs); loaded models stay cached."""
        self._scan()

    def entries(self) -> list[ModelEntry]:
        """All models, without loading any: known-bad ones unavailable with their reason; available ones first,
        the bundled default first of all."""
        with self._lock:
            out = [ModelEntry(n, s, loc, n not in self._errors, self._errors.get(n))
                   for n, (s, loc) in self._locations.items()]
        order = {"bundled": 0, "study": 1, "run": 2, "hub": 3}
        return sorted(out, key=lambda e: (not e.available, e.name != DEFAULT_MODEL, order[e.source], e.name))

    def names(self) -> list[str]:
        """Entry names, available ones first, the bundled default first."""
        return [e.name for e in self.entries()]

    def available(self) -> list[str]:
        """Names of the models not known to fail (loaded, or not tried yet)."""
        return [e.name for e in self.entries() if e.available]

    def default(self) -> str | None:
        """The default model's name (the bundled ``pneumonia_cnn`` when present), or ``None`` if none is left."""
        names = self.available()
        return names[0] if names else None

    def saved_config(self, name: str) -> dict | None:
        """A listed model's config — of the loaded model, else read from its folder's ``config.json`` without
        loading it (the page is built before any model loads); ``None`` for a Hub model not loaded yet, or a
        config that cannot be read. For display defaults only (labels, threshold): loading validates everything."""
        with self._lock:
            model = self._models.get(name)
            source, location = self._locations.get(name, ("", ""))
        if model is not None:
            return dict(model.xcxr_config)
        if source not in ("bundled", "study", "run"):
            return None
        try:
            cfg = json.loads(folder_file(location, "config.json", 2**20).read_text())
        except (XcxrError, OSError, ValueError):
            return None
        saved = cfg.get("xcxr", cfg) if isinstance(cfg, dict) else None
        return saved if isinstance(saved, dict) else None

    # -- loading -----------------------------------------------------------------------------------------------
    def get(self, name: str | None, wait: float | None = None) -> nn.Module:
        """The loaded model ``name`` (cached); :class:`CatalogError` with the reason when unknown or unavailable.

        Waits at most ``wait`` seconds (default :data:`LOAD_WAIT_S`) for a model that is loading.
        """
        if not name:
            name = self.default()
            if name is None:
                raise CatalogError("no model is available; check the models/ folder")
        with self._lock:
            known = name in self._locations
        if not known:
            self._scan()
        with self._lock:
            if name not in self._locations:
                raise CatalogError(f"unknown model {str(name)[:80]!r}; available: {self._available_locked()}")
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            if name in self._errors:
                raise CatalogError(f"model {name!r} is unavailable: {self._errors[name]}")
            future = self._loading.get(name)
            if future is None:
                future = self._loading[name] = self._pool.submit(self._load, name)
        try:
            return future.result(timeout=LOAD_WAIT_S if wait is None else wait)
        except FutureTimeout:
            raise CatalogError(f"model {name!r} is still loading; try again in a moment") from None

    def _available_locked(self) -> list[str]:
        """:meth:`available` for a caller that holds ``self._lock`` (unsorted)."""
        return [n for n in self._locations if n not in self._errors]

    def _load(self, name: str) -> nn.Module:
        """Worker: load ``name``, record the model or the reason; the error is re-raised to the waiting callers."""
        source, location = self._locations[name]
        try:
            model = load_model(location)
        except XcxrError as e:  # a bad folder or repo: lib's message says what is wrong
            reason = _one_line(str(e))
        except Exception:  # noqa: BLE001 - a bug while loading: unavailable, logged, never crashes the app
            reason = f"failed to load (error id {log_incident(f'loading model {name!r}')} in the server log)"
        else:
            with self._lock:
                self._models[name] = model
                self._loading.pop(name, None)
                self._evict()
            return model
        with self._lock:
            self._errors[name] = reason
            self._loading.pop(name, None)
        raise CatalogError(f"model {name!r} is unavailable: {reason}")

    def _evict(self) -> None:
        """Drop least recently used models (never the default) while the loaded weights exceed the budget."""
        def size(m: nn.Module) -> int:
            return sum(t.numel() * t.element_size() for t in m.state_dict().values())

        total = sum(size(m) for m in self._models.values())
        for name in list(self._models):
            if total <= MAX_LOADED_BYTES:
                break
            if name != DEFAULT_MODEL and len(self._models) > 1:
                total -= size(self._models.pop(name))


def _one_line(text: str, limit: int = 240) -> str:
    """One line, at most ``limit`` characters, without absolute paths: how a reason is listed."""
    line = " ".join(public_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
