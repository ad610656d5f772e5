"""The real huggingface_hub / timm clients against the in-process Hub emulator (no network)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import huggingface_hub
import huggingface_hub.constants as hf_constants
from huggingface_hub import HfApi, ModelCard, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


class TinyNet(nn.Module, PyTorchModelHubMixin):
    def __init__(self, in_features: int = 4, hidden: int = 8, num_classes: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def test_client_is_wired_to_emulator(hub):
    # If this fails, huggingface_hub was imported before conftest set HF_ENDPOINT / HF_HUB_DISABLE_XET.
    assert hf_constants.ENDPOINT == hub.url
    assert hf_constants.HF_HUB_DISABLE_XET is True


def test_mixin_push_and_from_pretrained_roundtrip(hub, hf_cache):
    torch.manual_seed(0)
    model = TinyNet(in_features=5, hidden=7, num_classes=3).eval()
    commit = model.push_to_hub("someuser/tiny", commit_message="Add tiny model")

    files = hub.files("someuser/tiny")
    assert set(files) - {".gitattributes"} == {"config.json", "model.safetensors", "README.md"}
    assert json.loads(files["config.json"]) == {"in_features": 5, "hidden": 7, "num_classes": 3}
    assert hub.lfs_files("someuser/tiny") == {"model.safetensors"}  # went through LFS batch + PUT
    assert commit.oid == hub.head("someuser/tiny")
    assert hub.commits("someuser/tiny")[0]["title"] == "Add tiny model"
    assert "hf_test_token_not_secret" in hub.tokens_seen

    loaded = TinyNet.from_pretrained("someuser/tiny").eval()
    assert loaded._hub_mixin_config == {"in_features": 5, "hidden": 7, "num_classes": 3}
    x = torch.randn(6, 5)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # downloaded into the per-test cache, under the commit the emulator reported
    assert (hf_cache / "models--someuser--tiny" / "snapshots" / commit.oid / "model.safetensors").exists()


def test_hfapi_endpoints(hub, hf_cache, tmp_path):
    api = HfApi()
    repo_url = api.create_repo("someuser/api-check", private=True, exist_ok=True)
    assert repo_url.repo_id == "someuser/api-check"
    api.create_repo("someuser/api-check", exist_ok=True)  # 409 -> accepted
    assert hub.is_private("someuser/api-check")

    first = api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes/a.txt", repo_id="someuser/api-check")
    second = api.upload_file(path_or_fileobj=b"\x00binary", path_in_repo="w.bin", repo_id="someuser/api-check")
    assert first.oid != second.oid and len(second.oid) == 40
    assert sorted(api.list_repo_files("someuser/api-check")) == [".gitattributes", "notes/a.txt", "w.bin"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("someuser/api-check")}
    assert top == {".gitattributes": "RepoFile", "notes": "RepoFolder", "w.bin": "RepoFile"}
    (entry,) = api.get_paths_info("someuser/api-check", ["w.bin"])
    assert entry.lfs is not None and entry.lfs.size == 7

    info = api.model_info("someuser/api-check", files_metadata=True)
    assert info.sha == second.oid and info.private
    old = api.model_info("someuser/api-check", revision=first.oid)
    assert old.sha == first.oid and "w.bin" not in {s.rfilename for s in old.siblings}

    # preupload reports remote oids, so the client skips unchanged files (here: all of them -> no commit)
    folder = tmp_path / "folder"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "a.txt").write_bytes(b"hello")
    assert api.upload_folder(folder_path=folder, repo_id="someuser/api-check").oid == second.oid
    (folder / "b.txt").write_text("new")
    third = api.upload_folder(folder_path=folder, repo_id="someuser/api-check", delete_patterns=["*.bin"])
    assert hub.head("someuser/api-check") == third.oid != second.oid
    assert sorted(hub.files("someuser/api-check")) == [".gitattributes", "b.txt", "notes/a.txt"]

    with pytest.raises(RevisionNotFoundError):
        api.model_info("someuser/api-check", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("someuser/api-check", "missing.txt")
    assert hf_hub_download("someuser/api-check", "notes/a.txt", revision=first.oid)
    assert api.file_exists("someuser/api-check", "b.txt") and not api.file_exists("someuser/api-check", "w.bin")
    assert api.file_exists("someuser/api-check", "w.bin", revision=second.oid)
    assert not api.repo_exists("someuser/does-not-exist")


def test_model_card_push(hub, hf_cache):
    HfApi().create_repo("someuser/card", exist_ok=True)
    card = ModelCard("---\nlicense: mit\ntags:\n- chest-xray\n---\n# Card\n")
    card.push_to_hub("someuser/card")
    assert hub.files("someuser/card")["README.md"].startswith(b"---\nlicense: mit")
    info = HfApi().model_info("someuser/card")
    assert info.card_data.license == "mit" and "chest-xray" in info.tags
    with pytest.raises(ValueError, match="Invalid metadata"):
        HfApi().upload_file(path_or_fileobj=b"---\nlicense: [unclosed\n---\n", path_in_repo="README.md",
                            repo_id="someuser/card")


def test_timm_push_and_hf_hub_load(hub, hf_cache):
    timm = pytest.importorskip("timm")
    from timm.models import push_to_hf_hub

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2, in_chans=1).eval()
    push_to_hf_hub(model, "someuser/r18")
    stored = set(hub.files("someuser/r18"))
    assert {"config.json", "model.safetensors", "README.md"} <= stored

    loaded = timm.create_model("hf-hub:someuser/r18", pretrained=True).eval()
    assert loaded.conv1.in_channels == 1 and loaded.num_classes == 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_offline_uses_cache_and_missing_repo_raises(hub, hf_cache, monkeypatch):
    torch.manual_seed(1)
    model = TinyNet().eval()
    model.push_to_hub("someuser/offline-tiny")
    TinyNet.from_pretrained("someuser/offline-tiny")  # populates the cache
    online_requests = len(hub.requests)

    # huggingface_hub caches HF_HUB_OFFLINE in constants at import time: the env var alone is not enough.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.is_offline_mode()
    loaded = TinyNet.from_pretrained("someuser/offline-tiny").eval()
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert len(hub.requests) == online_requests  # nothing reached the emulator
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    with pytest.raises(RepositoryNotFoundError):
        TinyNet.from_pretrained("someuser/no-such-repo")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("someuser/no-such-repo", "config.json")


def test_space_and_dataset_repos(hub, hf_cache, tmp_path):
    import httpx2
    from huggingface_hub import snapshot_download

    api = HfApi()
    api.create_repo("someuser/emu-space", repo_type="space", space_sdk="gradio")
    assert api.space_info("someuser/emu-space").sdk == "gradio"
    # like the Hub, a Space needs its SDK (the client checks too; this is the raw request)
    r = httpx2.post(f"{hub.url}/api/repos/create", json={"name": "emu-nosdk", "type": "space"},
                    headers={"authorization": "Bearer hf_test"})
    assert r.status_code == 400 and "sdk" in r.json()["error"]
    api.upload_file(path_or_fileobj=b"print('hi')\n", path_in_repo="app.py", repo_id="someuser/emu-space",
                    repo_type="space")
    api.create_repo("someuser/emu-data", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"\x00\x01image", path_in_repo="train/a.jpeg", repo_id="someuser/emu-data",
                    repo_type="dataset")
    assert hub.lfs_files("someuser/emu-data", repo_type="dataset") == {"train/a.jpeg"}
    snap = snapshot_download("someuser/emu-space", repo_type="space", local_dir=tmp_path / "space")
    assert (tmp_path / "space" / "app.py").read_bytes() == b"print('hi')\n" and snap
    data = hf_hub_download("someuser/emu-data", "train/a.jpeg", repo_type="dataset")
    assert open(data, "rb").read() == b"\x00\x01image"
