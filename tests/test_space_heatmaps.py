"""The Heatmaps tab (space/tabs/heatmaps.py): colour bars, scales, the grid, deep links, "Reproduce in Python" and
the clearing of stale views.

Most tests call the tab's functions on the bundled model and examples; the app is built once (not launched) for the
wiring, and launched once for the ``/heatmap_grid`` endpoint.
"""
from __future__ import annotations

import io

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")

from conftest import launched_app  # noqa: E402
from lib.explain import DIVERGING, gradcam, overlay, prepare, with_colorbar  # noqa: E402
from lib.models import get_config, predict_proba  # noqa: E402
from space.tabs import heatmaps as H  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "pneumonia_cnn"
#: P(pneumonia) ≈ 0.99 with the bundled model: its NORMAL map is the weak one
STRONG_PNEUMONIA = "person491_virus_997.jpeg"
GOOD_LINK = {"tab": "heatmaps", "model": MODEL, "layer": "features.1.conv2", "relu": "false", "upsample": "nearest",
             "scale": "per_map", "method": "smoothgrad", "grid": "FP", "grid_split": "examples", "grid_n": "3"}


@pytest.fixture(scope="module")
def net(ctx):
    return ctx.model(MODEL)


def _example(ctx, name: str) -> str:
    found = [e for e in ctx.examples if e.endswith(name)]
    assert found, name
    return found[0]


@pytest.fixture(scope="module")
def grey(ctx, net):
    g, _ = ctx.load_image(None, _example(ctx, STRONG_PNEUMONIA), net, original=False)
    return g


def _rgb255(cmap: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    c = np.asarray(matplotlib.colormaps[cmap](np.atleast_1d(v)))[..., :3]
    c = np.clip(np.round(c * 255), 0, 255).astype(np.uint8)
    return c[0] if v.ndim == 0 else c


def _bar(strip: np.ndarray, top_colour: np.ndarray) -> np.ndarray:
    """The colour bar's pixels (top = vmax) in a strip drawn by with_colorbar: the column that holds the colour
    map's top colour, between its outline's two grey rows."""
    cols = np.where((strip == top_colour).all(-1).any(0))[0]
    assert len(cols), "the colour map's top colour is not in the strip"
    col = strip[:, cols[0]]
    rows = np.where(~(col == 255).all(-1))[0]
    return col[rows[0] + 1:rows[-1]]


# --- colour bars and colour maps --------------------------------------------------------------------------------

def test_every_panel_has_a_colour_bar_of_its_colour_map(net, grey):
    size = grey.shape[1]
    left, right, sal, _ = H.heatmaps_for(net, grey, None, True, "bilinear", "shared", "saliency")
    for img, cmap in ((left, "jet"), (right, "jet"), (sal, H.SALIENCY_CMAP)):
        assert img.dtype == np.uint8 and img.shape[0] == grey.shape[0] and img.shape[1] > size
        bar = _bar(img[:, size:], _rgb255(cmap, 1.0))
        assert len(bar) > 100
        want = _rgb255(cmap, np.linspace(1.0, 0.0, len(bar)))
        assert np.abs(bar.astype(int) - want.astype(int)).max() <= 1
    # the maps themselves: lib's overlay with the same colour map and limits (0 … 1, shared), the bar beside them
    x = prepare(net, torch.from_numpy(grey))
    maps = gradcam(net, x, [0, 1], None, normalise="shared")[0].numpy()
    assert np.array_equal(left, with_colorbar(overlay(grey, maps[0], "jet", 0.5, 0.0, 1.0), 0.0, 1.0, "jet",
                                              label="Grad-CAM, shared scale"))


@pytest.mark.parametrize("scale", ["shared", "per_map"])
def test_signed_maps_use_the_diverging_map_white_at_zero(net, grey, scale):
    size = grey.shape[1]
    left, right, sal, caption = H.heatmaps_for(net, grey, "features.1.conv2", False, "bilinear", scale,
                                               "integrated_gradients")
    x = prepare(net, torch.from_numpy(grey))
    raw = gradcam(net, x, [0, 1], "features.1.conv2", relu=False)[0].numpy()
    assert raw.min() < 0 < raw.max()  # really signed
    for img in (left, right, sal):
        bar = _bar(img[:, size:], _rgb255(DIVERGING, 1.0))
        want = _rgb255(DIVERGING, np.linspace(1.0, 0.0, len(bar)))
        assert np.abs(bar.astype(int) - want.astype(int)).max() <= 1
        middle = bar[len(bar) // 2].astype(int)
        assert middle.min() >= 235 and middle.max() - middle.min() <= 12, middle  # 0 is (nearly) white
    # limits: symmetric, so 0 sits at the bar's centre
    _, vmin, vmax = H.overlay_limits(scale, False)
    assert vmin == -vmax == -1.0
    assert "blue = evidence against" in caption


def test_saliency_maps_signed_by_method():
    sal = np.array([[-0.2, 0.5], [0.0, 0.1]])
    cmap, lo, hi, label = H.saliency_style("occlusion", sal)
    assert cmap == DIVERGING and (lo, hi) == (-0.5, 0.5) and "own scale" in label
    cmap, lo, hi, _ = H.saliency_style("saliency", np.abs(sal))
    assert cmap == H.SALIENCY_CMAP and (lo, hi) == (0.0, 0.5)


# --- scales --------------------------------------------------------------------------------------------------------

def _heat(img: np.ndarray, size: int) -> float:
    """How hot a jet overlay looks: red + green (dark blue = 0)."""
    return float(img[:, :size, :2].astype(float).sum(-1).mean())


def test_shared_scale_is_the_default_and_the_weak_class_looks_weak(demo, net, grey):
    extras = dict(demo.xcxr_tabs["heatmaps"].link_extras)
    assert extras["scale"].value == H.DEFAULT_SCALE == "shared"
    assert [v for _, v in extras["scale"].choices] == ["shared", "per_map"]
    p = float(predict_proba(net, torch.from_numpy(grey)[None, None])[0])
    assert p > 0.95
    size = grey.shape[1]
    shared = H.heatmaps_for(net, grey, None, True, "bilinear", "shared", "saliency")
    per_map = H.heatmaps_for(net, grey, None, True, "bilinear", "per_map", "saliency")
    # one scale: the NORMAL map of a 99 % pneumonia image is darker than the PNEUMONIA map …
    assert _heat(shared[0], size) < _heat(shared[1], size) - 20
    # … and per map stretches it (the caption says so, and the colour bar names the scale)
    assert _heat(per_map[0], size) > _heat(shared[0], size)
    assert "exaggerates weak maps" in per_map[3] and "Shared scale" in shared[3]
    assert H.colorbar_label("shared", True) == "Grad-CAM, shared scale"
    assert H.colorbar_label("per_map", True) == "per map: 0 = min, 1 = max"


def test_old_scale_values_still_accepted_and_bad_ones_named():
    assert H.scale_id("per map") == "per_map" and H.scale_id("shared (both classes)") == "shared"
    with pytest.raises(gr.Error, match="scale must be one of"):
        H.overlay_limits("huge", True)


# --- the grid ------------------------------------------------------------------------------------------------------

def test_course_grid_is_ten_rows_by_three_columns(net):
    fig, what = H.grid_figure(net, H.GRID_SPLIT, "course", H.GRID_PER_CLASS, None)
    panels = [ax for ax in fig.axes if ax.images and ax.get_subplotspec() is not None]
    assert len(panels) == 30
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in panels} == {(10, 3)}
    assert "5 NORMAL + 5 PNEUMONIA" in what and "seed 0" in what
    rgb, text = H.grid_for(net, H.GRID_SPLIT, "course", H.GRID_PER_CLASS, None)
    assert rgb.dtype == np.uint8 and rgb.shape[0] > 2000 and rgb.shape[0] > 2 * rgb.shape[1]
    assert "One colour scale" in text


def test_course_grid_shows_the_readme_figures_images(net, tmp_path, monkeypatch):
    """train/figures.py (the README's gradcam_10x2.png) and the app's grid draw the same images."""
    import train.figures as tf

    seen = {}

    class Stop(Exception):
        pass

    def fake_figure(model, images, labels=None, **kw):
        seen["images"], seen["labels"] = images, labels
        raise Stop

    monkeypatch.setattr(tf, "gradcam_figure", fake_figure)
    with pytest.raises(Stop):
        tf.render(str(ROOT / "models" / MODEL), str(ROOT / "examples" / "chest_xray_test"), tmp_path / "fig")
    ds, rows, _ = H.grid_rows(net, H.GRID_SPLIT, "course", H.GRID_PER_CLASS)
    assert torch.equal(ds.images[rows], seen["images"]) and ds.labels[rows].tolist() == seen["labels"]
    # and the draw itself: per class, a seeded random permutation (the code train/figures.py had before pick_rows)
    g = torch.Generator().manual_seed(0)
    want = []
    for c in range(len(ds.classes)):
        idx = (ds.labels == c).nonzero().flatten()
        want += idx[torch.randperm(len(idx), generator=g)[:5]].tolist()
    assert rows == want


def test_outcome_grid_takes_the_most_confident_cases(net):
    from lib.explain import outcomes
    from space.evaluation import load_data, predict

    ds, rows, what = H.grid_rows(net, "examples", "TP", 4)
    pred = predict(net, load_data("examples", get_config(net)["img_size"]))
    assert rows == outcomes(pred, pred.model_threshold)["TP"][:4]
    assert "4 most confident true positives" in what
    with pytest.raises(gr.Error, match="between 1 and 10"):
        H.grid_rows(net, "examples", "course", 11)
    with pytest.raises(gr.Error, match="between 1 and 20"):
        H.grid_rows(net, "examples", "FP", 21)
    with pytest.raises(gr.Error, match="grid images must be one of"):
        H.grid_rows(net, "examples", "XX", 3)


def test_grid_endpoint_is_in_the_expensive_lane(demo):
    fns = {f.api_name: f for f in demo.fns.values() if f.api_name}
    assert fns["heatmap_grid"].concurrency_id == "expensive" and fns["heatmap_grid"].concurrency_limit == 1
    info = demo.get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in info["/heatmap_grid"]["parameters"]] == ["model", "layer", "source",
                                                                                  "split", "n"]
    # /heatmaps keeps its inputs and outputs
    assert [p["parameter_name"] for p in info["/heatmaps"]["parameters"]] == [
        "image", "model", "layer", "relu", "upsample", "scale", "method", "example"]
    assert len(info["/heatmaps"]["returns"]) == 4


def test_grid_through_the_api(net):
    from gradio_client import Client

    with launched_app() as app:
        client = Client(app.local_url, verbose=False)
        path, text = client.predict(MODEL, "default", "course", "examples", 5, api_name="/heatmap_grid")
        got = np.asarray(Image.open(path).convert("RGB"))
        want, _ = H.grid_for(net, "examples", "course", 5, None)
        assert np.array_equal(got, want)
        assert "Course figure" in text


# --- deep links ------------------------------------------------------------------------------------------------------

def _from_link(demo):
    return demo.xcxr_tabs["heatmaps"].on_link


def test_link_parameters_and_result_id(demo):
    spec = demo.xcxr_tabs["heatmaps"]
    assert [p for p, _ in spec.link_extras] == ["layer", "relu", "upsample", "scale", "method", "grid", "grid_split",
                                                "grid_n"]
    assert spec.result_id == H.RESULT_ID
    assert any(getattr(b, "elem_id", None) == H.RESULT_ID for b in demo.blocks.values())


def test_link_round_trip(demo, recwarn):
    fn, outputs = _from_link(demo)
    out = dict(zip(["layer", "relu", "upsample", "scale", "method", "box", "grid", "grid_split", "grid_n",
                    "request"], fn(GOOD_LINK)))
    assert len(outputs) == len(out)
    assert out["layer"].value == "features.1.conv2" and ("features.1.conv2", "features.1.conv2") in out["layer"].choices
    assert (out["relu"], out["upsample"], out["scale"], out["method"]) == (False, "nearest", "per_map", "smoothgrad")
    assert out["box"].open is True and out["grid"] == "FP" and out["grid_split"] == "examples"
    assert out["grid_n"].value == 3 and out["grid_n"].maximum == H.GRID_MAX_IMAGES
    assert isinstance(out["request"], int)  # a new value: the grid is rendered on open
    assert not [w for w in recwarn if "Link" in str(w.message)]
    # what the copy button writes (String(value) in the page) reads back the same
    again = fn({"tab": "heatmaps", "layer": "features.1.conv2", "relu": str(False).lower(), "upsample": "nearest",
                "scale": "per_map", "method": "smoothgrad"})
    assert again[1:5] == (False, "nearest", "per_map", "smoothgrad")
    # the default layer and the target layer's own name both read as "default"
    for name in ("default", get_config(demo.xcxr_context.model(MODEL))["target_layer"]):
        assert fn({"tab": "heatmaps", "layer": name})[0].value == H.DEFAULT_LAYER


def test_bad_link_values_fall_back_to_defaults_with_a_warning(demo):
    fn, _ = _from_link(demo)
    bad = {"tab": "heatmaps", "layer": "features.99", "relu": "maybe", "upsample": "cubic", "scale": "huge",
           "method": "nope", "grid": "course", "grid_split": "train", "grid_n": "15"}
    with pytest.warns(UserWarning) as caught:
        out = fn(bad)
    text = " ".join(str(w.message) for w in caught)
    for name in ("layer", "relu", "upsample", "scale", "method", "grid_split", "grid_n"):
        assert name in text, name
    assert "Link (heatmaps tab)" in text and "use the defaults" in text
    assert out[0].value == H.DEFAULT_LAYER
    assert out[1:5] == (True, "bilinear", "shared", "saliency")
    assert out[6:8] == ("course", H.GRID_SPLIT) and out[8].value == H.GRID_PER_CLASS
    with pytest.warns(UserWarning, match="grid"):
        out = fn({"tab": "heatmaps", "grid": "XX"})
    assert out[9] == H._NO_GRID  # no grid rendered


def test_other_tabs_links_are_left_alone(demo, recwarn):
    fn, outputs = _from_link(demo)
    nothing = (*(gr.skip(),) * (len(outputs) - 1), H._NO_GRID)  # the grid-request state keeps its value
    assert fn({"tab": "feature_maps", "scale": "common"}) == nothing
    assert fn({}) == nothing
    assert not [w for w in recwarn if "Link" in str(w.message)]


# --- Reproduce in Python ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer,relu,upsample,scale,method", [
    ("default", True, "bilinear", "shared", "saliency"),
    ("features.1.conv2", False, "nearest", "per_map", "guided_backprop"),
    ("features.2.conv1", True, "bicubic", "per_map", "saliency"),
    ("default", False, "bilinear", "shared", "saliency"),
])
def test_snippet_reproduces_the_three_images(ctx, net, grey, layer, relu, upsample, scale, method, monkeypatch):
    example = _example(ctx, STRONG_PNEUMONIA)
    code = H.snippet(ctx, None, MODEL, layer, relu, upsample, scale, method, example)
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the snippet a student copies
    want = H.heatmaps_for(net, grey, layer, relu, upsample, scale, method)
    assert len(ns["shown"]) == 3
    for got, w in zip(ns["shown"], want[:3]):
        assert got.dtype == np.uint8 and np.array_equal(got, w)


def test_upload_snippet_names_a_placeholder(ctx):
    code = H.snippet(ctx, "/tmp/gradio/abc/secret_name.png", MODEL, "default", True, "bilinear", "shared",
                     "saliency", None)
    assert "my_xray.png" in code and "secret_name" not in code and "/tmp" not in code


def test_grid_snippet_reproduces_the_grid(ctx, net, monkeypatch):
    from lib.explain import to_png_bytes

    code = H.grid_snippet(ctx, MODEL, "default", "course", "examples", 5)
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(code, ns)  # noqa: S102
    got = np.asarray(Image.open(io.BytesIO(to_png_bytes(ns["figure"]))).convert("RGB"))
    want, _ = H.grid_for(net, "examples", "course", 5, None)
    assert np.array_equal(got, want)


# --- no stale screens ------------------------------------------------------------------------------------------------

def test_clearing_steps_blank_the_images():
    first, second, sal, text, code = H.cleared("saliency")
    assert first is second is sal is None and code == "" and "Computing" in text
    first, second, sal, text, code = H.cleared("integrated_gradients")
    assert first is second is sal is None and "Press Explain" in text
    img, text, *links_and_code = H.grid_cleared()
    assert img is None and "Render grid" in text and links_and_code == ["", "", "", ""]


def test_every_change_clears_at_once(demo):
    """Each control's change (and the example's ``picked`` chain) runs a queue=False step whose outputs are the
    three images; expensive methods are only cleared."""
    spec = demo.xcxr_tabs["heatmaps"]
    extras = dict(spec.link_extras)
    row = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == H.RESULT_ID][0]
    images = {b._id for b in row.children if isinstance(b, gr.Image)}
    assert len(images) == 3
    clears = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "clear"
              and images <= {o._id for o in f.outputs}]
    assert clears and all(not f.queue for f in clears)
    triggers = {(t[0], t[1]) for f in clears for t in f.targets}
    upload = [b for b in demo.blocks.values() if isinstance(b, gr.File) and b._id in {i._id for f in clears
                                                                                   for i in f.inputs}][0]
    for comp, event in ((extras["layer"], "input"), (extras["relu"], "input"), (extras["upsample"], "input"),
                        (extras["scale"], "input"), (extras["method"], "input"), (spec.model, "change"),
                        (upload, "upload"), (upload, "clear")):
        assert (comp._id, event) in triggers, (comp.label, event)
    # the example: chained on image_inputs' `picked` (a "then" of the example's change)
    assert any(t[1] == "then" for f in clears for t in f.targets)


def test_an_outdated_result_is_dropped():
    views = H._Views()

    class Req:
        session_hash = "s1"

    req = Req()
    a, b = ("a",), ("b",)
    # a session that never changed a control (an API client) is not checked
    assert views.finish(req, "view", a, views.start(req, "view", a))
    views.changed(req, "view", a)
    token = views.start(req, "view", a)
    views.changed(req, "view", b)  # the visitor moved on while `a` ran
    assert not views.finish(req, "view", a, token)
    assert views.start(req, "view", a) is None  # `a` waiting in the queue: not even computed
    token = views.start(req, "view", b)
    assert views.finish(req, "view", b, token) and views.shown(req, "view", b)
    views.reset(req, "view")  # the app set the controls: any run started from now on is shown
    token = views.start(req, "view", a)
    assert views.finish(req, "view", a, token)
    # a link set some controls: runs with other values of those are outdated (the run that read them too early)
    views.reset(req, "view", {1: "occlusion"})
    assert views.start(req, "view", ("x", "saliency")) is None
    token = views.start(req, "view", ("x", "occlusion"))
    assert views.finish(req, "view", ("x", "occlusion"), token)
    # a deep link's own view (the app's step after every on_link) is the latest word: earlier runs are dropped
    old = views.start(req, "view", b)
    views.changed(req, "view", b)  # a step that read the controls before the link's values arrived
    token = views.claim(req, "view", a)
    assert views.finish(req, "view", a, token) and not views.finish(req, "view", b, old)
    assert views.finish(None, "view", a, views.start(None, "view", a))  # no session: always shown
