"""Saving, loading and publishing models: Hub-ready folders, ``load_model(dir_or_repo_id)``, ``push_folder``.

A Hub-ready folder holds ``config.json`` + ``model.safetensors`` (weights are never pickled), and after training
also ``README.md`` (the model card), ``metrics.json``, ``history.json`` and plots.

* Custom models (``pneumonia_cnn``, ``dnn1/2``, ``cnn1/2``) are saved by ``huggingface_hub.PyTorchModelHubMixin``:
  ``PneumoniaCNN.from_pretrained("OWNER/NAME")`` works on its own.
* ResNet18 variants are saved the timm way: ``timm.create_model("hf-hub:OWNER/NAME", pretrained=True)`` loads
  them with no project code; the project's config rides along under the ``"xcxr"`` key of ``config.json``.

:func:`load_model` accepts both kinds, from a local folder or a Hub repo id, and always returns a model in
``eval()`` mode with ``model.xcxr_config`` set. Offline (``HF_HUB_OFFLINE=1``) it loads from the Hugging Face
cache; anything missing raises :class:`ModelLoadError` with what to do.

Example:
    >>> save_model(model, "runs/cnn")                  # config.json + model.safetensors
    >>> model = load_model("runs/cnn")                  # or load_model("OWNER/NAME")
    >>> push_folder("runs/cnn", "OWNER/NAME")           # token from HF_TOKEN or `hf auth login`
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch.nn as nn

from .pneumonia_cnn import PneumoniaCNN
from .report import DNN, ReportCNN

__all__ = ["ModelLoadError", "save_model", "load_model", "push_folder", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files of a run folder that are not for the Hub (training state).
PRIVATE_PATTERNS = ["checkpoint/*", "checkpoint/**", "*.tmp", "train_args.lock"]
_CUSTOM = {"pneumonia_cnn": PneumoniaCNN, "dnn1": DNN, "dnn2": DNN, "cnn1": ReportCNN, "cnn2": ReportCNN}


class ModelLoadError(RuntimeError):
    """A model folder or repo could not be loaded; the message says why and what to do."""


def _is_timm(model: nn.Module) -> bool:
    return isinstance(model, timm.models.ResNet)


def save_model(model: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for any zoo model; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(model.xcxr_config)
    if _is_timm(model):
        timm.models.save_for_hf(
            model, str(out), safe_serialization=True,
            model_config={"xcxr": cfg, "label_names": cfg["labels"]},
            data_config={"input_size": (cfg["in_chans"], cfg["img_size"], cfg["img_size"]),
                         "mean": tuple(cfg["mean"]) * (cfg["in_chans"] // len(cfg["mean"])),
                         "std": tuple(cfg["std"]) * (cfg["in_chans"] // len(cfg["std"])),
                         "interpolation": "bilinear", "crop_pct": 1.0})
    else:
        readme = out / "README.md"
        had_card = readme.exists()
        model.save_pretrained(out, config=cfg)
        if not had_card:  # the training CLI writes a real model card; don't leave the mixin's placeholder
            readme.unlink(missing_ok=True)
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
    """Load any zoo model from a local folder or a Hub repo id; returns it in ``eval()`` mode.

    Raises:
        ModelLoadError: missing folder/repo/file, offline without a cached copy, or an unknown architecture.
    """
    model_id = os.fspath(model_id)
    cfg_path = _fetch(model_id, CONFIG_NAME, revision)
    try:
        cfg: dict[str, Any] = json.loads(Path(cfg_path).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{model_id}: config.json is not valid JSON ({e})") from e
    if "xcxr" in cfg:  # a timm-format ResNet18
        xcfg = cfg["xcxr"]
        source = f"local-dir:{os.path.abspath(model_id)}" if os.path.isdir(model_id) else f"hf-hub:{model_id}"
        if revision and source.startswith("hf-hub:"):
            source += f"@{revision}"
        _fetch(model_id, WEIGHTS_NAME, revision)  # clear message if the weights are missing
        try:
            model = timm.create_model(source, pretrained=True)
        except (OSError, RuntimeError) as e:
            raise ModelLoadError(f"{model_id}: timm could not load the weights ({e})") from e
        if xcfg.get("freeze_stem"):
            model.conv1.weight.requires_grad_(False)
    else:
        arch = cfg.get("architecture")
        cls = _CUSTOM.get(arch)  # type: ignore[arg-type]
        if cls is None:
            raise ModelLoadError(f"{model_id}: config.json names architecture {arch!r}, which this project does not "
                                 f"know; known: {sorted(_CUSTOM) + ['resnet18_*']}")
        params = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in cfg.items() if k in params and k != "self"}
        model = cls(**kwargs)
        weights = _fetch(model_id, WEIGHTS_NAME, revision)
        try:
            safetensors.torch.load_model(model, weights, strict=True, device=map_location)
        except (RuntimeError, OSError) as e:
            raise ModelLoadError(f"{model_id}: the weights do not match config.json ({str(e)[:300]})") from e
        xcfg = cfg
    built = getattr(model, "xcxr_config", {})  # what the constructor derived wins; extras (threshold…) are kept
    model.xcxr_config = {**xcfg, **built}
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
        raise PermissionError("no Hugging Face token: set HF_TOKEN or run `hf auth login` before --push-to-hub")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                                 ignore_patterns=PRIVATE_PATTERNS)
    except HfHubHTTPError as e:
        raise RuntimeError(f"pushing {folder} to {repo_id} failed: {e}") from e
    return str(getattr(info, "commit_url", None) or f"{api.endpoint}/{repo_id}")
