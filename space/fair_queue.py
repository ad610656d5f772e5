"""A fair queue for a public Space: per-visitor limits, abandoned events dropped, expensive work in its own lane.

Why: Gradio's queue is one FIFO per ``concurrency_id`` shared by every visitor, and it runs an event even when nobody
waits for its result. One client that POSTs 300 ``/gradio_api/call/classify`` and never reads them fills
``max_size`` and everyone else gets "Queue is full" for minutes; ten ``/trust`` from one client delay everybody's
``/classify`` by half a minute. This module changes three things, and nothing else:

1. **Per-visitor limits** (:meth:`FairQueue.push`). A visitor is a Gradio session *and* a client address
   (:func:`client_ip`: the first ``X-Forwarded-For`` address when present — the Space sits behind a proxy — else the
   TCP peer). A session may have :data:`MAX_EVENTS_PER_SESSION` events queued or running, an address
   :data:`MAX_EVENTS_PER_IP`; one more is refused with HTTP 429 and a message that says so ("you already have N
   requests waiting; wait for them to finish"), which the browser shows as an error toast. The machine itself (a
   loopback peer *without* ``X-Forwarded-For``: tests, benchmarks, a notebook on the same host) has no address limit;
   on a Space every visitor arrives through the proxy, with the header.
2. **Only events someone waits for run** (:meth:`FairQueue._state`). A client "listens" by reading its session's
   event stream (``GET /gradio_api/queue/data`` for the browser and ``gradio_client``,
   ``GET /gradio_api/call/<api>/<event_id>`` for raw HTTP clients); both read the session's message queue in
   ``gradio.queueing.Queue.pending_messages_per_session``. Each session gets a :class:`Mailbox` (an
   ``asyncio.Queue`` that counts its readers). An event runs only while its session is read (clients open the
   stream right after posting, so this costs them a round trip at most); one whose session nobody has read for
   :data:`UNREAD_GRACE_S` seconds is removed from the queue unrun (a client that comes to read it later is told
   so). Unread calls therefore cost the CPU nothing. When a stream *closes*, Gradio itself removes that session's
   queued events (``Queue.clean_events``). Results and notices nobody reads are forgotten after
   :data:`RESULT_TTL_S` seconds (Gradio keeps them forever, one session each, and its session table is a bounded
   LRU, so a flood of unread calls would push live sessions out of it).
3. **Fair order and lanes** (:meth:`FairQueue.get_events`). Within a lane (a ``concurrency_id``), the next event
   is the oldest one of the visitor with the fewest events running in that lane, and among those of the visitor
   served least recently (round robin), so a client with 16 events queued cannot make another wait for all 16.
   :func:`install` puts every queued event without an explicit ``concurrency_id`` in the default lane and fixes
   each lane's limit; :func:`expensive_when` moves an event to the ``expensive`` lane by the value of one of its
   inputs (the Heatmaps tab's saliency method: IG, SmoothGrad and occlusion cost 50–250 forward passes, plain
   gradients one). The expensive lane's events run on threads of their own at a lower CPU priority
   (:data:`EXPENSIVE_NICE`), so that while one runs the interactive lane still gets the cores first.

``max_size`` stays as the last resort (many addresses at once). With several Gradio workers (``num_workers``)
each worker counts alone.

**Gradio internals.** Written against Gradio **6.31.0** (``gradio/queueing.py``: ``Queue.push``,
``Queue.get_events``, ``Event``, ``EventQueue``, ``pending_messages_per_session``; ``gradio/routes.py``:
``queue_join_helper`` lets an ``HTTPException`` from ``push`` through, ``queue_data_helper`` reads the mailbox with
``messages.get()``). :func:`check_gradio_internals` verifies that shape (called by :func:`install`, and by
``tests/test_space_abuse.py``, which also fails on any other Gradio version so that someone re-reads this).

Spoofing: a client can send its own ``X-Forwarded-For``. Behind a proxy that *appends* to the header instead of
replacing it, set ``XCXR_TRUSTED_PROXY_HOPS=N`` to take the N-th address from the right (the one the N-th proxy saw).

Settings (environment, read at import): ``XCXR_MAX_EVENTS_PER_SESSION`` (default 16), ``XCXR_MAX_EVENTS_PER_IP``
(default 32; raise it for a class behind one NAT address), ``XCXR_UNREAD_GRACE_S`` (default 5),
``XCXR_TRUSTED_PROXY_HOPS`` (default 0 = the first address), ``XCXR_EXPENSIVE_NICE`` (default 10).

Example::

    demo = gr.Blocks(...)
    ...
    install(demo, lanes={"interactive": 2, "expensive": 1}, default_lane="interactive", max_size=256)
    demo.launch()
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import ipaddress
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Mapping

import gradio as gr
from fastapi import HTTPException
from gradio import queueing
from gradio.context import LocalContext
from gradio.server_messages import ProcessCompletedMessage

__all__ = ["FairQueue", "Mailbox", "Visitor", "client_ip", "expensive_when", "install", "check_gradio_internals",
           "MAX_EVENTS_PER_SESSION", "MAX_EVENTS_PER_IP", "UNREAD_GRACE_S", "TRUSTED_PROXY_HOPS", "EXPENSIVE",
           "RESULT_TTL_S", "EXPENSIVE_NICE",
           "GRADIO_VERSION_CHECKED"]

log = logging.getLogger("space.fair_queue")


def _env_number(name: str, default: float, cast: type = int) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


#: Events one Gradio session (a browser tab, a ``gradio_client.Client``) may have queued or running at once. Not 2:
#: one page load of this app queues up to 8 at once by itself (a deep link with a model sets every tab's model
#: dropdown and each tab clears and recomputes; a plain load peaks at 3 — measured in Chromium, 2026-11-30), and a
#: refused page-load event is an error toast for a student who did nothing wrong.
MAX_EVENTS_PER_SESSION: int = _env_number("XCXR_MAX_EVENTS_PER_SESSION", 16)
#: Events one client address may have queued or running at once, over all its sessions: two deep-link page loads
#: at once. A class behind one NAT address shares it; raise it there (``XCXR_MAX_EVENTS_PER_IP``).
MAX_EVENTS_PER_IP: int = _env_number("XCXR_MAX_EVENTS_PER_IP", 32)
#: Seconds a queued event may wait with nobody reading its session's stream before it is dropped unrun.
UNREAD_GRACE_S: float = _env_number("XCXR_UNREAD_GRACE_S", 5.0, float)
#: 0: the client address is the first ``X-Forwarded-For`` entry; N > 0: the N-th entry from the right.
TRUSTED_PROXY_HOPS: int = _env_number("XCXR_TRUSTED_PROXY_HOPS", 0)
#: The lane of the expensive endpoints (trust checks, whole-split evaluations, IG/SmoothGrad/occlusion).
EXPENSIVE = "expensive"
#: Niceness (0–19) of the threads that run the expensive lane's events: on 2 vCPUs a running ``/trust`` otherwise
#: takes a core and a half from ``/classify`` (torch's own threads inherit it); 0: no separate threads.
EXPENSIVE_NICE: int = _env_number("XCXR_EXPENSIVE_NICE", 10)
#: The Gradio version whose internals this module was written against and tested with.
GRADIO_VERSION_CHECKED = "6.31.0"

#: Attribute set on a component by :func:`expensive_when`: ``(values, lane)``.
_LANE_ATTR = "_xcxr_lane_by_value"
#: How often (seconds) the scheduler loop looks for abandoned events; Gradio calls ``get_events`` every millisecond
#: while events wait, and the scan is linear in the queue length.
_PURGE_EVERY_S = 0.25
#: Seconds after a reader left a session's stream during which the session still counts as listening (a client
#: between two calls: Gradio closes the stream when nothing is pending and the client opens it again on its next call).
LISTEN_GAP_S = 1.0
#: When events wait for their clients to start listening, the scheduler looks again after this many seconds (Gradio
#: asks every millisecond; a reader arriving waits at most this long).
_RESCAN_S = 0.02
#: Results (and "dropped" notices) nobody has read for this long (seconds) are forgotten; Gradio keeps unread
#: ``/call`` results forever, one session each, in a 2000-session LRU that would then push out live sessions.
RESULT_TTL_S = 60.0
#: Sessions whose messages Gradio keeps (its default is 2000); live sessions must not be pushed out by a flood.
_MAX_SESSIONS = 20_000
#: What a client that reads a dropped event's stream too late is told.
DROPPED_TEXT = ("This request was dropped before it ran: nobody read its result for {grace:g} s. Read the event "
                "stream (GET /gradio_api/call/<api>/<event_id>) right after posting, then send it again.")
_NOTE_EVERY_S = 60.0


# ---------------------------------------------------------------------------------------------------- visitors
def client_ip(request: Any, hops: int | None = None) -> str | None:
    """The client's address: an ``X-Forwarded-For`` entry when the header is present, else the TCP peer.

    ``hops`` (default :data:`TRUSTED_PROXY_HOPS`): 0 takes the first entry (what a proxy that replaces the header
    puts there, and how Gradio reads its ``x-forwarded-*`` headers); N > 0 the N-th from the right. Every
    ``X-Forwarded-For`` header line is read, comma lists included.
    """
    hops = TRUSTED_PROXY_HOPS if hops is None else hops
    headers = getattr(request, "headers", None)
    values = headers.getlist("x-forwarded-for") if headers is not None and hasattr(headers, "getlist") else []
    entries = [a.strip() for v in values for a in v.split(",") if a.strip()]
    if entries:
        return entries[-min(hops, len(entries))] if hops > 0 else entries[0]
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class Visitor:
    """Who sent an event: the client address (``None``: the machine itself, not limited) and the Gradio session
    (``None``: a ``/call`` without one; each such call is its own session)."""

    ip: str | None
    session: str | None

    @classmethod
    def of(cls, request: Any, session: str | None) -> "Visitor":
        """The visitor of ``request`` (a Starlette/FastAPI request) in ``session``."""
        headers = getattr(request, "headers", None)
        forwarded = headers is not None and bool(headers.get("x-forwarded-for"))
        ip = client_ip(request)
        if not forwarded and _is_loopback(ip):
            ip = None  # a direct local connection: tests, benchmarks, the host itself
        return cls(ip=ip, session=session)

    @property
    def key(self) -> str:
        """Whom fair scheduling balances: the address, else the session."""
        return f"ip:{self.ip}" if self.ip else f"session:{self.session}"


def _visitor(event: queueing.Event) -> Visitor:
    v = getattr(event, "xcxr_visitor", None)
    if v is None:
        v = Visitor.of(event.request, event.session_hash)
        event.xcxr_visitor = v  # type: ignore[attr-defined]
    return v


# ---------------------------------------------------------------------------------------------------- mailboxes
class Mailbox(asyncio.Queue):
    """A session's message queue that knows whether anyone reads it.

    Gradio's stream handlers read a session's messages with ``await messages.get()`` (with a 10 s timeout, then
    again), so ``readers > 0`` while a stream is open; ``last_read`` is when a reader last came or went.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readers = 0
        self.created = time.monotonic()
        self.last_read = float("-inf")
        self.last_put = float("-inf")

    def put_nowait(self, item: Any) -> None:
        self.last_put = time.monotonic()
        super().put_nowait(item)

    def idle_since(self) -> float:
        """When anything last happened to this mailbox (created, read, written)."""
        return max(self.created, self.last_read, self.last_put)

    async def get(self) -> Any:
        self.readers += 1
        self.last_read = time.monotonic()
        try:
            return await super().get()
        finally:
            self.readers -= 1
            self.last_read = time.monotonic()


def expensive_when(component: gr.components.Component, values: Collection[Any], lane: str = EXPENSIVE) -> None:
    """Run an event in ``lane`` when ``component`` is one of its inputs and its value is in ``values``.

    For one endpoint whose cost depends on an option (``/heatmaps``: plain gradients vs integrated gradients).
    The component carries the rule, so every event that reads it (a button, a tab's "open" handler) follows it.
    """
    setattr(component, _LANE_ATTR, (frozenset(values), lane))


# ---------------------------------------------------------------------------------------------------- the queue
class FairQueue(queueing.Queue):
    """Gradio's queue with per-visitor limits, dropping of abandoned events, fair order and value-routed lanes.

    Use :func:`install`; the constructor takes ``gradio.queueing.Queue``'s arguments plus the limits and the lanes
    (``{concurrency_id: limit}``, created up front so a value-routed event always finds its lane).
    """

    def __init__(self, *args: Any, lanes: Mapping[str, int] | None = None,
                 max_per_session: int | None = None, max_per_ip: int | None = None,
                 grace_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_per_session = MAX_EVENTS_PER_SESSION if max_per_session is None else int(max_per_session)
        self.max_per_ip = MAX_EVENTS_PER_IP if max_per_ip is None else int(max_per_ip)
        self.grace_s = UNREAD_GRACE_S if grace_s is None else float(grace_s)
        self.lanes = dict(lanes or {})
        for lane, limit in self.lanes.items():
            self.event_queue_per_concurrency_id[lane] = queueing.EventQueue(lane, limit)
        self.pending_messages_per_session.max_size = max(self.pending_messages_per_session.max_size, _MAX_SESSIONS)
        #: pushes under way (between the limit check and the event entering the queue), per session / address
        self._reserved: Counter[str] = Counter()
        self._last_purge = 0.0
        self._idle_until = 0.0
        self._last_gc = time.monotonic()
        self._last_note: dict[str, float] = {}
        #: visitor key -> when one of its events last started (round robin between visitors)
        self._last_start: dict[str, float] = {}
        #: what happened, for tests, benchmarks and the log
        self.stats: Counter[str] = Counter()

    # --- what a visitor has -----------------------------------------------------------------------------------
    def _queued(self) -> Iterator[queueing.Event]:
        for eq in self.event_queue_per_concurrency_id.values():
            yield from eq.queue

    def _running(self) -> Iterator[queueing.Event]:
        for job in self.active_jobs:
            if job:
                yield from job

    def _held(self, visitor: Visitor) -> tuple[int, int]:
        """``(events of visitor's session, events of visitor's address)`` queued, running or being pushed."""
        n_session = self._reserved[f"s:{visitor.session}"] if visitor.session else 0
        n_ip = self._reserved[f"i:{visitor.ip}"] if visitor.ip else 0
        for event in (*self._queued(), *self._running()):
            v = _visitor(event)
            if visitor.session and v.session == visitor.session:
                n_session += 1
            if visitor.ip and v.ip == visitor.ip:
                n_ip += 1
        return n_session, n_ip

    def _refusal(self, visitor: Visitor) -> str | None:
        n_session, n_ip = self._held(visitor)
        # the most a session / an address had when it asked for one more (to size the limits; see tests)
        self.stats["most_held_session"] = max(self.stats["most_held_session"], n_session)
        self.stats["most_held_ip"] = max(self.stats["most_held_ip"], n_ip)
        if visitor.session and n_session >= self.max_per_session:
            self.stats["refused_session"] += 1
            return (f"You already have {n_session} requests waiting or running in this session; wait for them to "
                    f"finish, then try again (at most {self.max_per_session} at a time).")
        if visitor.ip and n_ip >= self.max_per_ip:
            self.stats["refused_ip"] += 1
            return (f"You already have {n_ip} requests waiting or running from your address; wait for them to "
                    f"finish, then try again (at most {self.max_per_ip} at a time).")
        return None

    def _note(self, key: str, text: str) -> None:
        """Log ``text`` at most once a minute per ``key`` (a flood must not flood the log too)."""
        now = time.monotonic()
        if now - self._last_note.get(key, float("-inf")) >= _NOTE_EVERY_S:
            self._last_note[key] = now
            log.warning(text)
            if len(self._last_note) > 10_000:
                self._last_note.clear()

    # --- push: limits, mailbox, lane --------------------------------------------------------------------------
    async def push(self, body: Any, request: Any, username: str | None) -> tuple[bool, Any, Any]:
        """Gradio's ``push``, after the per-visitor limits (HTTP 429 beyond them); the event's session gets a
        :class:`Mailbox`, and the event the lane its input values ask for."""
        if body.fn_index is None:
            return await super().push(body, request, username)
        async with self.delete_lock:  # what left before this visitor came no longer counts
            self._purge(time.monotonic())
        visitor = Visitor.of(request, body.session_hash)
        refusal = self._refusal(visitor)
        if refusal is not None:
            self._note(f"refused {visitor.key}", f"refused a request from {visitor.key}: {refusal}")
            raise HTTPException(status_code=429, detail=refusal, headers={"Retry-After": "5"})
        if body.session_hash is None:
            # A /call without a session: give it one now (Gradio would use the event id) so that it gets a Mailbox.
            body.session_hash = uuid.uuid4().hex
        created = body.session_hash not in self.pending_messages_per_session
        if created:
            self.pending_messages_per_session[body.session_hash] = Mailbox()
        keys = [k for k in (f"s:{visitor.session}" if visitor.session else None,
                            f"i:{visitor.ip}" if visitor.ip else None) if k]
        self._reserved.update(keys)
        try:
            ok, event_id, state = await super().push(body, request, username)
        finally:
            self._reserved.subtract(keys)
            for k in keys:
                if self._reserved[k] <= 0:
                    del self._reserved[k]
        self._idle_until = 0.0  # something new may be runnable
        if ok:
            event = self.event_ids_to_events.get(event_id)
            if event is not None:
                # a minted session (a /call without one) is this event's own: round robin treats it as such
                event.xcxr_visitor = Visitor(visitor.ip, body.session_hash)  # type: ignore[attr-defined]
                self._route(event)
        elif created and not self.pending_event_ids_session.get(body.session_hash):
            self.pending_messages_per_session.pop(body.session_hash, None)
        return ok, event_id, state

    def _route(self, event: queueing.Event) -> None:
        """Move a just-queued event to the lane its input values ask for (see :func:`expensive_when`)."""
        data = getattr(event.data, "data", None) or []
        lane = None
        for component, value in zip(event.fn.inputs, data):
            rule = getattr(component, _LANE_ATTR, None)
            if rule is None:
                continue
            try:
                hit = value in rule[0]
            except TypeError:  # an unhashable value is no option name
                hit = False
            if hit:
                lane = rule[1]
                break
        if lane is None or lane == event.concurrency_id or lane not in self.event_queue_per_concurrency_id:
            return
        old = self.event_queue_per_concurrency_id[event.concurrency_id]
        if event not in old.queue:  # already picked up (cannot happen between push and here, but be safe)
            return
        old.queue.remove(event)
        event.concurrency_id = lane  # process_events releases the slot of this lane when the event ends
        self.event_queue_per_concurrency_id[lane].queue.append(event)
        self.stats[f"routed_{lane}"] += 1

    # --- abandoned events -------------------------------------------------------------------------------------
    def _state(self, event: queueing.Event, now: float) -> str:
        """``"run"``: someone reads ``event``'s session stream (now, or within :data:`LISTEN_GAP_S`); ``"wait"``: not
        yet, but the event is younger than :attr:`grace_s` (a client opens its stream right after the POST);
        ``"drop"``: nobody came, or the stream closed and Gradio forgot the session."""
        mailbox = self.pending_messages_per_session.get(event.session_hash)
        if mailbox is None:
            return "drop"  # the stream closed and Gradio dropped the session's mailbox: nobody can get the result
        if not isinstance(mailbox, Mailbox):
            return "run"  # not ours (cannot tell): Gradio's behaviour
        if mailbox.readers > 0 or now - mailbox.last_read < LISTEN_GAP_S:
            return "run"
        return "wait" if now - max(event.enqueue_time, mailbox.last_read) < self.grace_s else "drop"

    def _drop(self, lane: queueing.EventQueue, event: queueing.Event) -> None:
        """Remove ``event`` unrun; a client that reads its stream later gets :data:`DROPPED_TEXT` as the error
        (kept :data:`RESULT_TTL_S` seconds, like an unread result)."""
        lane.queue.remove(event)
        self.event_ids_to_events.pop(event._id, None)
        if event.session_hash in self.pending_messages_per_session:
            self.send_message(event, ProcessCompletedMessage(
                output={"error": DROPPED_TEXT.format(grace=self.grace_s)}, success=False, title="Dropped"))
        else:  # the stream closed and Gradio already forgot the session: nobody can read anything
            ids = self.pending_event_ids_session.get(event.session_hash)
            if ids is not None:
                ids.discard(event._id)
                if not ids:
                    self.pending_event_ids_session.pop(event.session_hash, None)
        if (a := self.event_analytics.get(event._id)) is not None:
            a["status"] = "cancelled"
        self.stats["dropped_unread"] += 1
        self._note(f"dropped {_visitor(event).key}",
                   f"dropped unread events of {_visitor(event).key} (nobody reads their results)")

    def _purge(self, now: float) -> None:
        """Drop every queued event nobody waits for; forget results unread for :data:`RESULT_TTL_S`.
        Call with ``delete_lock`` held (or from ``get_events``, which Gradio calls with it held)."""
        self._last_purge = now
        for lane in self.event_queue_per_concurrency_id.values():
            for event in [e for e in lane.queue if self._state(e, now) == "drop"]:
                self._drop(lane, event)
        if now - self._last_gc >= 5.0:
            self._last_gc = now
            self._forget_stale_results(now)

    def _forget_stale_results(self, now: float) -> None:
        self._last_start = {k: t for k, t in self._last_start.items() if now - t < 10 * RESULT_TTL_S}
        busy = {e.session_hash for e in (*self._queued(), *self._running())}
        for session in list(self.pending_event_ids_session):
            mailbox = self.pending_messages_per_session.get(session)
            if session in busy or (mailbox is not None and not isinstance(mailbox, Mailbox)):
                continue
            if mailbox is None or (not mailbox.readers and now - mailbox.idle_since() > RESULT_TTL_S):
                self.pending_event_ids_session.pop(session, None)
                self.pending_messages_per_session.pop(session, None)
                self.stats["forgotten_results"] += 1

    # --- fair order -------------------------------------------------------------------------------------------
    def get_events(self) -> tuple[list[queueing.Event], bool, str] | None:
        """The next events to run: in each lane with a free slot (lanes in random order, as Gradio does), among
        the events whose client listens, the oldest one of the visitor with the fewest events running in that
        lane, the least recently served first among equals. Events nobody came for are dropped on the way."""
        now = time.monotonic()
        if now < self._idle_until:
            return None  # nothing could run a moment ago and nothing was pushed since: do not rescan every 1 ms
        if now - self._last_purge >= _PURGE_EVERY_S:
            self._purge(now)
        lane_ids = list(self.event_queue_per_concurrency_id)
        random.shuffle(lane_ids)
        waiting = False
        for lane_id in lane_ids:
            lane = self.event_queue_per_concurrency_id[lane_id]
            if not lane.queue or (lane.concurrency_limit is not None
                                  and lane.current_concurrency >= lane.concurrency_limit):
                continue
            ready = []
            for e in list(lane.queue):
                state = self._state(e, now)
                if state == "run":
                    ready.append(e)
                elif state == "drop":
                    self._drop(lane, e)
                else:
                    waiting = True
            if not ready:
                continue
            running = Counter(_visitor(e).key for e in self._running() if e.concurrency_id == lane_id)
            first = min(ready, key=lambda e: (running[_visitor(e).key],  # min keeps FIFO among ties
                                              self._last_start.get(_visitor(e).key, float("-inf"))))
            events = [first]
            if first.fn.batch:
                events += [e for e in ready if e is not first and e.fn == first.fn][: first.fn.max_batch_size - 1]
            for e in events:
                lane.queue.remove(e)
            self._last_start[_visitor(first).key] = now
            return events, bool(first.fn.batch), lane_id
        if waiting:
            self._idle_until = now + _RESCAN_S
        return None


# ---------------------------------------------------------------------------------------------------- install
def check_gradio_internals() -> None:
    """Raise ``RuntimeError`` if Gradio's queue no longer has the shape :class:`FairQueue` relies on."""
    problems = []
    params = list(inspect.signature(queueing.Queue.push).parameters)
    if params[:4] != ["self", "body", "request", "username"]:
        problems.append(f"Queue.push(self, body, request, username) is now Queue.push{tuple(params)}")
    if list(inspect.signature(queueing.Queue.get_events).parameters) != ["self"]:
        problems.append("Queue.get_events() takes arguments now")
    init = inspect.signature(queueing.Queue.__init__).parameters
    for name in ("live_updates", "concurrency_count", "update_intervals", "max_size", "blocks",
                 "default_concurrency_limit"):
        if name not in init:
            problems.append(f"Queue.__init__ has no {name!r}")
    if list(inspect.signature(queueing.EventQueue.__init__).parameters) != ["self", "concurrency_id",
                                                                             "concurrency_limit"]:
        problems.append("EventQueue(concurrency_id, concurrency_limit) changed")
    src = inspect.getsource(queueing)
    for needle in ("self.pending_messages_per_session", "self.pending_event_ids_session", "self.event_ids_to_events",
                   "self.event_queue_per_concurrency_id", "self.active_jobs", "self.enqueue_time",
                   "event_queue.current_concurrency -= 1",
                   "self.event_queue_per_concurrency_id[events[0].concurrency_id]",
                   "self.get_events()"):
        if needle not in src:
            problems.append(f"gradio/queueing.py no longer contains {needle!r}")
    from gradio import routes
    rsrc = inspect.getsource(routes)
    for needle in ("await asyncio.wait_for(messages.get(), timeout=10)", "await blocks._queue.push(",
                   "clean_events(session_hash=session_hash)"):
        if needle not in rsrc:
            problems.append(f"gradio/routes.py no longer contains {needle!r}")
    if problems:
        raise RuntimeError(f"space/fair_queue.py was written for gradio {GRADIO_VERSION_CHECKED}; gradio "
                           f"{gr.__version__} differs: " + "; ".join(problems))


def install(demo: gr.Blocks, *, lanes: Mapping[str, int], default_lane: str, max_size: int | None,
            max_per_session: int | None = None, max_per_ip: int | None = None,
            grace_s: float | None = None, nice: int | None = None) -> FairQueue:
    """Configure ``demo``'s queue (``demo.queue(max_size=…)``) and replace it by a :class:`FairQueue`.

    ``lanes``: ``{concurrency_id: how many of its events run at once}``. Every queued event without an explicit
    ``concurrency_id`` joins ``default_lane``; every event of a listed lane gets that lane's limit (so the limit
    does not depend on which event came first, as it would with Gradio's "lowest limit seen so far"). The
    ``expensive`` lane's handlers run on threads of their own at niceness ``nice`` (default
    :data:`EXPENSIVE_NICE`; 0: on Gradio's threads, like the rest). Call it after every event listener is defined
    and before ``launch()``.
    """
    nice = EXPENSIVE_NICE if nice is None else int(nice)
    check_gradio_internals()
    if gr.__version__ != GRADIO_VERSION_CHECKED:
        log.warning("space.fair_queue was checked with gradio %s, this is %s", GRADIO_VERSION_CHECKED,
                    gr.__version__)
    if default_lane not in lanes:
        raise ValueError(f"default_lane must be one of {sorted(lanes)}, got {default_lane!r}")
    demo.queue(max_size=max_size, default_concurrency_limit=lanes[default_lane])
    old = demo._queue
    queue = FairQueue(live_updates=old.live_updates, concurrency_count=old.max_thread_count,
                      update_intervals=old.update_intervals, max_size=max_size, blocks=demo,
                      default_concurrency_limit=lanes[default_lane], lanes=lanes, max_per_session=max_per_session,
                      max_per_ip=max_per_ip, grace_s=grace_s)
    demo._queue = queue
    niced = {EXPENSIVE: lanes[EXPENSIVE]} if EXPENSIVE in lanes and nice else {}
    for fn in demo.fns.values():
        if not fn.queue:
            continue
        if fn.concurrency_id == str(id(fn.fn)):  # Gradio's default: a lane of its own
            fn.concurrency_id = default_lane
        if fn.concurrency_id in lanes:
            fn.concurrency_limit = lanes[fn.concurrency_id]
        may_be_niced = fn.concurrency_id in niced or any(
            (getattr(c, _LANE_ATTR, None) or (None, None))[1] in niced for c in fn.inputs)
        if may_be_niced and _plain_function(fn.fn):
            fn.fn = _in_lane_threads(fn.fn, queue, niced, nice)
    return queue


def _plain_function(fn: Any) -> bool:
    return callable(fn) and not (inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
                                 or inspect.isasyncgenfunction(fn))


_POOLS: dict[tuple[int, str], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(queue: FairQueue, lane: str, workers: int, nice: int) -> ThreadPoolExecutor:
    """The lane's own threads (created on first use), each lowered to ``nice`` when it starts."""
    def lower_priority() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (AttributeError, OSError) as e:  # not Linux, or not allowed: same priority as the rest
            log.warning("could not lower the priority of the %s lane's thread: %s", lane, e)

    with _POOLS_LOCK:
        key = (id(queue), lane)
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix=f"xcxr-{lane}", initializer=lower_priority)
        return _POOLS[key]


def _in_lane_threads(fn: Callable, queue: FairQueue, niced: Mapping[str, int], nice: int) -> Callable:
    """``fn``, but an event that runs in a niced lane runs it on that lane's low-priority threads (with Gradio's
    context variables, so progress bars, ``gr.Warning`` and ``gr.Error`` work as usual). Which lane: the running
    event's, found by the event id Gradio sets for the handler (an ``/heatmaps`` call is routed by its inputs)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        event = queue.event_ids_to_events.get(LocalContext.event_id.get(None) or "")
        lane = getattr(event, "concurrency_id", None)
        if lane not in niced:
            return fn(*args, **kwargs)
        ctx = contextvars.copy_context()
        return _pool(queue, lane, niced[lane], nice).submit(ctx.run, fn, *args, **kwargs).result()
    return run
