"""A model folder is input: hostile config.json files, symlinks and weights files are refused before they cost time
or memory (lib.models.load_model / check_model), and the app stays up and fast with them in runs/ (issue #10).

Each hostile folder reproduces a measured case: ``img_size: 60000`` (46 s and 7 GB for one /classify),
``cnn1`` with ``img_size: 1`` and 12 stride-2 stages (hung load_model), ``widths: [6000, 6000]`` (4.3 GB), a timm
config naming ``vit_large_patch16_224`` (1.8 GB built before failing), a ``pretrained_cfg`` naming ``evil.bin``
(timm would ``torch.load`` it), a README.md symlinked to a file outside the folder (shown as the model card).
"""
from __future__ import annotations

import json
import os
import pickle
import resource
import time
from pathlib import Path

import pytest
import torch

from lib.models import ModelLoadError, check_model, create_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
SECRET = "root:x:0:0:this-line-must-never-reach-a-visitor"


class _Evil:
    """Unpickling this writes a marker file: proof that someone called torch.load/pickle on the folder's file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _rewrite(folder: Path, **changes) -> Path:
    cfg = _config(folder)
    target = cfg["xcxr"] if "xcxr" in cfg else cfg
    target.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def hostile_folders(root: Path) -> dict[str, Path]:
    """The hostile folders of issue #10 (plus a few more), each next to a real model's files."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cnn = create_model("pneumonia_cnn", img_size=32)
    res = create_model("resnet18_scratch", img_size=32)
    out: dict[str, Path] = {}

    def cnn_folder(name: str) -> Path:
        out[name] = save_model(cnn, root / name)
        return out[name]

    _rewrite(cnn_folder("huge_img_size"), img_size=60000)
    _rewrite(cnn_folder("huge_widths"), widths=[6000, 6000])
    _rewrite(cnn_folder("stride_tower"), architecture="cnn1", img_size=1, stages=[[4, 3, 2, True]] * 12)
    _rewrite(cnn_folder("dnn_too_big"), architecture="dnn1", img_size=1024, hidden=[4096])
    _rewrite(cnn_folder("bad_threshold"), threshold=[0.5] * 1000)
    _rewrite(cnn_folder("unknown_arch"), architecture="vit_large_patch16_224")
    vit = save_model(res, root / "timm_vit")
    cfg = _config(vit)
    cfg["architecture"] = "vit_large_patch16_224"
    cfg["xcxr"]["architecture"] = "vit_large_patch16_224"
    (vit / "config.json").write_text(json.dumps(cfg))
    out["timm_vit"] = vit
    evil = save_model(create_model("resnet18_pretrained", pretrained=False, img_size=32), root / "timm_evil_file")
    marker = root / "PWNED"
    with open(evil / "evil.bin", "wb") as f:
        pickle.dump(_Evil(str(marker)), f)
    cfg = _config(evil)
    cfg["pretrained_cfg"] = {**cfg.get("pretrained_cfg", {}), "file": "evil.bin"}
    cfg["xcxr"].update(pretrained=True, pretrained_file="evil.bin")
    (evil / "config.json").write_text(json.dumps(cfg))
    out["timm_evil_file"] = evil
    # symlinks: the model card and the weights pointing outside the folder
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "passwd").write_text(SECRET + "\n")
    card = cnn_folder("card_symlink")
    os.symlink(outside / "passwd", card / "README.md")
    weights = cnn_folder("weights_symlink")
    os.replace(weights / "model.safetensors", outside / "model.safetensors")
    os.symlink(outside / "model.safetensors", weights / "model.safetensors")
    # weights files that lie: a huge header length, and tensors of another shape
    header = cnn_folder("huge_header")
    (header / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    other = save_model(create_model("pneumonia_cnn", img_size=32, widths=[4, 8, 16]), root / "wrong_shapes")
    _rewrite(other, widths=[8, 16, 32])
    out["wrong_shapes"] = other
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return hostile_folders(tmp_path_factory.mktemp("hostile") / "runs")


@pytest.mark.parametrize("name, expected", [
    ("huge_img_size", "img_size = 60000 is out of bounds"),
    ("huge_widths", "widths[0] = 6000 is out of bounds"),
    ("stride_tower", "img_size = 1 is out of bounds"),
    ("dnn_too_big", "M parameters is more than"),
    ("bad_threshold", "threshold"),
    ("unknown_arch", "does not know"),
    ("timm_vit", "does not know"),
    ("weights_symlink", "symbolic link"),
    ("huge_header", "header"),
    ("wrong_shapes", "do not match"),
])
def test_hostile_folders_are_refused_fast_with_a_message(hostile, name, expected):
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=expected.replace("[", r"\[").replace("]", r"\]")) as e:
        load_model(hostile[name])
    assert time.perf_counter() - start < 2.0
    assert str(hostile[name].parent) not in str(e.value)       # no absolute server path in the message


def test_check_model_refuses_the_same_configs_without_reading_weights(hostile):
    for name in ("huge_img_size", "huge_widths", "stride_tower", "dnn_too_big", "unknown_arch", "timm_vit"):
        with pytest.raises(ModelLoadError):
            check_model(hostile[name])
    assert check_model(ROOT / "models" / "pneumonia_cnn")["parameters"] == 18218


def test_a_config_naming_a_file_never_gets_it_loaded(hostile):
    # the evil folder's config asks for ImageNet weights from evil.bin (a pickle that writes a marker when loaded):
    # load_model builds from the config's options without any weight-fetching option, then reads model.safetensors
    model = load_model(hostile["timm_evil_file"])
    assert not (hostile["timm_evil_file"].parent / "PWNED").exists()
    assert model.xcxr_config["architecture"] == "resnet18_pretrained"
    assert model.xcxr_config["pretrained"] is True                # what the run was, kept for the record


def test_a_symlinked_model_card_is_never_read(hostile):
    from space.tabs.report import model_card

    assert load_model(hostile["card_symlink"]) is not None        # the model itself is fine
    assert SECRET not in model_card(hostile["card_symlink"])


def test_half_precision_weights_load_as_float32(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = create_model("pneumonia_cnn", img_size=32).eval()
    folder = save_model(model, tmp_path / "half")
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    back = load_model(folder)
    assert back.features[0].conv1.weight.dtype == torch.float32
    assert torch.allclose(back.features[0].conv1.weight, model.features[0].conv1.weight, atol=1e-3)


def test_the_app_starts_and_serves_with_hostile_folders_in_runs(hostile, monkeypatch):
    """All hostile folders in runs/: the app is up fast, each answers within 20 s (refused), the bundled model keeps
    answering within 2 s, the symlinked card is never shown, and the process stays far below 3 GB."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from conftest import launched_app  # noqa: PLC0415 (tests/ is on sys.path)

    monkeypatch.setenv("XCXR_RUNS_DIR", str(next(iter(hostile.values())).parent))
    start = time.perf_counter()
    with launched_app() as demo:
        assert time.perf_counter() - start < 60
        client = Client(demo.local_url, verbose=False)
        example = str(ROOT / "examples" / "chest_xray_test" / "PNEUMONIA" /
                      sorted(os.listdir(ROOT / "examples" / "chest_xray_test" / "PNEUMONIA"))[0])
        for name in hostile:
            if name in ("timm_evil_file", "card_symlink"):
                continue  # harmless: they load (from model.safetensors only)
            t = time.perf_counter()
            with pytest.raises(AppError, match="unavailable|unknown model"):
                client.predict(handle_file(example), f"run:{name}", None, api_name="/classify")
            assert time.perf_counter() - t < 20
            t = time.perf_counter()
            client.predict(handle_file(example), "pneumonia_cnn", None, api_name="/classify")
            assert time.perf_counter() - t < 2.0
        assert not (next(iter(hostile.values())).parent / "PWNED").exists()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gb < 3.0


def test_files_that_travel_with_a_hub_model_are_size_checked_before_download(hub, hf_cache, tmp_path):
    """The Model report reads a Hub model's card and history through lib.models.model_file: the Hub's size is
    checked first, then the file comes from the cache (the Space preloads its model repos)."""
    from lib.models import model_file, push_folder
    from space.tabs.report import model_card

    folder = save_model(create_model("pneumonia_cnn", img_size=32), tmp_path / "m")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A card from the Hub\n")
    (folder / "history.json").write_text("[" + ",".join(["{}"] * 200_000) + "]")   # ~600 KB
    push_folder(folder, "teacher/report-card")
    model = load_model("teacher/report-card")
    assert model_card(model).startswith("# A card from the Hub")
    with pytest.raises(ModelLoadError, match="more than"):
        model_file(model, "history.json", 100_000)
    with pytest.raises(ModelLoadError, match="no history2.json"):
        model_file(model, "history2.json", 100_000)
