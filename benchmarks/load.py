"""Benchmark family ``load``: students using the app, alone and while one client floods it.

The app runs as ``python -m space.app`` in a subprocess (so its memory is its own and measurable), as the Space
runs it: the bundled course splits with the shipped models' predictions. Every simulated visitor reaches it from
127.0.0.1 with its own ``X-Forwarded-For`` address, as visitors of a Space arrive through its proxy.

*Student* (:func:`student`; one ``gradio_client.Client`` = one session each, address ``10.1.0.k``): rounds of
``/classify`` → ``/heatmaps`` (Grad-CAM + plain saliency) → ``/outcome_heatmaps`` (a click on one of the first five
TP/TN/FP/FN images of the 977-image test split at threshold 0.5, picked at random each round), with a think time
of 2–5 s after each round (seeded), for ``duration`` seconds. Every call's latency is recorded; an
exception of any kind (an app error, "Queue is full", HTTP 429) is an error.

*Flooder* (:func:`flood` in a process of its own, :class:`Flooder`, so that its CPU does not stall the measuring
threads; address ``10.66.0.1``, a new session per request, 4 connections): 300 ``POST /gradio_api/call/classify``
that are never read, then 10 ``/trust`` that are read, each retried every 0.5 s while it is refused (a persistent
client). Counted: requests refused (HTTP 429 or 503), whether the refusal names the per-visitor limit, how many of
the unread calls were accepted, how many ``/trust`` ran to the end. The flood starts with the phase; every student
is connected and has seen a first result before (the class has the page open when the flood begins).

Figures, for each number of students N (full: 5, 10, 20; ``--quick``: 2 students, one round, no think time, a
small flood), one app process per N, first ``alone`` then ``flood``, ``phase_seconds`` each (``nN_idle_rss_mb``:
the app after one warm-up round):

``nN_{alone,flood}_p50_ms`` / ``_p95_ms`` — all student calls; ``_classify_p95_ms`` — ``/classify`` only;
``_errors`` / ``_calls``; ``_rss_peak_mb`` — the app process's peak resident memory during the phase (sampled
every 0.1 s with psutil). ``nN_ratio_p50`` / ``_p95`` / ``_classify_p95`` / ``_rss_peak`` — flood ÷ alone.
``nN_flood_refused``, ``nN_flood_refusal_names_limit`` (1 when every refusal says "you already have N requests"),
``nN_flood_unread_accepted``, ``nN_flood_trust_completed``; ``nN_after_flood_classify_ms`` — one new visitor's
``/classify`` right after the flood's requests were sent.

Every figure comes from one run on a shared machine: compare the ratios, not the milliseconds across runs.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .registry import benchmark  # noqa: E402

__all__ = ["AppProcess", "launch_app", "student", "flood", "Flooder", "call_and_read", "visitor_client", "percentile",
           "Calls", "FloodResult", "MODEL", "EXAMPLE", "LIMIT_PHRASE"]

ROOT = Path(__file__).resolve().parents[1]
MODEL = "pneumonia_cnn"
EXAMPLE = "PNEUMONIA/person1071_virus_1774.jpeg"
#: What a per-visitor refusal says (space/fair_queue.py).
LIMIT_PHRASE = "you already have"
FLOOD_IP = "10.66.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``, linear between ranks; NaN-free: 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ------------------------------------------------------------------------------------------------ the app process
@dataclass
class AppProcess:
    """A running ``python -m space.app`` and a sampler of its resident memory."""

    proc: subprocess.Popen
    url: str
    log: Path
    _peak: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def rss_mb(self) -> float:
        import psutil
        try:
            return psutil.Process(self.proc.pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    @contextlib.contextmanager
    def peak_rss(self) -> Iterator[dict[str, float]]:
        """Within the block, sample the app's RSS every 0.1 s; the yielded dict gets ``peak_mb`` at the end."""
        out: dict[str, float] = {}
        stop = threading.Event()
        peak = [self.rss_mb()]

        def sample() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], self.rss_mb())

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            yield out
        finally:
            stop.set()
            t.join()
            out["peak_mb"] = max(peak[0], self.rss_mb())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def launch_app(work: Path, env: dict[str, str] | None = None, timeout: float = 300.0) -> Iterator[AppProcess]:
    """``python -m space.app`` on a free port (its uploads in ``work``), until the block ends; yields it once ``/``
    answers."""
    import httpx

    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                "GRADIO_TEMP_DIR": str(work / "gradio_tmp"),
                **(env or {})}
    full_env.pop("GRADIO_SERVER_PORT", None)
    log = work / f"app-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "space.app", "--port", str(port)], cwd=ROOT, env=full_env,
                                stdout=fh, stderr=subprocess.STDOUT)
    app = AppProcess(proc, f"http://127.0.0.1:{port}/", log)
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the app did not serve / within {timeout:.0f} s")
            try:
                if httpx.get(app.url, timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield app
    finally:
        app.close()


# ------------------------------------------------------------------------------------------------ students
@dataclass
class Calls:
    """What a group of visitors saw: one latency (seconds) per answered call, by endpoint; errors as text."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.latency.setdefault(endpoint, []).append(float(seconds or 0.0))
            else:
                self.errors.append(f"{endpoint}: {error}")

    def all(self) -> list[float]:
        return [x for v in self.latency.values() for x in v]


def visitor_client(url: str, ip: str, downloads: str) -> Any:
    """A ``gradio_client.Client`` (a session of its own) that reaches the app as address ``ip``."""
    from gradio_client import Client
    return Client(url, verbose=False, download_files=downloads, analytics_enabled=False,
                  headers={"X-Forwarded-For": ip})


def student(url: str, ip: str, calls: Calls, duration: float, downloads: str, seed: int = 0,
            think: tuple[float, float] = (2.0, 5.0), rounds: int | None = None,
            endpoints: tuple[str, ...] = ("classify", "heatmaps", "outcome_heatmaps"),
            ready: threading.Barrier | None = None) -> None:
    """One student: rounds of ``endpoints`` (default classify → heatmaps → an Outcomes click) with a think time
    after each round, until ``duration`` seconds have passed (or ``rounds`` rounds); results go to ``calls``.

    ``ready``: first connect and make one unrecorded call (the page is open and shows its first result), then wait
    on the barrier, so that every student is in class when the measured phase (and a flood) begins.
    """
    rng = random.Random(seed)
    c = visitor_client(url, ip, downloads)
    args = {"classify": dict(args=(None, MODEL, EXAMPLE)),
            "heatmaps": dict(args=(None, MODEL), kwargs={"example": EXAMPLE}),
            "outcome_heatmaps": dict(args=(MODEL, "test", 0.5, "TP", 1))}
    try:
        if ready is not None:
            with contextlib.suppress(Exception):
                c.predict(*args[endpoints[0]]["args"], api_name=f"/{endpoints[0]}",
                          **args[endpoints[0]].get("kwargs", {}))
            ready.wait()
        t_end = time.perf_counter() + duration
        done = 0
        while (rounds is None or done < rounds) and time.perf_counter() < t_end:
            args["outcome_heatmaps"]["args"] = (MODEL, "test", 0.5, rng.choice(("TP", "TN", "FP", "FN")),
                                                rng.randint(1, 5))
            for ep in endpoints:
                a = args[ep]
                t0 = time.perf_counter()
                try:
                    c.predict(*a["args"], api_name=f"/{ep}", **a.get("kwargs", {}))
                except Exception as e:  # noqa: BLE001 - an error is a figure, not a crash
                    calls.add(ep, None, f"{type(e).__name__}: {str(e)[:200]}")
                else:
                    calls.add(ep, time.perf_counter() - t0)
            done += 1
            if think[1] > 0:
                time.sleep(rng.uniform(*think))
    finally:
        with contextlib.suppress(Exception):
            c.close()


# ------------------------------------------------------------------------------------------------ the flooder
@dataclass
class FloodResult:
    """What the flooding client got (JSON-able: the flood runs in a process of its own)."""

    accepted_unread: int = 0
    refused: int = 0
    refusal_texts: list[str] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)
    trust_accepted: int = 0
    trust_completed: int = 0
    sent_seconds: float = 0.0


def _post(http: Any, url: str, api: str, data: list, ip: str) -> Any:
    return http.post(f"{url}gradio_api/call/{api}", json={"data": data, "session_hash": uuid.uuid4().hex[:12]},
                     headers={"X-Forwarded-For": ip})


def _refusal_text(resp: Any) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except ValueError:
        return resp.text


def call_and_read(http: Any, url: str, api: str, data: list, ip: str, timeout: float = 300.0) -> tuple[int, str]:
    """``POST /gradio_api/call/<api>`` then read its event stream to the end: ``(HTTP status of the POST, the last
    SSE event name or the refusal text)``."""
    r = _post(http, url, api, data, ip)
    if r.status_code != 200:
        return r.status_code, _refusal_text(r)
    event_id = r.json()["event_id"]
    last = ""
    with http.stream("GET", f"{url}gradio_api/call/{api}/{event_id}", headers={"X-Forwarded-For": ip},
                     timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                last = line.split(":", 1)[1].strip()
                if last in ("complete", "error"):
                    break
    return 200, last


def flood(url: str, n_unread: int = 300, n_trust: int = 10, ip: str = FLOOD_IP, stop: threading.Event | None = None,
          workers: int = 4, on_sent: Any = None) -> FloodResult:
    """One client flooding: ``n_unread`` unread ``/call/classify`` (``workers`` connections, a new session each),
    then ``n_trust`` read ``/trust`` calls, each retried every 0.5 s while refused, until ``stop`` is set.
    ``on_sent()`` is called when the unread calls are out."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    stop = stop or threading.Event()
    result = FloodResult()
    lock = threading.Lock()

    def refused(text: str) -> None:
        with lock:
            result.refused += 1
            if len(result.refusal_texts) < 500:
                result.refusal_texts.append(text[:300])

    t0 = time.perf_counter()
    with httpx.Client(timeout=60.0, limits=httpx.Limits(max_connections=workers + n_trust)) as http:
        def unread(_: int) -> None:
            try:
                r = _post(http, url, "classify", [None, MODEL, EXAMPLE], ip)
            except httpx.HTTPError as e:
                with lock:
                    result.other_errors.append(repr(e)[:300])
                return
            if r.status_code == 200:
                with lock:
                    result.accepted_unread += 1
            elif r.status_code in (429, 503):
                refused(_refusal_text(r))
            else:
                with lock:
                    result.other_errors.append(f"{r.status_code} {r.text[:200]}")

        def trust(_: int) -> None:
            while not stop.is_set():
                try:
                    status, text = call_and_read(http, url, "trust", [None, MODEL, EXAMPLE, "predicted class", 8, 0],
                                                 ip)
                except httpx.HTTPError as e:
                    if not stop.is_set():
                        with lock:
                            result.other_errors.append(repr(e)[:300])
                    return
                if status in (429, 503):
                    refused(text)
                    stop.wait(0.5)
                    continue
                with lock:
                    result.trust_accepted += 1
                    result.trust_completed += int(text == "complete")
                return

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(unread, range(n_unread)))
        result.sent_seconds = time.perf_counter() - t0
        if on_sent is not None:
            on_sent()
        threads = [threading.Thread(target=trust, args=(i,), daemon=True) for i in range(n_trust)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive() and not stop.is_set():
                t.join(0.1)
    return result


class Flooder:
    """:func:`flood` in a process of its own (``python -m benchmarks.load --flood URL …``), so that its CPU does not
    hold the measuring process's GIL: ``start()`` (waits until it is ready), ``go()``, ``wait_sent()``, then
    ``finish()`` (stops its retries, returns the :class:`FloodResult`)."""

    def __init__(self, url: str, n_unread: int = 300, n_trust: int = 10, ip: str = FLOOD_IP, workers: int = 4):
        import queue as _queue
        self.cmd = [sys.executable, "-m", "benchmarks.load", "--flood", url, "--unread", str(n_unread),
                    "--trust", str(n_trust), "--ip", ip, "--workers", str(workers)]
        self.lines: "_queue.Queue[str]" = _queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.result: FloodResult | None = None

    def _expect(self, prefix: str, timeout: float) -> str:
        import queue as _queue
        t_end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, t_end - time.monotonic()))
            except _queue.Empty:
                raise RuntimeError(f"the flooder did not say {prefix!r} within {timeout:.0f} s") from None
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def start(self, timeout: float = 60.0) -> "Flooder":
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self._expect("ready", timeout)
        return self

    def _say(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()

    def go(self) -> None:
        self._say("go")

    def wait_sent(self, timeout: float = 120.0) -> float:
        """Block until the unread calls are out; their sending time in seconds."""
        return float(self._expect("sent", timeout))

    def finish(self, timeout: float = 60.0) -> FloodResult:
        self._say("stop")
        self.result = FloodResult(**json.loads(self._expect("result", timeout)))
        return self.result

    def __enter__(self) -> "Flooder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _flood_main(argv: list[str]) -> None:
    """The flooder process: ``ready``, waits for ``go`` on stdin, floods, ``sent <s>``, ``result <json>``."""
    import argparse
    from dataclasses import asdict

    ap = argparse.ArgumentParser()
    ap.add_argument("--flood", required=True)
    ap.add_argument("--unread", type=int, default=300)
    ap.add_argument("--trust", type=int, default=10)
    ap.add_argument("--ip", default=FLOOD_IP)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args(argv)
    import httpx  # noqa: F401 - imported before "ready", so that the flood starts at once
    stop = threading.Event()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return

    def watch() -> None:  # "stop" (or the parent going away) ends the retries
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
    res = flood(a.flood, a.unread, a.trust, a.ip, stop, a.workers,
                on_sent=lambda: print(f"sent {time.perf_counter() - t0:.3f}", flush=True))
    print("result " + json.dumps(asdict(res)), flush=True)


# ------------------------------------------------------------------------------------------------ one phase
def _phase(app: AppProcess, n_students: int, duration: float, flooded: bool, quick: bool, work: Path,
           n_unread: int, n_trust: int, seed: int) -> dict[str, float]:
    """Students alone, or with a flooder that starts together with them; every student and the late visitor are
    connected (and shown a first result) before the phase begins."""
    calls = Calls()
    downloads = str(work / "downloads")
    think = (0.0, 0.0) if quick else (2.0, 5.0)
    rounds = 1 if quick else None
    ready = threading.Barrier(n_students + 1)
    after: list[float] = []
    fl = FloodResult()
    with contextlib.ExitStack() as stack:
        flooder = stack.enter_context(Flooder(app.url, n_unread, n_trust)) if flooded else None
        late = visitor_client(app.url, f"10.2.{seed}.1", downloads) if flooded else None  # page already open
        studs = [threading.Thread(target=student, args=(app.url, f"10.1.{seed}.{k + 1}", calls, duration, downloads),
                                  kwargs={"seed": 1000 * seed + k, "think": think, "rounds": rounds, "ready": ready},
                                  daemon=True) for k in range(n_students)]
        for t in studs:
            t.start()
        ready.wait()
        with app.peak_rss() as rss:
            if flooder is not None and late is not None:
                flooder.go()
                flooder.wait_sent()
                t0 = time.perf_counter()  # right after the flood's requests went out: one /classify
                try:
                    late.predict(None, MODEL, EXAMPLE, api_name="/classify")
                except Exception as e:  # noqa: BLE001 - counted
                    calls.errors.append(f"after flood: {type(e).__name__}: {str(e)[:200]}")
                after.append(time.perf_counter() - t0)
            for t in studs:
                t.join()
            if flooder is not None:
                fl = flooder.finish()
        if late is not None:
            with contextlib.suppress(Exception):
                late.close()
    name = "flood" if flooded else "alone"
    lat = calls.all()
    out = {f"{name}_p50_ms": 1000 * percentile(lat, 0.5), f"{name}_p95_ms": 1000 * percentile(lat, 0.95),
           f"{name}_classify_p95_ms": 1000 * percentile(calls.latency.get("classify", []), 0.95),
           f"{name}_errors": float(len(calls.errors)), f"{name}_calls": float(len(lat) + len(calls.errors)),
           f"{name}_rss_peak_mb": rss["peak_mb"]}
    if flooded:
        named = [t for t in fl.refusal_texts if LIMIT_PHRASE in t.lower()]
        out.update({"flood_refused": float(fl.refused),
                    "flood_refusal_names_limit": float(bool(fl.refusal_texts) and len(named) == len(fl.refusal_texts)),
                    "flood_unread_accepted": float(fl.accepted_unread),
                    "flood_trust_completed": float(fl.trust_completed),
                    "after_flood_classify_ms": 1000 * after[0]})
    if calls.errors:
        print(f"[benchmarks] load {name} n={n_students}: {len(calls.errors)} errors, e.g. {calls.errors[:3]}",
              file=sys.stderr, flush=True)
    return out


@benchmark("load", "N students (classify → heatmaps → outcomes, 2–5 s think) alone vs with one flooding client")
def run(quick: bool) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="xcxr-bench-load-"))
    sizes = (2,) if quick else (5, 10, 20)
    duration = 30.0  # quick: one round each, however long it takes
    n_unread, n_trust = (20, 1) if quick else (300, 10)
    out: dict[str, float] = {"phase_seconds": duration}
    try:
        for i, n in enumerate(sizes):
            with launch_app(work / f"n{n}") as app:
                # warm up (model, examples, first PNG encodings) outside the measured phases
                student(app.url, f"10.3.{i}.1", Calls(), 60.0, str(work / "downloads"), rounds=1, think=(0.0, 0.0))
                fig = {"idle_rss_mb": app.rss_mb()}
                fig.update(_phase(app, n, duration, False, quick, work, n_unread, n_trust, seed=2 * i))
                fig.update(_phase(app, n, duration, True, quick, work, n_unread, n_trust, seed=2 * i + 1))
            for key, unit in (("p50", "ms"), ("p95", "ms"), ("classify_p95", "ms"), ("rss_peak", "mb")):
                alone = fig[f"alone_{key}_{unit}"]
                fig[f"ratio_{key}"] = fig[f"flood_{key}_{unit}"] / alone if alone > 0 else float("nan")
            out.update({f"n{n}_{k}": v for k, v in fig.items()})
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # python -m benchmarks.load [--quick]: this family alone, JSON out; --flood: the flooder
    if "--flood" in sys.argv:
        _flood_main(sys.argv[1:])
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=1))
