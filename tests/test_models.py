"""lib.models: the registry, every architecture, saving/loading, layers, pretrained-weight handling."""
from __future__ import annotations

import pytest
import safetensors.torch
import timm
import torch

from lib.models import (ModelLoadError, PretrainedWeightsUnavailable, conv_layers, count_parameters, create_model,
                        first_layer, get_config, list_models, load_model, predict_proba, save_model, target_layer)

ALL = list_models()
SIZE = 128  # small enough to be fast, large enough for every architecture's strides (cnn1 needs ≥ 107)


def build(name: str, **cfg) -> torch.nn.Module:
    if name.startswith("resnet18_pretrained"):
        cfg.setdefault("pretrained", False)  # no download in tests
    torch.manual_seed(0)
    return create_model(name, img_size=cfg.pop("img_size", SIZE), **cfg)


def test_registry_lists_the_zoo():
    assert ALL == ["cnn1", "cnn2", "dnn1", "dnn2", "pneumonia_cnn", "resnet18_pretrained",
                   "resnet18_pretrained_frozen_stem", "resnet18_scratch"]


def test_course_cnn_has_exactly_18218_parameters():
    m = create_model("pneumonia_cnn")
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 18218
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is None and c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32]


def test_course_cnn_fine_tuning_options():
    m = create_model("pneumonia_cnn", widths=(16, 32, 64, 64), dropout=0.3)
    assert len(m.features) == 4 and m.dropout.p == 0.3 and get_config(m)["target_layer"] == "features.3"
    assert count_parameters(m) > 18218
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    with pytest.raises(ValueError, match="dropout"):
        create_model("pneumonia_cnn", dropout=1.5)


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_no_nan_and_gradients_flow(name):
    m = build(name)
    cfg = get_config(m)
    x = torch.randn(3, cfg["in_chans"], SIZE, SIZE)
    out = m(x)
    assert out.shape == (3, cfg["num_classes"]) and torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    _, first = first_layer(m)
    assert first.weight.grad is not None or not first.weight.requires_grad


@pytest.mark.parametrize("name", ALL)
def test_config_carries_preprocessing_and_layers(name):
    m = build(name)
    cfg = get_config(m)
    assert cfg["architecture"] == name and cfg["labels"] == ["NORMAL", "PNEUMONIA"]
    assert cfg["img_size"] == SIZE and len(cfg["mean"]) == len(cfg["std"]) in (1, cfg["in_chans"])
    assert cfg["num_classes"] == (2 if name == "pneumonia_cnn" else 1)
    assert cfg["in_chans"] == (3 if name.startswith("resnet18_pretrained") else 1)
    first_layer(m)
    if name.startswith("dnn"):
        with pytest.raises(ValueError, match="no spatial feature maps"):
            target_layer(m)
    else:
        lname, layer = target_layer(m)
        feats = {}
        layer.register_forward_hook(lambda mod, i, o: feats.setdefault("x", o))
        m.eval()(torch.randn(1, cfg["in_chans"], SIZE, SIZE))
        assert feats["x"].ndim == 4 and feats["x"].shape[-1] >= 1, lname
        assert conv_layers(m)


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_identical_logits(name, tmp_path):
    m = build(name).eval()
    x = torch.randn(2, get_config(m)["in_chans"], SIZE, SIZE)
    save_model(m, tmp_path / name)
    files = sorted(p.name for p in (tmp_path / name).iterdir())
    assert files == ["config.json", "model.safetensors"]  # safetensors only, never pickle
    back = load_model(tmp_path / name)
    assert not back.training and get_config(back) == get_config(m)
    assert torch.equal(back(x), m(x))
    assert [p.requires_grad for p in back.parameters()] == [p.requires_grad for p in m.parameters()]


def test_report_flatten_sizes_are_computed_from_input_size():
    assert get_config(create_model("cnn1", img_size=512))["flat_features"] == 1024  # the report's number at 512 px
    assert get_config(create_model("cnn1", img_size=224))["flat_features"] == 64
    c2 = get_config(create_model("cnn2", img_size=512))["flat_features"]
    assert c2 == 256 * 4 * 4 and get_config(create_model("cnn2", img_size=224))["flat_features"] == 256 * 2 * 2
    assert create_model("dnn1", img_size=32).layers[0].linear.in_features == 32 * 32
    with pytest.raises(ValueError, match="too small.*img_size ≥ 107"):
        create_model("cnn1", img_size=64)


def test_bad_names_and_options_are_named():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*pneumonia_cnn"):
        create_model("resnet50")
    with pytest.raises(TypeError, match="widht.*accepted options"):
        create_model("pneumonia_cnn", widht=(8, 16))


def test_pretrained_offline_gives_a_clear_message(monkeypatch):
    import huggingface_hub.constants as c
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained_file"):
        create_model("resnet18_pretrained")
    with pytest.raises(PretrainedWeightsUnavailable, match="does not exist"):
        create_model("resnet18_pretrained", pretrained_file="/nonexistent/resnet18.safetensors")


def test_pretrained_weights_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    imagenet = timm.create_model("resnet18", pretrained=False)  # stands in for the ImageNet checkpoint
    path = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file(imagenet.state_dict(), path)
    for name in ("resnet18_pretrained", "resnet18_pretrained_frozen_stem"):
        m = create_model(name, pretrained_file=str(path))
        assert torch.equal(m.conv1.weight, imagenet.conv1.weight)       # 3-channel stem kept as is
        assert torch.equal(m.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
        assert m.fc.out_features == 1                                  # new head
        assert m.conv1.weight.requires_grad == (name == "resnet18_pretrained")
    scratch = create_model("resnet18_scratch")
    assert scratch.conv1.in_channels == 1


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"architecture": "vgg16"}')
    with pytest.raises(ModelLoadError, match="vgg16"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="not a Hub repo id"):
        load_model("no/such/folder/here")
    m = build("pneumonia_cnn")
    save_model(m, tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json").read_text().replace('"widths": [\n    8,', '"widths": [\n    4,')
    (tmp_path / "m" / "config.json").write_text(cfg)
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(tmp_path / "m")


def test_predict_proba_matches_manual_softmax_and_restores_mode():
    m = build("pneumonia_cnn").train()
    images = torch.randint(0, 256, (5, 1, SIZE, SIZE), dtype=torch.uint8)
    p = predict_proba(m, images, batch_size=2)
    assert m.training
    m.eval()
    x = (images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(p, torch.softmax(m(x), 1)[:, 1], atol=1e-6)
    one = build("cnn1").eval()
    assert torch.allclose(predict_proba(one, images), torch.sigmoid(one((images.float() / 255 - 0.5) / 0.25)[:, 0]),
                          atol=1e-6)
