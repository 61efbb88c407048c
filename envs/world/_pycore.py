"""The sim runtime's event loop in pure Python: the reference implementation of its core.

:mod:`envs.world._core` is the same core compiled with Cython (a heap of C structs, the message
hot path in C); :mod:`envs.world.sim` uses it when it is built and falls back to this module when
it is not (or when ``CAPGYM_PURE=1``). The two must give byte-identical traces:
``tests/test_core.py`` checks that over many seeds and fault schedules, so any change here must be
made there too.

The core holds what the hot path touches: per-node state (:class:`NodeState`), the heap of pending
events, the send path (:meth:`Loop.send`) and the loop (:meth:`Loop.run`). Everything that is not
the hot path (faults, timers, clients, asks) is Python in :class:`~envs.world.sim.Sim`, which
subclasses :class:`Loop` and provides ``start``, ``_transmit``, ``_arrive_at_cut`` and
``_abnormal``.

Pending events, as Python sees them, are tuples ``(t, seq, kind, node, data)``, and for a message
``(t, seq, MSG, dst, src, body, mid, mtype, lamport)``; ``seq`` breaks ties in scheduling order.
"""

from __future__ import annotations

import gc
import itertools
from heapq import heappop, heappush
from typing import Any

MSG, TIMER, CLIENT, DECISION, CALL = range(5)
COMPILED = False


class NodeState:
    """The runtime's view of one node: its object, clock, Lamport clock, timers, fault state."""

    __slots__ = ("id", "cls", "params", "obj", "up", "paused", "queued", "clock", "lamport",
                 "timers", "durable", "synced", "incarnation", "proc", "busy_until", "ctx", "seed", "lat", "normal",
                 "sent")

    def __init__(self, nid, cls, params, clock, proc, seed):
        self.id, self.cls, self.params, self.clock = nid, cls, params, clock
        self.obj = None
        self.up = False
        self.paused = False
        self.queued: list = []
        self.lamport = 0
        self.timers: dict = {}  # name -> (token, deadline on the node's own clock)
        self.durable: dict = {}  # the node's disk as it writes it (what a plain crash keeps)
        self.synced: dict = {}  # the disk as of its last fsync (what a lose_unsynced crash keeps)
        self.incarnation = 0
        self.proc = proc  # true ms each handler takes (0: instantaneous)
        self.busy_until = 0.0
        self.ctx = None
        self.seed = seed
        self.lat = None  # latency streams of this node's outgoing links
        self.normal = False  # up, not paused, not slow: events take the hot path
        self.sent = 0  # messages this node has sent (observer's count, kept across crashes)

    def refresh(self) -> None:
        self.normal = self.up and not self.paused and not self.proc

    def sync_clock(self) -> None:
        """The clock changed (a fault): the compiled core re-reads it; this one always reads it."""


class ContextBase:
    """The part of a node's context on the hot path: its clock, sending, timers."""

    __slots__ = ("_sim", "_s", "peers")

    def __init__(self, sim: Loop, s: NodeState):
        self._sim, self._s = sim, s
        # the run's node ids, shared: at n nodes, n lists of n fresh ints would be n^2 objects
        self.peers = list(sim.node_ids)
        del self.peers[s.id]

    def now(self) -> float:
        """This node's own clock reading in ms (offset, drift and jitter included)."""
        c = self._s.clock
        if c.jitter:
            return c.read(self._sim.now)
        return c.base_local + c.rate * (self._sim.now - c.base_true)

    def set_timer(self, name: Any, after: float) -> None:
        """Fire ``on_timer(ctx, name)`` after ``after`` ms of this node's clock (replaces a timer of that name)."""
        sim, s = self._sim, self._s
        sim.schedule_timer(s, name, s.clock.local(sim.now) + after)

    def cancel_timer(self, name: Any) -> None:
        self._s.timers.pop(name, None)

    def send(self, dst: int, body: Any) -> None:
        """Send ``body`` to node ``dst``."""
        self._sim.send(self._s, dst, body)

    def broadcast(self, body: Any) -> None:
        """Send ``body`` to every peer (not to itself)."""
        send, s = self._sim.send, self._s
        for p in self.peers:
            send(s, p, body)


class Loop:
    """The heap of pending events and the loop that runs them (subclassed by ``Sim``)."""

    def _init_loop(self) -> None:
        self.now = 0.0
        self._heap: list = []
        self._seqc = itertools.count()
        self._mid = 0
        self._tokens = itertools.count()
        self.delivered = self.dropped = self.events = 0
        self.faulty = False
        self.cut_links: set = set()
        self.raw: list = []  # the trace's events

    # --- the trace (the compiled core buffers it; here every event is a tuple at once) ----------
    def rec(self, event: tuple) -> None:
        """Record a trace event ``(kind, node, t, clock, lamport, fields)``."""
        self.raw.append(event)

    def buffered_events(self) -> int:
        return 0

    def flush_trace(self) -> None:
        pass

    # --- the heap ------------------------------------------------------------------------------
    def push(self, t: float, kind: int, node: int | None, data: Any) -> None:
        if node is not None and not 0 <= node < len(self.states):
            raise ValueError(f"no node {node} (nodes are 0..{len(self.states) - 1})")
        heappush(self._heap, (t, next(self._seqc), kind, node, data))

    def push_msg(self, t: float, dst: int, src: int, body: Any, mid: int, mtype: Any, lam: int) -> None:
        heappush(self._heap, (t, next(self._seqc), MSG, dst, src, body, mid, mtype, lam))

    def push_item(self, t: float, item: tuple) -> None:
        """Put a popped event back at true time ``t`` (after events already scheduled for ``t``)."""
        heappush(self._heap, (t, next(self._seqc)) + item[2:])

    def next_time(self) -> float | None:
        """True time of the next pending event, or ``None`` when nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def pending_events(self) -> int:
        return len(self._heap)

    def clear_events(self) -> None:
        self._heap.clear()

    # --- node events off the message path ------------------------------------------------------
    def schedule_timer(self, s: NodeState, name: Any, deadline: float) -> None:
        """Set node ``s``'s timer ``name`` for ``deadline`` on its own clock (replacing one of that name)."""
        token = next(self._tokens)
        s.timers[name] = (token, deadline)
        t = s.clock.true_at(deadline)
        self.push(t if t > self.now else self.now, TIMER, s.id, (name, token))

    def step_event(self, s: NodeState, kind: str, fields: Any) -> None:
        """A bookkeeping event (timer, client, reply, ask, decision): recorded in a full trace."""
        s.lamport += 1
        if self.full_trace:
            self.rec((kind, s.id, self.now, s.clock.local(self.now), s.lamport, fields))

    def node_event(self, s: NodeState, kind: int, data: Any) -> None:
        """A timer, client operation or decision for node ``s`` (messages never come here)."""
        if kind == TIMER:
            name, token = data
            entry = s.timers.get(name)
            if entry is None or entry[0] != token:
                return  # cancelled or replaced
            del s.timers[name]
            self.step_event(s, "timer", (name,))
            s.obj.on_timer(s.ctx, name)
        elif kind == CLIENT:
            self.step_event(s, "client", (data.id, data.f))
            s.obj.on_client(s.ctx, data)
        elif kind == DECISION:
            point, action, inc = data
            if inc != s.incarnation:
                return
            self.step_event(s, "decision", (point, action))
            s.obj.on_decision(s.ctx, point, action)

    # --- the send path -------------------------------------------------------------------------
    def send(self, s: NodeState, dst: int, body: Any) -> None:
        if not 0 <= dst < len(self.states):
            raise ValueError(f"send: there is no node {dst} (nodes are 0..{len(self.states) - 1})")
        src = s.id
        s.lamport = lam = s.lamport + 1
        s.sent += 1
        mid = self._mid
        self._mid = mid + 1
        tb = type(body)
        mtype = (body[0] if body else None) if tb is tuple else body.get("type") if tb is dict else tb.__name__
        t = self.now
        if self.full_trace:
            c = s.clock
            self.raw.append(("send", src, t, c.base_local + c.rate * (t - c.base_true), lam, (dst, mid, mtype)))
        if self.faulty:
            self._transmit(src, dst, (src, body, mid, mtype, lam), t + s.proc)
        else:  # the common case: no fault can touch this message
            arrive = t + s.proc + next(s.lat[dst])
            heappush(self._heap, (arrive, next(self._seqc), MSG, dst, src, body, mid, mtype, lam))

    # --- the loop ------------------------------------------------------------------------------
    def run(self, until: float | None = None, stop=None, stop_on_ask: bool = True,
            max_events: int | None = None) -> str:
        """Process events in true-time order.

        Stops when true time would pass ``until`` (then ``now == until``), when ``stop()`` holds
        after an event, when an external agent owes a decision (``stop_on_ask``), after
        ``max_events``, or when nothing is left (a decision still owed then: ``"ask"``, at the
        same moment). Returns ``"until"``, ``"stop"``, ``"ask"``,
        ``"max_events"`` or ``"idle"``.
        """
        if not self.started:
            self.start()
        heap = self._heap
        rec = self.raw.append
        states = self.states
        pending = self.pending
        full_trace = self.full_trace
        _MSG, _CALL = MSG, CALL
        limit = float("inf") if until is None else until
        budget = -1 if max_events is None else max_events
        handled = delivered = 0
        reason = "idle"
        # The trace grows by millions of small tuples that hold no reference cycles; letting the
        # cyclic GC rescan them every few hundred allocations halves the loop's speed. Collection is
        # deferred (not turned off for good) while the loop runs.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            while heap:
                if handled == budget:
                    reason = "max_events"
                    break
                if pending and stop_on_ask:
                    reason = "ask"
                    break
                if heap[0][0] > limit:
                    reason = "until"
                    break
                item = heappop(heap)
                self.now = t = item[0]
                handled += 1
                kind = item[2]
                if kind == _MSG:
                    s = states[item[3]]
                    if self.cut_links and (item[4], item[3]) in self.cut_links:  # cut while in flight
                        self._arrive_at_cut(item)
                        continue
                    if s.normal:  # the hot path: a message to a running node
                        _t, _q, _k, dst, src, body, mid, mtype, ml = item
                        lam = s.lamport
                        s.lamport = lam = (ml if ml > lam else lam) + 1
                        delivered += 1
                        if full_trace:
                            c = s.clock
                            rec(("recv", dst, t, c.base_local + c.rate * (t - c.base_true), lam, (src, mid, mtype)))
                        s.obj.on_message(s.ctx, src, body)
                    elif self._abnormal(s, item):
                        continue
                    else:
                        delivered += 1
                elif kind == _CALL:
                    fn, args = item[4]
                    fn(*args)
                else:
                    s = states[item[3]]
                    if not s.normal and self._abnormal(s, item):
                        continue
                    self.node_event(s, kind, item[4])
                if stop is not None and stop():
                    reason = "stop"
                    break
        finally:
            if gc_was_on:
                gc.enable()
            self.events += handled
            self.delivered += delivered
        if stop_on_ask and pending and reason == "idle":
            reason = "ask"  # owed with nothing else left (asked at the start, or by the last event)
        if reason in ("until", "idle") and until is not None and until > self.now:
            self.now = float(until)
        return reason
