"""Register-v0, the CAP game: replicas of a register choose, per client operation, how to serve it.

Every node is a replica of one register (or of a key-value store: ``workload.keys > 0``) running
``abd`` (default: ABD, Attiya, Bar-Noy and Dolev 1995) or ``eventual`` (last-writer-wins with
anti-entropy) from ``agents/protocols``. Jepsen-style clients send reads and writes to their node;
for each one, that node's agent decides ``("serve", op.id)``.

Actions (``Discrete(4)``)
    ``0`` local: answer from this replica's state at once (available, may be stale);
    ``1`` quorum: the protocol's majority-quorum operation (ABD: linearizable; slow or failing in a
    minority partition); ``2`` refuse: reply ``fail``; ``3`` no-op (legal only with nothing to
    decide). The textbook default is the protocol's (ABD: quorum, eventual: local).

Observation (``Box(6)``, local view only)
    ``[is_write, reachable, quorum, staleness, clock_s, owes_decision]``: whether the operation is a
    write; the fraction of peers heard from within ``suspect_ms`` of the node's own clock; 1.0 when
    those peers and this node make a majority; the mean over peers of ``min(1, time since last heard
    / suspect_ms)``; the node's own clock in seconds; 1.0 when a decision is owed.

Rewards
    local: ``+ok_reward`` for every operation this node answered ``ok`` before the client's timeout,
    ``-msg_cost`` for every message it sent.
    global (the observer's welfare, the same for every agent): per step, what all nodes earned
    minus ``stale_penalty`` for every read the observer found stale in that step, divided by the
    number of agents (utilitarian welfare per agent). The observer sees the true times of every
    client operation, so it knows a read is stale the moment the read completes (see
    :class:`StaleReads`) -- no node can. At the end, ``nonlinearizable_penalty`` (per agent) when
    the history is not linearizable (only known once the whole history is checked).

Global measures (final ``infos[agent]["global"]`` and ``global_measures()``)
    ``linearizable`` (``metrics.linearizability``, Wing-Gong-Lowe; ``"unknown"`` when the time budget
    ``linearizability_timeout_s`` runs out, ``None`` when not checked), ``stale_reads`` and
    ``stale_fraction`` (``metrics.staleness``), ``availability`` (``ok`` fraction overall / during
    partitions, ``metrics.availability``), ``messages``, ``ops``, ``decisions``, ``returns``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Literal

from pydantic import Field

from agents.protocols import get as get_protocol
from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.records import OK
from envs.world.sim import Ask
from metrics.timeline import hashable

WRITES = ("write", "put", "cas", "append")
READS = ("read", "get")


class StaleReads:
    """The observer's stale-read detector, run online: it is told every client operation as it
    completes (in true-time order) and says at once whether a completed read was stale.

    The definition is ``metrics.staleness``'s: an ``ok`` read ``r`` is **stale** when some ``ok``
    write ``w2`` of its key completed before ``r`` began (``w2.complete < r.invoke``) and what ``r``
    returned is certainly older than ``w2``: the initial value, or the value of a write ``w1`` with
    ``w1.complete < w2.invoke`` (register); or ``w2``'s value is missing from what ``r`` returned
    (set semantics: a collection, or a string of appended tokens). Every write that completed
    before ``r`` began has completed before ``r`` completes, so the verdict needs only the past;
    a read of a value whose write has not completed yet (in flight, or ``unknown``) is not stale,
    as in the final measure. Per key it keeps an incremental index of the completed writes: their
    completion times (sorted, since completions arrive in time order), the running maximum of their
    invocation times, and each value's completion time. With unique written values (capgym's
    workloads, except ``cas`` mixes) the count equals ``metrics.staleness(history)["stale_reads"]``
    (which decides set semantics per key by whether the key saw an append; here, by whether the
    workload has appends).
    """

    def __init__(self, appends: bool = False) -> None:
        self.appends = appends  # the workload appends: string reads are sets of appended tokens
        self.keys: dict = {}  # key -> (completion times, running max of invokes, value -> completion)
        self.count = 0

    def _key(self, key):
        k = self.keys.get(key)
        if k is None:
            k = self.keys[key] = ([], [], {})
        return k

    def complete(self, op) -> bool:
        """Record ``op`` (just completed); True when it is a stale read."""
        if op.status != OK:
            return False
        if op.f in WRITES:
            done, pm, when = self._key(hashable(op.key))
            done.append(op.complete)
            pm.append(max(op.invoke, pm[-1]) if pm else op.invoke)
            v = op.value[1] if op.f == "cas" else op.value
            when[v.strip() if op.f == "append" and isinstance(v, str) else hashable(v)] = op.complete
            return False
        if op.f not in READS:
            return False
        done, pm, when = self._key(hashable(op.key))
        x = op.invoke
        p = bisect_left(done, x)  # writes completed before the read began
        if not p:
            return False
        out = op.output
        if isinstance(out, list | tuple | set | frozenset) or (self.appends and isinstance(out, str)):
            got = set(out.split()) if isinstance(out, str) else {hashable(v) for v in out}
            stale = sum(1 for v in got if when.get(v, x) < x) < p
        else:
            v = hashable(out)
            cw = when.get(v)
            if cw is None:
                if v is not None and v != "":
                    return False  # its write has not completed (or no write wrote it)
                cw = float("-inf")  # the initial value
            stale = cw < pm[p - 1]
        self.count += stale
        return stale


class RegisterConfig(EnvConfig):
    protocol: Literal["abd", "eventual"] = "abd"
    ok_reward: float = Field(1.0, description="local reward per operation answered ok in time")
    msg_cost: float = Field(0.01, ge=0, description="local cost per message sent")
    stale_penalty: float = Field(1.0, ge=0, description="observer welfare lost per stale read, charged when "
                                 "the read completes (divided among the agents like the rest of the welfare)")
    nonlinearizable_penalty: float = Field(10.0, ge=0, description="observer welfare lost if not linearizable")
    check_linearizability: bool = True
    linearizability_timeout_s: float = Field(5.0, gt=0, description="wall-clock budget of the check")


class RegisterGame(Game):
    Config = RegisterConfig
    name = "Register-v0"
    n_actions = 3
    n_features = 4

    @property
    def default_workload(self) -> dict:
        n = self.cfg.nodes
        return {"clients": n, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 20.0, "timeout_ms": 500.0}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.cls = get_protocol(cfg.protocol)
        self.params = validate(self.cls.Params, cfg.protocol_params, "protocol_params")
        check_nodes = getattr(self.params, "check_nodes", None)
        reason = check_nodes(cfg.nodes) if check_nodes is not None else None
        if reason:
            raise ValueError(f"protocol_params: {reason}")

    def node_program(self):
        return self.cls, self.params

    def setup(self, ep: Episode) -> None:
        earned, reward = ep.earned, self.cfg.ok_reward
        ops = ep.scn.workload.ops or {}
        ep.stale = stale = StaleReads(appends=bool(ops.get("append")))  # the observer, online
        ep.stale_unpaid = 0  # stale reads not yet charged to the welfare

        def completed(op):
            if op.status == OK:
                earned[op.node] += reward
                if stale.complete(op):
                    ep.stale_unpaid += 1

        ep.sim.on_complete.append(completed)
        ep.sent = [0] * ep.n  # messages each node had sent at the last collect

    def features(self, ask: Ask) -> list[float]:
        return ask.obs

    def collect(self, ep: Episode) -> None:
        """Charge each node ``msg_cost`` per message it sent since the last call."""
        counts, sent = ep.sim.sent_counts(), ep.sent
        if counts == sent:
            return
        cost, earned = self.cfg.msg_cost, ep.earned
        for i, c in enumerate(counts):
            if c != sent[i]:
                earned[i] -= cost * (c - sent[i])
        ep.sent = counts

    def welfare_step(self, ep: Episode, local: list[float]) -> None:
        """The observer's welfare this step: what all nodes earned (ok answers less message costs)
        minus ``stale_penalty`` per read found stale this step, per agent."""
        ep.welfare += (sum(local) - self.cfg.stale_penalty * ep.stale_unpaid) / ep.n
        ep.stale_unpaid = 0

    def measures(self, ep: Episode) -> dict:
        from metrics.availability import availability
        from metrics.staleness import staleness

        sim = ep.sim
        hist = list(sim.history)
        st = staleness(hist, visibility=False)  # only the stale-read counts are reported
        av = availability(hist, sim.trace.events(kinds={"partition", "heal"}), latency=False)
        m = {
            "ops": len(hist),
            "decisions": ep.decisions,
            "messages": int(sim._mid),
            "stale_reads": st["stale_reads"],
            "stale_fraction": st["stale_fraction"],
            "reads": st["reads"],
            "availability": av["ok_fraction"],
            "availability_partitioned": av["ok_fraction_partitioned"],
            "counts": av["counts"],
            "returns": ep.returns(),
            "linearizable": None,
        }
        if self.cfg.check_linearizability:
            from metrics.linearizability import check
            from metrics.models import KV, REGISTER

            model = KV if (self.scn_keys(ep) or any(op.f in ("get", "put", "append") for op in hist)) else REGISTER
            ops = [op for op in hist if op.f in model.ops]
            m["linearizable"] = check(ops, model, timeout=self.cfg.linearizability_timeout_s, prefix=False).ok
        return m

    @staticmethod
    def scn_keys(ep: Episode) -> int:
        return ep.scn.workload.keys

    def terminal_welfare(self, ep: Episode, m: dict) -> float:
        """Stale reads were charged as they completed; only the linearizability verdict is left."""
        return -self.cfg.nonlinearizable_penalty if m["linearizable"] is False else 0.0


class raw_env(CapAEC):
    """Register-v0 in the AEC API (see the module docstring)."""

    game_cls = RegisterGame
    metadata = {"render_modes": ["ansi"], "name": "Register-v0", "is_parallelizable": True}


class parallel_raw_env(CapParallel):
    """Register-v0 in the Parallel API (see the module docstring)."""

    game_cls = RegisterGame
    metadata = {"render_modes": ["ansi"], "name": "Register-v0", "is_parallelizable": True}


def env(**kwargs) -> raw_env:
    """Register-v0, AEC API."""
    return raw_env(**kwargs)


def parallel_env(**kwargs) -> parallel_raw_env:
    """Register-v0, Parallel API."""
    return parallel_raw_env(**kwargs)
