"""Benchmark family ``app``: what the Gradio app adds on top of Gradio's own round trip and the model's compute.

Figures (every speed claim is a ratio of two sides measured side by side in this run, interleaved, median over
repeats; the absolute milliseconds are reported for context only):

``classify_*`` / ``heatmaps_*`` — the app (``build_app(make_context())``, bundled model, bundled example
    ``PNEUMONIA/…`` uploaded as a file, default options) launched in this process, called through
    ``gradio_client.Client.predict`` on ``/classify`` and ``/heatmaps``: ``*_app_ms``. Against it, in the same
    process and interleaved request by request:
    *lib*: what the tab's handler computes, called in-process (``*_lib_ms``): decode the file at the model's size
    (``space.context.load_image``) then ``space.tabs.classify.class_probabilities`` (``predict_proba``), resp.
    ``space.tabs.heatmaps.heatmaps_for`` (Grad-CAM of both classes, the predicted class's saliency, three overlays);
    *floor*: a no-op ``gr.Blocks`` app with the same input and output components (``gr.File`` in; ``gr.Label`` out,
    resp. three PNG ``gr.Image`` + ``gr.Markdown`` out) returning precomputed outputs of the same size, called the
    same way (``*_noop_ms``: Gradio's own round trip, upload + queue + PNG encoding + download).
    ``*_ratio`` = median over repeats of app / (lib + noop) — goal ≤ 1.2.

``concurrent_*`` — 8 client threads (one ``Client`` each) × N requests to ``/classify``: p50 / p95 latency (ms),
    ``concurrent_p95_over_p50`` (goal ≤ 2) and ``concurrent_errors`` (goal 0).

``cold_*`` — ``python -m space.app --port P`` as a subprocess (fresh ``XCXR_CACHE_DIR``): seconds from the launch to
    the first HTTP 200 of ``/`` (``cold_first_page_seconds``). Then ``/outcomes`` is called for the bundled model,
    the default split and the model's threshold at once; ``outcomes_ready_seconds`` is from the launch until it
    returns. ``python -m space.app`` starts ``outcomes.warm_up`` in a background thread at launch
    (``outcomes_precomputed_at_start`` = 1), so the call may find the work done or under way; the predictions are
    cached in memory and on disk
    (``$XCXR_CACHE_DIR/../predictions``). A second launch on the same cache folder measures the disk-cached case:
    ``outcomes_ready_seconds_disk_cache`` (``outcomes_from_disk_cache`` = 1 when the first run left the prediction
    file there). Full run: the course data's ``test`` split (decoded from scratch in the first launch); ``--quick``:
    the bundled examples, one launch.

``--quick``: 1 repeat, no warm-up, 8 × 1 concurrent requests — a smoke test; its numbers mean nothing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .registry import benchmark, median  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(demo: Any) -> str:
    from lib.data.images import MAX_FILE_BYTES

    port = _free_port()
    with contextlib.redirect_stdout(sys.stderr):  # uploads limited as in space.app.main
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    max_file_size=MAX_FILE_BYTES)
    return f"http://127.0.0.1:{port}/"


def _client(url: str, downloads: str) -> Any:
    from gradio_client import Client
    return Client(url, verbose=False, download_files=downloads, analytics_enabled=False)


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ------------------------------------------------------------------------ 1 + 2: round trips, in this process
def _round_trips(quick: bool, work: Path) -> dict[str, float]:
    import gradio as gr
    from gradio_client import handle_file

    from space.app import build_app, make_context
    from space.context import FILE_TYPES, load_image
    from space.tabs.classify import class_probabilities
    from space.tabs.heatmaps import DEFAULT_LAYER, SCALES, heatmaps_for

    repeats = 1 if quick else 15
    per_client = 1 if quick else 15
    n_clients = 8

    ctx = make_context()
    app = build_app(ctx)
    model_name = ctx.default_model
    model = ctx.model(model_name)
    path = str(ctx.examples.path(EXAMPLE))
    hm_args = (DEFAULT_LAYER, True, "bilinear", SCALES[0], "saliency")

    # --- the in-process lib side: exactly what the handlers compute (decode + the lib call) --------------------
    def lib_classify() -> dict[str, float]:
        small, _ = load_image(ctx, path, None, model, original=False)
        return class_probabilities(model, small)

    def lib_heatmaps() -> tuple:
        grey, _ = load_image(ctx, path, None, model, original=False)
        return heatmaps_for(model, grey, *hm_args)

    probs0, heat0 = lib_classify(), lib_heatmaps()  # also the no-op apps' precomputed outputs

    # --- the no-op floor: same components, precomputed outputs ------------------------------------------------
    with gr.Blocks() as noop:
        f1 = gr.File(file_types=FILE_TYPES, type="filepath")
        lab = gr.Label(num_top_classes=2)
        b1 = gr.Button()
        b1.click(lambda f: probs0, f1, lab, api_name="classify", concurrency_limit=4)
        f2 = gr.File(file_types=FILE_TYPES, type="filepath")
        imgs = [gr.Image(format="png", interactive=False) for _ in range(3)]
        md = gr.Markdown()
        b2 = gr.Button()
        b2.click(lambda f: heat0, f2, [*imgs, md], api_name="heatmaps", concurrency_limit=2)
    noop.queue(default_concurrency_limit=2, max_size=256)

    app_url, noop_url = _launch(app), _launch(noop)
    try:
        dl = str(work / "downloads")
        c_app, c_noop = _client(app_url, dl), _client(noop_url, dl)

        sides: dict[str, Callable[[], Any]] = {
            "classify_app": lambda: c_app.predict(handle_file(path), model_name, None, api_name="/classify"),
            "classify_lib": lib_classify,
            "classify_noop": lambda: c_noop.predict(handle_file(path), api_name="/classify"),
            "heatmaps_app": lambda: c_app.predict(handle_file(path), model_name, *hm_args, None,
                                                  api_name="/heatmaps"),
            "heatmaps_lib": lib_heatmaps,
            "heatmaps_noop": lambda: c_noop.predict(handle_file(path), api_name="/heatmaps"),
        }
        # sanity: the app answers what the lib computes
        got = sides["classify_app"]()
        want = max(probs0, key=probs0.get)
        if (got.get("label") if isinstance(got, dict) else None) != want:
            raise RuntimeError(f"/classify answered {got!r}, the lib call {probs0!r}")
        if len(sides["heatmaps_app"]()) != 4:
            raise RuntimeError("/heatmaps did not answer three images and a caption")
        for fn in sides.values() if not quick else ():  # warm-up, not counted (quick: the checks above warmed)
            fn()

        times: dict[str, list[float]] = {k: [] for k in sides}
        names = list(sides)
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order every repeat
                times[name].append(_timed(sides[name]))

        out: dict[str, float] = {}
        for tab in ("classify", "heatmaps"):
            a, lib, nop = times[f"{tab}_app"], times[f"{tab}_lib"], times[f"{tab}_noop"]
            out[f"{tab}_app_ms"] = median(a)
            out[f"{tab}_lib_ms"] = median(lib)
            out[f"{tab}_noop_ms"] = median(nop)
            out[f"{tab}_ratio"] = median([x / (y + z) for x, y, z in zip(a, lib, nop)])
        out["repeats"] = float(repeats)

        # --- 2: 8 concurrent clients on /classify -----------------------------------------------------------------
        lat: list[float] = []
        errors = [0]
        lock = threading.Lock()
        clients = [_client(app_url, dl) for _ in range(n_clients)]
        start = threading.Barrier(n_clients)

        def worker(c: Any) -> None:
            start.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                try:
                    res = c.predict(handle_file(path), model_name, None, api_name="/classify")
                    ok = isinstance(res, dict) and res.get("label") == want
                except Exception:  # noqa: BLE001 - counted, not raised
                    ok = False
                dt = (time.perf_counter() - t0) * 1000.0
                with lock:
                    if ok:
                        lat.append(dt)
                    else:
                        errors[0] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        p50, p95 = _pct(lat, 0.5), _pct(lat, 0.95)
        out.update({
            "concurrent_clients": float(n_clients), "concurrent_requests": float(n_clients * per_client),
            "concurrent_p50_ms": p50, "concurrent_p95_ms": p95, "concurrent_p95_over_p50": p95 / p50,
            "concurrent_errors": float(errors[0]),
            "concurrent_requests_per_s": len(lat) / wall,
        })
        return out
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # gradio prints "Closing server…": keep stdout pure JSON
            app.close()
            noop.close()


# ------------------------------------------------------------------------ 3: cold start, in a subprocess
def _cold_start(quick: bool, work: Path) -> dict[str, float]:
    import httpx

    from space.app import make_context
    from space.evaluation import initial_threshold

    ctx = make_context()
    model_name = ctx.default_model
    threshold = initial_threshold(ctx)
    cache = work / "cache" / "decoded"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "XCXR_CACHE_DIR": str(cache),
           "GRADIO_TEMP_DIR": str(work / "gradio_tmp"), "PYTHONUNBUFFERED": "1"}
    if quick:
        env["XCXR_DATA_ROOT"] = str(work / "no_course_data")  # the bundled examples: the only (small) split
    env.pop("GRADIO_SERVER_PORT", None)

    def launch_once() -> tuple[float, float, float]:
        port = _free_port()
        log = open(work / f"app-{port}.log", "wb")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "space.app", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with {proc.returncode}: "
                                       + (work / f"app-{port}.log").read_text(errors="replace")[-2000:])
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError("the app did not serve / within 300 s")
                try:
                    if httpx.get(url, timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            page = time.perf_counter() - t0
            c = _client(url, str(work / "downloads"))
            from space.evaluation import data_choices  # the subprocess's default split, seen with its env
            old = os.environ.get("XCXR_DATA_ROOT")
            if quick:
                os.environ["XCXR_DATA_ROOT"] = env["XCXR_DATA_ROOT"]
            try:
                split = data_choices()[0][1]
            finally:
                if quick:
                    if old is None:
                        os.environ.pop("XCXR_DATA_ROOT", None)
                    else:
                        os.environ["XCXR_DATA_ROOT"] = old
            t1 = time.perf_counter()
            res = c.predict(model_name, split, threshold, api_name="/outcomes")
            done = time.perf_counter()
            if not (isinstance(res, (list, tuple)) and isinstance(res[0], dict) and sum(res[0].values()) > 0):
                raise RuntimeError(f"/outcomes answered {str(res)[:300]}")
            return page, done - t0, done - t1
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    page, ready, call = launch_once()
    pred_dir = cache.parent / "predictions"
    on_disk = pred_dir.is_dir() and any(pred_dir.iterdir())
    out = {"cold_first_page_seconds": page, "outcomes_ready_seconds": ready, "outcomes_call_seconds": call,
           "outcomes_precomputed_at_start": float("warm_up" in (ROOT / "space" / "app.py").read_text()),
           "outcomes_from_disk_cache": float(on_disk)}
    if not quick:
        page2, ready2, call2 = launch_once()  # same cache folder: decoded images and predictions on disk
        out.update({"cold_first_page_seconds_2nd": page2, "outcomes_ready_seconds_disk_cache": ready2,
                    "outcomes_call_seconds_disk_cache": call2})
    return out


@benchmark("app", "the app's round trip vs lib compute + a no-op Gradio app; 8 concurrent clients; cold start")
def run(quick: bool) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="xcxr-bench-app-"))
    try:
        out = _round_trips(quick, work)
        out.update(_cold_start(quick, work))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
