"""The Gradio app through a real client: every endpoint equals the direct ``lib`` call, bad uploads give ``AppError``.

The app is launched once for the module on a free port (127.0.0.1) and closed at the end.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import free_port, launched_app  # noqa: E402
from lib.data import load_grey  # noqa: E402
from lib.explain import (attribute, feature_map_grid, feature_maps, filter_grid, gradcam, overlay,  # noqa: E402
                         prepare)
from lib.models import get_config, predict_proba  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "chest_xray_test"
PNEU = sorted((EXAMPLES / "PNEUMONIA").glob("*.jpeg"))
NORM = sorted((EXAMPLES / "NORMAL").glob("*.jpeg"))
MODEL = "pneumonia_cnn"



@pytest.fixture(scope="module")
def app():
    with launched_app() as demo:  # uploads limited as in space.app.main: max_file_size=MAX_FILE_BYTES
        yield demo
# `client` and `model` come from conftest.py and talk to this `app`.


def _probs(result) -> dict[str, float]:
    return {c["label"]: float(c["confidence"]) for c in result["confidences"]}


def _png(path) -> np.ndarray:
    assert str(path).endswith(".png"), path
    return np.asarray(Image.open(path).convert("RGB"))


def _lib_probs(model, path) -> dict[str, float]:
    grey = load_grey(path, get_config(model)["img_size"])
    p = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])
    return {"NORMAL": 1 - p, "PNEUMONIA": p}


# --- numbers equal the library ----------------------------------------------------------------------------------

def test_catalog_lists_bundled_model_first(app):
    entries = app.xcxr_context.catalog.entries()
    assert entries[0].name == MODEL and entries[0].available and entries[0].source == "bundled"


def test_classify_equals_lib(client, model):
    for path in (PNEU[0], NORM[0]):
        got = _probs(client.predict(handle_file(str(path)), MODEL, api_name="/classify"))
        want = _lib_probs(model, path)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-6)


def test_classify_by_example_id(client, model):
    ex = "PNEUMONIA/" + PNEU[1].name
    got = _probs(client.predict(None, MODEL, ex, api_name="/classify"))
    assert got["PNEUMONIA"] == pytest.approx(_lib_probs(model, PNEU[1])["PNEUMONIA"], abs=1e-6)


@pytest.mark.parametrize("relu,scale", [(True, "per_map"), (False, "shared")])
def test_heatmaps_equal_lib_overlays(client, model, relu, scale):
    from space.tabs.heatmaps import SALIENCY_CMAP, gradcam_cmap, overlay_limits

    path = PNEU[0]
    layer = "features.1"
    out = client.predict(handle_file(str(path)), MODEL, layer, relu, "bilinear", scale, "saliency", None,
                         api_name="/heatmaps")
    normal, pneumonia, sal, caption = out
    grey = load_grey(path, get_config(model)["img_size"])
    size = grey.shape[1]
    mode, vmin, vmax = overlay_limits(scale, relu)
    x = prepare(model, torch.from_numpy(grey))
    maps = gradcam(model, x, None, layer, relu=relu, upsample="bilinear", normalise=mode)[0].numpy()
    for got, c in ((normal, 0), (pneumonia, 1)):
        want = overlay(grey, maps[c], gradcam_cmap(relu), 0.5, vmin, vmax)
        img = _png(got)
        assert img.shape[1] > size  # the colour bar, drawn beside the map
        diff = np.abs(img[:, :size].astype(int) - want.astype(int))
        assert diff.max() <= 1, (c, diff.max())
    # the saliency panel: the predicted class's map on its own [0, max] scale
    p = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])
    target = int(p >= get_config(model)["threshold"])
    s = attribute(model, x, target, method="saliency")[0, 0].numpy()
    want = overlay(grey, s, SALIENCY_CMAP, 0.5, 0.0, float(s.max()))
    assert np.abs(_png(sal)[:, :size].astype(int) - want.astype(int)).max() <= 1
    assert "logit" in caption and "segmentation" in caption


def test_heatmaps_default_layer_and_bad_option(client):
    out = client.predict(None, MODEL, api_name="/heatmaps", example="NORMAL/" + NORM[0].name)
    img = _png(out[0])
    assert img.shape[0] == 224 and img.shape[1] > 224  # the map at the model's size, its colour bar beside it
    with pytest.raises(AppError, match="layer"):
        client.predict(None, MODEL, "no.such.layer", api_name="/heatmaps", example="NORMAL/" + NORM[0].name)


def test_filters_equal_lib(client, app):
    from lib.explain.filters import filter_panel
    from space.tabs.filters import MARGIN, default_models, panel_title
    gallery, text = client.predict("common", api_name="/filters")
    names = default_models(app.xcxr_context.catalog.available())
    assert len(gallery) == len(names) and not [n for n in names if n.startswith("run:")]
    model = app.xcxr_context.catalog.get(names[0])
    # the panel is the lib's filter grid with the model, its training and the layer drawn above it
    want = filter_panel(model, scale="common", title=panel_title(names[0], model), margin=MARGIN)
    assert np.array_equal(_png(gallery[0]["image"]), want)
    grid = filter_grid(model, scale="common")
    assert want.shape[0] > grid.shape[0] and want.shape[1] >= grid.shape[1]


def test_feature_maps_equal_lib(client, model):
    from lib.explain.feature_maps import feature_map_tiles
    from space.tabs.feature_maps import MARGIN, TILE
    path = NORM[1]
    gallery = client.predict(handle_file(str(path)), MODEL, 4, "shared", None, api_name="/feature_maps")
    grey = load_grey(path, get_config(model)["img_size"])
    stages = feature_maps(model, prepare(model, torch.from_numpy(grey)), top_k=4)
    tiles = feature_map_tiles(stages, scale="shared", tile=TILE, margin=MARGIN)
    assert len(gallery) == sum(len(st.channels) for st in stages) == len(tiles)  # one tile per channel
    for item, (tile, caption) in zip(gallery, tiles):
        assert np.array_equal(_png(item["image"]), tile)
    assert [c for _, c in tiles][:2] == [f"stage 1 · {stages[0].name} · ch {ch}" for ch in stages[0].channels[:2]]
    # the map inside a tile is the stage's map, nearest-enlarged on the stage's shared scale (as feature_map_grid)
    assert tiles[0][0].shape[1] == TILE and tiles[0][0].shape[0] > TILE
    grid = feature_map_grid(stages[0].maps[:1], scale="per_map", tile=TILE)
    assert np.array_equal(feature_map_tiles(stages[:1], scale="per_map", tile=TILE, captions=False)[0][0], grid)


# --- robustness: bad uploads are errors, the next request works ---------------------------------------------------

def _bad_files(tmp: Path) -> dict[str, Path]:
    good = PNEU[0].read_bytes()
    files = {
        "text.png": b"this is not an image\n" * 10,
        "truncated.jpeg": good[: len(good) // 3],
        "empty.png": b"",
    }
    out = {}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        out[name] = tmp / name
    Image.new("L", (1, 1), 128).save(tmp / "one_pixel.png")
    out["one_pixel.png"] = tmp / "one_pixel.png"
    Image.new("1", (9000, 9000)).save(tmp / "bomb.png")  # 81 Mpx: a few KB on disk, refused before decoding
    out["bomb.png"] = tmp / "bomb.png"
    from test_images import make_dicom  # the synthetic DICOM builder of the lib tests
    (tmp / "no_pixels.dcm").write_bytes(make_dicom(np.zeros((64, 64)), pixel_data=False))
    out["no_pixels.dcm"] = tmp / "no_pixels.dcm"
    rng = np.random.default_rng(0)
    (tmp / "huge.jpeg").write_bytes(rng.integers(0, 256, 40_000_000, dtype=np.uint8).tobytes())  # 40 MB of noise
    out["huge.jpeg"] = tmp / "huge.jpeg"
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", ["text.png", "truncated.jpeg", "empty.png", "one_pixel.png", "bomb.png",
                                  "huge.jpeg", "no_pixels.dcm"])
def test_bad_upload_is_app_error_then_server_still_works(client, model, bad_files, name):
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad_files[name])), MODEL, api_name="/classify")
    assert str(info.value).strip(), "the error must say what is wrong"
    if name == "no_pixels.dcm":
        assert "no pixel data" in str(info.value)
    assert "/tmp" not in str(info.value) or name in str(info.value)
    got = _probs(client.predict(handle_file(str(PNEU[0])), MODEL, api_name="/classify"))
    assert got["PNEUMONIA"] == pytest.approx(_lib_probs(model, PNEU[0])["PNEUMONIA"], abs=1e-6)


def test_bad_upload_on_heatmaps_is_app_error(client, bad_files):
    with pytest.raises(AppError):
        client.predict(handle_file(str(bad_files["truncated.jpeg"])), MODEL, api_name="/heatmaps")


def test_no_image_is_app_error(client):
    with pytest.raises(AppError, match="upload"):
        client.predict(None, MODEL, None, api_name="/classify")


def test_unknown_model_is_app_error(client):
    with pytest.raises(AppError, match="unknown model"):
        client.predict(handle_file(str(PNEU[0])), "no_such_model", api_name="/classify")


@pytest.mark.parametrize("kind", ["cmyk", "palette", "png16"])
def test_valid_unusual_images_work(client, model, tmp_path, kind):
    src = Image.open(PNEU[2]).convert("L").resize((300, 260))
    if kind == "cmyk":
        path = tmp_path / "cmyk.jpeg"
        src.convert("CMYK").save(path)
    elif kind == "palette":
        path = tmp_path / "palette.png"
        src.convert("P").save(path)
    else:
        path = tmp_path / "x16.png"
        Image.fromarray(np.asarray(src).astype(np.uint16) * 64 + 5).save(path)
    got = _probs(client.predict(handle_file(str(path)), MODEL, api_name="/classify"))
    assert got["PNEUMONIA"] == pytest.approx(_lib_probs(model, path)["PNEUMONIA"], abs=1e-6)


# --- errors: short messages for visitors, tracebacks in the server log ----------------------------------------------

def _boom(exc: BaseException):
    def fn(*args, **kwargs):
        raise exc
    return fn


@pytest.mark.parametrize("module,name,exc", [
    ("space.tabs.classify", "predict_proba", RuntimeError("tensor detail at /srv/secret/weights.bin")),
    ("space.tabs.heatmaps", "gradcam", KeyError("features.internal.key")),
])
def test_a_bug_shows_an_error_id_and_logs_the_traceback(client, monkeypatch, caplog, module, name, exc):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), name, _boom(exc))
    api = "/classify" if name == "predict_proba" else "/heatmaps"
    with caplog.at_level(logging.ERROR, logger="space"), pytest.raises(AppError) as info:
        client.predict(None, MODEL, api_name=api, example="PNEUMONIA/" + PNEU[0].name)
    msg = str(info.value)
    found = re.search(r"error id ([0-9a-f]{6})", msg)
    assert found and "Something went wrong on the server" in msg and "report this id" in msg, msg
    for internal in ("detail", "internal", "/srv", type(exc).__name__):
        assert internal not in msg, msg
    records = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info[0] is type(exc)
    assert "Traceback" in caplog.text and str(exc).strip("'") in caplog.text
    monkeypatch.undo()  # and the next request works
    assert _probs(client.predict(handle_file(str(PNEU[0])), MODEL, api_name="/classify"))


def test_a_library_error_message_reaches_the_user_without_server_paths(client, monkeypatch):
    from lib.errors import XcxrValueError

    where = ROOT / "models" / "pneumonia_cnn" / "config.json"
    monkeypatch.setattr("space.tabs.classify.predict_proba",
                        _boom(XcxrValueError(f"{where}: img_size must be a multiple of 8")))
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(PNEU[0])), MODEL, api_name="/classify")
    assert str(info.value).strip("'\"") == "models/pneumonia_cnn/config.json: img_size must be a multiple of 8"


def test_an_unforeseen_decoder_failure_is_a_bad_upload_with_an_id(client, monkeypatch, caplog, tmp_path):
    monkeypatch.setattr("space.context.load_grey", _boom(OSError(f"decoder crashed in {tmp_path}/x/y.png")))
    with caplog.at_level(logging.ERROR, logger="space"), pytest.raises(AppError) as info:
        client.predict(handle_file(str(PNEU[0])), MODEL, api_name="/classify")
    msg = str(info.value)
    assert f"{PNEU[0].name}: the file could not be read as an image (error id" in msg, msg
    assert "crashed" not in msg and str(tmp_path) not in msg
    assert "decoder crashed" in caplog.text


def test_unavailable_model_message_names_no_server_path(tmp_path):
    from space.catalog import ModelCatalog
    from space.context import AppContext, model_choice
    from space.errors import ui_errors
    from space.examples import ExampleSet

    runs = tmp_path / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "config.json").write_text("{not json")
    cat = ModelCatalog(models_dir=str(ROOT / "models"), runs_dir=str(runs), hub_repos=[],
                       studies_dir=tmp_path / "no-studies")
    ctx = AppContext(cat, ExampleSet())
    with pytest.raises(gr.Error) as info:
        ui_errors(ctx.model)("run:broken")
    msg = info.value.message
    assert "unavailable" in msg and "config.json" in msg
    assert str(tmp_path) not in msg and not re.search(r"(^|[\s'\"(])/\w", msg), msg
    with gr.Blocks():
        dropdown = model_choice(ctx)
    assert all(str(tmp_path) not in shown for shown, _ in dropdown.choices)


def test_public_text_shortens_absolute_paths():
    import tempfile

    from space.errors import public_text

    tmp = Path(tempfile.gettempdir()) / "gradio" / "5f0c9a" / "scan.png"
    assert public_text(f"{tmp}: not an image") == "scan.png: not an image"
    assert public_text(f"missing '{ROOT / 'models' / 'x' / 'model.safetensors'}'.") == \
        "missing 'models/x/model.safetensors'."
    assert public_text(f"see {Path.home() / '.cache' / 'a.json'}.") == "see a.json."
    assert public_text(r"C:\Users\me\x.png broke") == "x.png broke"
    for kept in ("teacher/space-cnn is offline", "http://127.0.0.1:7860/x/y", "(x − 0.5) / 0.25", "and/or",
                 "../data/x.png", "~/x.png"):
        assert public_text(kept) == kept


# --- concurrency ---------------------------------------------------------------------------------------------------

def test_concurrent_clients_equal_serial(app, client):
    paths = [PNEU[i] for i in range(4)] + [NORM[i] for i in range(4)]
    serial = {p: _probs(client.predict(handle_file(str(p)), MODEL, api_name="/classify")) for p in paths}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(k: int) -> int:
        c = Client(app.local_url, verbose=False)
        done = 0
        for j in range(20):
            p = paths[(k + j) % len(paths)]
            try:
                got = _probs(c.predict(handle_file(str(p)), MODEL, api_name="/classify"))
                assert got == pytest.approx(serial[p], abs=1e-7)
                done += 1
            except BaseException as e:  # noqa: BLE001
                with lock:
                    errors.append(e)
        return done

    # Grad-CAM (hooks on the shared model) running at the same time must neither disturb nor be disturbed.
    ex = "PNEUMONIA/" + PNEU[0].name
    heat_serial = [_png(f) for f in client.predict(None, MODEL, api_name="/heatmaps", example=ex)[:2]]

    def heat_worker() -> int:
        c = Client(app.local_url, verbose=False)
        for _ in range(4):
            got = [_png(f) for f in c.predict(None, MODEL, api_name="/heatmaps", example=ex)[:2]]
            for a, b in zip(got, heat_serial):
                if not np.array_equal(a, b):
                    with lock:
                        errors.append(AssertionError("heatmaps differ under concurrency"))
        return 0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(17) as pool:
        heat = pool.submit(heat_worker)
        done = sum(pool.map(worker, range(16)))
        heat.result()
    elapsed = time.perf_counter() - t0
    assert not errors, errors[:3]
    assert done == 16 * 20
    assert elapsed < 120, elapsed


def test_deep_link_page_serves(app):
    import urllib.request

    url = app.local_url + "?tab=heatmaps&model=pneumonia_cnn&example=PNEUMONIA/" + PNEU[0].name
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def test_every_saliency_method_runs_and_leaves_no_hooks(client, model):
    from space.tabs.heatmaps import SALIENCY_METHODS

    assert set(SALIENCY_METHODS) >= {"saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "occlusion"}
    before = _hook_count(model)
    ex = "PNEUMONIA/" + PNEU[3].name
    for method in SALIENCY_METHODS:
        out = client.predict(None, MODEL, api_name="/heatmaps", method=method, example=ex)
        assert _png(out[2]).shape[0] == 224 and _png(out[2]).shape[1] > 224, method  # the map and its colour bar
        assert method in out[3]
    client.predict(None, MODEL, 4, "per_map", ex, api_name="/feature_maps")
    assert _hook_count(model) == before == 0
    assert not model.training


# --- the catalog (no server) -------------------------------------------------------------------------------------

def test_catalog_runs_hub_and_broken_models(tmp_path, monkeypatch):
    from lib.models import create_model, save_model
    from space.catalog import CatalogError, ModelCatalog, hub_repos_from_config
    from space.context import AppContext
    from space.examples import ExampleSet
    from space.tabs.filters import filter_panels

    runs = tmp_path / "runs"
    save_model(create_model("resnet18_scratch", img_size=64), runs / "exp1" / "resnet")
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "config.json").write_text("{not json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    studies = tmp_path / "studies"
    save_model(create_model("pneumonia_cnn", img_size=32), studies / "study9" / "results" / "small" / "best" / "cnn")
    cat = ModelCatalog(models_dir=str(ROOT / "models"), runs_dir=str(runs), hub_repos=["someone/xcxr-model"],
                       studies_dir=studies)
    cat.wait_checked(30)  # the configs are checked in the background: the app's start never waits for them
    entries = {e.name: e for e in cat.entries()}
    assert cat.names()[0] == MODEL
    # a study's best model (studies/<study>/results/<variant>/best/<model>) is listed right after the bundled ones
    bundled = sorted(p.parent.name for p in (ROOT / "models").glob("*/config.json"))
    assert cat.names()[:len(bundled)] == [MODEL] + [b for b in bundled if b != MODEL]
    assert cat.names()[len(bundled)] == "study:study9/small/cnn" and entries["study:study9/small/cnn"].source == "study"
    assert cat.get("study:study9/small/cnn").xcxr_config["img_size"] == 32
    assert entries["run:exp1/resnet"].available and entries["run:exp1/resnet"].source == "run"
    assert not entries["run:broken"].available and "config.json" in entries["run:broken"].reason
    hub = entries["someone/xcxr-model"]
    assert hub.source == "hub" and not hub.available and "offline" in hub.reason
    with pytest.raises(CatalogError, match="unavailable"):
        cat.get("run:broken")
    with pytest.raises(CatalogError, match="unknown model"):
        cat.get("nope")
    assert cat.get("run:exp1/resnet") is cat.get("run:exp1/resnet")  # cached
    # the Filters tab shows every available model side by side, labelled
    ctx = AppContext(cat, ExampleSet())
    items, text = filter_panels(ctx, "common")  # training runs are not drawn until chosen (a sweep leaves dozens)
    shown = [line.split("`")[1] for line in text.splitlines() if line.startswith("- `")]  # one line per panel
    assert shown == cat.names()[:len(bundled)] + ["study:study9/small/cnn"] and len(items) == len(shown)
    assert all(f"- `{n}` (trained from scratch)" in text for n in shown)
    assert "Where is the ImageNet-pretrained ResNet18?" in text   # none listed: the tab says what it would show
    items, text = filter_panels(ctx, "common", [MODEL, "run:exp1/resnet"])
    assert len(items) == 2 and f"- `{MODEL}` (trained from scratch)" in text
    assert "- `run:exp1/resnet` (trained from scratch)" in text
    with pytest.raises(Exception, match="not available: run:broken"):
        filter_panels(ctx, "common", ["run:broken"])
    monkeypatch.setenv("XCXR_HUB_MODELS", "a/b, c/d ,")
    assert hub_repos_from_config() == ["a/b", "c/d"]


def test_space_app_py_starts_like_a_space(tmp_path):
    """`python space/app.py` (how Spaces starts app_file) finds `lib` from any working directory and serves."""
    import os
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "PYTHONPATH": ""}
    log = open(tmp_path / "app.log", "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "space" / "app.py")], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "app.log").read_text()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail("the app did not answer within 90 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_dicom_upload_is_windowed_and_classified(client, model, tmp_path):
    from test_images import make_dicom
    ramp = np.tile(np.linspace(0, 4095, 256), (256, 1))
    f = tmp_path / "xray.dcm"
    f.write_bytes(make_dicom(ramp, WindowCenter=2048, WindowWidth=4096))
    got = _probs(client.predict(handle_file(str(f)), MODEL, api_name="/classify"))
    assert got["PNEUMONIA"] == pytest.approx(_lib_probs(model, f)["PNEUMONIA"], abs=1e-6)


def test_repeated_heatmap_requests_leave_no_hooks_and_no_growing_memory(app, model):
    """The handler behind /heatmaps, 40 times: Python-level allocations stay flat and no hook stays behind."""
    import gc
    import tracemalloc

    from space.tabs.heatmaps import heatmaps_for
    ctx = app.xcxr_context
    m = ctx.catalog.get(MODEL)
    grey, _ = ctx.load_image(str(PNEU[0]), None, m)

    def once():
        heatmaps_for(m, grey, None, True, "bilinear", "per map", "saliency")

    for _ in range(5):  # warm-up: caches, lazily created buffers
        once()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(40):
        once()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 2_000_000, f"{grown / 1e6:.1f} MB more after 40 requests"
    for module in m.modules():
        assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks


def test_catalog_loads_hub_models_online(hub, hf_cache, tmp_path, monkeypatch):
    """A repo named in XCXR_HUB_MODELS is loaded through the Hub (the in-process emulator); a missing one is
    listed unavailable with the reason, and nothing crashes."""
    from lib.models import create_model, push_folder, save_model
    from space.catalog import CatalogError, ModelCatalog

    import huggingface_hub.constants as hf_constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    torch.manual_seed(3)
    pushed = create_model("pneumonia_cnn", img_size=64).eval()
    push_folder(save_model(pushed, tmp_path / "cnn"), "teacher/space-cnn")
    monkeypatch.setenv("XCXR_HUB_MODELS", "teacher/space-cnn, teacher/does-not-exist")
    cat = ModelCatalog(models_dir=str(ROOT / "models"), runs_dir=str(tmp_path / "no-runs"),
                       studies_dir=tmp_path / "no-studies")
    entries = {e.name: e for e in cat.entries()}
    assert entries["teacher/space-cnn"].source == "hub"
    loaded = cat.get("teacher/space-cnn")
    x = torch.randn(1, 1, 64, 64)
    assert torch.equal(loaded(x), pushed(x))
    assert entries["teacher/does-not-exist"].source == "hub"
    # Hub repos are checked in the background (the start never waits for the network); asking for the missing
    # one gives the reason, and from then on it is listed unavailable with it
    with pytest.raises(CatalogError, match="no such model repo"):
        cat.get("teacher/does-not-exist")
    missing = {e.name: e for e in cat.entries()}["teacher/does-not-exist"]
    assert not missing.available and "no such model repo" in missing.reason
