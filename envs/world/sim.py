"""The ``sim`` runtime: a deterministic discrete-event simulator of nodes on a faulty network.

One process, virtual (true) time in milliseconds, one heap of pending events, every random choice
drawn from streams derived from the run's seed: same seed, same trace, byte for byte.

Pending events are tuples ``(t, seq, kind, node, data)``; ``seq`` breaks ties in scheduling order.
The loop in :meth:`Sim.run` is the hottest path of the project: it binds what it needs to locals
and records trace events as plain tuples (turned into :class:`~envs.world.records.Event` only when
read).

The simulator can run until a true time, until a predicate holds, or until some node's agent owes
a decision (``ctx.ask`` to an external agent); environments drive it that way and answer with
:meth:`Sim.decide`.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Callable, Sequence
from heapq import heappush
from typing import Any

from .clock import Clock
from .network import Network
from .node import ClientOp, Node
from .records import FAIL, OK, STATUSES, UNKNOWN, Op
from .rng import derive_rng
from .trace import Trace

MSG, TIMER, CLIENT, DECISION, CALL = range(5)

#: put this in ``Sim.agents[node]`` to make that node's asks wait for :meth:`Sim.decide`
EXTERNAL = "external"


class Ask:
    """A decision a node owes: ``point`` (its kind first), the node's observation, mask, default."""

    __slots__ = ("id", "node", "point", "obs", "mask", "default", "t", "incarnation")

    def __init__(self, id, node, point, obs, mask, default, t, incarnation):
        self.id, self.node, self.point, self.obs = id, node, point, obs
        self.mask, self.default, self.t, self.incarnation = mask, default, t, incarnation

    def __repr__(self) -> str:
        return f"Ask(node={self.node}, point={self.point!r}, default={self.default!r})"


class _NodeState:
    __slots__ = ("id", "cls", "params", "obj", "up", "paused", "queued", "clock", "lamport",
                 "timers", "durable", "incarnation", "proc", "busy_until", "ctx", "seed", "lat", "normal",
                 "sent")

    def __init__(self, nid, cls, params, clock, n, proc, seed):
        self.id, self.cls, self.params, self.clock = nid, cls, params, clock
        self.obj = None
        self.up = False
        self.paused = False
        self.queued: list = []
        self.lamport = 0
        self.timers: dict = {}  # name -> (token, deadline on the node's own clock)
        self.durable: dict = {}
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


class Context:
    """What a node can reach. Nothing here tells it the true time."""

    __slots__ = ("_sim", "_s", "node_id", "nodes", "peers", "rng", "durable",
                 "_rec", "_heap", "_seq", "_clock", "_lat", "_rm")

    def __init__(self, sim: Sim, s: _NodeState):
        self._sim, self._s = sim, s
        # fixed for the life of the run, cached here for the send path
        self._rec, self._heap, self._seq, self._clock, self._lat = sim._rec, sim._heap, sim._seq, s.clock, s.lat
        self._rm = sim.full_trace
        self.node_id = s.id
        self.nodes = list(range(sim.n))
        self.peers = [i for i in range(sim.n) if i != s.id]
        self.rng = derive_rng(s.seed, "node", s.id, s.incarnation)
        self.durable = s.durable

    # --- time ----------------------------------------------------------------------------------
    def now(self) -> float:
        """This node's own clock reading in ms (offset, drift and jitter included)."""
        c = self._clock
        if c.jitter:
            return c.read(self._sim.now)
        return c.base_local + c.rate * (self._sim.now - c.base_true)

    @property
    def lamport(self) -> int:
        return self._s.lamport

    @property
    def vclock(self) -> tuple:
        return self._sim.trace.vclock(self._s.id)

    @property
    def n(self) -> int:
        return self._sim.n

    # --- messages ------------------------------------------------------------------------------
    def send(self, dst: int, body: Any) -> None:
        sim, s = self._sim, self._s
        src = s.id
        s.lamport = lam = s.lamport + 1
        s.sent += 1
        mid = sim._mid
        sim._mid = mid + 1
        tb = type(body)
        mtype = (body[0] if body else None) if tb is tuple else body.get("type") if tb is dict else tb.__name__
        t = sim.now
        if self._rm:
            c = self._clock
            self._rec(("send", src, t, c.base_local + c.rate * (t - c.base_true), lam, (dst, mid, mtype)))
        if sim._faulty:
            sim._transmit(src, dst, (src, body, mid, mtype, lam), t + s.proc)
        else:  # the common case, inlined: no fault can touch this message
            heappush(self._heap,
                     (t + s.proc + next(self._lat[dst]), next(self._seq), MSG, dst, src, body, mid, mtype, lam))

    def broadcast(self, body: Any) -> None:
        """Send ``body`` to every peer (not to itself)."""
        for p in self.peers:
            self.send(p, body)

    # --- timers --------------------------------------------------------------------------------
    def set_timer(self, name: Any, after: float) -> None:
        """Fire ``on_timer(ctx, name)`` after ``after`` ms of this node's clock (replaces a timer of that name)."""
        sim, s = self._sim, self._s
        deadline = s.clock.local(sim.now) + after
        sim._schedule_timer(s, name, deadline)

    def cancel_timer(self, name: Any) -> None:
        self._s.timers.pop(name, None)

    # --- clients and agents --------------------------------------------------------------------
    def reply(self, op: ClientOp, status: str = OK, value: Any = None) -> None:
        """Complete client operation ``op``: ``"ok"`` (with ``value``), ``"fail"`` or ``"unknown"``."""
        self._sim._reply(self._s, op, status, value)

    def ask(self, point: Any, obs: Any = None, default: Any = None, mask: Any = None) -> None:
        """Ask this node's agent for a decision; the answer comes later as ``on_decision``."""
        self._sim._ask(self._s, point, obs, default, mask)

    def record(self, kind: str, **fields: Any) -> None:
        """Record a protocol event (``leader``, ``decide``, ``apply``, ...) for the observer."""
        self._sim._local_event(self._s, kind, fields)


class ClientSide:
    """How a runtime completes client operations (shared by the sim and the live driver): needs
    ``open_ops`` (id -> Op), ``now`` (true time) and ``on_complete`` (callbacks)."""

    open_ops: dict
    now: float
    on_complete: list

    def timeout(self, op_id: int) -> None:
        """The client gave up waiting: the operation's outcome is unknown."""
        op = self.open_ops.get(op_id)
        if op is not None:
            self._complete(op, UNKNOWN, None)

    def _complete(self, op: Op, status: str, value: Any) -> None:
        self.open_ops.pop(op.id, None)
        op.status = status
        op.output = value if status == OK else None
        op.complete = None if status == UNKNOWN else self.now
        for cb in self.on_complete:
            cb(op)


class Sim(ClientSide):
    """The simulated world: ``n`` nodes running ``node_cls`` on ``network``, with a clock each.

    ``clocks`` defaults to perfect clocks; ``agents`` maps a node to ``None`` (textbook defaults),
    a callable ``policy(ask) -> action``, or :data:`EXTERNAL` (the run stops at its asks).
    """

    def __init__(self, n: int, node_cls: type[Node], params: Any = None, *, seed: int = 0,
                 network: Network | None = None, clocks: Sequence[Clock] | None = None,
                 agents: dict | None = None, processing_ms: float = 0.0, client_latency_ms: float = 0.0,
                 full_trace: bool = True):
        if n < 1:
            raise ValueError("a world needs at least one node")
        self.n = n
        self.seed = seed
        self.now = 0.0
        self.net = network or Network(range(n), seed)
        clocks = list(clocks) if clocks is not None else [Clock() for _ in range(n)]
        self.states = [_NodeState(i, node_cls, params, clocks[i], n, processing_ms, seed) for i in range(n)]
        self.agents: dict = dict(agents or {})
        self.processing_ms = processing_ms
        self.client_latency_ms = client_latency_ms
        #: True: record every event. False, a lean trace for training loops that only need the
        #: history: no send/recv and no per-step bookkeeping (timer, client, reply, ask, decision);
        #: node lifecycle, faults and protocol records stay. Vector clocks need the full trace.
        self.full_trace = full_trace
        for st in self.states:
            st.lat = self.net.streams[st.id]
        self._refresh_faulty()
        self.trace = Trace(n, keep_sent=bool(self.net.duplicate), messages=full_trace)
        self._rec = self.trace.raw.append
        self._heap: list = []
        self._seq = itertools.count()
        self._mid = 0
        self._ask_id = 0
        self._token = itertools.count()
        self.pending: list[Ask] = []  # asks owed by EXTERNAL agents, oldest first
        self.history: list[Op] = []
        self.open_ops: dict[int, Op] = {}
        self.on_complete: list[Callable[[Op], None]] = []
        self._held: list = []  # messages held across a cut (hold_partitioned)
        self.delivered = self.dropped = self.events = 0
        self.started = False
        self.nemesis = self.workload = None  # attached by envs.world.build

    # --- scheduling ----------------------------------------------------------------------------
    def call_at(self, t: float, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` at true time ``t`` (world-side code: nemesis, clients)."""
        heapq.heappush(self._heap, (float(max(t, self.now)), next(self._seq), CALL, None, (fn, args)))

    def _push(self, t: float, kind: int, node: int | None, data: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, node, data))

    def _transmit(self, src: int, dst: int, msg: tuple, depart: float) -> None:
        net = self.net
        if net.cuts and (src, dst) in net.cuts:
            if net.hold_partitioned:
                self._held.append((src, dst, msg))
            else:
                self.dropped += 1
                self._rec(("drop", None, self.now, None, 0, (src, dst, msg[2], "partition")))
            return
        u = net.uniform
        if net.loss and next(u) < net.loss:
            self.dropped += 1
            self._rec(("drop", None, self.now, None, 0, (src, dst, msg[2], "loss")))
            return
        heapq.heappush(self._heap, (depart + net.latency(src, dst), next(self._seq), MSG, dst) + msg)
        if net.duplicate and next(u) < net.duplicate:
            heapq.heappush(self._heap, (depart + net.latency(src, dst), next(self._seq), MSG, dst) + msg)

    def _schedule_timer(self, s: _NodeState, name: Any, deadline: float) -> None:
        token = next(self._token)
        s.timers[name] = (token, deadline)
        t = s.clock.true_at(deadline)
        self._push(t if t > self.now else self.now, TIMER, s.id, (name, token))

    # --- node-local events ---------------------------------------------------------------------
    def _local_event(self, s: _NodeState, kind: str, fields: Any) -> None:
        s.lamport += 1
        self._rec((kind, s.id, self.now, s.clock.local(self.now), s.lamport, fields))

    def _step_event(self, s: _NodeState, kind: str, fields: Any) -> None:
        """A bookkeeping event (timer, client, reply, ask, decision): recorded in a full trace."""
        s.lamport += 1
        if self.full_trace:
            self._rec((kind, s.id, self.now, s.clock.local(self.now), s.lamport, fields))

    def _world_event(self, kind: str, fields: Any) -> None:
        self._rec((kind, None, self.now, None, 0, fields))

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every node (``on_start``) at true time 0."""
        if self.started:
            return
        self.started = True
        for s in self.states:
            self._boot(s, restart=False)

    def _boot(self, s: _NodeState, restart: bool) -> None:
        s.up = True
        s.paused = False
        s.obj = s.cls(s.params)
        s.ctx = Context(self, s)
        s.refresh()
        self._local_event(s, "start", (restart,))
        s.obj.on_start(s.ctx)

    def crash(self, nid: int) -> None:
        """Crash node ``nid``: its volatile state is lost and it handles nothing until restarted."""
        s = self.states[nid]
        if not s.up:
            return
        self._local_event(s, "crash", ())
        s.up = False
        s.paused = False
        s.obj = None
        s.timers.clear()
        s.queued.clear()
        s.incarnation += 1
        s.refresh()
        self.pending[:] = [a for a in self.pending if a.node != nid]

    def restart(self, nid: int) -> None:
        """Restart a crashed node: a fresh object, ``on_start`` again, ``ctx.durable`` intact."""
        s = self.states[nid]
        if s.up:
            return
        self._boot(s, restart=True)

    def pause(self, nid: int) -> None:
        s = self.states[nid]
        if s.up and not s.paused:
            self._local_event(s, "pause", ())
            s.paused = True
            s.refresh()

    def resume(self, nid: int) -> None:
        s = self.states[nid]
        if s.up and s.paused:
            self._local_event(s, "resume", ())
            s.paused = False
            queued, s.queued = s.queued, []
            for item in queued:
                heapq.heappush(self._heap, (self.now, next(self._seq)) + item[2:])
            s.refresh()

    def slow(self, nid: int, factor: float, base_ms: float = 1.0) -> None:
        """Make node ``nid``'s handlers take ``factor`` times longer (``base_ms`` when they take 0)."""
        s = self.states[nid]
        s.proc = (self.processing_ms or base_ms) * factor if factor != 1.0 else self.processing_ms
        s.refresh()
        if s.up:
            self._local_event(s, "slow", (factor,))

    def close(self) -> None:
        """Drop the nodes and pending events of a finished run at once; history, trace and counters
        stay readable. (The sim's parts point at each other, so without this a finished world waits
        for a full cyclic-GC pass; loops that build many worlds should close each.)"""
        self._heap.clear()
        self.pending.clear()
        self.on_complete.clear()
        self.workload = self.nemesis = None
        for s in self.states:
            s.ctx = s.obj = None

    def is_up(self, nid: int) -> bool:
        return self.states[nid].up

    def node(self, nid: int) -> Node | None:
        """The node object (observer only: protocols never see each other's objects)."""
        return self.states[nid].obj

    # --- network faults ------------------------------------------------------------------------
    def set_cuts(self, cuts: set, shape: str = "custom") -> None:
        """Make ``cuts`` (directed links) the standing partition; an empty set heals."""
        self.net.cuts = set(cuts)
        self._refresh_faulty()
        if cuts:
            self._world_event("partition", (sorted(map(list, cuts)), shape))
        else:
            self._world_event("heal", ())
        if self._held:
            held, self._held = self._held, []
            for src, dst, msg in held:
                self._transmit(src, dst, msg, self.now)

    def _refresh_faulty(self) -> None:
        net = self.net
        self._faulty = bool(net.cuts or net.loss or net.duplicate)

    def heal(self) -> None:
        self.set_cuts(set())

    def set_loss(self, p: float) -> None:
        """Set the probability that any message is lost."""
        self.net.loss = float(p)
        self._refresh_faulty()
        self._world_event("loss", (float(p),))

    # --- clock faults --------------------------------------------------------------------------
    def clock_bump(self, nid: int, delta: float) -> None:
        s = self.states[nid]
        s.clock.bump(self.now, delta)
        self._after_clock_change(s, ("bump", delta))

    def clock_drift(self, nid: int, drift: float) -> None:
        s = self.states[nid]
        s.clock.set_drift(self.now, drift)
        self._after_clock_change(s, ("drift", drift))

    def _after_clock_change(self, s: _NodeState, fields: tuple) -> None:
        if s.up:
            self._local_event(s, "clock", fields)
        for name, (_token, deadline) in list(s.timers.items()):  # timers follow the node's clock
            self._schedule_timer(s, name, deadline)

    # --- clients -------------------------------------------------------------------------------
    def submit(self, op: Op) -> None:
        """Invoke client operation ``op`` (``op.node`` says which node it goes to) now."""
        op.invoke = self.now
        self.history.append(op)
        s = self.states[op.node]
        if not s.up:  # connection refused: definitely did not happen
            self._complete(op, FAIL, None)
            return
        self.open_ops[op.id] = op
        self._push(self.now + self.client_latency_ms, CLIENT, op.node, ClientOp(op.id, op.f, op.key, op.value))


    def _reply(self, s: _NodeState, cop: ClientOp, status: str, value: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"reply status must be one of {STATUSES}, not {status!r}")
        self._step_event(s, "reply", (cop.id, status))
        op = self.open_ops.get(cop.id)
        if op is not None:
            self._complete(op, status, value)


    # --- agents --------------------------------------------------------------------------------
    def _ask(self, s: _NodeState, point: Any, obs: Any, default: Any, mask: Any) -> None:
        self._step_event(s, "ask", (point,))
        agent = self.agents.get(s.id)
        a = Ask(self._ask_id, s.id, point, obs, mask, default, self.now, s.incarnation)
        self._ask_id += 1
        if agent is None:
            self._push(self.now, DECISION, s.id, (point, default, s.incarnation))
        elif agent == EXTERNAL:
            self.pending.append(a)
        else:
            self._push(self.now, DECISION, s.id, (point, agent(a), s.incarnation))

    def decide(self, ask: Ask, action: Any) -> None:
        """Answer a pending ``ask``: the node gets ``on_decision`` now."""
        self.pending.remove(ask)
        self._push(self.now, DECISION, ask.node, (ask.point, action, ask.incarnation))

    # --- the loop ------------------------------------------------------------------------------
    def next_time(self) -> float | None:
        """True time of the next pending event, or ``None`` when nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def run(self, until: float | None = None, stop: Callable[[], bool] | None = None,
            stop_on_ask: bool = True, max_events: int | None = None) -> str:
        """Process events in true-time order.

        Stops when true time would pass ``until`` (then ``now == until``), when ``stop()`` holds
        after an event, when an external agent owes a decision (``stop_on_ask``), after
        ``max_events``, or when nothing is left. Returns ``"until"``, ``"stop"``, ``"ask"``,
        ``"max_events"`` or ``"idle"``.
        """
        if not self.started:
            self.start()
        heap = self._heap
        pop = heapq.heappop
        push = heapq.heappush
        rec = self._rec
        states = self.states
        pending = self.pending
        net = self.net
        full_trace = self.full_trace
        _MSG, _CALL = MSG, CALL
        limit = float("inf") if until is None else until
        budget = -1 if max_events is None else max_events
        handled = delivered = 0
        reason = "idle"
        # The trace grows by millions of small tuples that hold no references cycles; letting the
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
                item = pop(heap)
                t = item[0]
                if t > limit:
                    push(heap, item)
                    reason = "until"
                    break
                self.now = t
                handled += 1
                kind = item[2]
                if kind == _MSG:
                    s = states[item[3]]
                    if net.cuts and (item[4], item[3]) in net.cuts:  # a cut came up while in flight
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
                    self._node_event(s, kind, item[4])
                if stop is not None and stop():
                    reason = "stop"
                    break
        finally:
            if gc_was_on:
                gc.enable()
            self.events += handled
            self.delivered += delivered
        if reason in ("until", "idle") and until is not None and until > self.now:
            self.now = float(until)
        return reason

    def _arrive_at_cut(self, item: tuple) -> None:
        """A message reaches a link that was cut after it left: dropped (or held until the heal)."""
        src, dst, msg = item[4], item[3], item[4:]
        if self.net.hold_partitioned:
            self._held.append((src, dst, msg))
        else:
            self.dropped += 1
            self._rec(("drop", None, self.now, None, 0, (src, dst, item[6], "partition")))

    def _abnormal(self, s: _NodeState, item: tuple) -> bool:
        """An event for a node that is down, paused or slow. True: the event is consumed here;
        False: the caller handles it now (a slow node that is free). Messages are handled here."""
        t, kind = item[0], item[2]
        if not s.up:
            if kind == MSG:
                self.dropped += 1
                self._rec(("drop", None, t, None, 0, (item[4], s.id, item[6], "down")))
            elif kind == CLIENT:  # connection refused: definitely did not happen
                op = self.open_ops.get(item[4].id)
                if op is not None:
                    self._complete(op, FAIL, None)
            return True
        if s.paused:
            s.queued.append(item)
            return True
        if s.busy_until > t:  # slow node: wait until its current handler is done
            heapq.heappush(self._heap, (s.busy_until, next(self._seq)) + item[2:])
            return True
        s.busy_until = t + s.proc
        if kind == MSG:
            _t, _q, _k, dst, src, body, mid, mtype, ml = item
            s.lamport = max(ml, s.lamport) + 1
            if self.full_trace:
                self._rec(("recv", dst, t, s.clock.local(t), s.lamport, (src, mid, mtype)))
            s.obj.on_message(s.ctx, src, body)
            return False
        return False

    def _node_event(self, s: _NodeState, kind: int, data: Any) -> None:
        if kind == MSG:
            return  # handled in _abnormal
        if kind == TIMER:
            name, token = data
            entry = s.timers.get(name)
            if entry is None or entry[0] != token:
                return  # cancelled or replaced
            del s.timers[name]
            self._step_event(s, "timer", (name,))
            s.obj.on_timer(s.ctx, name)
        elif kind == CLIENT:
            self._step_event(s, "client", (data.id, data.f))
            s.obj.on_client(s.ctx, data)
        else:  # DECISION
            point, action, inc = data
            if inc != s.incarnation:
                return
            self._step_event(s, "decision", (point, action))
            s.obj.on_decision(s.ctx, point, action)

    # --- summary -------------------------------------------------------------------------------
    def sent_counts(self) -> list[int]:
        """Messages sent by each node so far."""
        return [st.sent for st in self.states]

    def stats(self) -> dict:
        return {
            "true_time_ms": self.now,
            "events": self.events,
            "messages_sent": self._mid,
            "messages_delivered": self.delivered,
            "messages_dropped": self.dropped,
            "operations": len(self.history),
            "trace_events": len(self.trace),
        }
