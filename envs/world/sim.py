"""The ``sim`` runtime: a deterministic discrete-event simulator of nodes on a faulty network.

One process, virtual (true) time in milliseconds, one heap of pending events, every random choice
drawn from streams derived from the run's seed: same seed, same trace, byte for byte.

The hottest path of the project (the heap of pending events, ``Sim.run``'s loop, ``ctx.send``,
timers and the trace's recording) lives in a core: :mod:`envs.world._core`, compiled with Cython
when the package is installed, or :mod:`envs.world._pycore`, the same core in pure Python, used
when the compiled one is missing or ``CAPGYM_PURE=1`` is set (:data:`COMPILED` says which). Both
give byte-identical traces: tuples ``(kind, node, t, clock, lamport, fields)``, turned into
:class:`~envs.world.records.Event` only when read. Everything off the hot path (faults, clients,
asks, the node lifecycle) is here.

The simulator can run until a true time, until a predicate holds, or until some node's agent owes
a decision (``ctx.ask`` to an external agent); environments drive it that way and answer with
:meth:`Sim.decide`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .clock import Clock
from .network import Network
from .node import ClientOp, Node
from .records import FAIL, OK, STATUSES, UNKNOWN, Op
from .rng import derive_rng
from .trace import Trace

if os.environ.get("CAPGYM_PURE"):  # force the pure-Python core (debugging, profiling, comparing)
    from . import _pycore as core
else:
    try:
        from . import _core as core  # the compiled core (``make install`` builds it)
    except ImportError:
        from . import _pycore as core



def core_is_stale(source: str, built: str | None) -> bool:
    """True when the compiled core ``built`` is older than its ``source`` (edited, not rebuilt)."""
    return bool(built) and os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(built)


if core.COMPILED and core_is_stale(os.path.join(os.path.dirname(__file__), "_core.pyx"), core.__file__):
    warnings.warn("envs/world/_core.pyx is newer than its compiled module: run `make core` to rebuild it",
                  stacklevel=2)

ContextBase, Loop, NodeState = core.ContextBase, core.Loop, core.NodeState
MSG, TIMER, CLIENT, DECISION, CALL = core.MSG, core.TIMER, core.CLIENT, core.DECISION, core.CALL
#: whether the compiled core is in use
COMPILED = core.COMPILED

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


class Context(ContextBase):
    """What a node can reach. Nothing here tells it the true time.

    ``now()``, ``send(dst, body)``, ``broadcast(body)``, ``set_timer(name, after)`` and
    ``cancel_timer(name)`` come from the core's ``ContextBase``; ``durable`` is the node's disk,
    made crash-proof up to now by ``fsync()``."""

    __slots__ = ("node_id", "nodes", "rng", "durable")

    def __init__(self, sim: Sim, s: NodeState):
        ContextBase.__init__(self, sim, s)
        self.node_id = s.id
        self.nodes = sim.node_ids
        self.rng = derive_rng(s.seed, "node", s.id, s.incarnation)
        self.durable = s.durable

    # --- time: ``now()`` (this node's own clock) comes from the core's ``ContextBase`` ----------
    @property
    def lamport(self) -> int:
        return self._s.lamport

    @property
    def vclock(self) -> tuple:
        return self._sim.trace.vclock(self._s.id)

    @property
    def n(self) -> int:
        return self._sim.n

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

    def sign(self, body: Any) -> Any:
        """Sign ``body`` (a hashable tuple) as this node; returns ``body``. Anyone holding the body can
        later check the signature with ``verify(self.node_id, body)``, and no node can sign as
        another: the runtime keeps the set of (signer, body) pairs signed so far, standing in for the
        digital signatures of Castro and Liskov's PBFT (OSDI 1999, section 3). The live runtime's
        twin signs with HMAC tags carried by the returned tuple (``experiments/live/signing.py``)."""
        self._sim.signatures.add((self._s.id, body))
        return body

    def verify(self, signer: int, body: Any) -> bool:
        """True when node ``signer`` signed ``body`` (see :meth:`sign`)."""
        try:
            return (signer, body) in self._sim.signatures
        except TypeError:  # an unhashable body (a Byzantine node's junk) carries no signature
            return False

    def fsync(self) -> None:
        """Make everything written to ``ctx.durable`` so far survive any crash. Until then a write
        is in the page cache: a crash with ``lose_unsynced`` takes the disk back to the last fsync."""
        sim = self._sim
        if sim.track_fsync:
            self._s.synced = disk_copy(self._s.durable)


def disk_copy(v: Any) -> Any:
    """A copy of a durable value that later in-place writes cannot reach: dicts, lists and sets are
    copied at every depth; tuples, strings and numbers are shared (protocols never mutate them)."""
    t = type(v)
    if t is dict:
        return {k: disk_copy(x) for k, x in v.items()}
    if t is list:
        return [disk_copy(x) for x in v]
    if t is set:
        return set(v)
    return v


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


class Sim(ClientSide, Loop):
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
        self._init_loop()
        self.n = n
        self.node_ids = tuple(range(n))  # shared by every context (ctx.nodes)
        self.seed = seed
        self.net = network or Network(range(n), seed)
        clocks = list(clocks) if clocks is not None else [Clock() for _ in range(n)]
        self.states = [NodeState(i, node_cls, params, clocks[i], processing_ms, seed) for i in range(n)]
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
        self.trace.follow(self.raw, self.flush_trace, self.buffered_events)
        self._ask_id = 0
        self.pending: list[Ask] = []  # asks owed by EXTERNAL agents, oldest first
        self.history: list[Op] = []
        self.open_ops: dict[int, Op] = {}
        self.on_complete: list[Callable[[Op], None]] = []
        self._held: list = []  # messages held across a cut (hold_partitioned)
        #: (signer, body) pairs signed with ``ctx.sign`` (unforgeable signatures, see ``Context.sign``)
        self.signatures: set = set()
        #: Byzantine nodes: node -> strategy name; the strategies' shared state (collusion)
        self.byzantine_nodes: dict[int, str] = {}
        self.byzantine_shared: dict = {}
        #: replies a client waits for: 1, the first from the node it sent to; k > 1, k matching
        #: replies from different nodes, the operation sent to every node (``workload.replies``)
        self.client_replies = 1
        self.client_votes: dict = {}
        self.started = False
        self.nemesis = self.workload = None  # attached by envs.world.build
        #: True: ``ctx.fsync()`` snapshots each node's disk, so that ``crash(n, lose_unsynced=True)``
        #: can roll it back (set before ``start``; off, fsync costs nothing and every crash keeps all)
        self.track_fsync = False

    # --- scheduling ----------------------------------------------------------------------------
    def call_at(self, t: float, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` at true time ``t`` (world-side code: nemesis, clients)."""
        self.push(float(max(t, self.now)), CALL, None, (fn, args))

    def _transmit(self, src: int, dst: int, msg: tuple, depart: float) -> None:
        net = self.net
        if net.cuts and (src, dst) in net.cuts:
            if net.hold_partitioned:
                self._held.append((src, dst, msg))
            else:
                self.dropped += 1
                self.rec(("drop", None, self.now, None, 0, (src, dst, msg[2], "partition")))
            return
        u = net.uniform
        if net.loss and next(u) < net.loss:
            self.dropped += 1
            self.rec(("drop", None, self.now, None, 0, (src, dst, msg[2], "loss")))
            return
        self.push_msg(depart + net.latency(src, dst), dst, *msg)
        if net.duplicate and next(u) < net.duplicate:
            self.push_msg(depart + net.latency(src, dst), dst, *msg)

    # --- node-local events ---------------------------------------------------------------------
    def _local_event(self, s: NodeState, kind: str, fields: Any) -> None:
        s.lamport += 1
        self.rec((kind, s.id, self.now, s.clock.local(self.now), s.lamport, fields))

    def _world_event(self, kind: str, fields: Any) -> None:
        self.rec((kind, None, self.now, None, 0, fields))

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every node (``on_start``) at true time 0."""
        if self.started:
            return
        self.started = True
        for s in self.states:
            if self.track_fsync:  # what is on a node's disk before it starts is synced
                s.synced = disk_copy(s.durable)
            self._boot(s, restart=False)

    def _boot(self, s: NodeState, restart: bool) -> None:
        s.up = True
        s.paused = False
        s.obj = s.cls(s.params)
        s.ctx = Context(self, s)
        s.refresh()
        self._local_event(s, "start", (restart,))
        s.obj.on_start(s.ctx)

    def crash(self, nid: int, lose_unsynced: bool = False) -> None:
        """Crash node ``nid``: its volatile state is lost and it handles nothing until restarted.
        With ``lose_unsynced`` its disk also loses every write since its last ``ctx.fsync()``
        (lazyfs's fault in Jepsen; needs ``track_fsync``, else ``ValueError``)."""
        s = self.states[nid]
        if not s.up:
            return
        if lose_unsynced:
            if not self.track_fsync:
                raise ValueError("crash(lose_unsynced=True) needs sim.track_fsync = True before the start")
            s.durable.clear()
            s.durable.update(disk_copy(s.synced))
            self._local_event(s, "crash", {"lose_unsynced": True})
        else:
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

    def byzantine(self, nid: int, strategy: str, **options: Any) -> None:
        """Make node ``nid`` Byzantine from now on: the scripted ``strategy`` (a name in
        :data:`envs.world.byzantine.STRATEGIES`) replaces its protocol, wrapping the running protocol
        object (and a fresh one after each restart). What it sends still carries its true identity.
        The trace records a ``byzantine`` event. ``KeyError`` for an unknown strategy."""
        from .byzantine import STRATEGIES, Corrupted

        if strategy not in STRATEGIES:
            raise KeyError(f"unknown Byzantine strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
        s = self.states[nid]
        already = nid in self.byzantine_nodes
        if already:  # a new strategy for a node that was Byzantine already
            s.cls = s.cls.honest_cls
        corrupted = Corrupted(s.cls, strategy, self.byzantine_shared, self.seed, nid, options)
        s.cls = corrupted
        self.byzantine_nodes[nid] = strategy
        self._local_event(s, "byzantine", {"strategy": strategy})
        if s.up:
            inner = s.obj.inner if already else s.obj
            s.obj = corrupted.wrap(inner)

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
                self.push_item(self.now, item)
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
        self.flush_trace()
        self.trace.follow(self.raw, None, None)
        self.clear_events()
        self.pending.clear()
        self.on_complete.clear()
        self.workload = self.nemesis = None
        for s in self.states:
            s.ctx = s.obj = s.lat = None
        self.net.streams = []  # up to n^2 latency streams (8 objects each): freed now, not by a GC pass

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
        self.faulty = bool(net.cuts or net.loss or net.duplicate)
        self.cut_links = net.cuts

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

    def _after_clock_change(self, s: NodeState, fields: tuple) -> None:
        s.sync_clock()
        if s.up:
            self._local_event(s, "clock", fields)
        for name, (_token, deadline) in list(s.timers.items()):  # timers follow the node's clock
            self.schedule_timer(s, name, deadline)

    # --- clients -------------------------------------------------------------------------------
    def submit(self, op: Op) -> None:
        """Invoke client operation ``op`` (``op.node`` says which node it goes to; with
        ``client_replies > 1`` it goes to every node and ``op.node`` is None) now."""
        op.invoke = self.now
        self.history.append(op)
        if self.client_replies > 1:  # to every node: op.node is None
            self.open_ops[op.id] = op
            self._submit_to_all(op)
            return
        s = self.states[op.node]
        if not s.up and self.client_replies == 1:  # connection refused: definitely did not happen
            self._complete(op, FAIL, None)
            return
        self.open_ops[op.id] = op
        self.push(self.now + self.client_latency_ms, CLIENT, op.node, ClientOp(op.id, op.f, op.key, op.value))

    def _submit_to_all(self, op: Op) -> None:
        """The client sends ``op``, signed as itself, to every node; it completes on
        ``client_replies`` matching replies (PBFT's f+1: Castro and Liskov 1999, section 4.1)."""
        value = tuple(op.value) if isinstance(op.value, list) else op.value
        cop = ClientOp(op.id, op.f, op.key, value, op.process)
        self.signatures.add((("client", op.process), cop))
        self.client_votes[op.id] = {}
        for s in self.states:
            self.push(self.now + self.client_latency_ms, CLIENT, s.id, cop)


    def _reply(self, s: NodeState, cop: ClientOp, status: str, value: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"reply status must be one of {STATUSES}, not {status!r}")
        self.step_event(s, "reply", (cop.id, status))
        op = self.open_ops.get(cop.id)
        if op is None:
            return
        if self.client_replies > 1:  # count matching replies from distinct nodes
            votes = self.client_votes.get(cop.id)
            if votes is None or status == UNKNOWN:
                return
            votes[s.id] = (status, repr(value))
            if sum(1 for v in votes.values() if v == votes[s.id]) < self.client_replies:
                return
            del self.client_votes[cop.id]
        self._complete(op, status, value)


    # --- agents --------------------------------------------------------------------------------
    def _ask(self, s: NodeState, point: Any, obs: Any, default: Any, mask: Any) -> None:
        self.step_event(s, "ask", (point,))
        agent = self.agents.get(s.id)
        a = Ask(self._ask_id, s.id, point, obs, mask, default, self.now, s.incarnation)
        self._ask_id += 1
        if agent is None:
            self.push(self.now, DECISION, s.id, (point, default, s.incarnation))
        elif agent == EXTERNAL:
            self.pending.append(a)
        else:
            self.push(self.now, DECISION, s.id, (point, agent(a), s.incarnation))

    def decide(self, ask: Ask, action: Any) -> None:
        """Answer a pending ``ask``: the node gets ``on_decision`` now."""
        self.pending.remove(ask)
        self.push(self.now, DECISION, ask.node, (ask.point, action, ask.incarnation))

    # --- what the core's loop calls for events off its hot path (``node_event`` is the core's) --
    def _arrive_at_cut(self, item: tuple) -> None:
        """A message reaches a link that was cut after it left: dropped (or held until the heal)."""
        src, dst, msg = item[4], item[3], item[4:]
        if self.net.hold_partitioned:
            self._held.append((src, dst, msg))
        else:
            self.dropped += 1
            self.rec(("drop", None, self.now, None, 0, (src, dst, item[6], "partition")))

    def _abnormal(self, s: NodeState, item: tuple) -> bool:
        """An event for a node that is down, paused or slow. True: the event is consumed here;
        False: the caller handles it now (a slow node that is free). Messages are handled here."""
        t, kind = item[0], item[2]
        if not s.up:
            if kind == MSG:
                self.dropped += 1
                self.rec(("drop", None, t, None, 0, (item[4], s.id, item[6], "down")))
            elif kind == CLIENT and self.client_replies == 1:  # connection refused: did not happen
                op = self.open_ops.get(item[4].id)
                if op is not None:
                    self._complete(op, FAIL, None)
            return True
        if s.paused:
            s.queued.append(item)
            return True
        if s.busy_until > t:  # slow node: wait until its current handler is done
            self.push_item(s.busy_until, item)
            return True
        s.busy_until = t + s.proc
        if kind == MSG:
            _t, _q, _k, dst, src, body, mid, mtype, ml = item
            s.lamport = max(ml, s.lamport) + 1
            if self.full_trace:
                self.rec(("recv", dst, t, s.clock.local(t), s.lamport, (src, mid, mtype)))
            s.obj.on_message(s.ctx, src, body)
            return False
        return False

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
