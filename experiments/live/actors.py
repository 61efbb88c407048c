"""Node actors: one Ray actor per node, running the node's handlers on the node's own clock.

:class:`NodeRuntime` is the node's event loop in plain Python, the live twin of the simulator's
per-node state: a heap of pending events (messages with their delivery time, timers, decisions,
client operations) ordered by true time, the node object and its :class:`LiveContext` (the same
API as ``envs.world.node``), Lamport and vector clocks, and a buffer of trace events.
:class:`NodeActor` is the Ray actor around it: an ``asyncio`` actor (one thread, so handlers never
run concurrently) that wakes up with ``loop.call_at`` when the next event is due, receives message
batches from its peers (``deliver``) and operations from the clients (``client``, which returns
when the node replies), and obeys the driver (network changes, pause, slow, clock faults, halt).

Clocks on messages: every node event ticks the node's Lamport clock and its own entry of its
vector clock; a message carries both, and a receive first takes the maximum (Lamport 1978;
Fidge 1988, Mattern 1989). Trace events carry the vector clock after the event, as in the sim.

A spare actor is created without a node and becomes one with :meth:`NodeActor.init`, so that a
restart does not wait for a new worker process.

Signatures and channels (``signing.py``): ``ctx.sign``/``ctx.verify`` use the node's
:class:`~experiments.live.signing.Keyring` (HMAC tags with per-signer keys from the run's secret);
every batch is sealed with the sender's channel key, and the receiver drops one that does not
check or whose messages name another sender. A Byzantine node (``NodeRuntime.byzantine``) runs a
strategy of :mod:`envs.world.byzantine` around its protocol object, as in the simulator; colluding
strategies share one dict, local when the run has one Byzantine node, else a :class:`SharedState`
actor that every Byzantine node's strategy reads and writes (:class:`SharedProxy`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import pickle
import secrets
import time
import traceback
from typing import Any

import ray
from ray import cloudpickle

from envs.world.byzantine import STRATEGIES, Corrupted
from envs.world.node import ClientOp
from envs.world.records import STATUSES
from envs.world.rng import derive_rng
from envs.world.sim import Ask, disk_copy

from .clock import TrueClock
from .signing import Keyring, Signed
from .transport import Links, NetState, Outbox

MSG, TIMER, CLIENT, DECISION = range(4)


def wire(items: list) -> bytes:
    """A list of messages or trace events as one pickle. Ray's own argument serialisation packs
    each tuple of a list separately (a msgpack extension holding a pickle per tuple); one pickle
    of the whole list costs a few microseconds per batch instead of per message."""
    return cloudpickle.dumps(items, protocol=5)


def unwire(data: bytes) -> list:
    return pickle.loads(data)


class LiveContext:
    """What a live node can reach: the same API as the simulator's ``Context``, no true time."""

    __slots__ = ("_rt", "node_id", "nodes", "peers", "rng", "durable")

    def __init__(self, rt: NodeRuntime):
        self._rt = rt
        self.node_id = rt.id
        self.nodes = list(range(rt.n))
        self.peers = [i for i in range(rt.n) if i != rt.id]
        self.rng = derive_rng(rt.seed, "node", rt.id, rt.incarnation)
        self.durable = rt.durable

    def now(self) -> float:
        """This node's own clock reading in ms (offset, drift, jitter and clock faults included)."""
        return self._rt.clock.read(self._rt.true.now())

    @property
    def lamport(self) -> int:
        return self._rt.lamport

    @property
    def vclock(self) -> tuple:
        return tuple(self._rt.vc)

    def fsync(self) -> None:
        """Make everything written to ``ctx.durable`` so far survive a ``lose_unsynced`` crash."""
        self._rt.synced = disk_copy(self._rt.durable)

    @property
    def n(self) -> int:
        return self._rt.n

    def send(self, dst: int, body: Any) -> None:
        self._rt.send(dst, body)

    def broadcast(self, body: Any) -> None:
        for p in self.peers:
            self._rt.send(p, body)

    def set_timer(self, name: Any, after: float) -> None:
        rt = self._rt
        rt.schedule_timer(name, rt.clock.local(rt.true.now()) + after)

    def cancel_timer(self, name: Any) -> None:
        self._rt.timers.pop(name, None)

    def reply(self, op: ClientOp, status: str = "ok", value: Any = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"reply status must be one of {STATUSES}, not {status!r}")
        self._rt.reply(op, status, value)

    def ask(self, point: Any, obs: Any = None, default: Any = None, mask: Any = None) -> None:
        self._rt.ask(point, obs, default, mask)

    def record(self, kind: str, **fields: Any) -> None:
        self._rt.event(kind, fields)

    def sign(self, body: Any) -> Any:
        """``body`` (a tuple) signed as this node: an equal tuple carrying an HMAC tag made with this
        node's key only (``signing.py``); ``verify(self.node_id, body)`` holds for it anywhere."""
        return self._rt.keys.sign(body)

    def verify(self, signer: Any, body: Any) -> bool:
        """True when ``signer`` signed ``body`` (its tag checks, or this node checked one before)."""
        return self._rt.keys.verify(signer, body)


class NodeRuntime:
    """One node's life between a start and a crash (one incarnation), driven by true time."""

    def __init__(self, spec: dict, true: TrueClock, durable: dict, net: NetState, agent=None,
                 nets: list | None = None):
        self.id, self.n, self.seed = spec["node"], spec["n"], spec["seed"]
        self.incarnation = spec["incarnation"]
        self.cls, self.params = spec["cls"], spec["params"]
        self.clock = spec["clock"]
        self.proc = spec.get("proc", 0.0)  # true ms each handler takes (slow node)
        self.base_proc = spec.get("processing_ms", 0.0)
        self.true = true
        self.now = true.now  # true time in ms (the observer's; a node reads ctx.now())
        self.durable = durable
        self.synced = disk_copy(durable)  # the disk as of the last fsync (what the node started with is synced)
        self.net = net
        self.nets: list = sorted(nets or [], key=lambda x: x[0])  # (true time, NetState) to come
        self.net_late = 0.0  # ms: the latest any network change arrived after it should have begun
        self.agent = agent
        self.links = Links(self.id, self.n, self.seed, spec["latency"], spec.get("links"), self.incarnation)
        self.outbox = Outbox()
        self.held: list = []  # messages held across a cut (hold_partitioned)
        self.heap: list = []
        self.seq = itertools.count()
        self.timers: dict = {}  # name -> (token, deadline on the node's clock)
        self.token = itertools.count()
        self.lamport = spec.get("lamport", 0)
        self.vc = list(spec.get("vc") or [0] * self.n)
        self.mids = itertools.count()
        self.mid_base = (self.incarnation * self.n + self.id) << 32  # unique across nodes and incarnations
        self.events: list = []  # (kind, node, t, clock, lamport, vc, fields)
        self.replies: list = []  # (op id, status, value): resolved by the actor
        self.paused = False
        self.halted = False
        self.error: str | None = None
        self.busy_until = 0.0
        self.ask_id = 0
        self.stats = {"handled": 0, "sent": 0, "delivered": 0, "dropped": 0, "batches": 0}
        self.keys = Keyring(spec.get("secret") or secrets.token_bytes(32), self.id)
        self.certs: list = []  # client certificates checked here, passed on to each peer once
        self.cert_at = [0] * self.n  # how many of them each peer has been sent
        self.shared = spec.get("shared")  # the Byzantine strategies' shared state (collusion)
        self.strategy: str | None = None
        self.obj = self.cls(self.params)
        if spec.get("byzantine"):  # Byzantine before this incarnation: a fresh object, wrapped again
            strategy, options = spec["byzantine"]
            self.byzantine(strategy, options, record=False)
        self.ctx = LiveContext(self)

    # --- recording -------------------------------------------------------------------------------
    def event(self, kind: str, fields: Any, t: float | None = None) -> tuple:
        """A node event: ticks the Lamport clock and this node's vector-clock entry; returns the
        vector clock after it (a message carries the send event's)."""
        t = self.now() if t is None else t
        self.lamport += 1
        vc = self.vc
        vc[self.id] += 1
        vc = tuple(vc)
        self.events.append((kind, self.id, t, self.clock.local(t), self.lamport, vc, fields))
        return vc

    def world_event(self, kind: str, fields: Any) -> None:
        self.events.append((kind, None, self.now(), None, 0, (), fields))

    # --- lifecycle -------------------------------------------------------------------------------
    def byzantine(self, strategy: str, options: dict | None = None, record: bool = True) -> None:
        """From now on the node runs ``strategy`` (``envs.world.byzantine``) around its protocol
        object, as ``Sim.byzantine`` does; it still sends with its true identity and signs as itself."""
        if strategy not in STRATEGIES:
            raise KeyError(f"unknown Byzantine strategy {strategy!r}")
        if self.shared is None:
            self.shared = {}
        inner = self.obj.inner if self.strategy is not None else self.obj
        honest = self.cls.honest_cls if self.strategy is not None else self.cls
        self.cls = Corrupted(honest, strategy, self.shared, self.seed, self.id, dict(options or {}))
        self.obj = self.cls.wrap(inner)
        self.strategy = strategy
        if record:
            self.event("byzantine", {"strategy": strategy})

    def start(self, restart: bool) -> None:
        self.event("start", (restart,))
        self.guard(self.obj.on_start, self.ctx)

    @property
    def running(self) -> bool:
        return not (self.paused or self.halted or self.error)

    def guard(self, fn, *args) -> None:
        """Run a handler; an exception stops the node (the driver then crashes it) and is reported."""
        try:
            fn(*args)
        except Exception:
            self.error = traceback.format_exc(limit=8)

    # --- messages --------------------------------------------------------------------------------
    def send(self, dst: int, body: Any) -> None:
        tb = type(body)
        mtype = (body[0] if body else None) if tb is tuple or tb is Signed \
            else body.get("type") if tb is dict else tb.__name__
        mid = self.mid_base | next(self.mids)
        t = self.now()
        vc = self.event("send", (dst, mid, mtype), t)
        self.stats["sent"] += 1
        msg = (t, self.id, body, mid, mtype, self.lamport, vc)
        if self.certs and 0 <= dst < self.n and self.cert_at[dst] < len(self.certs):  # pass them on
            msg += (self.certs[self.cert_at[dst]:],)
            self.cert_at[dst] = len(self.certs)
        self.transmit(dst, msg, t)

    def transmit(self, dst: int, msg: tuple, t: float) -> None:
        """The sender's half of the fault model: cut, loss, duplication, latency (see transport)."""
        nets = self.nets
        net = self.net_at(t) if nets and nets[0][0] <= t else self.net
        if net.cuts and (self.id, dst) in net.cuts:
            if net.hold:
                self.held.append((dst, msg))
            else:
                self.drop(self.id, dst, msg[3], "partition")
            return
        if net.loss or net.duplicate:
            u = self.links.uniform
            if net.loss and next(u) < net.loss:
                self.drop(self.id, dst, msg[3], "loss")
                return
            copies = 2 if net.duplicate and next(u) < net.duplicate else 1
        else:
            copies = 1
        lat = self.links.latency[dst]
        for _ in range(copies):
            m = (t + next(lat),) + msg[1:]
            if dst == self.id:
                heapq.heappush(self.heap, (m[0], next(self.seq), MSG, m))
            else:
                self.outbox.put(dst, m)

    def drop(self, src: int, dst: int, mid: int, why: str) -> None:
        self.stats["dropped"] += 1
        self.world_event("drop", (src, dst, mid, why))

    def receive(self, data: bytes, src: int, tag: Any) -> int:
        """A sealed batch from node ``src`` (``wire`` bytes and the sender's channel tag): delivered
        when the tag checks, less any message that names another sender; the messages taken."""
        if not self.keys.open(src, data, tag):
            self.stats["forged"] = self.stats.get("forged", 0) + 1
            return 0
        msgs = unwire(data)
        if any(m[1] != src for m in msgs):
            self.stats["forged"] = self.stats.get("forged", 0) + 1
            msgs = [m for m in msgs if m[1] == src]
        self.deliver(msgs)
        return len(msgs)

    def deliver(self, batch: list) -> None:
        """A batch from a peer: each message waits in the heap until its delivery time."""
        push, seq, heap = heapq.heappush, self.seq, self.heap
        for m in batch:
            push(heap, (m[0], next(seq), MSG, m))

    def set_net(self, net: NetState, at: float) -> None:
        """The driver announces the network (cuts, loss) standing from true time ``at`` on."""
        now = self.now()
        if at < now:
            self.net_late = max(self.net_late, now - at)
        self.nets.append((at, net))
        self.nets.sort(key=lambda x: x[0])
        self.net_at(now)

    def net_at(self, t: float) -> NetState:
        """The network standing at true time ``t`` (announced changes take effect on time)."""
        nets = self.nets
        while nets and nets[0][0] <= t:
            self.net = nets.pop(0)[1]
            if self.held:
                self.release_held(t)
        return self.net

    def release_held(self, t: float) -> None:
        """Held messages (``hold_partitioned``) whose link is no longer cut go on."""
        held, self.held = self.held, []
        net = self.net
        for dst, msg in held:
            src = msg[1]
            if (src, dst) in net.cuts:
                self.held.append((dst, msg))
            elif dst == self.id:  # held on arrival: deliver now
                heapq.heappush(self.heap, (t, next(self.seq), MSG, (t,) + msg[1:]))
            else:
                self.transmit(dst, msg, t)

    # --- timers, clients, agents -----------------------------------------------------------------
    def schedule_timer(self, name: Any, deadline: float) -> None:
        token = next(self.token)
        self.timers[name] = (token, deadline)
        heapq.heappush(self.heap, (self.clock.true_at(deadline), next(self.seq), TIMER, (name, token)))

    def client(self, op: ClientOp, cert: tuple | None = None) -> None:
        """A client operation; ``cert``: its client's signature on it (``workload.replies > 1``)."""
        if cert is not None and self.keys.certify(cert):
            self.certs.append(cert)
        heapq.heappush(self.heap, (self.now(), next(self.seq), CLIENT, op))

    def reply(self, op: ClientOp, status: str, value: Any) -> None:
        self.event("reply", (op.id, status))
        self.replies.append((op.id, status, value))

    def ask(self, point, obs, default, mask) -> None:
        self.event("ask", (point,))
        t = self.now()
        action = default
        if self.agent is not None:
            action = self.agent(Ask(self.ask_id, self.id, point, obs, mask, default, t, self.incarnation))
        self.ask_id += 1
        heapq.heappush(self.heap, (t, next(self.seq), DECISION, (point, action)))

    # --- faults the driver applies ---------------------------------------------------------------
    def clock_fault(self, how: str, value: float) -> None:
        t = self.now()
        if how == "bump":
            self.clock.bump(t, value)
        else:
            self.clock.set_drift(t, value)
        self.event("clock", (how, value), t)
        for name, (_tok, deadline) in list(self.timers.items()):  # timers follow the node's clock
            self.schedule_timer(name, deadline)

    def slow(self, factor: float) -> None:
        self.proc = (self.base_proc or 1.0) * factor if factor != 1.0 else self.base_proc
        self.event("slow", (factor,))

    # --- the loop --------------------------------------------------------------------------------
    def process(self) -> float | None:
        """Handle every event due by now; the true time of the next one (None: nothing pending)."""
        heap, clock, pop = self.heap, self.now, heapq.heappop
        self.net_at(clock())
        while heap and not (self.paused or self.halted or self.error):
            now = clock()
            if heap[0][0] > now or self.busy_until > now:
                break
            item = pop(heap)
            self.handle(item[2], item[3], now)
            if self.proc:
                self.busy_until = now + self.proc
        nxt = max(heap[0][0], self.busy_until) if self.running and heap else None
        if self.nets and (nxt is None or self.nets[0][0] < nxt):
            nxt = self.nets[0][0]
        return nxt

    def handle(self, kind: int, data: Any, now: float) -> None:
        self.stats["handled"] += 1
        if kind == MSG:
            _at, src, body, mid, mtype, ml, mvc = data[:7]
            nets = self.nets
            net = self.net_at(now) if nets and nets[0][0] <= now else self.net
            if net.cuts and (src, self.id) in net.cuts:  # a cut came up while it was in flight
                if net.hold:
                    self.held.append((self.id, data))
                else:
                    self.drop(src, self.id, mid, "partition")
                return
            if ml > self.lamport:
                self.lamport = ml
            self.vc = list(map(max, self.vc, mvc))
            self.stats["delivered"] += 1
            self.event("recv", (src, mid, mtype), now)
            if len(data) > 7:  # client certificates the sender passes on
                for cert in data[7]:
                    self.keys.certify(cert)
            try:
                self.obj.on_message(self.ctx, src, body)
            except Exception:
                self.error = traceback.format_exc(limit=8)
        elif kind == TIMER:
            name, token = data
            entry = self.timers.get(name)
            if entry is None or entry[0] != token:
                return  # cancelled or replaced
            del self.timers[name]
            self.event("timer", (name,), now)
            self.guard(self.obj.on_timer, self.ctx, name)
        elif kind == CLIENT:
            self.event("client", (data.id, data.f), now)
            self.guard(self.obj.on_client, self.ctx, data)
        else:
            point, action = data
            self.event("decision", (point, action), now)
            self.guard(self.obj.on_decision, self.ctx, point, action)

    def drain(self) -> dict:
        """What the driver collects: new trace events (pickled in one piece, see :func:`wire`),
        the durable dict (the disk), counters."""
        ev, self.events = self.events, []
        stats = dict(self.stats, net_late_ms=self.net_late)
        return {"events": wire(ev), "durable": self.durable, "synced": self.synced, "stats": stats,
                "error": self.error,
                "lamport": self.lamport, "vc": list(self.vc)}


@ray.remote
class NodeActor:
    """A Ray actor that becomes node ``spec["node"]`` on :meth:`init` (see the module docstring)."""

    def __init__(self):
        self.rt: NodeRuntime | None = None
        self.batch_ms = 5.0
        self.window = 1
        self.peers: list = []
        self.waiters: dict[int, list] = {}  # op id -> futures of client calls waiting for the reply
        self.wake = None  # (true time, TimerHandle) of the next armed wake-up
        self.flush_armed = False
        self.last_flush = -1e9
        self.inflight: dict = {}  # destination -> batches on their way there (at most ``window``)
        self.gen = 0  # bumped when the peers change: acks of batches sent before no longer count
        self.run = None  # the run this actor serves now (actors are reused across runs)
        self.ctl: dict = {}  # (run, seq) -> (op, args): the driver's orders, applied in sequence
        self.next_ctl = 1

    # --- clock sync and set-up -------------------------------------------------------------------
    async def ping(self, *warm: Any) -> tuple[float, str]:
        """This process's monotonic clock and Ray node id. ``warm`` (the node class and params)
        is only unpickled: a spare imports the protocol's modules before it is needed."""
        return time.monotonic(), ray.get_runtime_context().get_node_id()

    async def init(self, spec: dict, t0: float, offset: float, durable: dict, peers: list, net: tuple,
                   agent=None, nets: list = ()) -> bool:
        """Become node ``spec["node"]``: ``net`` stands now, ``nets`` are announced changes ``(at, net)``."""
        self.loop = asyncio.get_running_loop()
        self.run, self.batch_ms, self.window = spec["run"], spec["batch_ms"], spec.get("window", 1)
        self.next_ctl = 1
        self.ctl = {k: v for k, v in self.ctl.items() if k[0] == self.run}
        self.rt = NodeRuntime(spec, TrueClock(t0, offset), dict(durable), NetState.from_wire(net), agent,
                              [(at, NetState.from_wire(w)) for at, w in nets])
        self.peers = list(peers)
        self.rt.start(restart=spec["incarnation"] > 0)
        self.step()
        self.apply_ctl()
        return True

    # --- calls from peers and clients ------------------------------------------------------------
    async def deliver(self, batch: bytes, run: str, src: int = -1, tag: bytes | None = None) -> None:
        """A batch from node ``src``, sealed with its channel key: one that does not check, or a
        message in it that names another sender, is dropped (authenticated channels)."""
        rt = self.rt
        if rt is None or rt.halted or run != self.run:  # dead, or a straggler from an earlier run
            return
        rt.receive(batch, src, tag)
        self.step()

    async def client(self, op: ClientOp, cert: tuple | None = None) -> tuple[str, Any] | None:
        """A client operation: returns ``(status, value)`` when the node replies; None when no
        node runs here (connection refused). ``cert``: the client's signature (``signing.py``)."""
        rt = self.rt
        if rt is None or rt.halted:
            return None
        fut = self.loop.create_future()
        self.waiters.setdefault(op.id, []).append(fut)
        rt.client(op, cert)
        self.step()
        return await fut

    # --- the driver's orders ---------------------------------------------------------------------
    async def control(self, run: str, seq: int, op: str, *args: Any) -> None:
        """An order from the driver, numbered: Ray does not promise that an async actor runs calls
        in the order they were sent, and the orders' order matters (a partition announced before a
        delivery horizon must be known when the horizon is), so they are applied in ``seq`` order."""
        self.ctl[(run, seq)] = (op, args)
        self.apply_ctl()

    def apply_ctl(self) -> None:
        while self.rt is not None and (self.run, self.next_ctl) in self.ctl:
            op, args = self.ctl.pop((self.run, self.next_ctl))
            self.next_ctl += 1
            if not self.rt.halted:
                getattr(self, "do_" + op)(*args)
        if self.rt is not None and not self.rt.halted:
            self.step()

    def do_peers(self, peers: list) -> None:
        self.peers = list(peers)
        self.inflight.clear()  # a batch to a replaced actor may never be answered
        self.gen += 1

    def do_net(self, net: tuple, at: float) -> None:
        self.rt.set_net(NetState.from_wire(net), at)

    def do_pause(self) -> None:
        rt = self.rt
        if not rt.paused:
            rt.event("pause", ())
            rt.paused = True

    def do_resume(self) -> None:
        rt = self.rt
        if rt.paused:
            rt.event("resume", ())
            rt.paused = False

    def do_slow(self, factor: float) -> None:
        self.rt.slow(factor)

    def do_clock(self, how: str, value: float) -> None:
        self.rt.clock_fault(how, value)

    def do_byzantine(self, strategy: str, options: dict) -> None:
        self.rt.byzantine(strategy, options)

    async def drain(self) -> dict:
        return self.rt.drain()

    async def halt(self, crash: bool = True, lose_unsynced: bool = False) -> dict:
        """Stop handling anything, at once (a crash, or the end of the run); the last drain."""
        rt = self.rt
        if not rt.halted:
            if crash:
                rt.event("crash", {"lose_unsynced": True} if lose_unsynced else ())
            rt.halted = True
            self.flush()
        return rt.drain()

    async def reset(self) -> bool:
        """Forget the node (after a run's final halt), to be reused as a spare by a later run."""
        if self.wake is not None:
            self.wake[1].cancel()
        for futs in self.waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(("unknown", None))
        self.rt, self.run, self.wake, self.waiters, self.peers, self.ctl = None, None, None, {}, [], {}
        self.inflight = {}
        return True

    # --- the event loop --------------------------------------------------------------------------
    def step(self) -> None:
        """Handle what is due, answer clients, arm the next wake-up and the outbox flush."""
        rt = self.rt
        nxt = rt.process()
        if rt.replies:
            for oid, status, value in rt.replies:
                for fut in self.waiters.pop(oid, ()):
                    if not fut.done():
                        fut.set_result((status, value))
            rt.replies.clear()
        if nxt is not None and (self.wake is None or nxt < self.wake[0]):
            if self.wake is not None:
                self.wake[1].cancel()
            self.wake = (nxt, self.loop.call_at(rt.true.mono(nxt), self._woken))
        if rt.outbox.count:
            self.arm()

    def arm(self) -> None:
        """Arm the flush for the next batch interval, when some destination can take a batch."""
        inflight, w = self.inflight, self.window
        if self.flush_armed or not any(inflight.get(d, 0) < w for d in self.rt.outbox.batches):
            return
        self.flush_armed = True
        at = self.last_flush + self.batch_ms / 1000.0
        if at <= time.monotonic():
            self.loop.call_soon(self.flush)
        else:
            self.loop.call_at(at, self.flush)

    def _woken(self) -> None:
        self.wake = None
        if self.rt is not None and not self.rt.halted:
            self.step()

    def flush(self) -> None:
        """Send the outbox: one call per destination carrying all of its messages, except to a
        destination that already has ``window`` batches on their way (flow control, see
        ``transport``)."""
        self.flush_armed = False
        self.last_flush = time.monotonic()
        rt = self.rt
        if rt is None or not rt.outbox.count:
            return
        inflight, w = self.inflight, self.window
        for dst in [d for d in rt.outbox.batches if inflight.get(d, 0) < w]:
            batch = rt.outbox.pop(dst)
            peer = self.peers[dst] if dst < len(self.peers) else None
            if peer is None:  # the destination is down: the messages are lost
                for m in batch:
                    rt.drop(rt.id, dst, m[3], "down")
                continue
            data = wire(batch)
            ref = peer.deliver.remote(data, self.run, rt.id, rt.keys.seal(data))
            inflight[dst] = inflight.get(dst, 0) + 1
            ref.future().add_done_callback(functools.partial(self._acked_elsewhere, dst, self.gen))
            rt.stats["batches"] += 1

    def _acked_elsewhere(self, dst: int, gen: int, _fut) -> None:
        """(In Ray's thread that completes the call) hand the ack to the actor's event loop."""
        try:
            self.loop.call_soon_threadsafe(self._acked, dst, gen)
        except RuntimeError:  # the loop has closed: the actor is going away
            pass

    def _acked(self, dst: int, gen: int) -> None:
        """A batch reached ``dst`` and was handled there (or ``dst`` died: its messages are lost)."""
        if gen == self.gen and self.inflight.get(dst):
            self.inflight[dst] -= 1
        if self.rt is not None and not self.rt.halted and self.rt.outbox.count:
            self.arm()


@ray.remote(num_cpus=0)
class SharedState:
    """The colluding Byzantine strategies' shared dict (``Strategy.shared``), one per run: the
    adversary's own channel, outside the network the faults act on."""

    def __init__(self):
        self.d: dict = {}

    def get(self, key: Any, default: Any = None) -> Any:
        return self.d.get(key, default)

    def has(self, key: Any) -> bool:
        return key in self.d

    def put(self, key: Any, value: Any) -> None:
        self.d[key] = value


class SharedProxy:
    """What a strategy in a node actor sees as ``self.shared``: a dict kept in a
    :class:`SharedState` actor. Writes go without waiting (Ray runs one caller's calls in order);
    reads wait for the answer (at most ``timeout_s``; then the key counts as missing)."""

    def __init__(self, actor, timeout_s: float = 2.0):
        self.actor, self.timeout_s = actor, timeout_s

    def _get(self, ref, default):
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.RayError:
            return default

    def __contains__(self, key) -> bool:
        return bool(self._get(self.actor.has.remote(key), False))

    def get(self, key, default=None):
        return self._get(self.actor.get.remote(key, default), default)

    def __getitem__(self, key):
        missing = object.__new__(_Missing)
        v = self._get(self.actor.get.remote(key, missing), missing)
        if isinstance(v, _Missing):
            raise KeyError(key)
        return v

    def __setitem__(self, key, value) -> None:
        self.actor.put.remote(key, value)

    def setdefault(self, key, default=None):
        if key in self:
            return self[key]
        self[key] = default
        return default


class _Missing:
    pass
