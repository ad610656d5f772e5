"""A public Space must survive one abusive client (issue #10): the fair queue of ``space/fair_queue.py``.

Two apps: a tiny one (in this process, a handler that sleeps and records who called it) for the queue's mechanics —
abandoned events are not run, the per-visitor limits and their message, round robin between visitors, the
expensive lane chosen by an input's value — and the real app (``python -m space.app`` in a subprocess, through
``benchmarks.load``'s helpers) for the acceptance case: five students classifying while one client floods it.
Every simulated visitor connects from 127.0.0.1 with its own ``X-Forwarded-For``, as behind the Space's proxy.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

gr = pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")

from conftest import free_port  # noqa: E402
from space import fair_queue  # noqa: E402
from space.fair_queue import Mailbox, Visitor, client_ip, expensive_when, install  # noqa: E402

GRACE_S = 1.0
PER_SESSION, PER_IP = 2, 3


# --- who is a visitor ---------------------------------------------------------------------------------------------

def _request(headers: dict[str, str] | list[tuple[str, str]], peer: str = "127.0.0.1"):
    from starlette.requests import Request
    items = headers.items() if isinstance(headers, dict) else headers
    return Request({"type": "http", "method": "GET", "path": "/", "client": (peer, 5555),
                    "headers": [(k.lower().encode(), v.encode()) for k, v in items]})


def test_client_ip_is_the_first_forwarded_address_else_the_peer():
    assert client_ip(_request({"X-Forwarded-For": "203.0.113.7, 10.0.0.2"})) == "203.0.113.7"
    assert client_ip(_request([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")])) == "203.0.113.7"
    # behind a proxy that appends: the address the last hop saw
    assert client_ip(_request({"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}), hops=1) == "203.0.113.7"
    assert client_ip(_request({}, peer="198.51.100.9")) == "198.51.100.9"
    # the machine itself (no proxy header, loopback peer) has no address limit; a forwarded visitor has one
    assert Visitor.of(_request({}), "s").ip is None
    assert Visitor.of(_request({"X-Forwarded-For": "127.0.0.1"}), "s").ip == "127.0.0.1"
    assert Visitor.of(_request({}, peer="198.51.100.9"), None).key == "ip:198.51.100.9"


def test_gradio_internals_are_the_ones_fair_queue_was_written_for():
    fair_queue.check_gradio_internals()
    assert gr.__version__ == fair_queue.GRADIO_VERSION_CHECKED, (
        f"gradio {gr.__version__}: re-read space/fair_queue.py against gradio/queueing.py and gradio/routes.py, "
        "then update GRADIO_VERSION_CHECKED")


def test_the_app_uses_the_fair_queue_and_its_lanes():
    from space.app import LANES, build_app
    demo = build_app()
    assert isinstance(demo._queue, fair_queue.FairQueue)
    lanes = {f.api_name: (f.concurrency_id, f.concurrency_limit) for f in demo.fns.values() if f.api_name}
    for api in ("trust", "outcomes", "report", "outcome_presets"):
        assert lanes[api] == ("expensive", 1), api
    for api in ("classify", "heatmaps", "filters", "feature_maps", "outcome_heatmaps"):
        assert lanes[api] == ("interactive", LANES["interactive"]), api
    # every queued event is in one of the two lanes (none has a lane, and a limit, of its own)
    assert {f.concurrency_id for f in demo.fns.values() if f.queue} == set(LANES)
    assert demo._queue.max_size is not None  # the global bound stays, as the last resort


# --- the mechanics, on a tiny app ----------------------------------------------------------------------------------

class Tiny:
    """A launched app whose one endpoint ``/work(tag, method, seconds)`` sleeps and records ``tag``."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.niceness: dict[str, int] = {}  # tag -> the niceness of the thread that ran it
        self.lock = threading.Lock()
        with gr.Blocks() as demo:
            tag, secs = gr.Textbox(), gr.Number()
            method = gr.Dropdown(["cheap", "slow"], value="cheap")
            expensive_when(method, ["slow"])
            out = gr.Textbox()

            def work(t: str, m: str, s: float) -> str:
                with self.lock:
                    self.ran.append(t)
                    self.niceness[t] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                time.sleep(float(s or 0))
                return t

            gr.Button().click(work, [tag, method, secs], out, api_name="work")
        self.queue = install(demo, lanes={"interactive": 1, "expensive": 1}, default_lane="interactive", max_size=50,
                             max_per_session=PER_SESSION, max_per_ip=PER_IP, grace_s=GRACE_S, nice=7)
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
        self.demo = demo
        self.url = demo.local_url
        self.http = httpx.Client(timeout=30.0)

    def post(self, tag: str, ip: str, seconds: float = 0.0, method: str = "cheap", session: str | None = None):
        return self.http.post(f"{self.url}gradio_api/call/work", json={"data": [tag, method, seconds],
                              "session_hash": session or uuid.uuid4().hex[:10]}, headers={"X-Forwarded-For": ip})

    def read(self, event_id: str, ip: str) -> tuple[str, str]:
        """The event's stream to its end: ``("complete" or "error", its data)``."""
        event = ""
        with self.http.stream("GET", f"{self.url}gradio_api/call/work/{event_id}",
                              headers={"X-Forwarded-For": ip}) as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    return event, line.split(":", 1)[1].strip()
        return event, ""

    def call(self, tag: str, ip: str, seconds: float = 0.0, method: str = "cheap") -> threading.Thread:
        """Post and read in a thread (a visitor that waits for its answer)."""
        r = self.post(tag, ip, seconds, method)
        assert r.status_code == 200, r.text
        t = threading.Thread(target=self.read, args=(r.json()["event_id"], ip), daemon=True)
        t.start()
        return t

    def wait_started(self, tag: str, timeout: float = 10.0) -> None:
        t_end = time.monotonic() + timeout
        while tag not in self.ran:
            assert time.monotonic() < t_end, f"{tag} never started; ran {self.ran}"
            time.sleep(0.02)

    def wait_idle(self, timeout: float = 20.0) -> None:
        t_end = time.monotonic() + timeout
        while len(self.queue) or any(self.queue.active_jobs):
            assert time.monotonic() < t_end, "the tiny app's queue did not drain"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny():
    app = Tiny()
    try:
        yield app
    finally:
        app.http.close()
        app.demo.close()


def test_events_of_clients_that_left_are_not_run(tiny):
    tiny.ran.clear()
    # B posts three calls and does not read them (in time), while the app is idle: they never run
    b_posts = [tiny.post(f"B{i}", "10.9.0.2") for i in range(3)]
    assert [r.status_code for r in b_posts] == [200] * 3
    time.sleep(GRACE_S + 0.5)
    assert not tiny.ran, tiny.ran
    blocker = tiny.call("A", "10.9.0.1", seconds=2.0)  # holds the only interactive slot for 2 s
    tiny.wait_started("A")
    # C posts one, opens its stream, then hangs up while the event still waits
    r = tiny.post("C", "10.9.0.3")
    assert r.status_code == 200
    event_id = r.json()["event_id"]
    with tiny.http.stream("GET", f"{tiny.url}gradio_api/call/work/{event_id}",
                          headers={"X-Forwarded-For": "10.9.0.3"}):
        t_end = time.monotonic() + 5
        while not any(isinstance(m, Mailbox) and m.readers for m in tiny.queue.pending_messages_per_session.values()):
            assert time.monotonic() < t_end, "C's stream never started reading"
            time.sleep(0.02)
    blocker.join(timeout=20)
    time.sleep(GRACE_S + 0.5)
    tiny.wait_idle()
    assert tiny.ran == ["A"], tiny.ran  # the handler ran for A only: B's and C's events were dropped unrun
    assert tiny.queue.stats["dropped_unread"] >= 3
    # B reading one of them now is told what happened (not a bare 404)
    event, data = tiny.read(b_posts[0].json()["event_id"], "10.9.0.2")
    assert event == "error" and "dropped before it ran" in data, (event, data)
    # the queue still serves whoever reads
    done = tiny.call("D", "10.9.0.4")
    done.join(timeout=10)
    assert tiny.ran == ["A", "D"]


def test_a_visitor_over_its_limit_gets_a_clear_429(tiny):
    blocker = tiny.call("hold", "10.9.1.1", seconds=1.5)
    tiny.wait_started("hold")
    # one address, a new session per call: the address limit
    codes = [tiny.post(f"E{i}", "10.9.1.2") for i in range(PER_IP + 1)]
    assert [r.status_code for r in codes] == [200] * PER_IP + [429]
    detail = codes[-1].json()["detail"]
    assert f"you already have {PER_IP} requests waiting" in detail.lower() and "wait for them to finish" in detail
    assert "queue is full" not in detail.lower()
    # one session (another address): the session limit
    same = [tiny.post(f"F{i}", "10.9.1.3", session="one-session") for i in range(PER_SESSION + 1)]
    assert [r.status_code for r in same] == [200] * PER_SESSION + [429]
    assert "in this session" in same[-1].json()["detail"]
    # everybody else is served as usual
    other = tiny.post("G", "10.9.1.4")
    assert other.status_code == 200
    assert tiny.read(other.json()["event_id"], "10.9.1.4") == ("complete", '["G"]')
    blocker.join(timeout=20)
    tiny.wait_idle()


def test_visitors_take_turns(tiny):
    tiny.ran.clear()
    blocker = tiny.call("hold", "10.9.2.1", seconds=1.0)
    tiny.wait_started("hold")
    readers = [tiny.call(f"H{i}", "10.9.2.2", seconds=0.05) for i in range(3)]  # one visitor queues three
    readers.append(tiny.call("J", "10.9.2.3", seconds=0.05))  # another comes after them
    for t in (blocker, *readers):
        t.join(timeout=20)
    # not first come, first served (H0 H1 H2 J): J runs as soon as H had its turn
    assert tiny.ran == ["hold", "H0", "J", "H1", "H2"], tiny.ran


def test_an_expensive_option_runs_in_its_own_lane(tiny):
    tiny.ran.clear()
    routed = tiny.queue.stats["routed_expensive"]
    blocker = tiny.call("hold", "10.9.3.1", seconds=2.0)  # the interactive lane is busy
    tiny.wait_started("hold")
    t0 = time.monotonic()
    tiny.call("slow-method", "10.9.3.2", method="slow").join(timeout=20)
    assert time.monotonic() - t0 < 1.5  # it did not wait for the interactive lane
    assert tiny.queue.stats["routed_expensive"] == routed + 1
    # on the lane's own threads, at a lower CPU priority than Gradio's (the interactive event's)
    assert tiny.niceness["slow-method"] == tiny.niceness["hold"] + 7, tiny.niceness
    blocker.join(timeout=20)


# --- the acceptance case, on the real app ---------------------------------------------------------------------------

def _students_during_a_flood(work: Path) -> tuple[list[float], list[str], float, Any]:
    """One round of the acceptance case on a fresh app: (the students' /classify latencies, their errors, the late
    visitor's latency, what the flooder got)."""
    from benchmarks.load import EXAMPLE, MODEL, Calls, Flooder, launch_app, student, visitor_client

    downloads = str(work / "downloads")
    calls = Calls()
    with launch_app(work / "app") as app, Flooder(app.url, n_unread=300, n_trust=10) as flooder:
        # the Space has been up before the class: its start-up warm-up (the default model's outcomes on the
        # 977-image test split) is over; this call waits for it
        visitor_client(app.url, "10.7.3.1", downloads).predict(MODEL, "test", 0.5, api_name="/outcomes")
        ready = threading.Barrier(6)
        students = [threading.Thread(target=student, args=(app.url, f"10.7.1.{k + 1}", calls, 15.0, downloads),
                                     kwargs={"seed": k, "think": (0.3, 1.0), "endpoints": ("classify",),
                                             "ready": ready}, daemon=True) for k in range(5)]
        for t in students:
            t.start()
        late = visitor_client(app.url, "10.7.2.1", downloads)
        ready.wait(timeout=120)
        flooder.go()
        flooder.wait_sent()
        t0 = time.perf_counter()
        late.predict(None, MODEL, EXAMPLE, api_name="/classify")
        after = time.perf_counter() - t0
        for t in students:
            t.join(timeout=120)
        fl = flooder.finish()
    return calls.latency.get("classify", []), calls.errors, after, fl


#: Rounds of the acceptance case before its timing is judged a failure: the 2 s bound is absolute, and this shared
#: 2-core machine is sometimes half as fast for minutes (another tenant); a real regression fails both rounds.
FLOOD_ROUNDS = 2


def test_five_students_classify_while_one_client_floods(tmp_path):
    """300 unread ``/call/classify`` + 10 ``/trust`` from one address (in a process of its own): the students, who
    had the page open when it began, see no error and p95 ≤ 2 s; the flooder is told its limit; a new request from
    another visitor is answered within 2 s."""
    from benchmarks.load import LIMIT_PHRASE, percentile

    for attempt in range(1, FLOOD_ROUNDS + 1):
        lat, errors, after, fl = _students_during_a_flood(tmp_path / f"round{attempt}")
        print(f"round {attempt}: students: {len(lat)} calls, p50 {percentile(lat, 0.5):.3f} s, "
              f"p95 {percentile(lat, 0.95):.3f} s; late visitor {after:.3f} s; flood {fl.sent_seconds:.1f} s to "
              f"send, {fl.refused} refused, {fl.accepted_unread} unread accepted, {fl.trust_accepted} /trust accepted")
        assert not errors, errors[:5]  # never an error, in any round
        if percentile(lat, 0.95) <= 2.0 and after <= 2.0 and fl.trust_accepted >= 1:
            break
    assert len(lat) >= 25, len(lat)
    assert percentile(lat, 0.95) <= 2.0, (percentile(lat, 0.5), percentile(lat, 0.95))
    assert after <= 2.0, after
    # at most the address limit at a time, the rest refused (unread ones are dropped after the grace period, so a
    # burst longer than that gets that many in again)
    bursts = 2 + int(fl.sent_seconds // fair_queue.UNREAD_GRACE_S)
    assert fl.refused >= 150 and fl.accepted_unread <= fair_queue.MAX_EVENTS_PER_IP * bursts, fl
    assert all(LIMIT_PHRASE in t.lower() for t in fl.refusal_texts), fl.refusal_texts[:3]
    assert fl.trust_accepted >= 1  # the expensive lane really ran while the students classified
    assert not fl.other_errors, fl.other_errors[:3]


def test_output_images_are_written_atomically_while_others_download_them(tmp_path):
    """Many visitors produce the same output image at once: a reader never sees a truncated file (Gradio 6.31 wrote
    it in place; space/gradio_patches.py makes the write atomic)."""
    import threading

    import numpy as np
    from gradio import processing_utils
    from PIL import Image

    from space import gradio_patches

    gradio_patches.install()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    path = processing_utils.save_pil_to_cache(img, str(tmp_path), format="png")
    full = Path(path).read_bytes()
    stop, bad = threading.Event(), []

    def writer() -> None:
        while not stop.is_set():
            assert processing_utils.save_pil_to_cache(img, str(tmp_path), format="png") == path

    def reader() -> None:
        for _ in range(300):
            data = Path(path).read_bytes()
            if data != full:
                bad.append(len(data))

    writers = [threading.Thread(target=writer) for _ in range(3)]
    for t in writers:
        t.start()
    reader()
    stop.set()
    for t in writers:
        t.join()
    assert not bad, f"{len(bad)} reads saw a partial file (sizes {bad[:5]} of {len(full)})"
