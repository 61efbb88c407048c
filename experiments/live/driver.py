"""The live driver: starts the node actors, runs the nemesis and the clients in real time, and
collects the history and the trace.

:class:`LiveWorld` offers the simulator's world-side interface (``now``, ``call_at``, ``crash``,
``restart``, ``pause``, ``resume``, ``slow``, ``set_cuts``, ``heal``, ``set_loss``,
``clock_bump``, ``clock_drift``, ``submit``, ``timeout``, ``is_up``, ``states[i].clock``,
``net.loss``), so the simulator's own :class:`~envs.world.nemesis.Nemesis` and
:class:`~envs.world.workload.Workload` run unchanged on top of it, on real time.

The driver is one loop: run the calls that are due (faults, client invocations, timeouts), every
``drain_ms`` ask each actor for its new trace events and its durable dict, and otherwise wait on
``ray.wait`` for client replies and drains, never longer than the next due call. Every wait has a
timeout, so a dead or stuck actor never hangs it:

* **crash**: the actor is told to halt (it records ``crash`` and stops handling anything at once,
  and hands over its last events and its disk), then ``ray.kill``-ed. If it does not answer in
  ``halt_timeout_s`` it is killed anyway and the driver records the crash.
* **restart**: a spare actor (started ahead, so no worker start-up on the path) becomes the node
  with the durable dict of its last drain and calls ``on_start`` again.
* **death**: an actor that dies on its own (or is killed from outside), whose handler raised, or
  that does not answer a drain in ``hang_s``, is recorded as crashed (``reason`` in the event's
  fields) and stays down unless the nemesis restarts it; the run goes on.

Byzantine nodes (``fault: byzantine``, scheduled or random): the driver orders the node's actor to
run the strategy around its protocol (``NodeRuntime.byzantine``) and restarts it Byzantine; the
node records the trace's ``byzantine`` event. When the plan has two Byzantine nodes or more, their
strategies share one dict in a :class:`~experiments.live.actors.SharedState` actor (collusion).
With ``workload.replies: k > 1`` a client signs each operation (``signing.client_certificate``),
sends it to every node that is up and completes it on ``k`` matching replies from different
nodes, as the simulator's clients do.

Clients time their operations with the driver's clock (true time): invocation when the call is
sent, completion when the reply is received, so the interval contains the operation's real effect
and the history can be checked for linearizability.

The nemesis is the simulator's own, but its whole plan is drawn before the run (:class:`_Plan`:
its choices depend only on the seed): every actor gets the timetable of network changes when it
starts and applies each on time by itself, and the driver carries out node faults when they fall
due. Nothing on the message path waits for the driver, so a slow or loaded driver delays clients
and crashes, never deliveries.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from envs.world.build import make_clocks
from envs.world.config import ScenarioConfig
from envs.world.nemesis import Nemesis
from envs.world.node import ClientOp
from envs.world.records import FAIL, UNKNOWN, Event, Op
from envs.world.sim import ClientSide
from envs.world.trace import FIELDS
from envs.world.workload import Workload

from .actors import NodeActor, SharedProxy, SharedState, unwire
from .clock import cristian_offset
from .signing import client_certificate
from .transport import NetState

STAT_KEYS = ("handled", "sent", "delivered", "dropped", "batches")

#: idle actors left by earlier runs in this Ray session, ``(actor, clock offset)``: starting a Ray
#: worker takes seconds, so a run takes its actors from here first and gives back the healthy ones
_POOL: list = []
_POOL_SESSION: list = [None]


def _session() -> str:
    return ray.get_runtime_context().get_job_id()


def _pool_take(k: int, timeout: float, warm: tuple = ()) -> list:
    """Up to ``k`` pooled actors that still answer (and have unpickled ``warm``)."""
    if _POOL_SESSION[0] != _session():
        _POOL.clear()
        _POOL_SESSION[0] = _session()
    take = [_POOL.pop() for _ in range(min(k, len(_POOL)))]
    if not take:
        return []
    refs = [a.ping.remote(*warm) for a, _ in take]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    alive = []
    for (a, off), ref in zip(take, refs):
        if ref in ready:
            try:
                ray.get(ref, timeout=0)
                alive.append((a, off))
                continue
            except ray.exceptions.RayError:
                pass
        ray.kill(a, no_restart=True)
    return alive


def _pool_put(actors: list) -> None:
    _POOL_SESSION[0] = _session()
    _POOL.extend(actors)


def release_pool() -> int:
    """Kill this process's idle pooled actors and return how many there were. Each holds its
    ``actor_cpus`` of the Ray instance while it waits for the next live run, so work that reserves
    CPUs up front (a sweep's placement groups) calls this first: otherwise a placement group that
    needs the whole instance would wait for them forever."""
    n = len(_POOL)
    while _POOL:
        actor, _offset = _POOL.pop()
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 -- an actor already gone, or a Ray instance since shut down
            pass
    return n


@dataclass
class LiveOptions:
    """Knobs of the live runtime (none changes what a protocol sees, only how the run is carried)."""

    batch_ms: float = 10.0  #: an actor flushes its outbox at most this often
    window: int = 1  #: at most this many batches on their way per link (more wait and grow the next batch)
    drain_ms: float = 200.0  #: the driver collects trace events this often
    actor_cpus: float = 0.1  #: Ray CPU resource per node actor (fractional: many actors per core)
    spares: int = 1  #: idle actors kept ready for restarts
    halt_timeout_s: float = 2.0  #: wait this long for a crashing actor's last words
    start_timeout_s: float = 60.0  #: wait this long for the actors to come up
    hang_s: float = 5.0  #: an actor that does not answer a drain for this long counts as dead


class _NodeView:
    """The driver's view of one node: its actor, its clock model, its disk as last collected."""

    def __init__(self, i: int, clock):
        self.id, self.clock = i, clock
        self.actor = None
        self.ctl = 0  # the number of the last order sent to the actor
        self.offset = 0.0
        self.up = self.starting = self.paused = False
        self.incarnation = 0
        self.durable: dict = {}
        self.synced: dict = {}  # the disk as of the node's last fsync (at its last drain)
        self.lamport, self.vc = 0, None
        self.drain_since: float | None = None  # true time of the outstanding drain
        self.stats_done = dict.fromkeys(STAT_KEYS, 0)
        self.stats_cur = dict.fromkeys(STAT_KEYS, 0)
        self.net_late = 0.0  # of past incarnations


class LiveWorld(ClientSide):
    """A scenario run live: ``n`` node actors of ``node_cls`` under the scenario's faults and clients."""

    def __init__(self, scn: ScenarioConfig, node_cls: type, params: Any = None, agents: dict | None = None,
                 options: LiveOptions | None = None, nemesis: bool = True, workload: bool = True):
        w = scn.world
        self.scn, self.n, self.seed = scn, w.nodes, scn.seed
        self.node_cls, self.params = node_cls, params
        self.opt = options or LiveOptions()
        self.agents = dict(agents or {})
        for k, a in self.agents.items():
            if not (isinstance(k, int) and 0 <= k < self.n):
                raise ValueError(f"agents: node {k!r} does not exist ({self.n} nodes)")
            if a is not None and not callable(a):
                raise ValueError(f"agents.{k}: the live runtime takes callables policy(ask) -> action, not {a!r}")
        self.states = [_NodeView(i, c) for i, c in enumerate(make_clocks(w.clocks, self.n, self.seed))]
        net = w.network
        self.net = NetState(loss=net.loss, duplicate=net.duplicate, hold=net.hold_partitioned)
        self._nets_base = self.net.to_wire()
        self.latency = net.latency.model_dump()
        self.links = {(lk.src, lk.dst): lk.latency.model_dump() for lk in net.links}
        self.history: list[Op] = []
        self.open_ops: dict[int, Op] = {}
        self.on_complete: list[Callable[[Op], None]] = []
        self.raw: list[tuple] = []  # trace events as (kind, node, t, clock, lamport, vc, fields)
        self._calls: list = []
        self._cseq = itertools.count()
        self._waiting: dict = {}  # object ref -> (what, data)
        self._spares: deque = deque()
        self._t0: float | None = None
        self._next_drain = 0.0
        self.crashes = self.restarts = self.deaths = 0
        self.late_ms = 0.0  # the latest the driver ran a due call
        self.errors: list[str] = []
        self.started = self.closed = False
        self.interrupted = False
        self.end_ms: float | None = None
        #: the run's signing secret (``signing.py``): drawn afresh, never derived from the seed
        self.secret = secrets.token_bytes(32)
        #: Byzantine nodes: node -> strategy; (strategy, options) for their restarts; shared state
        self.byzantine_nodes: dict[int, str] = {}
        self._byz: dict[int, tuple] = {}
        self.shared = None
        self._shared_actor = None
        #: replies a client waits for (``workload.replies``): 1, its node's; k > 1, k matching ones
        self.client_replies = scn.workload.replies
        self.client_votes: dict = {}
        self.plan = _Plan(self.n, [st.clock for st in self.states], self.net)
        self.nemesis = Nemesis(scn.nemesis, scn.seed, w.duration_ms).attach(self.plan) if nemesis else None
        self.plan.run(w.duration_ms)
        #: network changes every actor knows of, ``(true time, wire form)``, oldest first
        self._nets: list = [(at, wire) for at, wire, _rec in self.plan.nets]
        for at, _wire, (kind, fields) in self.plan.nets:  # the trace records them when they fall due
            self.call_at(at, self._record, kind, None, fields, at)
        for at, name, args in self.plan.faults:
            self.call_at(at, getattr(self, name), *args)
        self.workload = Workload(scn.workload, scn.seed, w.duration_ms).attach(self) if workload else None

    # --- time and scheduling -----------------------------------------------------------------------
    @property
    def now(self) -> float:
        """True time: ms since the run started, on the driver's monotonic clock."""
        return 0.0 if self._t0 is None else (time.monotonic() - self._t0) * 1000.0

    def call_at(self, t: float, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` in the driver at true time ``t`` (or as soon as possible after)."""
        heapq.heappush(self._calls, (float(t), next(self._cseq), fn, args))

    def _record(self, kind: str, node: int | None, fields: Any, at: float | None = None) -> None:
        t = self.now if at is None else at
        if node is None:
            self.raw.append((kind, None, t, None, 0, (), fields))
        else:  # a node event the node could not record itself (its actor is gone)
            st = self.states[node]
            st.lamport += 1
            vc = list(st.vc or [0] * self.n)
            vc[node] += 1
            st.vc = vc
            self.raw.append((kind, node, t, st.clock.local(t), st.lamport, tuple(vc), fields))

    # --- actors ------------------------------------------------------------------------------------
    def _new_actor(self):
        return NodeActor.options(num_cpus=self.opt.actor_cpus, max_restarts=0).remote()

    def _offset(self, actor, node_id: str) -> float:
        """Clock offset of an actor's machine: 0 on the driver's machine, else Cristian's estimate."""
        if node_id == self._host:
            return 0.0
        return cristian_offset(lambda: ray.get(actor.ping.remote(), timeout=self.opt.start_timeout_s)[0])[0]

    def _spec(self, st: _NodeView) -> dict:
        return {"run": self._run_id, "batch_ms": self.opt.batch_ms, "window": self.opt.window,
                "node": st.id, "n": self.n, "seed": self.seed,
                "incarnation": st.incarnation,
                "cls": self.node_cls, "params": self.params, "clock": st.clock,
                "processing_ms": self.scn.world.processing_ms, "proc": self.scn.world.processing_ms,
                "latency": self.latency, "links": self.links, "lamport": st.lamport, "vc": st.vc,
                "secret": self.secret, "byzantine": self._byz.get(st.id), "shared": self.shared}

    def _peers(self) -> list:
        return [st.actor if st.up else None for st in self.states]

    def _order(self, st: _NodeView, op: str, *args: Any) -> None:
        """Send an order to node ``st``'s actor, numbered so that it applies them in order."""
        st.ctl += 1
        st.actor.control.remote(self._run_id, st.ctl, op, *args)

    def _push_peers(self) -> None:
        peers = self._peers()
        for st in self.states:
            if st.actor is not None:
                self._order(st, "peers", peers)

    def start(self) -> None:
        """Start the actors (``n`` nodes and the spares), synchronise clocks, call ``on_start``."""
        if self.started:
            return
        self.started = True
        self._host = ray.get_runtime_context().get_node_id()
        self._run_id = f"{self.seed}-{time.time_ns()}"
        k = self.n + self.opt.spares
        # the actors unpickle the node program and the agents' policies (importing what they need,
        # e.g. torch) before the run's clock starts
        warm = (self.node_cls, self.params, *self.agents.values())
        pooled = _pool_take(k, self.opt.start_timeout_s, warm)
        fresh = [self._new_actor() for _ in range(k - len(pooled))]
        try:
            pings = ray.get([a.ping.remote(*warm) for a in fresh],
                            timeout=self.opt.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            for a in fresh + [a for a, _ in pooled]:
                ray.kill(a, no_restart=True)
            raise RuntimeError(f"live: {len(fresh)} node actors did not start within {self.opt.start_timeout_s:g} s "
                               f"(free Ray CPUs: {ray.available_resources().get('CPU', 0):g}; "
                               f"each actor asks for {self.opt.actor_cpus:g})") from None
        actors = [a for a, _ in pooled] + fresh
        if len({*self.plan.byzantine_nodes, *self.byzantine_nodes}) > 1:  # colluding strategies: one shared state
            self._shared_actor = SharedState.remote()
            self.shared = SharedProxy(self._shared_actor)
            try:  # up before the clock starts: a strategy's first read must not wait for a worker
                ray.get(self._shared_actor.has.remote(None), timeout=self.opt.start_timeout_s)
            except ray.exceptions.RayError:
                ray.kill(self._shared_actor, no_restart=True)
                raise RuntimeError("live: the Byzantine nodes' shared-state actor did not start") from None
        offsets = [off for _, off in pooled] + [self._offset(a, p[1]) for a, p in zip(fresh, pings)]
        for st in self.states:
            st.actor, st.offset, st.ctl = actors[st.id], offsets[st.id], 0
            st.up = True
        for a, off in zip(actors[self.n:], offsets[self.n:]):
            self._spares.append((a, off))
        peers = self._peers()
        self._t0 = time.monotonic()
        net, nets = self._net_for_start()
        refs = [st.actor.init.remote(self._spec(st), self._t0, st.offset, dict(st.durable), peers, net,
                                     self.agents.get(st.id), nets) for st in self.states]
        try:
            ray.get(refs, timeout=self.opt.start_timeout_s)
        except ray.exceptions.RayError as e:
            why = str(e).strip().splitlines()[-1]
            raise RuntimeError(f"live: a node actor could not start its node: {why}") from None

    def _take_spare(self):
        if self._spares:
            actor, off = self._spares.popleft()
        else:
            actor = self._new_actor()
            _mono, host = ray.get(actor.ping.remote(), timeout=self.opt.start_timeout_s)
            off = self._offset(actor, host)
        spare = self._new_actor()  # replace it in the background
        self._waiting[spare.ping.remote(self.node_cls, self.params, *self.agents.values())] = ("spare", spare)
        return actor, off

    # --- faults (the nemesis calls these) ----------------------------------------------------------
    def is_up(self, nid: int) -> bool:
        return self.states[nid].up

    def crash(self, nid: int, reason: str | None = None, lose_unsynced: bool = False) -> None:
        """Crash node ``nid``: its actor halts at once and is killed; its disk is kept, or with
        ``lose_unsynced`` taken back to the node's last ``ctx.fsync()``."""
        st = self.states[nid]
        if not (st.up or st.starting):
            return
        actor = st.actor
        was_up = st.up
        st.actor, st.up, st.starting, st.paused = None, False, False, False
        st.drain_since = None
        self._push_peers()
        if was_up and reason is None:
            try:
                self._absorb(st, ray.get(actor.halt.remote(True, lose_unsynced), timeout=self.opt.halt_timeout_s),
                             actor)
            except ray.exceptions.RayError:
                self._record("crash", nid, {"reason": "no answer to halt", "lose_unsynced": lose_unsynced})
        else:
            self._record("crash", nid, {"reason": reason} if reason else ())
        if lose_unsynced:
            st.durable = st.synced
        ray.kill(actor, no_restart=True)
        self._retire(st)
        self.crashes += 1

    def _retire(self, st: _NodeView) -> None:
        """An incarnation ends: its counters are final; the next one is a new actor."""
        for k in STAT_KEYS:
            st.stats_done[k] += st.stats_cur.get(k, 0)
        st.net_late = max(st.net_late, st.stats_cur.get("net_late_ms", 0.0))
        st.stats_cur = dict.fromkeys(STAT_KEYS, 0)
        st.incarnation += 1

    def restart(self, nid: int) -> None:
        """Restart a crashed node: a new actor with the node's durable dict, ``on_start`` again."""
        st = self.states[nid]
        if st.up or st.starting:
            return
        actor, st.offset = self._take_spare()
        st.actor, st.starting, st.ctl = actor, True, 0
        net, nets = self._net_for_start()
        ref = actor.init.remote(self._spec(st), self._t0, st.offset, st.durable, self._peers(),
                                net, self.agents.get(nid), nets)
        self._waiting[ref] = ("started", (st, actor))
        self.restarts += 1

    def kill_actor(self, nid: int) -> None:
        """Kill node ``nid``'s actor from outside, telling no one (tests: the run must notice)."""
        if self.states[nid].actor is not None:
            ray.kill(self.states[nid].actor, no_restart=True)

    def _tell(self, nid: int, op: str, *args: Any) -> None:
        st = self.states[nid]
        if st.up:
            self._order(st, op, *args)

    def byzantine(self, nid: int, strategy: str, options: dict | None = None, **kw: Any) -> None:
        """Make node ``nid`` Byzantine from now on (``Sim.byzantine``): its actor runs ``strategy``
        around its protocol, and so does every later incarnation."""
        from envs.world.byzantine import STRATEGIES

        if strategy not in STRATEGIES:
            raise KeyError(f"unknown Byzantine strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
        options = dict(options or {}, **kw)
        st = self.states[nid]
        self.byzantine_nodes[nid] = strategy
        self._byz[nid] = (strategy, options)
        if st.actor is not None:  # up or starting: the actor records it when it applies the order
            self._order(st, "byzantine", strategy, options)
        else:
            self._record("byzantine", nid, {"strategy": strategy})

    def pause(self, nid: int) -> None:
        self._tell(nid, "pause")

    def resume(self, nid: int) -> None:
        self._tell(nid, "resume")

    def slow(self, nid: int, factor: float, base_ms: float = 1.0) -> None:
        self._tell(nid, "slow", factor)

    def clock_bump(self, nid: int, delta: float) -> None:
        self.states[nid].clock.bump(self.now, delta)
        self._tell(nid, "clock", "bump", delta)

    def clock_drift(self, nid: int, drift: float) -> None:
        self.states[nid].clock.set_drift(self.now, drift)
        self._tell(nid, "clock", "drift", drift)

    def _announce(self, at: float | None) -> None:
        """Tell every actor the network standing from true time ``at`` (default: now) on.

        For changes made while the run goes on (the nemesis's are all known at start): an actor
        applies one from ``at`` or from when it hears of it, whichever is later
        (``stats["net_late_ms"]``: the latest one arrived after ``at``)."""
        at = self.now if at is None else at
        wire = self.net.to_wire()
        self._nets.append((at, wire))
        for st in self.states:
            if st.actor is not None:
                self._order(st, "net", wire, at)

    def _net_for_start(self) -> tuple[tuple, list]:
        """The network standing now and the changes announced for later (for a starting actor)."""
        now = self.now
        past = [w for at, w in self._nets if at <= now]
        return (past[-1] if past else self._nets_base), [(at, w) for at, w in self._nets if at > now]

    def set_cuts(self, cuts: set, shape: str = "custom", at: float | None = None) -> None:
        """Make ``cuts`` (directed links) the standing partition from ``at`` (default now); empty heals.

        Unplanned: the nemesis's partitions reach the actors through the plan (:class:`_Plan`)."""
        self.net.cuts = {tuple(c) for c in cuts}
        if cuts:
            self._record("partition", None, (sorted(map(list, self.net.cuts)), shape), at)
        else:
            self._record("heal", None, (), at)
        self._announce(at)

    def heal(self, at: float | None = None) -> None:
        self.set_cuts(set(), at=at)

    def set_loss(self, p: float, at: float | None = None) -> None:
        self.net.loss = float(p)
        self._record("loss", None, (float(p),), at)
        self._announce(at)

    # --- clients -----------------------------------------------------------------------------------
    def submit(self, op: Op) -> None:
        """Invoke client operation ``op`` at node ``op.node`` now."""
        op.invoke = self.now
        self.history.append(op)
        if self.client_replies > 1:  # signed, to every node; k matching replies complete it
            self.open_ops[op.id] = op
            value = tuple(op.value) if isinstance(op.value, list) else op.value
            cop = ClientOp(op.id, op.f, op.key, value, op.process)
            cert = client_certificate(self.secret, op.process, cop)
            self.client_votes[op.id] = {}
            for st in self.states:
                if st.up:
                    self._waiting[st.actor.client.remote(cop, cert)] = ("vote", (op.id, st.id))
            return
        st = self.states[op.node]
        if not st.up:  # connection refused: definitely did not happen
            self._complete(op, FAIL, None)
            return
        self.open_ops[op.id] = op
        ref = st.actor.client.remote(ClientOp(op.id, op.f, op.key, op.value))
        self._waiting[ref] = ("reply", op.id)

    # --- collecting --------------------------------------------------------------------------------
    def _absorb(self, st: _NodeView, res: dict, actor) -> None:
        self.raw.extend(unwire(res["events"]))
        st.durable, st.synced = res["durable"], res["synced"]
        st.lamport, st.vc = res["lamport"], res["vc"]
        st.stats_cur = res["stats"]
        if res["error"] and st.actor is actor and st.up:
            self.errors.append(f"node {st.id}: {res['error']}")
            self.crash(st.id, reason="handler raised: " + res["error"].strip().splitlines()[-1])

    def _died(self, st: _NodeView, reason: str) -> None:
        self.deaths += 1
        self.crash(st.id, reason=reason)

    def _drain_all(self) -> None:
        now = self.now
        for st in self.states:
            if not st.up:
                continue
            if st.drain_since is None:
                st.drain_since = now
                self._waiting[st.actor.drain.remote()] = ("drain", (st, st.actor))
            elif now - st.drain_since > self.opt.hang_s * 1000:
                self._died(st, "unresponsive")

    def _ready(self, ref) -> None:
        what, data = self._waiting.pop(ref)
        try:
            val = ray.get(ref, timeout=self.opt.halt_timeout_s)
            err = None
        except ray.exceptions.RayError as e:
            val, err = None, e
        if what == "reply":
            op = self.open_ops.get(data)
            if op is not None and err is None:
                self._complete(op, *(val if val is not None else (FAIL, None)))
            # no reply (the node died): the client's timeout makes it unknown
        elif what == "vote":
            oid, nid = data
            votes = self.client_votes.get(oid)
            op = self.open_ops.get(oid)
            if op is None or votes is None or err is not None or val is None or val[0] == UNKNOWN:
                return
            status, value = val
            votes[nid] = (status, repr(value))
            if sum(1 for v in votes.values() if v == votes[nid]) >= self.client_replies:
                del self.client_votes[oid]
                self._complete(op, status, value)
        elif what == "drain":
            st, actor = data
            if st.actor is not actor:  # an earlier incarnation: keep its events only
                if err is None:
                    self.raw.extend(unwire(val["events"]))
                return
            st.drain_since = None
            if err is None:
                self._absorb(st, val, actor)
            elif st.up:
                self._died(st, "actor died")
        elif what == "started":
            st, actor = data
            if st.actor is not actor:
                return
            st.starting = False
            if err is None:
                st.up = True
                self._push_peers()
            else:
                st.actor = None
                ray.kill(actor, no_restart=True)
                self._record("crash", st.id, {"reason": "restart failed"})
                self._retire(st)
        elif what == "spare" and err is None:
            self._spares.append((data, self._offset(data, val[1])))

    def _poll(self, timeout: float) -> None:
        refs = list(self._waiting)
        if not refs:
            time.sleep(timeout)
            return
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            self._ready(ref)

    # --- the loop ----------------------------------------------------------------------------------
    def run(self, until: float | None = None, stop: Callable[[], bool] | None = None) -> str:
        """Run in real time until true time ``until`` (default: the scenario's duration) or ``stop()``."""
        self.start()
        limit = self.scn.world.duration_ms if until is None else until
        calls = self._calls
        while True:
            if stop is not None and stop():
                self.interrupted = True
                self.end_ms = self.now
                return "stop"
            now = self.now
            if now >= limit:
                self.end_ms = now
                return "until"
            while calls and calls[0][0] <= now:
                t, _s, fn, args = heapq.heappop(calls)
                self.late_ms = max(self.late_ms, now - t)
                fn(*args)
            if now >= self._next_drain:
                self._drain_all()
                self._next_drain = now + self.opt.drain_ms
            nxt = min(calls[0][0] if calls else limit, self._next_drain, limit)
            self._poll(max(0.0, (nxt - self.now) / 1000.0))

    def close(self) -> None:
        """Halt every actor (collecting its last events); healthy actors go back to the pool."""
        if self.closed:
            return
        self.closed = True
        drains = [ref for ref, (what, _d) in self._waiting.items() if what == "drain"]
        if drains:  # drains on their way hold events no one else has
            ready, _ = ray.wait(drains, num_returns=len(drains), timeout=self.opt.halt_timeout_s)
            for ref in ready:
                self._ready(ref)
        live = [st for st in self.states if st.actor is not None]
        refs = {st.actor.halt.remote(False): st for st in live if st.up or st.starting}
        keep = []
        if refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.opt.halt_timeout_s)
            for ref in ready:
                st = refs[ref]
                try:
                    res = ray.get(ref, timeout=0)
                except ray.exceptions.RayError:
                    continue
                self.raw.extend(unwire(res["events"]))
                st.stats_cur = res["stats"]
                keep.append((st.actor, st.offset))
        kept = {id(a) for a, _ in keep}
        for st in live:
            if id(st.actor) not in kept:
                ray.kill(st.actor, no_restart=True)
        keep += list(self._spares)
        for what, data in list(self._waiting.values()):
            if what == "spare":
                ray.kill(data, no_restart=True)
        self._waiting.clear()
        if self._shared_actor is not None:
            ray.kill(self._shared_actor, no_restart=True)
            self._shared_actor = None
        if keep:
            resets = [a.reset.remote() for a, _ in keep]
            ready, _ = ray.wait(resets, num_returns=len(resets), timeout=self.opt.halt_timeout_s)
            ok = set(ready)
            _pool_put([k for k, r in zip(keep, resets) if r in ok])
            for k, r in zip(keep, resets):
                if r not in ok:
                    ray.kill(k[0], no_restart=True)

    # --- results -----------------------------------------------------------------------------------
    def events(self) -> list[Event]:
        """The trace in true-time order (each actor's own events keep their order)."""
        out = []
        for kind, node, t, clock, lam, vc, fields in sorted(self.raw, key=lambda r: r[2]):
            if type(fields) is tuple:
                fields = dict(zip(FIELDS[kind], fields))
            out.append(Event(kind, node, t, clock, lam, vc, fields))
        return out

    def stats(self) -> dict:
        tot = dict.fromkeys(STAT_KEYS, 0)
        for st in self.states:
            for k in STAT_KEYS:
                tot[k] += st.stats_done[k] + st.stats_cur.get(k, 0)
        return {
            "runtime": "live",
            "true_time_ms": self.now if self.end_ms is None else self.end_ms,
            "events": tot["handled"],
            "messages_sent": tot["sent"],
            "messages_delivered": tot["delivered"],
            "messages_dropped": tot["dropped"],
            "batches": tot["batches"],
            "operations": len(self.history),
            "trace_events": len(self.raw),
            "crashes": self.crashes,
            "restarts": self.restarts,
            "actor_deaths": self.deaths,
            "errors": list(self.errors),
            "batch_ms": self.opt.batch_ms,
            "driver_late_ms": self.late_ms,
            "net_late_ms": max(max(st.stats_cur.get("net_late_ms", 0.0), st.net_late) for st in self.states),
            "interrupted": self.interrupted,
        }


class _Plan:
    """The nemesis's whole plan, drawn before the run on a virtual clock.

    The nemesis's choices depend only on the run's seed and on the faults it planned itself
    (``is_up``, a clock's drift), never on what the nodes do; so the driver runs the simulator's
    own :class:`~envs.world.nemesis.Nemesis` to the end of the run on a virtual clock before the
    run starts. What it plans becomes two timetables:

    * ``nets``: every change of the network (cuts, loss) as ``(true time, NetState wire form,
      trace record)``. Every actor gets the whole list when it starts and switches to each change
      exactly at its time on its own true clock, so a partition stops delivery across the cut on
      time however slowly the driver or the machine runs (no announcement can arrive late);
    * ``faults``: node faults ``(true time, LiveWorld method, args)`` (crash, restart, pause,
      slow, clock), which the driver carries out when they fall due.
    """

    def __init__(self, n: int, clocks: list, net: NetState):
        import copy

        self.n, self.now = n, 0.0
        self.states = [_ClockView(copy.deepcopy(c)) for c in clocks]
        self.net = NetState(net.cuts, net.loss, net.duplicate, net.hold)
        self.up = [True] * n
        self.byzantine_nodes: dict = {}  # the nemesis's random kind reads it
        self.nets: list = []
        self.faults: list = []
        self._calls: list = []
        self._seq = itertools.count()

    def call_at(self, t: float, fn: Callable, *args: Any) -> None:
        heapq.heappush(self._calls, (float(t), next(self._seq), fn, args))

    def run(self, until: float) -> _Plan:
        """Play the nemesis's calls up to true time ``until``."""
        while self._calls and self._calls[0][0] <= until:
            self.now, _s, fn, args = heapq.heappop(self._calls)
            fn(*args)
        return self

    def is_up(self, nid: int) -> bool:
        return self.up[nid]

    def _fault(self, name: str, *args: Any) -> None:
        self.faults.append((self.now, name, args))

    def crash(self, nid: int, lose_unsynced: bool = False) -> None:
        if self.up[nid]:
            self.up[nid] = False
            if lose_unsynced:  # LiveWorld.crash(nid, reason, lose_unsynced)
                self._fault("crash", nid, None, True)
            else:
                self._fault("crash", nid)

    def restart(self, nid: int) -> None:
        if not self.up[nid]:
            self.up[nid] = True
            self._fault("restart", nid)

    def byzantine(self, nid: int, strategy: str, **options: Any) -> None:
        self.byzantine_nodes[nid] = strategy
        self._fault("byzantine", nid, strategy, options)

    def pause(self, nid: int) -> None:
        self._fault("pause", nid)

    def resume(self, nid: int) -> None:
        self._fault("resume", nid)

    def slow(self, nid: int, factor: float, base_ms: float = 1.0) -> None:
        self._fault("slow", nid, factor)

    def clock_bump(self, nid: int, delta: float) -> None:
        self.states[nid].clock.bump(self.now, delta)
        self._fault("clock_bump", nid, delta)

    def clock_drift(self, nid: int, drift: float) -> None:
        self.states[nid].clock.set_drift(self.now, drift)
        self._fault("clock_drift", nid, drift)

    def _net(self, kind: str, fields: tuple) -> None:
        self.nets.append((self.now, self.net.to_wire(), (kind, fields)))

    def set_cuts(self, cuts: set, shape: str = "custom") -> None:
        self.net.cuts = {tuple(c) for c in cuts}
        if cuts:
            self._net("partition", (sorted(map(list, self.net.cuts)), shape))
        else:
            self._net("heal", ())

    def heal(self) -> None:
        self.set_cuts(set())

    def set_loss(self, p: float) -> None:
        self.net.loss = float(p)
        self._net("loss", (float(p),))


class _ClockView:
    __slots__ = ("clock",)

    def __init__(self, clock):
        self.clock = clock
