"""Saving, loading and publishing models: Hub-ready folders, ``load_model(dir_or_repo_id)``, ``push_folder``.

A Hub-ready folder holds ``config.json`` + ``model.safetensors`` (weights are never pickled), and after training
also ``README.md`` (the model card), ``metrics.json``, ``history.json`` and plots.

* Models whose config says ``hub_format: "xcxr"`` (``pneumonia_cnn``, ``dnn1/2``, ``cnn1/2``) are saved as our
  config + safetensors, the layout of ``huggingface_hub.PyTorchModelHubMixin``: ``PneumoniaCNN.from_pretrained(
  "OWNER/NAME")`` works too.
* ``hub_format: "timm"`` (the ResNet18 variants) are saved the timm way: ``timm.create_model("hf-hub:OWNER/NAME",
  pretrained=True)`` loads them with no project code; the project's config rides along under ``"xcxr"``.

:func:`load_model` accepts both, from a local folder or a Hub repo id, builds the model through the registry
(:func:`~lib.models.create_model`) and always returns it in ``eval()`` mode with ``model.xcxr_config`` set.
Offline (``HF_HUB_OFFLINE=1``) it loads from the Hugging Face cache; anything missing raises
:class:`ModelLoadError` with what to do.

Example:
    >>> save_model(model, "runs/cnn")                  # config.json + model.safetensors
    >>> model = load_model("runs/cnn")                  # or load_model("OWNER/NAME")
    >>> push_folder("runs/cnn", "OWNER/NAME")           # token from HF_TOKEN or `hf auth login`
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import safetensors.torch
import torch
import torch.nn as nn

from ..errors import XcxrError
from .layers import get_config
from .limits import MAX_ACTIVATIONS, MAX_PARAMETERS, check_budget, is_plain
from .registry import create_model, list_models, loading_overrides, model_options

__all__ = ["ModelLoadError", "HubAuthError", "folder_file", "model_file", "check_model", "MAX_CONFIG_BYTES", "save_model", "load_model", "push_folder", "CONFIG_NAME", "WEIGHTS_NAME",
           "download_model", "MAX_WEIGHTS_BYTES"]

CONFIG_NAME = "config.json"
#: ``config.json`` larger than this is refused before it is parsed.
MAX_CONFIG_BYTES = 1 * 2**20
#: The JSON header of ``model.safetensors`` (tensor names, shapes, offsets) may be at most this large.
MAX_HEADER_BYTES = 1 * 2**20
WEIGHTS_NAME = "model.safetensors"
#: :func:`download_model` refuses a ``model.safetensors`` larger than this before downloading it: a model at the
#: parameter budget (:data:`~lib.models.limits.MAX_PARAMETERS`, 50 M) in float32.
MAX_WEIGHTS_BYTES = 200 * 2**20
#: Files of a run folder that are not for the Hub (training state).
PRIVATE_PATTERNS = ["checkpoint/*", "checkpoint/**", "*.tmp", ".tmp*", "train_args.lock"]


class ModelLoadError(XcxrError, RuntimeError):
    """A model folder or repo could not be loaded (or pushed); the message says why and what to do."""


class HubAuthError(XcxrError, PermissionError):
    """No Hugging Face token where one is needed (pushing); the message says how to log in."""


def save_model(model: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for any registered model; returns the folder.

    The model's config says how (``hub_format``): ``"timm"`` writes timm's Hub layout (its own ``config.json``
    fields, ours under ``"xcxr"``), which ``timm.create_model("hf-hub:OWNER/NAME", pretrained=True)`` loads without
    this project; ``"xcxr"`` writes our config as ``config.json``, which ``huggingface_hub.PyTorchModelHubMixin``
    subclasses (``PneumoniaCNN.from_pretrained``) and :func:`load_model` read. Weights are always safetensors.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(get_config(model))
    if cfg.get("hub_format") == "timm":
        import timm  # only here and in lib.models.resnet: importing timm costs ~2 s

        timm.models.save_for_hf(
            model, str(out), safe_serialization=True,
            model_config={"xcxr": cfg, "label_names": cfg["labels"]},
            data_config={"input_size": (cfg["in_chans"], cfg["img_size"], cfg["img_size"]),
                         "mean": tuple(cfg["mean"]) * (cfg["in_chans"] // len(cfg["mean"])),
                         "std": tuple(cfg["std"]) * (cfg["in_chans"] // len(cfg["std"])),
                         "interpolation": "bilinear", "crop_pct": 1.0})
        return out
    # weights first, config last, each through a temporary file: a folder with a config.json is complete
    tmp = out / (WEIGHTS_NAME + ".tmp")
    safetensors.torch.save_model(model, str(tmp))
    os.replace(tmp, out / WEIGHTS_NAME)
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / CONFIG_NAME)
    return out


def _fetch(model_id: str, filename: str, revision: str | None) -> str:
    """Path of ``filename`` from a local folder or a Hub repo (downloaded or from the cache)."""
    if os.path.isdir(model_id):
        return str(folder_file(model_id, filename))
    from huggingface_hub import hf_hub_download
    if model_id.count("/") != 1 or model_id.startswith(("/", ".")):
        raise ModelLoadError(f"{model_id!r}: no such folder, and not a Hub repo id of the form OWNER/NAME")
    with _hub_errors(model_id, filename, revision, "no local folder of that name, and no such model repo on the Hub "
                     "(or it is private and no token is set: set HF_TOKEN or run `hf auth login`)"):
        return hf_hub_download(model_id, filename, revision=revision)


@contextlib.contextmanager
def _hub_errors(model_id: str, filename: str, revision: str | None, not_found: str):
    """Turn the Hub client's errors while fetching ``filename`` into :class:`ModelLoadError` (``not_found``: what a
    missing or inaccessible repo is called)."""
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
    try:
        yield
    except RepositoryNotFoundError as e:
        raise ModelLoadError(f"{model_id}: {not_found}") from e
    except OfflineModeIsEnabled as e:
        raise ModelLoadError(f"{model_id}: the Hub is not tried (offline: HF_HUB_OFFLINE is set)") from e
    except RevisionNotFoundError as e:
        raise ModelLoadError(f"{model_id}: revision {revision!r} does not exist") from e
    except EntryNotFoundError as e:
        if isinstance(e, LocalEntryNotFoundError):
            raise ModelLoadError(
                f"{model_id}: {filename} is not in the local Hugging Face cache and the Hub cannot be reached "
                "(offline or HF_HUB_OFFLINE=1). Download it once while online, or pass a local folder.") from e
        raise ModelLoadError(f"{model_id}: the repo has no {filename}; is it a model of this project?") from e
    except HfHubHTTPError as e:
        raise ModelLoadError(f"{model_id}: the Hub answered with an error ({e})") from e
    except _transport_errors() as e:  # no answer at all (hf_hub_download falls back to the cache instead)
        raise ModelLoadError(f"{model_id}: the Hub cannot be reached ({type(e).__name__})") from e


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's "no answer" errors: huggingface_hub 2.x talks through ``httpx2``, 1.x through ``httpx``."""
    import importlib

    found: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def folder_file(folder: str | os.PathLike, filename: str, max_bytes: int | None = None) -> Path:
    """The path of ``filename`` inside a model folder, refusing anything that leaves the folder.

    A model folder is input (anything can be dropped into ``runs/``), so the file must be a regular file that is
    not a symlink, whose real path lies inside the folder's real path, and (with ``max_bytes``) not larger than
    that. Use it for every file read from a model folder (config, weights, model card, metrics, figures).

    Raises:
        ModelLoadError: missing, a symlink, outside the folder, not a regular file, or too large.

    Example:
        >>> folder_file("models/pneumonia_cnn", "config.json")
        PosixPath('models/pneumonia_cnn/config.json')
    """
    root = Path(folder)
    path = root / filename
    if path.is_symlink():
        raise ModelLoadError(f"{root.name}/{filename} is a symbolic link; model folders are read only through "
                             "regular files (copy the file into the folder instead)")
    if not path.is_file():
        raise ModelLoadError(f"{root.name}: no {filename} in this folder; is it a training output folder "
                             "(python -m train … --out DIR)?")
    real, real_root = path.resolve(), root.resolve()
    if real_root not in real.parents:  # e.g. a symlinked sub-folder
        raise ModelLoadError(f"{root.name}/{filename} lies outside the model folder")
    if max_bytes is not None and real.stat().st_size > max_bytes:
        raise ModelLoadError(f"{root.name}/{filename} is {real.stat().st_size / 2**20:.1f} MB, more than the "
                             f"{max_bytes / 2**20:g} MB allowed")
    return path


def load_model(model_id: str | os.PathLike, revision: str | None = None, map_location: str = "cpu", *,
               max_parameters: int = MAX_PARAMETERS, max_activations: int = MAX_ACTIVATIONS) -> nn.Module:
    """Load any registered model from a local folder or a Hub repo id; returns it in ``eval()`` mode.

    A folder or repo is input, so everything is checked before it costs memory or time (see
    :mod:`lib.models.limits`): the architecture must be registered; its options within their documented bounds;
    the model, built first on the ``meta`` device (no memory), within the parameter and activation budgets, with
    the layers its config names; ``config.json`` at most 1 MB; ``model.safetensors`` not larger than the built
    model's weights (plus a small header) and its header naming exactly the built model's tensors with the same
    shapes. Only then is the model built for real (through :func:`~lib.models.create_model`) and
    ``model.safetensors`` loaded into it, strictly (float16/bfloat16 files load as the model's float32). No other
    file is ever read as weights, options that would fetch weights (``pretrained``) are not used, and files of a
    local folder are never read through a symlink (:func:`folder_file`).

    Raises:
        ModelLoadError: missing folder/repo/file, offline without a cached copy, an unknown architecture, options
            out of bounds, a model over budget, or weights that do not match the built model.
    """
    model_id = os.fspath(model_id)
    saved, options, overrides, shape_model, cfg_path, _ = _inspect(model_id, revision, max_parameters,
                                                                     max_activations)
    arch = saved["architecture"]
    weights = _fetch(model_id, WEIGHTS_NAME, revision)
    _check_weights_header(model_id, weights, shape_model)
    model = create_model(arch, **options)
    try:
        safetensors.torch.load_model(model, weights, strict=True, device=map_location)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelLoadError(f"{_shown(model_id)}: the weights do not match config.json ({str(e)[:300]})") from e
    # what the constructor derived wins (layer names, flatten sizes); extras of the saved config (threshold…) and
    # the saved values of the loading overrides (a model trained from ImageNet weights stays "pretrained") are kept
    built = get_config(model)
    model.xcxr_config = {**saved, **built, **{k: saved[k] for k in overrides if k in saved}}
    # the local folder the model came from (a Hub repo: its snapshot in the Hugging Face cache), where files that
    # travel with it are found (the predictions of lib.explain.ship_predictions)
    model.xcxr_source = os.path.dirname(cfg_path)
    model.xcxr_repo = None if os.path.isdir(model_id) else (model_id, revision)  # where model_file fetches from
    return model.to(map_location).eval()


def model_file(model: nn.Module, filename: str, max_bytes: int) -> Path:
    """A file that travels with a loaded model (model card, ``history.json``, figures), with the same care as its
    weights: from its local folder through :func:`folder_file`; from its Hub repo only after the Hub said the file
    is at most ``max_bytes`` (then downloaded into the Hugging Face cache, or found there offline).

    Raises:
        ModelLoadError: no such file, too large, a symlink out of the folder, or the Hub unreachable.

    Example:
        >>> model_file(load_model("models/pneumonia_cnn"), "README.md", 2**20).name
        'README.md'
    """
    repo = getattr(model, "xcxr_repo", None)
    if repo is None:
        source = getattr(model, "xcxr_source", None)
        if source is None:
            raise ModelLoadError(f"{filename}: this model was not loaded from a folder or repo")
        return folder_file(source, filename, max_bytes)
    repo_id, revision = repo
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        size = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision)).size
    except HfHubHTTPError as e:  # the Hub answered: no such file (or no access)
        raise ModelLoadError(f"{repo_id}: no {filename} in the repo ({type(e).__name__})") from e
    except (OfflineModeIsEnabled, OSError):
        size = None  # offline: only a copy already in the cache can be used (_fetch says so otherwise)
    if size is not None and size > max_bytes:
        raise ModelLoadError(f"{repo_id}/{filename} is {size / 2**20:.1f} MB, more than the "
                             f"{max_bytes / 2**20:g} MB allowed")
    path = Path(_fetch(repo_id, filename, revision))
    if path.stat().st_size > max_bytes:
        raise ModelLoadError(f"{repo_id}/{filename} is larger than the {max_bytes / 2**20:g} MB allowed")
    return path


def check_model(model_id: str | os.PathLike, revision: str | None = None, *, max_parameters: int = MAX_PARAMETERS,
                max_activations: int = MAX_ACTIVATIONS) -> dict[str, Any]:
    """Every check of :func:`load_model` that needs no weights: cheap (config.json only; a few ms), nothing built.

    Returns ``{"architecture", "parameters", "activations"}`` of the model the folder or repo describes.

    Raises:
        ModelLoadError: what :func:`load_model` would raise for the config.

    Example:
        >>> check_model("models/pneumonia_cnn")
        {'architecture': 'pneumonia_cnn', 'parameters': 18218, 'activations': 4390466}
    """
    found = _inspect(os.fspath(model_id), revision, max_parameters, max_activations)
    return {"architecture": found.saved["architecture"], **found.budget}


class _Inspected(NamedTuple):
    saved: dict[str, Any]            # the saved config (ours, or timm's "xcxr" section)
    options: dict[str, Any]          # what create_model gets
    overrides: dict[str, Any]        # loading overrides of the architecture (lib.models.registry)
    shape_model: nn.Module           # the model built on the meta device
    cfg_path: str                    # config.json's local path
    budget: dict[str, int]           # its parameters and activations (lib.models.limits.check_budget)


def _inspect(model_id: str, revision: str | None, max_parameters: int, max_activations: int
             ) -> "_Inspected":
    """Every check of a config that needs no weights (see :func:`load_model`)."""
    cfg_path = _fetch(model_id, CONFIG_NAME, revision)
    if os.path.getsize(cfg_path) > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{_shown(model_id)}: config.json is larger than {MAX_CONFIG_BYTES // 2**10} KB")
    try:
        cfg = json.loads(Path(cfg_path).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{_shown(model_id)}: config.json is not valid JSON ({e})") from e
    saved = cfg.get("xcxr", cfg) if isinstance(cfg, dict) else None  # timm layout: our config under "xcxr"
    if not isinstance(saved, dict):
        raise ModelLoadError(f"{_shown(model_id)}: config.json must hold a JSON object with an 'architecture'")
    arch = saved.get("architecture")
    if not isinstance(arch, str) or arch not in list_models():
        raise ModelLoadError(f"{_shown(model_id)}: config.json names architecture {str(arch)[:60]!r}, which this "
                             f"project does not know; known: {list_models()}")
    overrides = loading_overrides(arch)
    accepted = model_options(arch)
    options = {k: v for k, v in saved.items() if k in accepted and k not in overrides}
    options.update({k: v for k, v in overrides.items() if v is not None and k in accepted})
    try:
        with torch.device("meta"):  # shapes only: an oversized config costs nothing here
            shape_model = create_model(arch, **options)
        budget = check_budget(shape_model, max_parameters, max_activations)
    except (XcxrError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{_shown(model_id)}: config.json does not describe a valid {arch} ({e})") from e
    extras = {k: v for k, v in saved.items() if k not in accepted and k not in get_config(shape_model)}
    _check_extras(model_id, extras)
    return _Inspected(saved, options, overrides, shape_model, cfg_path, budget)


def _shown(model_id: str) -> str:
    """How a model is named in messages: a Hub id as it is, a folder by its last two parts (no absolute paths)."""
    if not os.path.isdir(model_id):
        return model_id
    parts = Path(model_id).resolve().parts
    return "/".join(parts[-2:])


def _check_extras(model_id: str, extras: dict[str, Any]) -> None:
    """Keys of a saved config that are neither options nor derived: plain values, a threshold in [0, 1]."""
    for key, value in extras.items():
        if not is_plain(value, max_chars=512):
            raise ModelLoadError(f"{_shown(model_id)}: config.json key {key[:40]!r} holds a {type(value).__name__}; "
                                 "besides the architecture's options only short plain values are allowed")
    t = extras.get("threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0):
        raise ModelLoadError(f"{_shown(model_id)}: config.json threshold must be a number in [0, 1], got {t!r}")


#: safetensors dtypes a weights file may use for floating-point tensors (half precision loads as float32).
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_INT_DTYPES = {"I64", "I32", "I16", "I8", "U8"}


def _check_weights_header(model_id: str, weights: str, shape_model: nn.Module) -> None:
    """Compare the file's size and header with the (meta) model's tensors before a byte of weights is read."""
    expected = shape_model.state_dict()
    biggest = sum(t.numel() * 8 for t in expected.values())  # float64 at most
    size = os.path.getsize(weights)
    if size > biggest + MAX_HEADER_BYTES:
        arch = get_config(shape_model)["architecture"]
        raise ModelLoadError(f"{_shown(model_id)}: model.safetensors is {size / 2**20:.1f} MB, more than a {arch} "
                             f"of this config can hold ({biggest / 2**20:.1f} MB)")
    try:
        with open(weights, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
        if header_len > MAX_HEADER_BYTES:
            raise ModelLoadError(f"{_shown(model_id)}: model.safetensors has a {header_len}-byte header (at most "
                                 f"{MAX_HEADER_BYTES} allowed)")
        with safetensors.safe_open(weights, framework="pt") as f:  # reads and checks the header only
            found = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: (tuple(sl.get_shape()), sl.get_dtype()) for k, sl in found.items()}
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a corrupt header
        raise ModelLoadError(f"{_shown(model_id)}: model.safetensors is not a valid safetensors file "
                             f"({type(e).__name__}: {str(e)[:160]})") from e
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"{_shown(model_id)}: the weights do not match config.json: model.safetensors does not "
                             f"hold this model's tensors (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, t in expected.items():
        shape, dtype = shapes[key]
        kinds = _FLOAT_DTYPES if t.is_floating_point() else _INT_DTYPES
        if shape != tuple(t.shape) or dtype not in kinds:
            need = f"{list(t.shape)} ({'float' if t.is_floating_point() else 'int'})"
            raise ModelLoadError(f"{_shown(model_id)}: the weights do not match config.json: tensor {key!r} in "
                                 f"model.safetensors is {dtype} {list(shape)}, the model needs {need}")


#: What :func:`download_model` accepts: a repo id in the Hub's characters, and a token of plain characters (anything
#: else would reach an HTTP header, and an HTTP library's error about a bad header quotes the header, token and all).
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,512}")


def download_model(repo_id: str, dest: str | os.PathLike, *, token: str | bool | None = False,
                   revision: str | None = None, max_weights_bytes: int = MAX_WEIGHTS_BYTES) -> Path:
    """Download a Hub model's ``config.json`` and ``model.safetensors`` into a new folder ``dest/OWNER/NAME``
    (returned); then :func:`load_model` on that folder loads it, and the caller removes ``dest``.

    Made for a repo id that someone else typed (a visitor of the app):

    * ``repo_id`` must be ``OWNER/NAME`` in the Hub's characters, and is never looked up as a local folder.
    * Each check comes before the download it guards: config.json's size from the Hub's metadata (at most 1 MB)
      → the config (:func:`check_model`'s checks: architecture, option bounds, budgets) → the weights' size (at
      most ``max_weights_bytes`` and at most what the described model can hold) → the weights. Both files come
      from one commit, so the repo cannot change in between.
    * Nothing goes through the shared Hugging Face cache: the two files are plain files in ``dest`` and nowhere
      else (a private repo's files are left for no one), and no other file of the repo is fetched.
    * ``token`` goes to the Hub requests and nowhere else (not kept, not in any message). The default ``False``
      sends no token at all, not even this machine's ``HF_TOKEN``; ``None`` uses the machine's token.

    Messages name the model by ``repo_id``; so do :func:`load_model`'s on the returned folder (its last two parts).

    Raises:
        ModelLoadError: a malformed repo id or token, a missing or inaccessible repo or file, a file too large, a
            config that fails the checks, or the Hub unreachable.

    Example:
        >>> folder = download_model("OWNER/NAME", tmp_dir, token=visitor_token)  # doctest: +SKIP
        >>> model = load_model(folder)  # doctest: +SKIP
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ModelLoadError("not a Hub repo id: give OWNER/NAME (letters, digits, '-', '_' and '.')")
    if isinstance(token, str) and not _TOKEN.fullmatch(token):  # never quoted: it may be a mistyped secret
        raise ModelLoadError("the access token is malformed: a Hugging Face token holds only letters, digits, "
                             "'-', '_' and '.'")
    folder = Path(dest) / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    no_access = "no such model repo on the Hub, or it is private or gated and no token with access to it was given"

    def size_of(filename: str, rev: str | None) -> tuple[int | None, str | None]:
        with _hub_errors(repo_id, filename, rev, no_access):
            meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=rev), token=token)
        return meta.size, meta.commit_hash

    def download(filename: str, rev: str | None) -> None:
        with _hub_errors(repo_id, filename, rev, no_access):
            hf_hub_download(repo_id, filename, revision=rev, local_dir=folder, token=token)

    size, commit = size_of(CONFIG_NAME, revision)
    if size is None or size > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{repo_id}: config.json is larger than {MAX_CONFIG_BYTES // 2**10} KB")
    rev = commit or revision
    download(CONFIG_NAME, rev)
    shape_model = _inspect(str(folder), None, MAX_PARAMETERS, MAX_ACTIVATIONS)[3]
    holds = sum(t.numel() * 8 for t in shape_model.state_dict().values()) + MAX_HEADER_BYTES  # float64 at most
    size, _ = size_of(WEIGHTS_NAME, rev)
    if size is None or size > min(holds, max_weights_bytes):
        shown = "of unknown size" if size is None else f"{size / 2**20:.1f} MB"
        raise ModelLoadError(f"{repo_id}: model.safetensors is {shown}, more than the "
                             f"{min(holds, max_weights_bytes) / 2**20:.1f} MB this config's model can hold "
                             f"(and at most {max_weights_bytes / 2**20:g} MB are downloaded)")
    download(WEIGHTS_NAME, rev)
    return folder


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload model") -> str:
    """Upload a Hub-ready folder (without its ``checkpoint/`` training state) to ``repo_id``; returns the URL.

    The token comes from ``token``, ``HF_TOKEN`` or a previous ``hf auth login``; it is never printed.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError
    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder}: no {name}; only a finished training folder can be pushed")
    api = HfApi(token=token)
    if not (token or get_token()):  # HF_TOKEN, or the token file `hf auth login` writes
        raise HubAuthError("no Hugging Face token: set HF_TOKEN or run `hf auth login` before --push-to-hub")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                                 ignore_patterns=PRIVATE_PATTERNS)
    except HfHubHTTPError as e:
        raise ModelLoadError(f"pushing {folder} to {repo_id} failed: {e}") from e
    return str(getattr(info, "commit_url", None) or f"{api.endpoint}/{repo_id}")
