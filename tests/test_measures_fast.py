"""The reduced and faster measures equal the full and the previous ones, field for field.

* ``staleness`` (sorted-once, vectorised stale reads) against its previous implementation, kept
  below verbatim as the reference, on many random histories (keys, register and set reads,
  ``cas``/``append``, unknown and failed writes, repeated and unexplained values, tied times) and
  on real Register-v0 episodes; ``visibility=False`` gives the same fields less ``t_visibility``.
* ``availability(latency=False)`` gives the same fields less ``latency``.
* ``convergence`` (agreeing pairs and diverged keys kept up to date incrementally) against the
  previous method (recounting them at every change) and against the states replayed from scratch.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest

from envs.world.records import FAIL, OK, STATUSES, Event, Op
from metrics import convergence as conv
from metrics.availability import PERCENTILES, availability
from metrics.staleness import EDGES, READS, WRITES, staleness
from metrics.timeline import hashable, inside

# --- the previous staleness, verbatim (helpers renamed) ---------------------------------------------

def _ref_written(op: Op):
    v = op.value[1] if op.f == "cas" else op.value
    return v.strip() if op.f == "append" and isinstance(v, str) else hashable(v)


def _ref_read_set(op: Op, has_appends: bool):
    """The values a set-semantics read returned, or ``None`` for a register read."""
    out = op.output
    if isinstance(out, list | tuple | set | frozenset):
        return {hashable(x) for x in out}
    if has_appends and isinstance(out, str):
        return set(out.split())
    return None


def reference_staleness(history, edges=EDGES) -> dict:
    """``metrics.staleness.staleness`` as it was before the fast path (the reference)."""
    edges = np.asarray(edges, dtype=float)
    keys: dict = defaultdict(list)
    for op in history:
        if op.f in WRITES or op.f in READS:
            keys[hashable(op.key)].append(op)
    reads = stale = unexplained = 0
    ks: list[int] = []
    stale_ids: list = []
    nb = len(edges) - 1
    seen_w = np.zeros(nb)
    pairs = np.zeros(nb)
    for ops in keys.values():
        has_appends = any(op.f == "append" for op in ops)
        writes = [op for op in ops if op.f in WRITES and op.status != FAIL]
        done = sorted((op for op in writes if op.status == OK and op.complete is not None), key=lambda o: o.complete)
        Cv = np.array([w.complete for w in done], dtype=float)  # completion times, sorted
        Iv = np.array([w.invoke for w in done], dtype=float)  # their invocation times
        PM = np.maximum.accumulate(Iv) if len(Iv) else Iv  # latest invoke among the first j completed
        vals = [_ref_written(w) for w in done]
        completes: dict = {}  # value -> completion time of its (last) write; unknown -> inf
        for w in writes:
            c = w.complete if w.status == OK and w.complete is not None else math.inf
            v = _ref_written(w)
            completes[v] = max(completes.get(v, -math.inf), c)
        # register reads are vectorised below; set reads are handled one by one
        reg_x, reg_c = [], []
        for r in ops:
            if r.f not in READS or r.status != OK:
                continue
            x = r.invoke
            p = int(np.searchsorted(Cv, x, side="left"))  # writes completed before r began
            got = _ref_read_set(r, has_appends)
            if got is None:
                v = hashable(r.output)
                if v in completes:
                    cw = completes[v]
                elif v is None or v == "":
                    cw = -math.inf  # the initial value
                else:
                    unexplained += 1
                    continue
                k = 0
                if p and cw < PM[p - 1]:
                    q = int(np.searchsorted(Cv, cw, side="right"))
                    k = int(np.count_nonzero(Iv[q:p] > cw)) if cw > -math.inf else p
                reg_x.append(x)
                reg_c.append(cw)
            else:
                # missed = completed before r began, and absent from r (values are unique)
                k = max(0, p - sum(1 for v in got if completes.get(v, math.inf) < x))
                lo = int(np.searchsorted(Cv, x - edges[-1], side="right"))
                hi = int(np.searchsorted(Cv, x - edges[0], side="right"))
                if hi > lo:
                    b = np.searchsorted(edges, x - Cv[lo:hi], side="right") - 1
                    hit = np.array([vals[j] in got for j in range(lo, hi)], dtype=float)
                    keep = (b >= 0) & (b < nb)
                    pairs += np.bincount(b[keep], minlength=nb)
                    seen_w += np.bincount(b[keep], weights=hit[keep], minlength=nb)
            reads += 1
            ks.append(k)
            if k:
                stale += 1
                if len(stale_ids) < 20:
                    stale_ids.append(r.id)
        if reg_x and len(Cv):
            _ref_visibility(np.array(reg_x), np.array(reg_c), Cv, Iv, edges, pairs, seen_w)
    kc = np.bincount(np.array(ks, dtype=np.int64)) if ks else np.zeros(0, dtype=np.int64)
    return {
        "reads": reads,
        "stale_reads": stale,
        "stale_fraction": stale / reads if reads else None,
        "stale_examples": stale_ids,
        "unexplained_reads": unexplained,
        "k_max": int(max(ks)) if ks else None,
        "k_mean": float(np.mean(ks)) if ks else None,
        "k_counts": [[k, int(c)] for k, c in enumerate(kc) if c],
        "t_visibility": {
            "t": edges[:-1].tolist(),
            "p": [float(s / n) if n else None for s, n in zip(seen_w, pairs)],
            "pairs": pairs.astype(int).tolist(),
        },
    }


def _ref_visibility(x, cw, Cv, Iv, edges, pairs, seen_w) -> None:
    """Add the (write, register read) pairs of one key to the t-visibility bins, vectorised.

    Read ``i`` began at ``x[i]`` and returned a write completed at ``cw[i]`` (``-inf``: the initial
    value); it saw write ``j`` or newer iff ``cw[i] >= Iv[j]`` (its write did not complete before
    ``j`` was invoked).
    """
    lo = np.searchsorted(Cv, x - edges[-1], side="right")
    hi = np.searchsorted(Cv, x - edges[0], side="right")
    n = hi - lo
    total = int(n.sum())
    if not total:
        return
    ri = np.repeat(np.arange(len(x)), n)
    wj = np.arange(total) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    b = np.searchsorted(edges, x[ri] - Cv[wj], side="right") - 1
    keep = (b >= 0) & (b < len(edges) - 1)
    b = b[keep]
    pairs += np.bincount(b, minlength=len(pairs))
    seen_w += np.bincount(b, weights=(cw[ri[keep]] >= Iv[wj[keep]]), minlength=len(pairs))


# --- random histories -----------------------------------------------------------------------------

MODES = ("register", "kv", "set", "append", "cas")


def random_history(rng: random.Random) -> list[Op]:
    """A random history mixing every case the measure distinguishes (see the module docstring)."""
    mode = rng.choice(MODES)
    nkeys = rng.choice((0, 1, 3))  # 0: one register, key None
    ints = rng.random() < 0.3  # integer times: many ties
    ops, t = [], 0.0
    written: dict = defaultdict(list)
    for i in range(rng.randint(0, 40)):
        t += rng.choice((0.0, 0.5, rng.random() * 3))
        inv = float(round(t)) if ints else t
        comp = inv + rng.choice((0.0, 1.0, rng.random() * 8))
        comp = float(round(comp)) if ints else comp
        key = rng.randrange(nkeys) if nkeys else None
        status = rng.choice((OK, OK, OK, "unknown", FAIL))
        if rng.random() < 0.5:
            f = {"register": "write", "kv": "put", "set": "write", "append": "append"}.get(mode)
            f = f or rng.choice(("write", "cas"))
            v = i if rng.random() < 0.8 or not written[key] else rng.choice(written[key])  # repeats
            if f == "append":
                v = f"t{v}"
            written[key].append(v)
            value = (rng.choice(written[key]), v) if f == "cas" else v
        else:
            f, value = rng.choice(READS), None
            status = rng.choice((OK, OK, OK, OK, FAIL, "unknown"))
        out = None
        if f in READS and status == OK:
            pool = written[key]
            if mode == "set":
                out = rng.sample(pool, rng.randint(0, len(pool))) + (["ghost"] if rng.random() < 0.1 else [])
            elif mode == "append":
                out = " ".join(rng.sample(pool, rng.randint(0, len(pool)))) if rng.random() < 0.9 else None
            else:
                out = rng.choice(pool + [None, "", "ghost"]) if pool else rng.choice((None, "", "ghost"))
        ops.append(Op(i, rng.randrange(3), f, value=value, key=key, invoke=inv,
                      complete=None if status == "unknown" else comp, status=status, output=out))
    return ops


@pytest.mark.parametrize("seed", range(4))
def test_staleness_equals_previous_implementation(seed):
    rng = random.Random(seed)
    stale = 0
    for _ in range(500):
        h = random_history(rng)
        edges = rng.choice((EDGES, (0, 1, 2, 4, 8), (0, 10)))
        m = staleness(h, edges)
        assert m == reference_staleness(h, edges)
        stale += m["stale_reads"]
    assert stale > 50  # the histories do have stale reads


def test_staleness_without_visibility_gives_the_same_other_fields():
    rng = random.Random(11)
    for _ in range(1000):
        h = random_history(rng)
        full = staleness(h)
        assert staleness(h, visibility=False) == {k: v for k, v in full.items() if k != "t_visibility"}


# --- availability ---------------------------------------------------------------------------------

def reference_availability(history, partitions) -> dict:
    """``metrics.availability.availability`` as it was before (the reference)."""
    def fraction_ok(ops):
        return sum(op.status == OK for op in ops) / len(ops) if ops else None

    during = inside([op.invoke for op in history], partitions)
    parted = [op for op, d in zip(history, during) if d]
    connected = [op for op, d in zip(history, during) if not d]
    counts = {s: 0 for s in STATUSES}
    for op in history:
        counts[op.status] = counts.get(op.status, 0) + 1
    lat = np.array([op.complete - op.invoke for op in history if op.status == OK and op.complete is not None])
    latency = {f"p{q}": None for q in PERCENTILES} | {"max": None, "mean": None}
    if len(lat):
        latency = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(lat, PERCENTILES))}
        latency |= {"max": float(lat.max()), "mean": float(lat.mean())}
    return {
        "ops": len(history),
        "counts": counts,
        "ok_fraction": fraction_ok(history),
        "ok_fraction_partitioned": fraction_ok(parted),
        "ok_fraction_connected": fraction_ok(connected),
        "ops_partitioned": len(parted),
        "ops_connected": len(connected),
        "latency": latency,
    }


def random_partitions(rng: random.Random) -> list[tuple[float, float]]:
    cuts = sorted(rng.random() * 60 for _ in range(2 * rng.randint(0, 3)))
    return list(zip(cuts[::2], cuts[1::2]))


def test_availability_equals_previous_implementation():
    rng = random.Random(4)
    for _ in range(500):
        h, parts = random_history(rng), random_partitions(rng)
        assert availability(h, partitions=parts) == reference_availability(h, parts)


def test_availability_without_latency_gives_the_same_other_fields():
    rng = random.Random(5)
    for _ in range(500):
        h, parts = random_history(rng), random_partitions(rng)
        full = availability(h, partitions=parts)
        assert availability(h, partitions=parts, latency=False) == {k: v for k, v in full.items() if k != "latency"}


# --- real Register-v0 episodes --------------------------------------------------------------------

@pytest.mark.parametrize("seed", (1, 2))
def test_register_episodes_measures_equal_the_full_ones(seed):
    """On real episodes (random actions, faults on), the measures equal the previous ones, and
    Register-v0's reduced calls report what the full calls would."""
    from envs.register import env
    from metrics.timeline import partition_intervals

    rng = random.Random(seed)
    e = env(nodes=5, faults=True)
    e.reset(seed=seed)
    for _agent in e.agent_iter():
        obs, _r, term, trunc, _i = e.last()
        e.step(None if term or trunc else rng.choice([i for i, m in enumerate(obs["action_mask"]) if m]))
    ep = e.episode
    hist = list(ep.sim.history)
    parts = partition_intervals(list(ep.sim.trace.events(kinds={"partition", "heal"})))
    st, av = staleness(hist), availability(hist, partitions=parts)
    assert st == reference_staleness(hist) and av == reference_availability(hist, parts)
    assert st["reads"] > 100
    m = e.global_measures()
    assert (m["stale_reads"], m["stale_fraction"], m["reads"]) == (st["stale_reads"], st["stale_fraction"], st["reads"])
    assert (m["availability"], m["availability_partitioned"], m["counts"]) == (
        av["ok_fraction"], av["ok_fraction_partitioned"], av["counts"])


# --- convergence ----------------------------------------------------------------------------------

class Recounting(conv._Replicas):
    """The previous method: agreeing pairs, diverged keys and held replicas recounted at every step
    (and checked against the incremental counts)."""

    def _distinct(self, key) -> int:
        h = self.holders[key]
        return len(h) + (sum(h.values()) < len(self.live))

    def measures(self):
        n = len(self.live)
        dmax = max(self.by_distinct) if self.by_distinct else min(n, 1)
        diverged = sum(c for d, c in self.by_distinct.items() if d > 1)
        pairs = n * (n - 1) // 2
        same = sum(c * (c - 1) // 2 for c in self.fps.values())
        assert (same, diverged) == (self.same, self.diverged)
        return dmax, diverged, (pairs - same) / pairs if pairs else 0.0


def random_trace(rng: random.Random, n: int) -> list[Event]:
    nkeys, nvals = rng.choice((1, 3, 8)), rng.choice((2, 4))
    tr, t = [Event("start", i, 0.0, None, 0, (), {}) for i in range(n)], 0.0
    for _ in range(rng.randint(0, 60)):
        t += rng.choice((0.0, 1.0, rng.random()))
        u, node = rng.random(), rng.randrange(n)
        if u < 0.08:
            tr.append(Event("crash", node, t, None, 0, (), {}))
        elif u < 0.16:
            tr.append(Event("start", node, t, None, 0, (), {"restart": True}))
        elif u < 0.2:
            tr.append(Event("heal", None, t, None, 0, (), {}))
        else:
            kv = {"key": rng.randrange(nkeys), "value": rng.randrange(nvals)}
            tr.append(Event("apply", node, t, None, 0, (), kv))
    return tr


@pytest.mark.parametrize("semantics", ("register", "set"))
def test_convergence_equals_recounting(semantics, monkeypatch):
    rng = random.Random(3)
    traces = []
    for _ in range(400):
        tr = random_trace(rng, rng.randint(1, 6))
        nodes = [0, 1] if rng.random() < 0.2 else None  # others join on their first apply
        traces.append((tr, nodes, conv.convergence(tr, semantics, nodes)))
    monkeypatch.setattr(conv, "_Replicas", Recounting)
    assert all(conv.convergence(tr, semantics, nodes) == m for tr, nodes, m in traces)
    assert sum(m["converged_at_end"] for *_, m in traces) not in (0, len(traces))


@pytest.mark.parametrize("semantics", ("register", "set"))
def test_convergence_final_point_equals_states_replayed(semantics):
    """The last point of the series, from the live replicas' actual states (no fingerprints)."""
    rng = random.Random(9)
    for _ in range(400):
        n = rng.randint(1, 6)
        tr = random_trace(rng, n)
        state, live = {i: {} for i in range(n)}, set(range(n))
        for e in tr:
            if e.kind == "crash":
                live.discard(e.node)
            elif e.kind == "start":
                live.add(e.node)
            elif e.kind == "apply":
                k, v = e.fields["key"], e.fields["value"]
                if semantics == "set":
                    state[e.node][k] = state[e.node].get(k, frozenset()) | {v}
                else:
                    state[e.node][k] = v
        keys = {k for i in live for k in state[i]}
        distinct = [len({state[i].get(k, "absent") for i in live}) for k in keys]
        frozen = [tuple(sorted(state[i].items())) for i in sorted(live)]
        npairs = len(frozen) * (len(frozen) - 1) // 2
        differ = sum(a != b for j, a in enumerate(frozen) for b in frozen[j + 1:])
        s = conv.convergence(tr, semantics)["series"]
        assert s["distinct_max"][-1] == (max(distinct) if distinct else min(len(live), 1))
        assert s["keys_diverged"][-1] == sum(d > 1 for d in distinct)
        assert s["pairs_differ"][-1] == (differ / npairs if npairs else 0.0)
