"""Publishing and loading models through the (emulated) Hugging Face Hub: ``lib.models.hub`` and ``--push-to-hub``.

Every test talks to the in-process emulator of ``tests/hub_emulator.py`` (fixture ``hub``) through the real
``huggingface_hub`` / ``timm`` clients, with its own empty download cache (fixture ``hf_cache``). The emulator keeps
its repos for the whole session, so every repo id here carries a per-run suffix.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import huggingface_hub
import huggingface_hub.constants as hf_constants

from lib.models import ModelLoadError, PneumoniaCNN, create_model, list_models, load_model, push_folder, save_model
from lib.models.report import DNN, ReportCNN

RUN = uuid.uuid4().hex[:8]
OWNER = "owner"
SECRET = "hf_SeCrEt_do_not_print_0123456789"
#: Smallest sizes the report CNNs accept (their strides and pools shrink 64 px to nothing); 64 for the rest.
IMG_SIZES = {"cnn1": 128, "cnn2": 96}
CUSTOM_CLASSES = {"pneumonia_cnn": PneumoniaCNN, "dnn1": DNN, "dnn2": DNN, "cnn1": ReportCNN, "cnn2": ReportCNN}
RESNETS = [n for n in list_models() if n.startswith("resnet18")]
CUSTOM = [n for n in list_models() if not n.startswith("resnet18")]
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def repo_id(name: str) -> str:
    return f"{OWNER}/{name.replace('_', '-')}-{RUN}"


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """A small zoo model with non-trivial BatchNorm statistics (so lost buffers would change the logits)."""
    torch.manual_seed(seed)
    kwargs = {"img_size": IMG_SIZES.get(name, 64)}
    if name.startswith("resnet18_pretrained"):
        kwargs["pretrained"] = False  # no ImageNet download here
    model = create_model(name, **kwargs)
    cfg = model.xcxr_config
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, cfg["in_chans"], cfg["img_size"], cfg["img_size"]) * 3 + 1)
    return model.eval()


def fixed_input(cfg: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(3, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=g)


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class Published:
    """One model saved to a folder (with training state beside it) and pushed to the emulator."""

    def __init__(self, name: str, root: Path):
        self.name, self.repo = name, repo_id(name)
        self.model = build(name)
        self.config = dict(self.model.xcxr_config)
        self.x = fixed_input(self.config)
        self.logits = logits(self.model, self.x)
        self.folder = save_model(self.model, root / name)
        (self.folder / "checkpoint" / "best").mkdir(parents=True, exist_ok=True)
        (self.folder / "checkpoint" / "state.json").write_text('{"epoch": 1}')
        (self.folder / "checkpoint" / "best" / "model.safetensors").write_bytes(b"\x00not for the hub")
        self.url = push_folder(self.folder, self.repo)


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory):
    """``published(name)``: push the model once per module, return its :class:`Published`."""
    done: dict[str, Published] = {}
    root = tmp_path_factory.mktemp("published")

    def get(name: str) -> Published:
        if name not in done:
            done[name] = Published(name, root)
        return done[name]

    return get


def go_offline(monkeypatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE into constants at import time: set both.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.is_offline_mode()


# ------------------------------------------------------------------------------------------ 1. round trip, all models
def test_every_model_is_covered():
    assert set(list_models()) == set(RESNETS) | set(CUSTOM_CLASSES)
    assert len(RESNETS) == 3


@pytest.mark.parametrize("name", list_models())
def test_save_push_load_roundtrip(name, hub, hf_cache, published):
    pub = published(name)
    files = hub.files(pub.repo)

    assert {"config.json", "model.safetensors"} <= set(files)
    assert not [p for p in files if p.endswith(FORBIDDEN_SUFFIXES)], sorted(files)
    assert not [p for p in files if p.startswith("checkpoint")], sorted(files)
    assert files["model.safetensors"] == (pub.folder / "model.safetensors").read_bytes()
    assert files["config.json"] == (pub.folder / "config.json").read_bytes()
    assert "model.safetensors" in hub.lfs_files(pub.repo)
    assert pub.repo in pub.url

    loaded = load_model(pub.repo)
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert loaded.xcxr_config == pub.config
    assert type(loaded) is type(pub.model)
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in pub.model.parameters()]
    assert torch.equal(logits(loaded, pub.x), pub.logits)
    # it came from the Hub, into this test's empty cache
    assert (hf_cache / f"models--{pub.repo.replace('/', '--')}").is_dir()


def test_local_folder_loads_like_the_repo(published, hf_cache):
    pub = published("pneumonia_cnn")
    local = load_model(pub.folder)
    assert not local.training and local.xcxr_config == pub.config
    assert torch.equal(logits(local, pub.x), pub.logits)


# --------------------------------------------------------------------------------- 2. loading without project code
@pytest.mark.parametrize("name", RESNETS)
def test_timm_loads_pushed_resnet(name, hub, hf_cache, published):
    import timm

    pub = published(name)
    model = timm.create_model(f"hf-hub:{pub.repo}", pretrained=True).eval()
    assert model.conv1.in_channels == pub.config["in_chans"] == (1 if name == "resnet18_scratch" else 3)
    assert model.num_classes == pub.config["num_classes"]
    assert tuple(model.pretrained_cfg["input_size"]) == (pub.config["in_chans"], 64, 64)
    assert torch.equal(logits(model, pub.x), pub.logits)


@pytest.mark.parametrize("name", CUSTOM)
def test_mixin_from_pretrained_loads_pushed_custom_model(name, hub, hf_cache, published):
    pub = published(name)
    cls = CUSTOM_CLASSES[name]
    model = cls.from_pretrained(pub.repo).eval()
    assert type(model) is cls
    assert model.xcxr_config["architecture"] == name
    assert torch.equal(logits(model, pub.x), pub.logits)


# ------------------------------------------------------------------------------------------- 3. offline and errors
@pytest.mark.parametrize("name", ["pneumonia_cnn", "resnet18_scratch"])
def test_offline_load_from_cache(name, hub, hf_cache, published, monkeypatch):
    pub = published(name)
    load_model(pub.repo)  # populates the (empty) cache
    go_offline(monkeypatch)
    n_requests = len(hub.requests)

    loaded = load_model(pub.repo)
    assert not loaded.training and loaded.xcxr_config == pub.config
    assert torch.equal(logits(loaded, pub.x), pub.logits)
    assert len(hub.requests) == n_requests  # nothing reached the Hub


def test_offline_without_cache_raises_clear_error(hub, hf_cache, published, monkeypatch):
    pub = published("pneumonia_cnn")  # exists on the Hub, but never downloaded into this cache
    go_offline(monkeypatch)
    for repo in (pub.repo, f"{OWNER}/never-pushed-{RUN}"):
        with pytest.raises(ModelLoadError, match=r"(?i)offline") as info:
            load_model(repo)
        assert "cache" in str(info.value).lower() and repo in str(info.value)


def test_missing_repo_online(hub, hf_cache):
    repo = f"{OWNER}/does-not-exist-{RUN}"
    with pytest.raises(ModelLoadError, match=r"(?i)no such model repo") as info:
        load_model(repo)
    assert repo in str(info.value)


def test_missing_revision_and_missing_weights(hub, hf_cache, published, tmp_path):
    pub = published("pneumonia_cnn")
    with pytest.raises(ModelLoadError, match="revision 'no-such-branch' does not exist"):
        load_model(pub.repo, revision="no-such-branch")

    repo = f"{OWNER}/config-only-{RUN}"
    hub.add_files(repo, {"config.json": (pub.folder / "config.json").read_text()})
    with pytest.raises(ModelLoadError, match=r"no model\.safetensors"):
        load_model(repo)


def test_bad_local_paths(tmp_path, hf_cache, hub):
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model(tmp_path / "no" / "such" / "folder")
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model("./missing-run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(empty)
    with pytest.raises(ModelLoadError, match="no config.json"):
        push_folder(empty, f"{OWNER}/never-{RUN}")
    assert not hub.repo_exists(f"{OWNER}/never-{RUN}")


# ------------------------------------------------------------------------------------------------------- 4. tokens
@pytest.fixture
def no_stored_token(tmp_path, monkeypatch):
    """No token anywhere: not in the environment, not in a `hf auth login` token file."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    token_file = tmp_path / "login" / "token"
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(token_file))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "login" / "stored_tokens"))
    assert huggingface_hub.get_token() is None
    return token_file


def test_push_without_token_raises_permission_error(hub, published, no_stored_token):
    folder = published("pneumonia_cnn").folder
    repo = f"{OWNER}/no-token-{RUN}"
    n_requests = len(hub.requests)
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        push_folder(folder, repo)
    assert not hub.repo_exists(repo)
    assert len(hub.requests) == n_requests  # failed before talking to the Hub


def test_push_uses_token_from_hf_auth_login(hub, hf_cache, published, no_stored_token, capsys):
    # `hf auth login` stores the token in HF_TOKEN_PATH; push_folder's docstring promises it is used.
    no_stored_token.parent.mkdir(parents=True)
    no_stored_token.write_text(SECRET)
    pub = published("pneumonia_cnn")
    repo = f"{OWNER}/login-token-{RUN}"
    push_folder(pub.folder, repo)
    assert hub.files(repo)["model.safetensors"] == (pub.folder / "model.safetensors").read_bytes()
    assert SECRET in hub.tokens_seen
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


def _exception_texts(exc: BaseException) -> str:
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def test_token_is_never_printed(hub, hf_cache, published, tmp_path, capsys, caplog):
    pub = published("pneumonia_cnn")
    caplog.set_level("DEBUG")
    repo = f"{OWNER}/explicit-token-{RUN}"
    url = push_folder(pub.folder, repo, token=SECRET, private=True)
    assert SECRET in hub.tokens_seen and hub.is_private(repo)
    assert SECRET not in url

    # a failing push (the Hub rejects the model card's metadata) must not leak it either
    bad = tmp_path / "bad-card"
    save_model(pub.model, bad)
    (bad / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")
    with pytest.raises(Exception) as info:
        push_folder(bad, f"{OWNER}/bad-card-{RUN}", token=SECRET)
    assert "metadata" in _exception_texts(info.value).lower()
    assert SECRET not in _exception_texts(info.value)

    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text


# --------------------------------------------------------------------------------------------- 5. training CLI push
def _write_dataset(root: Path, n: int = 12, side: int = 64) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("NORMAL", "PNEUMONIA"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pid = i + (0 if split == "train" else 100)
                name = (f"IM-{pid:04d}-0001.png" if cls == "NORMAL"
                        else f"person{pid}_{'bacteria' if i % 2 else 'virus'}_{i}.png")
                base = 90 if cls == "NORMAL" else 150  # learnable, but noisy
                pixels = np.clip(rng.normal(base, 40, (side, side)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / name)


def test_train_cli_pushes_a_complete_run(hub, hf_cache, tmp_path, capsys, caplog):
    from lib.models import predict_proba
    from train.__main__ import main

    data, out = tmp_path / "data", tmp_path / "run"
    _write_dataset(data)
    repo = f"{OWNER}/cli-run-{RUN}"
    caplog.set_level("INFO")
    rc = main(["pneumonia_cnn", "--data", str(data), "--out", str(out), "--epochs", "1", "--img-size", "32",
               "--batch-size", "8", "--device", "cpu", "--no-progress", "--push-to-hub", repo])
    assert rc == 0
    captured = capsys.readouterr()
    token = os.environ["HF_TOKEN"]  # the session token from conftest: used, never printed
    assert token in hub.tokens_seen
    assert token not in captured.out + captured.err + caplog.text

    files = hub.files(repo)
    for name in ("config.json", "model.safetensors", "README.md", "metrics.json", "history.json"):
        assert name in files, sorted(files)
        assert files[name] == (out / name).read_bytes(), name
    assert (out / "checkpoint").is_dir()  # training state exists locally ...
    assert not [p for p in files if p.startswith("checkpoint") or p.endswith(FORBIDDEN_SUFFIXES)], sorted(files)

    card = files["README.md"].decode()
    match = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", card, re.S)
    assert match, card[:300]
    meta = yaml.safe_load(match.group(1))
    for key in ("license", "library_name", "metrics", "model-index"):
        assert meta.get(key), key
    assert huggingface_hub.HfApi().model_info(repo).card_data.license == meta["license"]

    from_hub, local = load_model(repo), load_model(out)
    assert from_hub.xcxr_config == local.xcxr_config
    assert from_hub.xcxr_config["img_size"] == 32 and "threshold" in from_hub.xcxr_config
    images = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in sorted((data / "val").rglob("*.png"))]))
    images = images.unsqueeze(1)
    p_hub, p_local = predict_proba(from_hub, images), predict_proba(local, images)
    assert p_hub.shape == (24,)
    assert torch.equal(p_hub, p_local)
