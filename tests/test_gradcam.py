"""lib.explain.gradcam and lib.explain.postprocess: the seven-step Grad-CAM, its one-pass fast path, HiResCAM, and
the explicit post-processing.

References: Captum ``LayerGradCam`` (relu + bilinear) and pytorch-grad-cam ``GradCAM`` (test-only dependency), a
hand-set model with hand-computed numbers, and the per-class loop for every zoo model.

Tolerances are *relative to the largest value of the reference map*: randomly initialised networks give maps of
1e-5 … 1e-2, so an absolute 1e-6 would pass vacuously.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from lib.explain import cam_head, gradcam, gradcam_reference, normalise, postprocess, prepare, upsample
from lib.models import create_model, get_config, get_layer, list_models

SIZE = 128  # the smallest convenient size every zoo CNN accepts (cnn1 needs ≥ 107)
ALL = list_models()
WITH_LAYER = [n for n in ALL if not n.startswith("dnn")]
DNNS = [n for n in ALL if n.startswith("dnn")]
REFERENCE_MODELS = ["pneumonia_cnn", "cnn1", "resnet18_scratch"]


def build(name: str, **cfg) -> nn.Module:
    if name.startswith("resnet18_pretrained"):
        cfg.setdefault("pretrained", False)   # no download in tests
    torch.manual_seed(0)
    return create_model(name, img_size=cfg.pop("img_size", SIZE), **cfg).eval()


def images_for(model: nn.Module, n: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, get_config(model)["in_chans"], SIZE, SIZE, generator=g)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float, abs_: float = 1e-6) -> None:
    """max |actual − expected| ≤ abs_ (the issue's 1e-6) and ≤ rel × max |expected| (the meaningful bound)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.isfinite(actual).all()
    scale = float(expected.abs().max())
    err = float((actual - expected).abs().max())
    assert scale > 0, "reference map is all zero: the comparison would be vacuous"
    assert err <= abs_ and err <= rel * scale, f"max error {err:.3g} > {rel:g} × max {scale:.3g} (or > {abs_:g})"


# float32: signed maps sum hundreds of channel terms that cancel, and the batched (vmap) backward sums in another
# order than the plain one, so agreement is ~1e-6 of the map's range. float64 shows the algorithms are the same.
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


class Negated(nn.Module):
    """``-model(x)`` with the model's config: its class-1 map is the map of the negated logit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        cfg = dict(get_config(model))
        cfg["target_layer"] = f"inner.{cfg['target_layer']}"
        cfg["cam_head"] = None  # a model declares its own CAM head; the negation after the head breaks the identity
        self.xcxr_config = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.inner(x)


def all_hooks(model: nn.Module) -> list[tuple[str, str]]:
    found = [(name, kind) for name, m in model.named_modules()
             for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
             if getattr(m, kind)]
    from torch.nn.modules import module as M
    found += [("<global>", k) for k in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                        "_global_backward_hooks", "_global_backward_pre_hooks") if getattr(M, k)]
    return found


# --- references: Captum and pytorch-grad-cam ------------------------------------------------------------------

def captum_maps(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    layer = get_layer(model, get_config(model)["target_layer"])
    one_logit = get_config(model)["num_classes"] == 1
    out = []
    for c in classes:
        # one-logit model: class 1 = +logit (target 0), class 0 = -logit (the negated model's target 0)
        fn = (lambda t: -model(t)) if one_logit and c == 0 else model
        attr = LayerGradCam(fn, layer).attribute(x, target=0 if one_logit else c, relu_attributions=True)
        out.append(LayerAttribution.interpolate(attr, x.shape[-2:], interpolate_mode="bilinear"))
    return torch.cat(out, dim=1).detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_equals_captum_layergradcam_relu_bilinear(name, dtype):
    model = build(name).to(dtype)
    x = images_for(model, 3).to(dtype)
    theirs = captum_maps(model, x, [0, 1])
    assert_close(gradcam(model, x, fast=False), theirs, rel=1e-6)     # the same arithmetic as Captum: ~exact
    assert_close(gradcam(model, x), theirs, rel=TOL[dtype])            # the one-pass path: another summation order


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_equals_pytorch_grad_cam_after_min_max(name):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build(name)
    x = images_for(model, 3)
    one_logit = get_config(model)["num_classes"] == 1
    layer = get_layer(model, get_config(model)["target_layer"])
    peaks = []
    for c in (0, 1):
        target = (lambda out: -out[0]) if one_logit and c == 0 else ClassifierOutputTarget(0 if one_logit else c)
        with GradCAM(model=model, target_layers=[layer]) as cam:
            theirs = torch.from_numpy(cam(input_tensor=x, targets=[target] * len(x)))[:, None]
        # pytorch-grad-cam: ReLU → min-max per image at the layer's resolution → cv2 bilinear resize → min-max
        # again (in aggregate_multi_layers). The same stages with ours:
        low = gradcam(model, x, classes=[c], upsample=None)                           # ReLU'd, (B, 1, h, w)
        ours = normalise(upsample(normalise(low, "per_map"), x.shape[-2:], "bilinear"), "per_map")
        assert float((ours - theirs).abs().max()) <= 1e-5
        peaks.append(float(theirs.amax()))
    # not a vacuous comparison of all-zero maps (a random-init one-logit net may show no evidence for one class)
    assert max(peaks) == pytest.approx(1.0, abs=1e-5)


# --- the fast path equals the per-class loop -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", WITH_LAYER)
@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_fast_path_equals_per_class_loop_for_every_zoo_model(name, method, dtype):
    model = build(name).to(dtype)
    x = images_for(model, 2).to(dtype)
    for classes in ([0, 1], [1, 0, 1]):
        fast = gradcam(model, x, classes, method=method, relu=False, upsample=None)   # signed: the strictest
        loop = gradcam_reference(model, x, classes, method=method, relu=False, upsample=None)
        assert fast.dtype == dtype
        assert_close(fast, loop, rel=TOL[dtype])
    assert_close(gradcam(model, x, method=method), gradcam_reference(model, x, method=method), rel=TOL[dtype])


def test_cam_head_is_what_the_model_config_declares():
    cnn = build("pneumonia_cnn")
    assert cam_head(cnn, "features.2") is cnn.head
    assert cam_head(cnn, "features.1") is None            # does not feed the pooling: batched backward instead
    res = build("resnet18_scratch")
    assert cam_head(res, "layer4") is res.fc and cam_head(res, "layer3") is None
    assert cam_head(build("cnn1"), "features.3.act") is None      # flatten + MLP head: no identity


@pytest.mark.parametrize("name, layer, cfg", [
    ("pneumonia_cnn", "features.1", {}),                 # two logits, batched backward (is_grads_batched)
    ("cnn1", "features.3.act", {"num_classes": 2}),     # two logits, MLP head
    ("resnet18_scratch", "layer3", {"num_classes": 2}),
    ("resnet18_scratch", "layer4", {"num_classes": 2}),  # CAM identity with two logits
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_batched_backward_and_two_logit_heads_equal_the_loop(name, layer, cfg, dtype):
    model = build(name, **cfg).to(dtype)
    x = images_for(model, 2).to(dtype)
    for method in ("gradcam", "hirescam"):
        for classes in ([0, 1], [1]):
            fast = gradcam(model, x, classes, layer=layer, method=method, relu=False, upsample=None)
            loop = gradcam_reference(model, x, classes, layer=layer, method=method, relu=False, upsample=None)
            assert_close(fast, loop, TOL[dtype])


@pytest.mark.parametrize("name", ["cnn1", "cnn2", "resnet18_scratch"])
def test_one_logit_class0_is_the_map_of_the_negated_logit(name):
    model = build(name)
    assert get_config(model)["num_classes"] == 1
    x = images_for(model, 2)
    neg = Negated(model)           # not a ResNet any more: also checks the CAM identity against the batched backward
    for relu in (True, False):
        assert_close(gradcam(model, x, [0, 1], relu=relu), gradcam(neg, x, [1, 0], relu=relu), rel=TOL[x.dtype])
    signed = gradcam(model, x, relu=False, upsample=None)
    assert_close(signed[:, 0], -signed[:, 1], rel=1e-6)       # Grad-CAM is linear in the score: exact negation


# --- golden values on a hand-set model -------------------------------------------------------------------------

class Tiny(nn.Module):
    """x (1×4×4) → 1×1 conv, stride 2, weights (1, −1) → A = (x', −x'), x' = x[::2, ::2] → flatten → Linear(8, 2).

    With x' = [[1, 2], [3, 4]] and the head below (rows = classes, laid out as channel 0 | channel 1):
        class 0: ch0 [[1, 1], [1, 1]]   ch1 [[2, 0], [0, 0]]    → alpha = (1, 0.5)  → cam = x' − 0.5 x' = 0.5 x'
        class 1: ch0 [[0, 0], [0, −4]]  ch1 [[−2, −2], [−2, −2]] → alpha = (−1, −2) → cam = −x' + 2x' = x'
    HiResCAM (gradient × map, summed over channels):
        class 0: [[1, 2], [3, 4]] + [[−2, 0], [0, 0]]  = [[−1, 2], [3, 4]]
        class 1: [[0, 0], [0, −16]] + [[2, 4], [6, 8]] = [[2, 4], [6, −8]]
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, kernel_size=1, stride=2, bias=False)
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.head.weight.copy_(torch.tensor([[1, 1, 1, 1, 2, 0, 0, 0],
                                                 [0, 0, 0, -4, -2, -2, -2, -2]], dtype=torch.float32))
            self.head.bias.copy_(torch.tensor([0.3, -0.7]))      # a bias never changes a gradient
        self.xcxr_config = {"architecture": "tiny", "num_classes": 2, "labels": ["NORMAL", "PNEUMONIA"],
                            "in_chans": 1, "img_size": 4, "mean": [0.0], "std": [1.0], "target_layer": "features",
                            "first_layer": "features"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def tiny_input() -> torch.Tensor:
    x = torch.full((1, 1, 4, 4), 10.0)    # the odd pixels are skipped by the stride-2 conv
    x[0, 0, ::2, ::2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    return x


X_LOW = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
# bilinear 2 → 4, align_corners=False (half-pixel centres):
# out[0] = in[0], out[1] = ¾ in[0] + ¼ in[1], out[2] = ¼ in[0] + ¾ in[1], out[3] = in[1]   (rows, then columns)
X_UP = torch.tensor([[1.00, 1.25, 1.75, 2.00],
                     [1.50, 1.75, 2.25, 2.50],
                     [2.50, 2.75, 3.25, 3.50],
                     [3.00, 3.25, 3.75, 4.00]])


@pytest.mark.parametrize("fast", [True, False])
def test_golden_values_gradcam_and_hirescam(fast):
    model, x = Tiny(), tiny_input()
    low = gradcam(model, x, upsample=None, fast=fast)
    torch.testing.assert_close(low[0], torch.stack([0.5 * X_LOW, X_LOW]), rtol=0, atol=1e-6)
    up = gradcam(model, x, fast=fast)
    torch.testing.assert_close(up[0], torch.stack([0.5 * X_UP, X_UP]), rtol=0, atol=1e-6)
    nearest = gradcam(model, x, [1], upsample="nearest", fast=fast)[0, 0]
    torch.testing.assert_close(nearest, X_LOW.repeat_interleave(2, 0).repeat_interleave(2, 1), rtol=0, atol=1e-6)

    hires_signed = gradcam(model, x, method="hirescam", relu=False, upsample=None, fast=fast)[0]
    expected = torch.tensor([[[-1.0, 2.0], [3.0, 4.0]], [[2.0, 4.0], [6.0, -8.0]]])
    torch.testing.assert_close(hires_signed, expected, rtol=0, atol=1e-6)
    hires = gradcam(model, x, method="hirescam", upsample=None, fast=fast)[0]
    torch.testing.assert_close(hires, expected.clamp_min(0), rtol=0, atol=1e-6)


def test_golden_values_normalisation():
    model, x = Tiny(), tiny_input()
    per_map = gradcam(model, x, upsample=None, normalise="per_map")[0]
    torch.testing.assert_close(per_map, torch.tensor([[[0.0, 1 / 3], [2 / 3, 1.0]]] * 2), rtol=0, atol=1e-6)
    shared = gradcam(model, x, upsample=None, normalise="shared")[0]       # one scale (4) for both classes
    torch.testing.assert_close(shared, torch.stack([X_LOW / 8, X_LOW / 4]), rtol=0, atol=1e-6)


def test_hirescam_equals_gradcam_on_1x1_maps_and_gap_heads():
    model = build("cnn2")            # at 128 px its last conv stage is 1 × 1: averaging over positions is a no-op
    x = images_for(model, 2)
    assert gradcam(model, x, upsample=None).shape[-2:] == (1, 1)
    for fast in (True, False):
        a = gradcam(model, x, method="gradcam", relu=False, upsample=None, fast=fast)
        b = gradcam(model, x, method="hirescam", relu=False, upsample=None, fast=fast)
        assert_close(a, b, rel=1e-6)
    cnn = build("pneumonia_cnn")     # GAP + linear head: the gradient is the same at every position
    x = images_for(cnn, 2)
    assert_close(gradcam_reference(cnn, x, method="hirescam", relu=False),
                 gradcam_reference(cnn, x, method="gradcam", relu=False), rel=1e-5)
    # and where the gradient is not flat, they differ (the hand example above)
    tiny = Tiny()
    assert not torch.allclose(gradcam(tiny, tiny_input(), method="hirescam"), gradcam(tiny, tiny_input()))


# --- hooks, modes, grad modes, constant images ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["pneumonia_cnn", "cnn1", "resnet18_scratch"])
def test_no_hook_left_after_success_and_after_an_exception(name):
    model = build(name)
    x = images_for(model, 2)
    assert all_hooks(model) == []
    gradcam(model, x)
    gradcam(model, x, layer=None, method="hirescam")
    gradcam_reference(model, x)
    assert all_hooks(model) == []

    head = {"pneumonia_cnn": "head", "cnn1": "classifier.fc2", "resnet18_scratch": "fc"}[name]
    boom = get_layer(model, head)

    def raise_mid_forward(*_):
        raise RuntimeError("boom in the head")

    boom.forward = raise_mid_forward       # after the target layer's hook has fired
    model.train()
    for fn in (gradcam, gradcam_reference):
        with pytest.raises(RuntimeError, match="boom"):
            fn(model, x)
        assert all_hooks(model) == []
        assert all(m.training for m in model.modules())       # the caller's mode is back, too
    del boom.forward


@pytest.mark.parametrize("fast", [True, False])
def test_eval_mode_forced_and_callers_mode_restored(fast):
    model = build("pneumonia_cnn", dropout=0.5)
    x = images_for(model, 2)
    expected = gradcam(model.eval(), x, fast=fast)
    assert not any(m.training for m in model.modules())             # eval caller stays in eval

    model.train()
    model.features[0].bn1.eval()                                      # a mixed caller (a frozen BN): kept as is
    before = {n: m.training for n, m in model.named_modules()}
    stats = model.features[0].bn1.running_mean.clone(), model.features[2].bn2.running_mean.clone()
    got = gradcam(model, x, fast=fast)
    assert {n: m.training for n, m in model.named_modules()} == before
    assert torch.equal(stats[0], model.features[0].bn1.running_mean)          # BN did not update: it ran in eval
    assert torch.equal(stats[1], model.features[2].bn2.running_mean)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)       # dropout off, BN running stats: same maps


def test_works_under_no_grad_and_inference_mode():
    model = build("resnet18_scratch")
    x = images_for(model, 2)
    expected = gradcam(model, x, layer="layer3")       # batched backward: needs autograd
    with torch.no_grad():
        torch.testing.assert_close(gradcam(model, x, layer="layer3"), expected, rtol=0, atol=0)
    with torch.inference_mode():
        xi = x.clone()                                 # an inference tensor
        assert xi.is_inference()
        torch.testing.assert_close(gradcam(model, xi, layer="layer3"), expected, rtol=0, atol=0)
        torch.testing.assert_close(gradcam(model, xi), gradcam(model, x), rtol=0, atol=0)
    with torch.inference_mode():
        frozen = create_model("pneumonia_cnn", img_size=SIZE)
    with pytest.raises(ValueError, match="inference_mode"):
        gradcam(frozen, images_for(frozen, 1))


def test_frozen_parameters_still_give_maps():
    model = build("cnn1").requires_grad_(False)
    x = images_for(model, 2)
    assert float(gradcam(model, x, relu=False).abs().max()) > 0


@pytest.mark.parametrize("name", ["pneumonia_cnn", "cnn1", "resnet18_scratch", "resnet18_pretrained"])
def test_constant_image_gives_zero_maps_not_nan(name):
    model = build(name)
    grey = torch.full((1, 1, SIZE, SIZE), 128, dtype=torch.uint8)
    x = torch.cat([prepare(model, grey), prepare(model, torch.zeros_like(grey)), images_for(model, 1)])
    for kwargs in ({}, {"fast": False}, {"normalise": "per_map"}, {"normalise": "shared"}, {"relu": False},
                   {"method": "hirescam"}):
        maps = gradcam(model, x, **kwargs)
        assert torch.isfinite(maps).all(), kwargs
        assert torch.equal(maps[:2], torch.zeros_like(maps[:2])), kwargs
        assert float(maps[2].abs().max()) > 0, kwargs


# --- shapes, options and errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_LAYER)
def test_shapes_and_no_nan_for_every_zoo_model(name):
    model = build(name)
    x = images_for(model, 2)
    low = gradcam(model, x, upsample=None)
    assert low.ndim == 4 and low.shape[:2] == (2, 2) and (low >= 0).all()
    for classes, k in ((None, 2), (1, 1), ([0], 1), ([1, 0, 1], 3)):
        for method in ("gradcam", "hirescam"):
            for mode in ("bilinear", "nearest", "bicubic"):
                maps = gradcam(model, x, classes, method=method, upsample=mode)
                assert maps.shape == (2, k, SIZE, SIZE) and maps.dtype == torch.float32
                assert torch.isfinite(maps).all() and (maps >= 0).all() and not maps.requires_grad


def test_layer_selectable_by_name():
    model = build("pneumonia_cnn")
    x = images_for(model, 1)
    assert gradcam(model, x, layer="features.1", upsample=None).shape == (1, 2, SIZE // 4, SIZE // 4)
    assert gradcam(model, x, layer="features.0.conv2", upsample=None).shape == (1, 2, SIZE, SIZE)
    res = build("resnet18_scratch")
    assert gradcam(res, images_for(res, 1), layer="layer2", upsample=None).shape == (1, 2, SIZE // 8, SIZE // 8)


def test_clear_errors():
    model = build("pneumonia_cnn")
    x = images_for(model, 1)
    with pytest.raises(ValueError, match="no layer 'nope'.*conv layers"):
        gradcam(model, x, layer="nope")
    with pytest.raises(ValueError, match=r"\(B, channels, h, w\)"):
        gradcam(model, x, layer="head")
    with pytest.raises(ValueError, match="classes"):
        gradcam(model, x, classes=[2])
    with pytest.raises(ValueError, match="classes"):
        gradcam(model, x, classes=[])
    with pytest.raises(ValueError, match="method must be one of"):
        gradcam(model, x, method="gradcam++")
    with pytest.raises(ValueError, match="upsample must be one of"):
        gradcam(model, x, upsample="area")
    with pytest.raises(ValueError, match="normalise must be one of"):
        gradcam(model, x, normalise="minmax")
    with pytest.raises(TypeError, match="float images"):
        gradcam(model, x[0])
    with pytest.raises(TypeError, match="float images"):
        gradcam(model, torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels"):
        gradcam(model, x.repeat(1, 3, 1, 1))
    res = build("resnet18_scratch")
    with pytest.raises(ValueError, match="in place"):      # bn1's output is overwritten by the in-place ReLU
        gradcam(res, images_for(res, 1), layer="layer4.0.bn1")
    assert all_hooks(res) == [] and all_hooks(model) == []


@pytest.mark.parametrize("name", DNNS)
def test_dnns_give_a_clear_value_error(name):
    model = build(name)
    with pytest.raises(ValueError, match="fully connected.*saliency"):
        gradcam(model, images_for(model, 1))
    with pytest.raises(ValueError, match=r"\(B, channels, h, w\)"):
        gradcam(model, images_for(model, 1), layer="layers.0.linear")


# --- post-processing --------------------------------------------------------------------------------------------

def test_postprocess_defaults_are_the_papers():
    signed = torch.tensor([[[[-1.0, 3.0]]]])
    torch.testing.assert_close(postprocess(signed, (1, 4)), torch.tensor([[[[0.0, 0.75, 2.25, 3.0]]]]))  # ReLU first
    torch.testing.assert_close(postprocess(signed, (1, 4), relu=False), torch.tensor([[[[-1.0, 0.0, 2.0, 3.0]]]]))
    torch.testing.assert_close(postprocess(signed, (1, 4), upsample_mode="nearest"),
                               torch.tensor([[[[0.0, 0.0, 3.0, 3.0]]]]))
    spike = torch.zeros(1, 1, 3, 3)
    spike[0, 0, 1, 1] = 1.0
    assert float(upsample(spike, 12, "bicubic").min()) < 0                  # bicubic overshoots …
    assert float(postprocess(spike, 12, upsample_mode="bicubic").min()) == 0   # … clipped after a ReLU


def test_normalise_modes_zero_maps_and_signed_maps():
    maps = torch.zeros(2, 2, 3, 3)
    maps[0, 1] = torch.arange(9.0).view(3, 3)           # image 0: class 0 all zero, class 1 a ramp
    for mode in ("none", "per_map", "shared"):
        out = normalise(maps, mode)
        assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(2, 3, 3))
        assert torch.equal(out[0, 0], torch.zeros(3, 3))
    assert float(normalise(maps, "per_map")[0, 1].max()) == pytest.approx(1.0, abs=1e-6)
    weak = maps.clone()
    weak[0, 0] = 0.01 * maps[0, 1]
    assert float(normalise(weak, "per_map")[0, 0].max()) == pytest.approx(1.0, abs=1e-4)   # per-map hides it …
    assert float(normalise(weak, "shared")[0, 0].max()) == pytest.approx(0.01, abs=1e-6)   # … shared keeps it dim
    signed = torch.tensor([[[[-2.0, 1.0]], [[0.5, 0.0]]]])
    torch.testing.assert_close(normalise(signed, "shared"), torch.tensor([[[[-1.0, 0.5]], [[0.25, 0.0]]]]))
    with pytest.raises(ValueError, match="per_map"):
        normalise(maps, "max")
    with pytest.raises(TypeError):
        normalise(maps[0], "shared")


def test_upsample_matches_cv2_bilinear():
    cv2 = pytest.importorskip("cv2")
    low = torch.rand(1, 1, 7, 5, generator=torch.Generator().manual_seed(0))
    ours = upsample(low, (224, 160), "bilinear")[0, 0].numpy()
    theirs = cv2.resize(low[0, 0].numpy(), (160, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(ours - theirs).max() < 1e-6
