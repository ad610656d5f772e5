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

import json
import os
from pathlib import Path

import safetensors.torch
import timm
import torch.nn as nn

from ..errors import XcxrError
from .layers import get_config
from .registry import create_model, list_models, loading_overrides, model_options

__all__ = ["ModelLoadError", "HubAuthError", "save_model", "load_model", "push_folder", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files of a run folder that are not for the Hub (training state).
PRIVATE_PATTERNS = ["checkpoint/*", "checkpoint/**", "*.tmp", "train_args.lock"]


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
        path = os.path.join(model_id, filename)
        if not os.path.isfile(path):
            raise ModelLoadError(f"{model_id}: no {filename} in this folder; is it a training output folder "
                                 "(python -m train … --out DIR)?")
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    if model_id.count("/") != 1 or model_id.startswith(("/", ".")):
        raise ModelLoadError(f"{model_id!r}: no such folder, and not a Hub repo id of the form OWNER/NAME")
    try:
        return hf_hub_download(model_id, filename, revision=revision)
    except RepositoryNotFoundError as e:
        raise ModelLoadError(f"{model_id}: no local folder of that name, and no such model repo on the Hub (or it is "
                             "private and no token is set: set HF_TOKEN or run `hf auth login`)") from e
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


def load_model(model_id: str | os.PathLike, revision: str | None = None, map_location: str = "cpu") -> nn.Module:
    """Load any registered model from a local folder or a Hub repo id; returns it in ``eval()`` mode.

    The model is built by :func:`~lib.models.create_model` from the architecture and options in ``config.json``
    (our own layout, or timm's with ours under ``"xcxr"``), then ``model.safetensors`` is loaded into it, strictly:
    no other file is ever read as weights, and options that would fetch weights (``pretrained``) are not used.

    Raises:
        ModelLoadError: missing folder/repo/file, offline without a cached copy, an unknown architecture, options
            the architecture refuses, or weights that do not match the built model.
    """
    model_id = os.fspath(model_id)
    cfg_path = _fetch(model_id, CONFIG_NAME, revision)
    try:
        cfg = json.loads(Path(cfg_path).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{model_id}: config.json is not valid JSON ({e})") from e
    saved = cfg.get("xcxr", cfg) if isinstance(cfg, dict) else None  # timm layout: our config under "xcxr"
    if not isinstance(saved, dict):
        raise ModelLoadError(f"{model_id}: config.json must hold a JSON object with an 'architecture'")
    arch = saved.get("architecture")
    if arch not in list_models():
        raise ModelLoadError(f"{model_id}: config.json names architecture {arch!r}, which this project does not "
                             f"know; known: {list_models()}")
    overrides = loading_overrides(arch)
    accepted = model_options(arch)
    options = {k: v for k, v in saved.items() if k in accepted and k not in overrides}
    options.update({k: v for k, v in overrides.items() if v is not None and k in accepted})
    try:
        model = create_model(arch, **options)
    except (XcxrError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{model_id}: config.json does not describe a valid {arch} ({e})") from e
    weights = _fetch(model_id, WEIGHTS_NAME, revision)
    try:
        safetensors.torch.load_model(model, weights, strict=True, device=map_location)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelLoadError(f"{model_id}: the weights do not match config.json ({str(e)[:300]})") from e
    # what the constructor derived wins (layer names, flatten sizes); extras of the saved config (threshold…) and
    # the saved values of the loading overrides (a model trained from ImageNet weights stays "pretrained") are kept
    built = get_config(model)
    model.xcxr_config = {**saved, **built, **{k: saved[k] for k in overrides if k in saved}}
    return model.to(map_location).eval()


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
