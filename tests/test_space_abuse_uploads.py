"""Hostile uploads against the launched app (issue #10, points 2 and 4): a public Space that anyone may call.

Each hostile file is replayed with ``gradio_client`` against the real app: it is refused quickly with a message that
names the problem and no server path (or, when it is harmless once bounded, decoded quickly), a refused upload's
temporary file is removed at once, and another visitor's ``/classify`` of a bundled example is answered within 2 s
right after it. Also: one upload limit, enforced by Gradio itself (``max_file_size`` = ``MAX_FILE_BYTES``); GIF and
WebP uploads work; a "server busy" refusal keeps the file; ``/config`` names no server path.

Run: ``python -m pytest -q tests/test_space_abuse_uploads.py`` (about 30 s: one app launch, small files).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
pytest.importorskip("pydicom")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import launched_app  # noqa: E402
from lib.data import load_grey  # noqa: E402
from lib.data import images  # noqa: E402
from lib.models import get_config, predict_proba  # noqa: E402
from test_images import make_deflated_dicom, make_jpeg_dicom, make_rle_bomb, make_rle_dicom  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "chest_xray_test"
PNEU = sorted((EXAMPLES / "PNEUMONIA").glob("*.jpeg"))
NORMAL_EXAMPLE = "NORMAL/" + sorted((EXAMPLES / "NORMAL").glob("*.jpeg"))[0].name
MODEL = "pneumonia_cnn"
#: Another visitor's request right after a hostile one must be answered within this (seconds).
PROMPT_S = 2.0


@pytest.fixture(scope="module")
def app():
    with launched_app() as demo:  # max_file_size = MAX_FILE_BYTES, as in space.app.main
        yield demo
# `client` and `model` come from conftest.py and talk to this `app`.


@pytest.fixture(scope="module")
def visitor(app):
    """A second visitor (its own session), already served once so the model is loaded and warm."""
    other = Client(app.local_url, verbose=False)
    other.predict(None, MODEL, "PNEUMONIA/" + PNEU[0].name, api_name="/classify")
    return other


def _upload_dir() -> Path:
    return Path(os.environ["GRADIO_TEMP_DIR"]).resolve()


def _server_copies(name: str) -> list[Path]:
    """Every file called ``name`` in Gradio's upload folder (uploads are kept as <folder>/<hash>/<name>)."""
    return [p for p in _upload_dir().rglob(name) if p.is_file()]


def _assert_visitor_served_promptly(visitor: Client) -> None:
    start = time.perf_counter()
    out = visitor.predict(None, MODEL, NORMAL_EXAMPLE, api_name="/classify")
    took = time.perf_counter() - start
    assert {c["label"] for c in out["confidences"]} == {"NORMAL", "PNEUMONIA"}
    assert took < PROMPT_S, f"the other visitor waited {took:.2f} s"


def _assert_no_server_path(text: str) -> None:
    for secret in (str(ROOT), str(_upload_dir()), tempfile.gettempdir() + "/", str(Path.home()) + "/", "/root"):
        assert secret not in text, (secret, text)


def _transparent_bomb(path: Path) -> None:
    """36 Mpx of palette with a transparent colour: 36 MB as indices, 144 MB once turned RGBA to composite it."""
    img = Image.new("P", (6000, 6000))
    img.save(path, transparency=0, compress_level=1)


# name -> (write the file, what the refusal says; None = decoded, it is harmless once bounded)
HOSTILE = {
    "abuse_huge_rle.dcm": (lambda p: p.write_bytes(make_rle_dicom(8000, 8000)),
                           r"abuse_huge_rle.dcm: 8000×8000 pixels is more than the 40,000,000 allowed"),
    "abuse_deflate_bomb.dcm": (lambda p: p.write_bytes(make_deflated_dicom(4000, 4000, 8)),
                               r"abuse_deflate_bomb.dcm: the deflated DICOM data set inflates to more than 96 MB"),
    "abuse_transparent_bomb.png": (_transparent_bomb,
                                   r"abuse_transparent_bomb.png: 6000×6000 pixels × 4 bytes needs 137 MB to "
                                   r"decode, more than the 80 MB one image may use"),
    "abuse_liar.dcm": (lambda p: p.write_bytes(make_jpeg_dicom(Image.new("L", (640, 480), 99), rows=16, cols=16)),
                       r"abuse_liar.dcm: the DICOM header says 16×16 pixels, but the compressed image inside it "
                       r"is 640×480"),
    "abuse_noise.png": (lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 300_000, np.uint8)
                                                .tobytes()),
                        r"abuse_noise.png: not an image file this app can read"),
    "abuse_rle_bomb.dcm": (lambda p: p.write_bytes(make_rle_bomb(8)), None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_upload_is_bounded_and_the_next_visitor_is_served_promptly(client, visitor, tmp_path, name):
    write, refusal = HOSTILE[name]
    path = tmp_path / name
    write(path)
    start = time.perf_counter()
    if refusal is None:
        out = client.predict(handle_file(str(path)), MODEL, api_name="/classify")
        assert out["label"] in ("NORMAL", "PNEUMONIA")
        assert _server_copies(name), "an accepted upload is kept (Gradio removes it after an hour)"
    else:
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(path)), MODEL, api_name="/classify")
        msg = str(info.value)
        assert re.search(refusal, msg), msg
        _assert_no_server_path(msg)
        assert _server_copies(name) == [], "a refused upload's temporary file must be removed"
    assert time.perf_counter() - start < 5.0  # upload + answer; the decoder's part is well under a second
    _assert_visitor_served_promptly(visitor)


def test_a_refused_upload_that_is_gone_says_so(app):
    """A second request with the same (refused, removed) upload: a clear message, not "no such file"."""
    from space.context import load_image

    stored = _upload_dir() / "0123abcd" / "abuse_gone.png"  # where Gradio would have kept it
    with pytest.raises(gr.Error, match=r"abuse_gone.png: this upload is no longer on the server"):
        load_image(app.xcxr_context, str(stored), None, app.xcxr_context.model(MODEL))


def test_visitors_sending_the_same_refused_file_all_get_its_reason(app, client, visitor, tmp_path):
    """Gradio keeps identical uploads under one path, so the first refusal removes the file the others are about to
    read: they still get the real reason, not "no longer on the server" (seen with a class sending one bad file)."""
    from space.context import load_image

    model = app.xcxr_context.model(MODEL)
    stored = _upload_dir() / "abuse_same" / "abuse_same_noise.png"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(bytes(range(256)) * 100)
    reason = r"abuse_same_noise.png: not an image file this app can read"
    for _ in range(2):  # the first request refuses and removes it; the second finds it gone
        with pytest.raises(gr.Error, match=reason):
            load_image(app.xcxr_context, str(stored), None, model)
        assert not stored.exists()
    # and through the app, four visitors at once with the same bytes
    path = tmp_path / "abuse_same_bomb.png"
    _transparent_bomb(path)
    from concurrent.futures import ThreadPoolExecutor

    def send(c: Client) -> str:
        with pytest.raises(AppError) as info:
            c.predict(handle_file(str(path)), MODEL, api_name="/classify")
        return str(info.value)

    with ThreadPoolExecutor(4) as pool:
        messages = list(pool.map(send, [client, visitor, client, visitor]))
    for msg in messages:
        assert "needs 137 MB to decode, more than the 80 MB one image may use" in msg, msg


def test_removal_never_touches_files_outside_the_upload_folder(tmp_path):
    from space.context import discard_upload

    example = EXAMPLES / NORMAL_EXAMPLE
    outside = tmp_path / "mine.png"
    outside.write_bytes(b"x")
    assert not discard_upload(example) and example.is_file()
    assert not discard_upload(outside) and outside.is_file()
    inside = _upload_dir() / "abuse_discard" / "bad.png"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(b"x")
    assert discard_upload(inside) and not inside.exists() and not inside.parent.exists()


def test_one_upload_limit_enforced_by_gradio(app, client):
    import httpx

    config = json.loads(urllib.request.urlopen(app.local_url + "config", timeout=30).read())
    assert config["max_file_size"] == images.MAX_FILE_BYTES == 50 * 2**20
    before = {p for p in _upload_dir().rglob("*") if p.is_file()}
    # a raw HTTP client: Gradio cuts the upload off while it streams in, and keeps nothing
    body = bytes(images.MAX_FILE_BYTES + 2**20)
    r = httpx.post(app.local_url + "gradio_api/upload", files={"files": ("abuse_big.png", body, "image/png")},
                   timeout=60)
    assert r.status_code == 413 and str(images.MAX_FILE_BYTES) in r.text
    after = {p for p in _upload_dir().rglob("*") if p.is_file()}
    assert not [p for p in after - before if p.stat().st_size > 2**20], "a refused upload stays on disk"
    # gradio_client reads the limit from /config and refuses before sending
    (Path(tempfile.gettempdir()) / "abuse_big.png").write_bytes(body)
    try:
        with pytest.raises(Exception, match="exceeds the maximum file size"):
            client.predict(handle_file(str(Path(tempfile.gettempdir()) / "abuse_big.png")), MODEL,
                           api_name="/classify")
    finally:
        (Path(tempfile.gettempdir()) / "abuse_big.png").unlink()


def test_the_upload_limit_is_the_same_number_everywhere():
    """space.app.main launches with the decoder's limit; no test or benchmark launches with another one."""
    assert "max_file_size=MAX_FILE_BYTES" in (ROOT / "space" / "app.py").read_text()
    for path in [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("space/**/*.py")]:
        if path.name == Path(__file__).name:
            continue
        for found in re.findall(r"max_file_size\s*=\s*([^,)\s]+)", path.read_text()):
            assert found.strip("`'\"").split(".")[-1] == "MAX_FILE_BYTES", (path.name, found)


@pytest.mark.parametrize("kind", ["gif_animated", "webp_animated", "webp"])
def test_gif_and_webp_uploads_are_classified_from_their_first_frame(client, model, tmp_path, kind):
    first = Image.open(PNEU[2]).convert("L").resize((320, 280))
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    path = tmp_path / f"abuse_{kind}.{kind.split('_')[0]}"
    if kind == "webp":
        first.save(path, lossless=True)
    else:
        first.save(path, save_all=True, append_images=[second], duration=100, loop=0,
                   **({"lossless": True} if kind.startswith("webp") else {}))
        assert Image.open(path).n_frames == 2
    got = client.predict(handle_file(str(path)), MODEL, api_name="/classify")
    grey = load_grey(path, get_config(model)["img_size"])
    want = float(predict_proba(model, torch.from_numpy(grey)[None, None])[0])
    probs = {c["label"]: float(c["confidence"]) for c in got["confidences"]}
    assert probs["PNEUMONIA"] == pytest.approx(want, abs=1e-6)


def test_the_upload_picker_offers_every_decodable_suffix(app):
    from lib.data import IMAGE_SUFFIXES
    from space.context import FILE_TYPES

    assert {".gif", ".webp", ".dcm", ".tif", ".png"} <= set(FILE_TYPES) == set(IMAGE_SUFFIXES)
    config = json.loads(urllib.request.urlopen(app.local_url + "config", timeout=30).read())
    # every image picker; the "Your model" panel's two pickers take a model's config.json and model.safetensors
    pickers = [c["props"]["file_types"] for c in config["components"] if c.get("type") == "file"
               and not str(c["props"].get("elem_id") or "").startswith("your-model")]
    assert pickers and all(set(types) == set(FILE_TYPES) for types in pickers)


def test_a_busy_refusal_keeps_the_upload_and_small_images_still_pass(client, visitor, tmp_path, monkeypatch):
    """With the decode budget full, a large upload is told to try again (and its file is kept for that); the other
    visitor's ordinary image is decoded at once."""
    monkeypatch.setattr(images, "DECODE_WAIT_S", 0.05)
    path = tmp_path / "abuse_large_ok.png"
    Image.new("L", (5000, 4000), 80).save(path, compress_level=1)  # 20 MB decoded: a "large" decode, allowed
    with images._BUDGET.reserve(images.DECODE_BUDGET_BYTES, "someone else's upload"):
        with pytest.raises(AppError, match=r"abuse_large_ok.png: the server is busy decoding other large images; "
                                           r"try again in a moment"):
            client.predict(handle_file(str(path)), MODEL, api_name="/classify")
        assert _server_copies(path.name), "kept, so that trying again works"
        _assert_visitor_served_promptly(visitor)
    monkeypatch.undo()
    assert client.predict(handle_file(str(path)), MODEL, api_name="/classify")["label"]


def test_config_and_api_info_name_no_server_path(app):
    for route in ("config", "gradio_api/info"):
        text = urllib.request.urlopen(app.local_url + route, timeout=30).read().decode()
        _assert_no_server_path(text)
    config = json.loads(urllib.request.urlopen(app.local_url + "config", timeout=30).read())
    labels = [str(choice[0]) for c in config["components"] if c.get("type") == "dropdown"
              for choice in c["props"].get("choices") or []]
    assert labels and not [label for label in labels if re.search(r"(^|[\s'\"(])/\w", label)], labels
