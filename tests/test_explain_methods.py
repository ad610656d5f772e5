"""lib.explain: Captum wrappers (attribution), overlays, first-layer filters, feature maps and the course figures.

Every zoo model × every attribution method: shapes, no NaN, no hook left, the caller's mode restored. Golden checks
against Captum called directly; the one-logit class-0 = −class-1 identity; one overlay pixel in RGB order.

Small on purpose (2 shared CPU cores): 64 px images (112 px for cnn1/cnn2, whose strides need ≥ 107), batch 2,
few integration steps / noise samples / occlusion windows.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from matplotlib.figure import Figure

from lib.explain.attribution import ClassScoreModel, attribute, baseline_tensor, list_methods
from lib.explain.core import prepare
from lib.explain.feature_maps import default_stages, feature_map_grid, feature_maps, feature_maps_figure
from lib.explain.figures import gradcam_figure, saliency_outcomes_figure
from lib.explain.filters import filter_grid, filter_summary, filter_weights
from lib.explain.overlay import colorize, overlay, overlay_figure, to_png_bytes
from lib.models import create_model, get_config, list_models

# Captum announces GuidedBackprop's ReLU hooks on every call; that they are gone afterwards is what we test.
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations:UserWarning")

MODELS = list_models()
METHODS = list_methods()
GRADCAM_FAMILY = {"layer_gradcam"}
DNNS = {"dnn1", "dnn2"}
#: Cheap settings for the expensive methods (the defaults are tested for their values, not run at 224 px here).
FAST = {"integrated_gradients": dict(n_steps=4), "smoothgrad": dict(nt_samples=3),
        "occlusion": dict(sliding_window=16, stride=16)}
PNG = b"\x89PNG\r\n\x1a\n"


def size_for(name: str) -> int:
    return 112 if name in ("cnn1", "cnn2") else 64


def build(name: str, **cfg) -> nn.Module:
    if name.startswith("resnet18_pretrained"):
        cfg.setdefault("pretrained", False)  # no download in tests
    torch.manual_seed(0)
    return create_model(name, img_size=cfg.pop("img_size", size_for(name)), **cfg)


def inputs(model: nn.Module, b: int = 2, seed: int = 1) -> torch.Tensor:
    cfg = get_config(model)
    g = torch.Generator().manual_seed(seed)
    s = cfg["img_size"]
    return prepare(model, torch.randint(0, 256, (b, 1, s, s), dtype=torch.uint8, generator=g))


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry any forward, forward-pre or backward hook."""
    left = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, attr, None):
                left.append(f"{name or '<root>'}.{attr}")
    g = torch.nn.modules.module
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        if getattr(g, attr, None):
            left.append(f"global {attr}")
    return left


def all_training(model: nn.Module) -> bool:
    return all(m.training for m in model.modules())


# --- attribute: every model × every method --------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MODELS)
def test_every_model_every_method(name, method):
    model = build(name)
    model.train()                     # the caller's mode: must be restored
    grads_before = [p.requires_grad for p in model.parameters()]
    x = inputs(model)
    x_before = x.clone()
    if name in DNNS and method in GRADCAM_FAMILY:
        with pytest.raises(ValueError, match="fully connected.*no spatial feature maps"):
            attribute(model, x, None, method=method)
    else:
        a = attribute(model, x, None, method=method, **FAST.get(method, {}))
        s = get_config(model)["img_size"]
        assert a.shape == (2, 2, s, s) and a.dtype == torch.float32 and not a.requires_grad
        assert torch.isfinite(a).all()
        one = attribute(model, x, 1, method=method, **FAST.get(method, {}))
        assert one.shape == (2, 1, s, s)
        if method != "smoothgrad":    # deterministic methods: one target = the same slice of all targets
            torch.testing.assert_close(one[:, 0], a[:, 1], rtol=1e-5, atol=1e-6)
    assert hooks_left(model) == []
    assert all_training(model)
    assert [p.requires_grad for p in model.parameters()] == grads_before   # frozen stem stays frozen
    assert torch.equal(x, x_before) and not x.requires_grad                # the caller's images untouched


@pytest.mark.parametrize("name", ["cnn1", "dnn1", "resnet18_scratch"])
def test_one_logit_class0_is_the_negated_logit(name):
    """One sigmoid logit z: class 0 explains −z, so signed, linear-in-the-score methods give exactly −attr(class 1)."""
    model = build(name)
    assert get_config(model)["num_classes"] == 1
    x = inputs(model)
    for method, opts in [("saliency", dict(abs=False)), ("integrated_gradients", dict(n_steps=4)),
                         ("occlusion", FAST["occlusion"])]:
        a = attribute(model, x, [0, 1], method=method, **opts)
        torch.testing.assert_close(a[:, 0], -a[:, 1], rtol=0, atol=1e-6, msg=method)
        assert a[:, 1].abs().max() > 0, method
    a = attribute(model, x, [0, 1], method="saliency", abs=True)   # |∂(−z)/∂x| = |∂z/∂x|
    torch.testing.assert_close(a[:, 0], a[:, 1], rtol=0, atol=0)


def test_golden_integrated_gradients_equals_captum_called_directly():
    """Two-logit model: our wrapper = IntegratedGradients(model) with the black baseline, class by class."""
    model = build("pneumonia_cnn").eval()
    x = inputs(model)
    ours = attribute(model, x, [0, 1], method="integrated_gradients", n_steps=8, internal_batch_size=5)
    black = ((0.0 - 0.5) / 0.25)                 # the course CNN normalises with mean 0.5, std 0.25
    assert torch.equal(baseline_tensor(model, x, "black"), torch.full((1, 1, 1, 1), black))
    ig = IntegratedGradients(model)
    for c in (0, 1):
        ref = ig.attribute(x.clone().requires_grad_(), baselines=torch.full_like(x, black), target=c, n_steps=8)
        torch.testing.assert_close(ours[:, c], ref[:, 0].detach(), rtol=1e-5, atol=1e-6)


def test_golden_integrated_gradients_completeness():
    """IG sums to score(x) − score(baseline) (Sundararajan et al.): checks the baseline and the logit target."""
    model = build("pneumonia_cnn", img_size=32).eval()
    x = inputs(model, b=1)
    a = attribute(model, x, [0, 1], method="integrated_gradients", n_steps=64)
    with torch.no_grad():
        base = baseline_tensor(model, x, "black").expand_as(x)
        delta = (model(x) - model(base))[0]
    torch.testing.assert_close(a.sum(dim=(2, 3))[0], delta, rtol=2e-2, atol=2e-3)


def test_golden_saliency_and_layer_gradcam_equal_captum_on_a_one_logit_model():
    model = build("cnn1").eval()
    x = inputs(model)
    # Captum on the raw one-logit model: target 0 is the (only) logit = our class 1.
    sal = Saliency(model).attribute(x.clone().requires_grad_(), target=0, abs=True)
    torch.testing.assert_close(attribute(model, x, 1, method="saliency")[:, 0], sal[:, 0], rtol=0, atol=0)
    layer = dict(model.named_modules())[get_config(model)["target_layer"]]
    cam = LayerGradCam(model, layer).attribute(x, target=0, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")
    torch.testing.assert_close(attribute(model, x, 1, method="layer_gradcam")[:, 0], cam[:, 0].detach(),
                               rtol=1e-5, atol=1e-7)
    # … and the NORMAL map is Grad-CAM of −z: the wrapper module, not a re-implementation.
    cam0 = LayerGradCam(ClassScoreModel(model), layer).attribute(x, target=0, relu_attributions=True)
    cam0 = LayerAttribution.interpolate(cam0, x.shape[-2:], "bilinear")
    torch.testing.assert_close(attribute(model, x, 0, method="layer_gradcam")[:, 0], cam0[:, 0].detach())


def test_layer_gradcam_is_relu_and_bilinear_by_default_and_options_are_explicit():
    model = build("pneumonia_cnn")
    x = inputs(model)
    assert attribute(model, x, None, method="layer_gradcam").min() >= 0          # ReLU'd
    signed = attribute(model, x, None, method="layer_gradcam", relu=False)
    assert signed.min() < 0                                                      # Captum's raw signed maps
    nearest = attribute(model, x, None, method="layer_gradcam", interpolate_mode="nearest")
    assert not torch.allclose(nearest, attribute(model, x, None, method="layer_gradcam"))
    a = attribute(model, x, 1, method="layer_gradcam", layer="features.1")
    assert a.shape == (2, 1, 64, 64)


def test_three_channel_reduction_is_explicit():
    model = build("resnet18_pretrained")
    x = inputs(model)
    s = attribute(model, x, 1, method="saliency", abs=False)
    m = attribute(model, x, 1, method="saliency", abs=False, channel_reduce="mean")
    mx = attribute(model, x, 1, method="saliency", abs=False, channel_reduce="max_abs")
    torch.testing.assert_close(s, 3 * m)
    assert (mx >= s.abs() / 3 - 1e-7).all() and (mx >= 0).all()
    # Occlusion's window covers all three channels, so every channel carries the same value: default mean.
    o = attribute(model, x, 1, method="occlusion", **FAST["occlusion"])
    o_sum = attribute(model, x, 1, method="occlusion", channel_reduce="sum", **FAST["occlusion"])
    torch.testing.assert_close(o_sum, 3 * o)


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone():
    model = build("pneumonia_cnn")
    x = inputs(model, b=1)
    state = torch.get_rng_state()
    a = attribute(model, x, None, method="smoothgrad", nt_samples=3)
    assert torch.equal(torch.get_rng_state(), state)
    # same seed → same noise, whatever the batching (up to float rounding of batched convolutions)
    torch.testing.assert_close(a, attribute(model, x, None, method="smoothgrad", nt_samples=3,
                                            nt_samples_batch_size=1), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(a, attribute(model, x, None, method="smoothgrad", nt_samples=3, seed=1))


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "layer_gradcam", "integrated_gradients"])
def test_no_hook_left_after_an_exception(method, monkeypatch):
    model = build("resnet18_scratch")        # nn.ReLU modules: GuidedBackprop really registers its hooks
    model.train()
    x = inputs(model)

    def boom(*_a, **_k):
        raise RuntimeError("boom in the head")

    monkeypatch.setattr(model.fc, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, x, None, method=method, **FAST.get(method, {}))
    assert hooks_left(model) == []
    assert all_training(model)


def test_works_under_no_grad_and_inference_mode():
    model = build("pneumonia_cnn")
    with torch.no_grad():
        a = attribute(model, inputs(model), None, method="saliency")
    with torch.inference_mode():
        x = inputs(model)                         # an inference tensor
        b = attribute(model, x, None, method="integrated_gradients", n_steps=4)
    assert a.abs().sum() > 0 and b.abs().sum() > 0


def test_bad_arguments_name_the_argument_and_the_choices():
    model = build("pneumonia_cnn")
    x = inputs(model)
    with pytest.raises(ValueError, match="method must be one of .*saliency"):
        attribute(model, x, None, method="gradient_shap")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['steps'\].*n_steps"):
        attribute(model, x, None, method="integrated_gradients", steps=4)
    with pytest.raises(ValueError, match="classes must be indices in 0..1"):
        attribute(model, x, [2])
    with pytest.raises(TypeError, match="float tensor.*prepare"):
        attribute(model, (x * 0).to(torch.uint8))
    with pytest.raises(ValueError, match=r"shape \(B≥1, 1, H, W\)"):
        attribute(model, x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="channel_reduce must be one of"):
        attribute(model, x, None, channel_reduce="median")
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        attribute(model, x, None, method="integrated_gradients", n_steps=0)
    with pytest.raises(ValueError, match="baseline must be 'black', 'mean'"):
        attribute(model, x, None, method="occlusion", baseline="white")
    with pytest.raises(ValueError, match="sliding_window must be ≤"):
        attribute(model, x, None, method="occlusion", sliding_window=65)
    with pytest.raises(ValueError, match="interpolate_mode must be one of"):
        attribute(model, x, None, method="layer_gradcam", interpolate_mode="linear")
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        attribute(model, x, None, method="layer_gradcam", layer="nope")
    dnn = build("dnn1")
    with pytest.raises(ValueError, match="no spatial feature maps"):
        attribute(dnn, inputs(dnn), None, method="layer_gradcam", layer="layers.0.act")


def test_list_methods():
    assert list_methods() == ["saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "occlusion",
                              "layer_gradcam"]


# --- overlay ----------------------------------------------------------------------------------------------------

def rgb255(cmap: str, v: float) -> list[int]:
    return np.round(np.array(matplotlib.colormaps[cmap](v)[:3]) * 255).astype(np.uint8).tolist()


def test_overlay_pixel_is_rgb_not_bgr():
    grey = np.zeros((8, 8), np.uint8)
    heat = np.zeros((8, 8))
    heat[2, 3] = 1.0                                     # the max pixel
    out = overlay(grey, heat, cmap="jet", alpha=1.0)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[2, 3].tolist() == rgb255("jet", 1.0) == [128, 0, 0]   # jet's top is dark red: R first
    assert out[0, 0].tolist() == rgb255("jet", 0.0) == [0, 0, 128]   # jet's bottom is dark blue
    # alpha blends in RGB: 0.5·grey + 0.5·colour
    out = overlay(np.full((8, 8), 200, np.uint8), heat, cmap="jet", alpha=0.5)
    assert out[2, 3].tolist() == [164, 100, 100]
    assert overlay(grey + 77, heat, alpha=0.0)[5, 5].tolist() == [77, 77, 77]


def test_overlay_resizes_scales_and_never_gives_nan():
    grey = torch.zeros(1, 16, 16, dtype=torch.uint8)     # torch and (1, H, W) accepted
    out = overlay(grey, torch.rand(4, 4), cmap="viridis")
    assert out.shape == (16, 16, 3)
    const = overlay(np.zeros((6, 6), np.uint8), np.full((6, 6), 3.0), cmap="viridis", alpha=1.0)
    assert (const == np.array(rgb255("viridis", 0.0), np.uint8)).all()      # constant map → low end, no NaN
    # a fixed scale: 0.5 on a 0..1 scale is the colour map's middle
    half = overlay(np.zeros((2, 2), np.uint8), np.full((2, 2), 0.5), cmap="viridis", alpha=1.0, vmin=0, vmax=1)
    assert half[0, 0].tolist() == rgb255("viridis", 0.5)
    assert np.allclose(colorize(np.array([[0.0, 1.0]]), "jet")[0, 1], matplotlib.colormaps["jet"](1.0)[:3])


def test_overlay_figure_and_png():
    grey = np.zeros((32, 32), np.uint8)
    fig = overlay_figure(grey, np.random.rand(4, 4), title="t", colorbar_label="logit evidence")
    assert isinstance(fig, Figure) and len(fig.axes) == 2           # image + colour bar
    assert len(overlay_figure(grey, np.random.rand(4, 4), colorbar=False).axes) == 1
    assert to_png_bytes(fig).startswith(PNG)
    assert to_png_bytes(overlay(grey, np.random.rand(32, 32))).startswith(PNG)


def test_overlay_bad_arguments():
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 4)), alpha=1.5)
    with pytest.raises(ValueError, match="cmap must be a matplotlib colour map"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 4)), cmap="nope")
    with pytest.raises(TypeError, match="uint8"):
        overlay(np.zeros((4, 4), np.int32), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="vmax must be ≥ vmin"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 4)), vmin=1, vmax=0)


# --- filters ----------------------------------------------------------------------------------------------------

def test_filter_grid_one_channel_golden_colours():
    model = build("pneumonia_cnn")
    conv = model.features[0].conv1                  # 8 kernels 3×3 → zoom 10 (30 px tiles), 3 columns, gap 1
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
        conv.weight[1, 0, 0, 0] = -0.5
    img = filter_grid(model, scale="common", cmap="RdBu_r")
    assert img.shape == (3 * 31 - 1, 3 * 31 - 1, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == rgb255("RdBu_r", 1.0)      # +max → top of the diverging map
    assert img[9, 31].tolist() == rgb255("RdBu_r", 0.25)    # −0.5 on the common ±1 scale (second tile)
    assert img[15, 15].tolist() == rgb255("RdBu_r", 0.5)    # 0 → the middle
    assert img[0, 30].tolist() == [64, 64, 64]               # the gap between tiles
    per = filter_grid(model, scale="per_filter", cmap="RdBu_r")
    assert per[0, 31].tolist() == rgb255("RdBu_r", 0.0)     # −0.5 is its own filter's −max
    assert filter_weights(model)[1].shape == (8, 1, 3, 3)


def test_filter_grid_three_channels_with_the_channel_sum():
    model = build("resnet18_pretrained")
    one = filter_grid(model, per_channel=False)             # Σ channels only
    assert one.shape == (8 * 29 - 1, 8 * 29 - 1, 3)          # 64 kernels 7×7, zoom 4, 8 columns, gap 1
    panel_w = one.shape[1]
    full = filter_grid(model)                               # R, G, B and Σ panels, 4 px apart
    assert full.shape == (one.shape[0], 4 * panel_w + 3 * 4, 3)
    no_sum = filter_grid(model, include_channel_sum=False)
    assert no_sum.shape == (one.shape[0], 3 * panel_w + 2 * 4, 3)
    assert "3 input channels" in filter_summary(model) and "Σ channels" in filter_summary(model)
    fig = filter_grid(model, as_figure=True, scale="per_filter")
    assert isinstance(fig, Figure) and to_png_bytes(fig).startswith(PNG)


def test_filter_grid_dnn_rows_as_images():
    model = build("dnn1", img_size=32)
    img = filter_grid(model, max_filters=16)                # 16 rows of 32×32, zoom 1, 4 columns
    assert img.shape == (4 * 33 - 1, 4 * 33 - 1, 3)
    assert filter_summary(model, max_filters=16).endswith("(first 16 of 512)")
    assert filter_weights(model)[1].shape == (512, 1, 32, 32)
    assert isinstance(filter_grid(model, as_figure=True, max_filters=4), Figure)


@pytest.mark.parametrize("name", MODELS)
def test_filter_grid_every_model(name):
    img = filter_grid(build(name), max_filters=16)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.size > 0


def test_filter_grid_bad_arguments():
    model = build("pneumonia_cnn")
    with pytest.raises(ValueError, match=r"scale must be one of \['common', 'per_filter'\]"):
        filter_grid(model, scale="global")
    with pytest.raises(ValueError, match="max_filters must be a positive int"):
        filter_grid(model, max_filters=0)


# --- feature maps -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_feature_maps_every_model(name):
    model = build(name)
    model.train()
    x = inputs(model, b=1)
    stages = feature_maps(model, x, top_k=4)
    assert [s.name for s in stages] == default_stages(model)
    for s in stages:
        assert s.maps.ndim == (1 if name in DNNS else 3) and len(s.maps) == len(s.channels) <= 4
        assert torch.isfinite(s.maps).all()
        means = s.maps if s.maps.ndim == 1 else s.maps.mean(dim=(1, 2))
        assert (means[:-1] >= means[1:]).all()              # sorted by mean activation, largest first
        grid = feature_map_grid(s.maps, tile=16)
        assert grid.dtype == np.uint8 and grid.ndim == 3
    assert hooks_left(model) == [] and all_training(model)
    assert to_png_bytes(feature_maps_figure(stages, title=name)).startswith(PNG)


def test_feature_maps_golden_top_channels():
    model = build("pneumonia_cnn").eval()
    x = inputs(model, b=1)
    with torch.no_grad():
        ref = model.features[0](x)[0]                        # after the first ConvBlock (with its pool)
    top = ref.mean(dim=(1, 2)).argsort(descending=True)[:3].tolist()
    s = feature_maps(model, x[0], top_k=3)[0]                # (C, H, W) accepted too
    assert s.name == "features.0" and s.channels == top
    torch.testing.assert_close(s.maps, ref[top])
    assert default_stages(build("resnet18_scratch")) == ["act1", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def test_feature_maps_bad_arguments():
    model = build("pneumonia_cnn")
    x = inputs(model, b=2)
    with pytest.raises(ValueError, match="ONE image"):
        feature_maps(model, x)
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        feature_maps(model, x[:1], top_k=0)
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        feature_maps(model, x[:1], stages=["nope"])
    with pytest.raises(TypeError, match="float tensor"):
        feature_maps(model, torch.zeros(1, 1, 64, 64, dtype=torch.uint8))
    res = build("resnet18_scratch")
    with pytest.raises(ValueError, match="modified in place"):
        feature_maps(res, inputs(res, b=1), stages=["layer1.0.bn2"])     # overwritten by `+= shortcut`
    assert hooks_left(res) == []


# --- figures ----------------------------------------------------------------------------------------------------

def uint8_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)


def test_gradcam_figure_ten_images_both_classes():
    model = build("pneumonia_cnn")
    imgs = uint8_images(10, 72)                               # any size: the model's preprocessing resizes
    fig = gradcam_figure(model, imgs, labels=[0] * 5 + [1] * 5)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 10 * 3                             # 10 rows × (image, NORMAL, PNEUMONIA)
    assert len(fig.axes) == 10 * 3 + 1                       # + the colour bar
    titles = [ax.get_title() for ax in fig.axes]
    assert "Grad-CAM NORMAL" in titles and "Grad-CAM PNEUMONIA" in titles
    assert any(t.startswith("true: PNEUMONIA\nP(pneumonia) = ") for t in titles)
    assert len(to_png_bytes(fig)) > 10_000
    assert hooks_left(model) == []


def test_gradcam_figure_one_logit_model_and_options():
    model = build("cnn1")
    fig = gradcam_figure(model, uint8_images(2, 112).numpy(), labels=np.array([1, 0]), normalise="per_map",
                         colorbar=False)
    assert to_png_bytes(fig).startswith(PNG)
    with pytest.raises(ValueError, match="fully connected"):
        gradcam_figure(build("dnn1"), uint8_images(2, 64))
    with pytest.raises(ValueError, match="normalise must be one of"):
        gradcam_figure(model, uint8_images(2, 112), normalise="global")
    with pytest.raises(ValueError, match="labels must have one entry per image"):
        gradcam_figure(model, uint8_images(2, 112), labels=[1])
    with pytest.raises(TypeError, match="uint8"):
        gradcam_figure(model, uint8_images(2, 112).float())


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_saliency_outcomes_figure(method):
    model = build("pneumonia_cnn")
    imgs = uint8_images(3, 64)
    examples = {"TP": imgs[0, 0].numpy(), "TN": imgs[1], "FP": None, "FN": imgs[2, 0]}   # FP: none found
    fig = saliency_outcomes_figure(model, examples, method=method, **FAST.get(method, {}))
    titles = [ax.get_title() for ax in fig.axes]
    assert "FP: none at this threshold" in titles and any(t.startswith("TP: P(pneumonia)") for t in titles)
    assert len(to_png_bytes(fig)) > 5_000
    assert hooks_left(model) == []


def test_saliency_outcomes_figure_bad_arguments():
    model = build("pneumonia_cnn")
    img = uint8_images(1, 64)[0, 0]
    with pytest.raises(ValueError, match=r"examples keys must be among \['TP', 'TN', 'FP', 'FN'\]"):
        saliency_outcomes_figure(model, {"TPR": img})
    with pytest.raises(ValueError, match="method must be one of"):
        saliency_outcomes_figure(model, {"TP": img}, method="lime")
    with pytest.raises(ValueError, match="target must be 'predicted', 0 or 1"):
        saliency_outcomes_figure(model, {"TP": img}, target=2)
