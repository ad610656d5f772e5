""""Your model" (``space/visitor_models.py``): a student's own model, opened by Hub repo id or by upload, seen in
every tab by that session only.

A model is trained by ``python -m train`` on tiny data and pushed to the Hub emulator (a public and a private repo);
the launched app is driven through ``gradio_client`` (one ``Client`` = one Gradio session). Also: the token is
never kept, logged or echoed; hostile repos and uploads are refused with lib's one-line reason before the weights
are fetched; the caps, the idle timeout and the end of a session drop models; a slow download holds nobody else.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import safetensors.torch
import torch

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import ROOT, launched_app, make_xray_folder  # noqa: E402
from lib.data import load_grey  # noqa: E402
from lib.models import create_model, get_config, load_model, predict_proba, push_folder, save_model  # noqa: E402
from space import visitor_models  # noqa: E402
from space.catalog import CatalogError  # noqa: E402
from space.visitor_models import VisitorModels  # noqa: E402

RUN = uuid.uuid4().hex[:8]
OWNER = "student"
PUBLIC = f"{OWNER}/xcxr-mine-{RUN}"
PRIVATE = f"{OWNER}/xcxr-private-{RUN}"
#: The visitor's own token (the emulator accepts any bearer token); the server's is conftest's HF_TOKEN.
TOKEN = f"hf_VisitorSecret{RUN}XYZ"
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"
EXAMPLE_PATH = ROOT / "examples" / "chest_xray_test" / EXAMPLE
#: An absolute server path in a message (``/tmp/…``, ``/work/…``) or the private folder's name.
SERVER_PATH = re.compile(r"(^|[\s'\"(])/(tmp|work|root|home|usr|var)\b|xcxr-yours-")


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory, hub):
    """A pneumonia_cnn trained by ``python -m train`` (1 epoch, 32 px), pushed public by the CLI and private by
    ``push_folder``; returns its folder."""
    from train.__main__ import main

    tmp = tmp_path_factory.mktemp("yours")
    data, out = make_xray_folder(tmp / "data", n_per_class=8, size=40), tmp / "run"
    rc = main(["pneumonia_cnn", "--data", str(data), "--out", str(out), "--epochs", "1", "--img-size", "32",
               "--batch-size", "8", "--device", "cpu", "--no-progress", "--push-to-hub", PUBLIC])
    assert rc == 0
    push_folder(out, PRIVATE, private=True)
    assert hub.is_private(PRIVATE) and not hub.is_private(PUBLIC)
    return out


@pytest.fixture(scope="module")
def app(trained):
    with launched_app() as demo:
        yield demo


def new_client(app) -> Client:
    return Client(app.local_url, verbose=False)


@pytest.fixture(scope="module")
def owner(app):
    """Session A: opens the public repo."""
    c = new_client(app)
    yield c
    c.close()


def _status(result) -> str:
    return result[0]


def _choice_values(update) -> list[str]:
    """The choice values of a dropdown update as gradio_client returns it."""
    assert isinstance(update, dict) and "choices" in update, update
    return [c[1] if isinstance(c, (list, tuple)) else c for c in update["choices"]]


def _lib_probability(folder, path=EXAMPLE_PATH) -> float:
    m = load_model(folder)
    grey = load_grey(path, get_config(m)["img_size"])
    return float(predict_proba(m, torch.from_numpy(grey)[None, None])[0])


def _probs(result) -> dict[str, float]:
    return {c["label"]: float(c["confidence"]) for c in result["confidences"]}


def _requests_for(hub, repo: str) -> list[dict]:
    return [r for r in hub.requests if repo in r.get("path", "")]


# ------------------------------------------------------------------------------------ opening and using, by session
def test_open_a_public_repo_then_classify_and_explain(app, owner, trained, hub):
    result = owner.predict(PUBLIC, "", api_name="/your_model_hub")
    name = f"yours:{PUBLIC}"
    assert f"Opened `{name}`" in _status(result) and "pneumonia_cnn" in _status(result)
    assert result[1] == ""  # the token box is emptied
    dropdowns = result[2:]
    assert len(dropdowns) == len(app.xcxr_context.model_inputs) == 7
    for update in dropdowns:  # every tab's model list, the Filters multi-select included
        assert name in _choice_values(update), update
    # no token went with the download of a public repo: not even the server's own HF_TOKEN
    reqs = _requests_for(hub, PUBLIC)
    assert any("model.safetensors" in r["path"] for r in reqs)
    assert not [r for r in reqs if r["method"] in ("GET", "HEAD") and "resolve" in r["path"] and r["token"]]

    probs = _probs(owner.predict(None, name, EXAMPLE, api_name="/classify"))
    assert probs["PNEUMONIA"] == pytest.approx(_lib_probability(trained), abs=1e-6)
    left, right, sal, caption = owner.predict(None, name, api_name="/heatmaps")
    for path in (left, right, sal):
        assert Path(path).is_file() and Path(path).suffix == ".png"
    assert "Grad-CAM" in caption
    # the other tabs resolve it too (Filters: by name in its multi-select)
    gallery, text = owner.predict("common", [name], api_name="/filters")
    assert len(gallery) == 1 and name in text
    # and the expensive lane's threads (a whole split): the session travels with the request there too
    counts, *_, note = owner.predict(name, "examples", 0.5, api_name="/outcomes")
    assert sum(counts.values()) == 100 and name in note


def test_another_session_does_not_see_it(app, owner):
    name = f"yours:{PUBLIC}"
    if app.xcxr_context.visitors.name_of(owner.session_hash) != name:
        owner.predict(PUBLIC, "", api_name="/your_model_hub")
    other = new_client(app)
    try:
        with pytest.raises(AppError, match="unknown model"):
            other.predict(None, name, EXAMPLE, api_name="/classify")
        with pytest.raises(AppError, match="unknown model"):
            other.predict(None, name, api_name="/heatmaps")
        status, *dropdowns = other.predict(api_name="/your_model_forget")
        assert "no model" in status
        for update in dropdowns:
            assert not [v for v in _choice_values(update) if str(v).startswith("yours:")]
        # the page's own configuration (what a new browser tab gets) lists no visitor model
        assert PUBLIC not in json.dumps(other.config)
        for comp in other.config["components"]:
            choices = comp.get("props", {}).get("choices") or []
            assert not [c for c in choices if str(c[1] if isinstance(c, list) else c).startswith("yours:")]
        assert app.xcxr_context.visitors.name_of(other.session_hash) is None
    finally:
        other.close()
    # the owner still has it
    assert _probs(owner.predict(None, name, EXAMPLE, api_name="/classify"))


def test_upload_opens_the_model_and_replaces_the_sessions_old_one(app, trained):
    c = new_client(app)
    try:
        c.predict(PUBLIC, "", api_name="/your_model_hub")
        vm = app.xcxr_context.visitors
        held = len(vm)
        result = c.predict(handle_file(str(trained / "config.json")), handle_file(str(trained / "model.safetensors")),
                           api_name="/your_model_upload")
        assert "Opened `yours:upload`" in _status(result)
        assert result[1] is None and result[2] is None  # the upload fields are emptied
        assert vm.name_of(c.session_hash) == "yours:upload" and len(vm) == held  # one per session
        probs = _probs(c.predict(None, "yours:upload", EXAMPLE, api_name="/classify"))
        assert probs["PNEUMONIA"] == pytest.approx(_lib_probability(trained), abs=1e-6)
        with pytest.raises(AppError, match="unknown model"):  # the replaced one is gone
            c.predict(None, f"yours:{PUBLIC}", EXAMPLE, api_name="/classify")
        status, *_ = c.predict(api_name="/your_model_forget")
        assert "dropped" in status and vm.name_of(c.session_hash) is None
    finally:
        c.close()


# --------------------------------------------------------------------------------------------------- the token
def _session_state_text(app, session: str) -> str:
    state = app.server_app.state_holder.session_data.get(session)
    if state is None:
        return ""
    texts = [repr(v) for v in getattr(state, "state_data", {}).values()]
    texts += [repr(v) for v in getattr(state, "config_values", {}).values()]
    for block in getattr(getattr(state, "blocks_config", None), "blocks", {}).values():
        texts.append(repr(getattr(block, "value", None)))
    return "\n".join(texts)


def test_private_repo_with_a_token_that_is_never_kept_logged_or_echoed(app, trained, hub, caplog, capfd,
                                                                       monkeypatch):
    caplog.set_level(logging.DEBUG)
    c = new_client(app)
    seen: list[str] = []
    try:
        # without a token: the server's own HF_TOKEN is not lent to visitors
        with pytest.raises(AppError, match="private") as info:
            c.predict(PRIVATE, "", api_name="/your_model_hub")
        seen.append(str(info.value))
        result = c.predict(PRIVATE, TOKEN, api_name="/your_model_hub")
        seen.append(repr(result))
        assert f"Opened `yours:{PRIVATE}`" in _status(result) and result[1] == ""
        assert TOKEN in hub.tokens_seen
        probs = _probs(c.predict(None, f"yours:{PRIVATE}", EXAMPLE, api_name="/classify"))
        seen.append(repr(probs))
        assert probs["PNEUMONIA"] == pytest.approx(_lib_probability(trained), abs=1e-6)

        # a hostile private repo, opened with the token: refused, no token in the reason
        bad = f"{OWNER}/hostile-private-{RUN}"
        hub.add_files(bad, {"config.json": json.dumps({"architecture": "pneumonia_cnn", "img_size": 60000}),
                            "model.safetensors": b"\0" * 64}, private=True)
        with pytest.raises(AppError, match="img_size = 60000 is out of bounds") as info:
            c.predict(bad, TOKEN, api_name="/your_model_hub")
        seen.append(str(info.value))
        # a malformed token is refused without quoting it
        with pytest.raises(AppError, match="token is malformed") as info:
            c.predict(PRIVATE, TOKEN + "\nInjected: x", api_name="/your_model_hub")
        seen.append(str(info.value))
        assert TOKEN not in str(info.value)

        # an unexpected failure whose text holds the token: the log has it blanked out, the visitor an error id
        def boom(repo_id, dest, *, token=False, **kw):
            raise RuntimeError(f"simulated bug with {token} inside")
        monkeypatch.setattr(visitor_models, "download_model", boom)
        with pytest.raises(AppError, match="error id") as info:
            c.predict(PRIVATE, TOKEN, api_name="/your_model_hub")
        seen.append(str(info.value))
        assert "simulated bug with [token] inside" in caplog.text
        state = _session_state_text(app, c.session_hash)
        # Gradio's deep links save a session's input values to disk and put them back into whoever opens the link
        import httpx
        link = httpx.get(f"{app.local_url.rstrip('/')}/gradio_api/deep_link",
                         params={"session_hash": c.session_hash}).json()
        assert link
        saved = Path(app.server_app.uploaded_file_dir) / "deep_links" / link / "state.json"
        state += saved.read_text()
        assert PRIVATE in saved.read_text()  # the repo id box is kept, as any input; the token box is not
    finally:
        c.close()
    out, err = capfd.readouterr()
    for where, text in {"responses": "\n".join(seen), "log": caplog.text, "stdout/stderr": out + err,
                        "session state and deep link": state}.items():
        assert TOKEN not in text, f"the token leaked into {where}"


# ------------------------------------------------------------------------------------------------- hostile input
def _tiny_folder(root: Path, **cfg) -> Path:
    m = create_model("pneumonia_cnn", img_size=32)
    save_model(m, root)
    if cfg:
        config = json.loads((root / "config.json").read_text())
        (root / "config.json").write_text(json.dumps({**config, **cfg}))
    return root


def test_hostile_uploads_are_refused_with_their_reason(app, tmp_path):
    c = new_client(app)
    try:
        big = _tiny_folder(tmp_path / "big", img_size=60000)
        with pytest.raises(AppError, match=r"yours/upload: config.json does not describe a valid pneumonia_cnn "
                                           r"\(pneumonia_cnn: img_size = 60000 is out of bounds") as info:
            c.predict(handle_file(str(big / "config.json")), handle_file(str(big / "model.safetensors")),
                      api_name="/your_model_upload")
        assert not SERVER_PATH.search(str(info.value)), str(info.value)

        shapes = _tiny_folder(tmp_path / "shapes")
        safetensors.torch.save_model(create_model("pneumonia_cnn", widths=(16, 32, 64), img_size=32),
                                     str(shapes / "model.safetensors"))
        with pytest.raises(AppError, match=r"the weights do not match config.json: tensor 'features.0.conv1.weight' "
                                           r"in model.safetensors is F32 \[16, 1, 3, 3\], the model needs") as info:
            c.predict(handle_file(str(shapes / "config.json")), handle_file(str(shapes / "model.safetensors")),
                      api_name="/your_model_upload")
        assert not SERVER_PATH.search(str(info.value)), str(info.value)

        huge = tmp_path / "huge" / "config.json"
        huge.parent.mkdir()
        huge.write_text(json.dumps({"architecture": "pneumonia_cnn", "pad": "x" * (2**20 + 10)}))
        with pytest.raises(AppError, match=r"config.json: 1.0 MB; it must be a non-empty file of at most 1 MB"):
            c.predict(handle_file(str(huge)), handle_file(str(shapes / "model.safetensors")),
                      api_name="/your_model_upload")
        with pytest.raises(AppError, match="upload both"):
            c.predict(handle_file(str(shapes / "config.json")), None, api_name="/your_model_upload")
        assert app.xcxr_context.visitors.name_of(c.session_hash) is None
    finally:
        c.close()


def test_oversized_weights_are_refused_before_reading(tmp_path):
    folder = _tiny_folder(tmp_path / "m")
    weights = tmp_path / "sparse.safetensors"
    with open(weights, "wb") as f:  # 201 MB without writing them (a sparse file)
        f.truncate(201 * 2**20)
    vm = VisitorModels()
    with pytest.raises(CatalogError, match=r"model.safetensors: 201.0 MB; it must be a non-empty file of at most "
                                           r"200 MB"):
        vm.open_files("s", folder / "config.json", weights)
    link = tmp_path / "link.json"
    link.symlink_to(folder / "config.json")
    with pytest.raises(CatalogError, match="not a regular file"):
        vm.open_files("s", link, folder / "model.safetensors")


def test_hostile_repos_are_refused_before_their_weights_are_downloaded(app, hub, tmp_path):
    c = new_client(app)
    try:
        bounds = f"{OWNER}/hostile-bounds-{RUN}"
        hub.add_files(bounds, {"config.json": json.dumps({"architecture": "pneumonia_cnn", "img_size": 60000}),
                               "model.safetensors": b"\0" * 64})
        with pytest.raises(AppError, match=rf"{bounds}: config.json does not describe a valid pneumonia_cnn "
                                           r"\(pneumonia_cnn: img_size = 60000 is out of bounds") as info:
            c.predict(bounds, "", api_name="/your_model_hub")
        assert not SERVER_PATH.search(str(info.value)), str(info.value)

        bloated = f"{OWNER}/hostile-bloated-{RUN}"  # a valid config, but 3 MB of "weights" for a 73 KB model
        folder = _tiny_folder(tmp_path / "bloated")
        hub.add_files(bloated, {"config.json": (folder / "config.json").read_bytes(),
                                "model.safetensors": b"\0" * (3 * 2**20)})
        with pytest.raises(AppError, match=r"model.safetensors is 3.0 MB, more than the 1.\d MB this config's model "
                                           r"can hold"):
            c.predict(bloated, "", api_name="/your_model_hub")

        shapes = f"{OWNER}/hostile-shapes-{RUN}"  # passes every check before the download, not the header check
        wrong = tmp_path / "wrong.safetensors"
        safetensors.torch.save_model(create_model("pneumonia_cnn", widths=(16, 32, 64), img_size=32), str(wrong))
        hub.add_files(shapes, {"config.json": (folder / "config.json").read_bytes(),
                               "model.safetensors": wrong.read_bytes()})
        with pytest.raises(AppError, match=rf"{shapes}: the weights do not match config.json"):
            c.predict(shapes, "", api_name="/your_model_hub")

        for repo in (bounds, bloated):  # refused from config.json and the metadata: no weights fetched
            assert not [r for r in _requests_for(hub, repo)
                        if r["method"] == "GET" and r["path"].endswith("model.safetensors")]
        # a repo id is only ever a Hub repo id: a server folder of that name is not loaded
        with pytest.raises(AppError, match="models/pneumonia_cnn: no such model repo on the Hub"):
            c.predict("models/pneumonia_cnn", "", api_name="/your_model_hub")
        for bad in ("/etc", "../models/pneumonia_cnn", "a/b/c", "owner/na..me"):
            with pytest.raises(AppError, match="not a Hub repo id"):
                c.predict(bad, "", api_name="/your_model_hub")
        assert app.xcxr_context.visitors.name_of(c.session_hash) is None
    finally:
        c.close()


def test_download_model_checks_the_id_and_token_form_and_says_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    import huggingface_hub
    import httpx2

    from lib.models import ModelLoadError, download_model

    with pytest.raises(ModelLoadError, match="token is malformed") as info:
        download_model("owner/name", tmp_path, token="hf_abc def")
    assert "hf_abc" not in str(info.value)
    with pytest.raises(ModelLoadError, match="not a Hub repo id"):
        download_model(str(ROOT / "models" / "pneumonia_cnn"), tmp_path)

    def unreachable(*args, **kwargs):
        raise httpx2.ConnectError("connection refused")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    with pytest.raises(ModelLoadError, match="owner/name: the Hub cannot be reached"):
        download_model("owner/name", tmp_path)


# --------------------------------------------------------------------------------------- time, caps and endings
def test_a_slow_download_holds_no_other_visitor(app, monkeypatch):
    vm = app.xcxr_context.visitors
    monkeypatch.setattr(vm, "wait_s", 0.5)
    real = visitor_models.download_model

    def slow(*args, **kwargs):
        time.sleep(4)
        return real(*args, **kwargs)

    monkeypatch.setattr(visitor_models, "download_model", slow)
    slow_client, other = new_client(app), new_client(app)
    try:
        t0 = time.monotonic()
        with pytest.raises(AppError, match="still loading"):
            slow_client.predict(PUBLIC, "", api_name="/your_model_hub")
        assert time.monotonic() - t0 < 3.5
        with pytest.raises(AppError, match="still loading"):  # its own model, meanwhile
            slow_client.predict(None, f"yours:{PUBLIC}", EXAMPLE, api_name="/classify")
        t1 = time.monotonic()
        assert _probs(other.predict(None, "pneumonia_cnn", EXAMPLE, api_name="/classify"))
        assert time.monotonic() - t1 < 3.0  # not queued behind the download
        deadline = time.monotonic() + 30
        while vm.name_of(slow_client.session_hash) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _probs(slow_client.predict(None, f"yours:{PUBLIC}", EXAMPLE, api_name="/classify"))
    finally:
        slow_client.close()
        other.close()


def test_closing_the_browser_tab_drops_the_model(app):
    """Gradio runs ``demo.unload`` handlers when a session's heartbeat stream closes (a tab closed or reloaded)."""
    import httpx

    c = new_client(app)
    try:
        c.predict(PUBLIC, "", api_name="/your_model_hub")
        vm = app.xcxr_context.visitors
        assert vm.name_of(c.session_hash) == f"yours:{PUBLIC}"
        url = f"{app.local_url.rstrip('/')}/gradio_api/heartbeat/{c.session_hash}"
        with httpx.stream("GET", url, timeout=10) as r:  # what a browser tab holds open, then closes
            next(r.iter_lines())
        deadline = time.monotonic() + 15
        while vm.name_of(c.session_hash) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert vm.name_of(c.session_hash) is None
    finally:
        c.close()


def test_caps_idle_timeout_and_session_end(trained):
    cfg, weights = trained / "config.json", trained / "model.safetensors"
    vm = VisitorModels(max_models=2, idle_s=3600)
    for s in ("a", "b"):
        assert vm.open_files(s, cfg, weights) == "yours:upload"
    vm.get("yours:upload", session="a")  # "a" used last: "b" is the least recently used
    vm.open_files("c", cfg, weights)
    assert len(vm) == 2 and vm.name_of("b") is None and vm.name_of("a") and vm.name_of("c")
    with pytest.raises(CatalogError, match="unknown model"):
        vm.get("yours:upload", session="b")
    with pytest.raises(CatalogError, match="unknown model"):  # no session (a request-less call): nobody's model
        vm.get("yours:upload")

    one = vm.held_bytes() // 2  # bytes cap: room for one model only
    by_bytes = VisitorModels(max_bytes=one, idle_s=3600)
    by_bytes.open_files("a", cfg, weights)
    by_bytes.open_files("b", cfg, weights)
    assert by_bytes.name_of("a") is None and by_bytes.name_of("b") == "yours:upload"

    clock = [1000.0]
    idle = VisitorModels(idle_s=60, clock=lambda: clock[0])
    idle.open_files("a", cfg, weights)
    idle.open_files("b", cfg, weights)
    clock[0] += 45
    idle.get("yours:upload", session="a")  # used: its clock restarts
    clock[0] += 30
    idle.sweep()
    assert idle.name_of("a") == "yours:upload" and idle.name_of("b") is None

    assert idle.drop("a") and not idle.drop("a") and len(idle) == 0  # the session ended (demo.unload)
    # every private folder the uploads were copied to is gone
    assert not list(Path(tempfile.gettempdir()).glob("xcxr-yours-*"))


def test_a_load_finishing_after_its_session_ended_is_not_kept(trained, monkeypatch):
    import threading

    cfg, weights = trained / "config.json", trained / "model.safetensors"
    vm = VisitorModels(wait_s=0.2)
    release = threading.Event()
    real = visitor_models.load_model

    def gated(folder):
        release.wait(10)
        return real(folder)

    monkeypatch.setattr(visitor_models, "load_model", gated)
    with pytest.raises(CatalogError, match="still loading"):
        vm.open_files("gone", cfg, weights)
    with pytest.raises(CatalogError, match="still loading"):  # a second open of another model must wait
        vm.open_repo("gone", PUBLIC)
    vm.drop("gone")  # the tab closed while it loaded
    release.set()
    vm._pool.shutdown(wait=True)
    assert vm.name_of("gone") is None and len(vm) == 0 and not vm._pending and not vm._ended


# --------------------------------------------------------------------------------------------------- browser
def test_browser_open_a_repo_and_see_it_in_heatmaps(app, tmp_path):
    import os

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_space_browser import ARGS, SHOTS, TIMEOUT

    os.environ.setdefault("XDG_CONFIG_HOME", str(tmp_path / "config"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp_path / "cache"))
    name = f"yours:{PUBLIC}"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT)
            page.goto(app.local_url)
            page.get_by_text("Your model: look inside a model you trained").click()
            page.locator("#your-model-repo textarea, #your-model-repo input").first.fill(PUBLIC)
            page.locator("#your-model-token input, #your-model-token textarea").first.fill(TOKEN)
            page.locator("#your-model-open-hub").click()
            page.locator("#your-model-status").get_by_text(f"Opened {name}").wait_for()
            assert page.locator("#your-model-token input, #your-model-token textarea").first.input_value() == ""
            assert TOKEN not in page.url
            page.get_by_role("tab", name="Heatmaps", exact=True).click()
            dropdown = page.get_by_role("combobox", name="Model", exact=True).locator("visible=true").first
            dropdown.click()
            option = page.get_by_role("option", name=name)  # a substring: the label adds "(your model, …)"
            option.first.wait_for()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "your_model.png"), full_page=True)
            saliency = page.locator(".block:visible", has_text="Saliency").locator("img:visible").first
            before = saliency.get_attribute("src")  # the default model's maps, shown when the tab opened
            option.first.click()
            assert name in dropdown.input_value()
            page.get_by_role("button", name="Explain", exact=True).locator("visible=true").first.click()
            sync_api.expect(saliency).not_to_have_attribute("src", before, timeout=TIMEOUT)  # the student's maps

            other = browser.new_page()  # another visitor: not in their list
            other.set_default_timeout(TIMEOUT)
            other.goto(app.local_url)
            other.get_by_role("tab", name="Heatmaps", exact=True).click()
            other.get_by_role("combobox", name="Model", exact=True).locator("visible=true").first.click()
            other.get_by_role("option").first.wait_for()
            assert not other.get_by_role("option", name="yours:").count()
        finally:
            browser.close()
