"""Clients: closed-loop processes outside the nodes that invoke operations and record a history.

Each client has one operation outstanding at a time (as in Jepsen): it picks an operation from the
configured mix, sends it to a node (its own fixed node, or a random one), waits for the reply or for
``timeout_ms`` (then the outcome is *unknown*), thinks for an exponential pause, and goes again.
Clients time operations with the observer's true clock, so the history can be checked for
linearizability. Written values are unique (the operation id; ``"x<id> "`` strings for put and
append) unless ``cas`` is in the mix, in which case values come from ``0..value_range-1`` so that
compare-and-set can succeed.

With ``replies: k > 1`` a client sends each operation, signed as itself, to every node and
completes it on ``k`` matching replies (PBFT's clients wait for f+1: Castro and Liskov 1999, 4.1);
its history entries then name no node.

Jepsen's *set* workload: with ``add`` in the mix each key is a set; an ``add`` puts a unique
element (its operation id) and a ``read`` returns the whole set. It ends, as Jepsen's does, with
final reads: from ``final_read_ms`` (default halfway between ``stop_ms`` and the end, after the
nemesis's last fault has healed) every client reads every key, retrying one that does not succeed,
so that :func:`metrics.sets.set_check` can tell which acknowledged adds were lost.
"""

from __future__ import annotations

import collections
import itertools
from bisect import bisect

from .config import WorkloadConfig
from .records import Op
from .rng import derive_rng


class Workload:
    def __init__(self, cfg: WorkloadConfig, seed: int, duration_ms: float):
        self.cfg = cfg
        self.rng = derive_rng(seed, "workload")
        self.stop_ms = cfg.stop_ms if cfg.stop_ms is not None else 0.9 * duration_ms
        self.fs = [f for f, w in cfg.ops.items() if w > 0]
        self.weights = [cfg.ops[f] for f in self.fs]
        # the operation mix as random.choices draws it (cumulative weights, one random() per pick,
        # bisect), precomputed once: the same stream and the same picks, without the per-call setup
        self.cum = list(itertools.accumulate(self.weights))
        self.total = self.cum[-1] + 0.0 if self.cum else 0.0
        self.small_values = "cas" in self.fs
        self.keys, self.value_range, self.fixed = cfg.keys, cfg.value_range, cfg.target == "fixed"
        self.think_rate = 1.0 / cfg.think_ms if cfg.think_ms > 0 else 0.0  # expovariate's lambda
        self.ids = itertools.count()
        self.mine: dict[int, int] = {}  # open op id -> client
        # client timeouts: (deadline, op id) in invocation order, which is deadline order since
        # every operation has the same timeout; one pending sweep event instead of one per operation
        self.deadlines: collections.deque = collections.deque()
        self.sweep_at: float | None = None
        self.sets = "add" in self.fs
        end = duration_ms
        self.final_at = (cfg.final_read_ms if cfg.final_read_ms is not None else (self.stop_ms + end) / 2) \
            if self.sets else None
        self.final: dict[int, list] = {}  # open final read id -> [client, keys left to read]

    def attach(self, sim) -> Workload:
        self.sim = sim
        sim.on_complete.append(self._completed)
        for c in range(self.cfg.clients):
            sim.call_at(self.cfg.start_ms + self.rng.expovariate(1.0 / max(self.cfg.think_ms, 1e-9)), self._invoke, c)
        if self.sets:
            for c in range(self.cfg.clients):
                sim.call_at(self.final_at, self._final_read, c, list(range(self.keys)) if self.keys else [None])
        return self

    def _final_read(self, client: int, keys: list) -> None:
        """One of the set workload's final reads: ``keys[0]``, then the rest once it succeeds."""
        sim = self.sim
        node = client % sim.n if self.fixed else self.rng.randrange(sim.n)
        op = Op(next(self.ids), client, "read", None, keys[0], None if self.cfg.replies > 1 else node)
        self.final[op.id] = [client, keys]
        self._submit(op, client)

    def _op(self, client: int) -> Op:
        rng, fs = self.rng, self.fs
        # = rng.choices(fs, self.weights)[0], draw for draw
        f = fs[bisect(self.cum, rng.random() * self.total, 0, len(fs) - 1)] if len(fs) > 1 else fs[0]
        oid = next(self.ids)
        key = rng.randrange(self.keys) if self.keys else None
        if f == "read" or f == "get":
            value = None
        elif f == "add":
            value = oid  # a unique element
        elif f == "write":
            value = rng.randrange(self.value_range) if self.small_values else oid
        elif f == "cas":
            value = [rng.randrange(self.value_range), rng.randrange(self.value_range)]
        else:  # append, put: key-value values are strings, so put and append compose
            value = f"x{oid} "
        node = client % self.sim.n if self.fixed else rng.randrange(self.sim.n)
        return Op(oid, client, f, value, key, None if self.cfg.replies > 1 else node)

    def _invoke(self, client: int) -> None:
        sim = self.sim
        if sim.now > self.stop_ms:
            return
        self._submit(self._op(client), client)

    def _submit(self, op: Op, client: int) -> None:
        """Hand ``op`` to the world; an operation left open gets its client's timeout."""
        sim = self.sim
        self.mine[op.id] = client
        sim.submit(op)
        if op.id in sim.open_ops:
            self.deadlines.append((sim.now + self.cfg.timeout_ms, op.id))
            if self.sweep_at is None:
                self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        dq, open_ops = self.deadlines, self.sim.open_ops
        while dq and dq[0][1] not in open_ops:  # answered in time: nothing to do
            dq.popleft()
        self.sweep_at = dq[0][0] if dq else None
        if dq:
            self.sim.call_at(self.sweep_at, self._sweep)

    def _sweep(self) -> None:
        """Give up on every operation whose deadline has passed: its outcome is unknown."""
        sim, dq = self.sim, self.deadlines
        while dq and dq[0][0] <= sim.now:
            sim.timeout(dq.popleft()[1])
        self._schedule_sweep()

    def _completed(self, op: Op) -> None:
        client = self.mine.pop(op.id, None)
        final = self.final.pop(op.id, None)
        if final is not None:  # next key once this one is read; retry after a pause otherwise
            keys = final[1][1:] if op.status == "ok" else final[1]
            if keys:
                pause = max(1.0, self.rng.expovariate(self.think_rate) if self.think_rate else 0.0)
                self.sim.call_at(self.sim.now + pause, self._final_read, client, keys)
            return
        if client is not None:
            pause = self.rng.expovariate(self.think_rate) if self.think_rate else 0.0
            self.sim.call_at(self.sim.now + pause, self._invoke, client)
