"""Convergence: divergence between replicas over time, and time to converge after the last heal.

Eventual consistency asks that replicas that stop receiving updates come to hold the same state
(Terry et al., "Managing Update Conflicts in Bayou", SOSP 1995; Vogels, "Eventually Consistent",
CACM 2009). Replica states come from the protocols' ``apply`` events (``docs/trace.md``): node
``n``'s replica of ``key`` holds ``value`` from its ``apply`` on. Two readings of ``apply``:

* ``semantics="register"`` (the trace.md meaning): the replica of ``key`` now holds ``value``;
* ``semantics="set"``: ``value`` joins the replica's set for ``key`` (grow-only sets, e.g. the
  gossip broadcast, which records one ``apply`` per newly learned value).

Only *live* replicas count: a node is out from its ``crash`` until its next ``start``, and comes
back with the state it had (a protocol that loses state re-records what it re-learns). A replica
that never applied ``key`` holds "absent", which differs from every value.

Replica states are compared through 64-bit fingerprints (sums of hashed ``(key, value)`` pairs), so
that each ``apply`` costs O(1) however many keys there are; two different states share a
fingerprint with probability about 2^-64.
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable

from envs.world.records import Event

from .timeline import as_list, hashable, node_ids

MASK = (1 << 64) - 1


def _mix(x) -> int:
    """A 64-bit hash of ``x`` passed through the splitmix64 finaliser (Steele, Lea and Flood,
    "Fast Splittable Pseudorandom Number Generators", OOPSLA 2014). Python's tuple hash is nearly
    additive over small ints (``(0, 0)`` and ``(2, 2)`` sum to what ``(0, 2)`` and ``(2, 0)`` do), so
    summed raw hashes of different states collide; the finaliser's avalanche removes that structure."""
    z = (hash(("capgym", x)) + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class _Replicas:
    """Live replica states with the counts the measures need, kept up to date incrementally."""

    def __init__(self, nodes, semantics: str):
        self.set_mode = semantics == "set"
        self.live = set(nodes)
        self.state: dict = defaultdict(dict)  # node -> key -> token (register: value; set: (size, fp))
        self.sets: dict = defaultdict(lambda: defaultdict(set))  # set mode: node -> key -> values
        self.fp = dict.fromkeys(nodes, 0)  # node -> fingerprint of its whole replica
        self.fps = Counter(self.fp[n] for n in self.live)  # fingerprints of live replicas
        self.same = sum(c * (c - 1) // 2 for c in self.fps.values())  # live pairs with equal states
        self.holders: dict = defaultdict(Counter)  # key -> token -> live replicas holding it
        self.held: Counter = Counter()  # key -> live replicas holding some state of it
        self.ndistinct: dict = {}  # key -> distinct states (absent included) among live replicas
        self.by_distinct: Counter = Counter()  # distinct count -> number of keys
        self.diverged = 0  # keys with more than one distinct state

    def _count(self, f: int, sign: int) -> None:
        """One live replica more (``sign=1``) or fewer (``-1``) with fingerprint ``f``.

        Keeps ``same``, the number of live pairs that agree, up to date: a replica joining ``c``
        others with its fingerprint makes ``c`` more agreeing pairs; one leaving ``c`` makes ``c - 1``
        fewer -- O(1) per change instead of recounting ``sum(c * (c - 1) / 2)`` at every step.
        """
        c = self.fps[f]
        if sign > 0:
            self.same += c
            self.fps[f] = c + 1
        else:
            self.same -= c - 1
            if c == 1:
                del self.fps[f]
            else:
                self.fps[f] = c - 1

    def _distinct(self, key) -> int:
        return len(self.holders[key]) + (self.held[key] < len(self.live))

    def _refresh(self, key) -> None:
        old = self.ndistinct.get(key)
        new = self._distinct(key)
        if old != new:
            if old is not None:
                self.by_distinct[old] -= 1
                if not self.by_distinct[old]:
                    del self.by_distinct[old]
                self.diverged -= old > 1
            self.by_distinct[new] += 1
            self.diverged += new > 1
            self.ndistinct[key] = new

    def apply(self, node, key, value) -> bool:
        """Apply at ``node``; ``False`` when its state did not change."""
        mine = self.state[node]
        old = mine.get(key)
        if self.set_mode:
            s = self.sets[node][key]
            if value in s:
                return False
            s.add(value)
            size, f = old or (0, 0)
            new = (size + 1, (f + _mix(value)) & MASK)
        else:
            new = value
            if key in mine and old == new:
                return False
        live = node in self.live
        if live:
            self._count(self.fp[node], -1)
            if key in mine:
                self.holders[key][old] -= 1
                if not self.holders[key][old]:
                    del self.holders[key][old]
            else:
                self.held[key] += 1
            self.holders[key][new] += 1
        f = self.fp[node]
        if key in mine:
            f -= _mix((key, old))
        self.fp[node] = (f + _mix((key, new))) & MASK
        mine[key] = new
        if live:
            self._count(self.fp[node], 1)
            self._refresh(key)
        return True

    def set_live(self, node, up: bool) -> None:
        if (node in self.live) == up:
            return
        sign = 1 if up else -1
        (self.live.add if up else self.live.discard)(node)
        self.fp.setdefault(node, 0)
        self._count(self.fp[node], sign)
        for key, tok in self.state[node].items():
            h = self.holders[key]
            h[tok] += sign
            if not h[tok]:
                del h[tok]
            self.held[key] += sign
        for key in self.holders:  # any key's "absent" may come or go with the live count
            self._refresh(key)

    def measures(self) -> tuple[int, int, float]:
        """(max distinct states of a key, keys with more than one, fraction of live pairs that differ)."""
        n = len(self.live)
        dmax = max(self.by_distinct) if self.by_distinct else min(n, 1)
        pairs = n * (n - 1) // 2
        return dmax, self.diverged, (pairs - self.same) / pairs if pairs else 0.0


def convergence(trace: Iterable[Event], semantics: str = "register", nodes: Iterable[int] | None = None) -> dict:
    """Divergence between live replicas over time, and time to converge after the last heal.

    * ``series`` -- a step function, one point per change: ``t``, ``distinct_max`` (the largest
      number of distinct states any key has among live replicas), ``keys_diverged`` (keys with
      more than one) and ``pairs_differ`` (the fraction of pairs of live replicas whose states
      differ on some key; 0 with fewer than two live replicas). Each value holds from its ``t``
      until the next point.
    * ``mean_pairs_differ`` -- ``pairs_differ`` averaged over true time from the first to the last
      event of the trace; ``max_distinct`` -- the largest ``distinct_max``.
    * ``last_heal`` -- the time of the last ``heal`` (or of a ``partition`` event with no cuts);
      ``time_to_converge`` -- the first time at or after it at which all live replicas hold the
      same state on every key, minus ``last_heal`` (0 if they already did; ``None`` if they never
      do within the trace, or there was no heal).
    * ``converged_at_end`` -- whether all live replicas agree when the trace ends.
    """
    trace = as_list(trace)
    nodes = sorted(nodes) if nodes is not None else node_ids(trace)
    acc = Convergence(nodes, semantics, trace[0].t if trace else 0.0)
    for e in trace:
        acc.add(e)
    return acc.result(trace[-1].t if trace else None)


class Convergence:
    """:func:`convergence` as a fold over a stream of events, one at a time (``add``), for a trace
    read in chunks. ``nodes``: the run's nodes; ``t0``: the time of the trace's first event (where
    the series starts); :meth:`result` takes the time of its last (``None``: ``t0``).

    It holds the live replicas' states (for set semantics, every value each node holds: nodes x
    values, what the measure compares), the series' change points and one copy of each distinct
    value (values read back from a file are equal but separate objects: they are shared), not the
    events."""

    #: the kinds it reads (any other is ignored)
    KINDS = frozenset({"apply", "crash", "start", "heal", "partition"})

    def __init__(self, nodes: Iterable[int], semantics: str = "register", t0: float = 0.0):
        if semantics not in ("register", "set"):
            raise ValueError(f"semantics must be 'register' or 'set', not {semantics!r}")
        self.reps = _Replicas(sorted(nodes), semantics)
        # the series, one point per change (typed arrays: 8 bytes a value, not a Python object)
        self.ts, self.dm, self.kd, self.pd = array("d"), array("q"), array("q"), array("d")
        self.last_heal = None
        self.t0 = t0
        self._same: dict = {}  # value -> the one copy kept of it
        self._note(t0)

    def _note(self, t) -> None:
        d, k, p = self.reps.measures()
        ts, dm, kd, pd = self.ts, self.dm, self.kd, self.pd
        if ts and ts[-1] == t:
            ts.pop(), dm.pop(), kd.pop(), pd.pop()
        if not ts or (dm[-1], kd[-1], pd[-1]) != (d, k, p):
            ts.append(t), dm.append(d), kd.append(k), pd.append(p)

    def add(self, e: Event) -> None:
        kind = e.kind
        reps = self.reps
        if kind == "apply":
            if e.node not in reps.fp:
                reps.fp[e.node] = 0
                reps.live.add(e.node)
                reps._count(0, 1)
            key, value = hashable(e.fields.get("key")), hashable(e.fields.get("value"))
            value = self._same.setdefault(value, value)
            if reps.apply(e.node, key, value):
                self._note(e.t)
        elif kind == "crash":
            reps.set_live(e.node, False)
            self._note(e.t)
        elif kind == "start":
            reps.set_live(e.node, True)
            self._note(e.t)
        elif kind == "heal" or (kind == "partition" and not e.fields.get("cuts")):
            self.last_heal = e.t

    def result(self, t_end: float | None = None) -> dict:
        ts, dm, pd = self.ts, self.dm, self.pd
        t0, last_heal = self.t0, self.last_heal
        if t_end is None:
            t_end = t0
        mean = None
        if t_end > t0:
            ends = itertools.chain(itertools.islice(ts, 1, None), (t_end,))
            mean = sum((b - a) * p for a, b, p in zip(ts, ends, pd)) / (t_end - t0)
        to_converge = None
        if last_heal is not None:
            # the state at the heal is the last point at or before it; then every later change point
            i = max(bisect_right(ts, last_heal) - 1, 0)
            for j in range(i, len(ts)):
                if pd[j] == 0.0 and dm[j] <= 1:
                    to_converge = max(ts[j], last_heal) - last_heal
                    break
        return {
            "series": {"t": ts.tolist(), "distinct_max": dm.tolist(), "keys_diverged": self.kd.tolist(),
                       "pairs_differ": pd.tolist()},
            "max_distinct": max(dm) if dm else 0,
            "mean_pairs_differ": mean,
            "last_heal": last_heal,
            "time_to_converge": to_converge,
            "converged_at_end": bool(pd and pd[-1] == 0.0 and dm[-1] <= 1),
        }


def summarize(history, trace, semantics: str = "register") -> dict:
    """Convergence measures of a run, without the series."""
    out = convergence(trace, semantics)
    del out["series"]
    return out
