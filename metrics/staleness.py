"""Staleness: stale reads, k-staleness and t-visibility of a history.

k-staleness and t-visibility are the two measures of *Probabilistically Bounded Staleness* (Bailis,
Venkataraman, Franklin, Hellerstein and Stoica, "Probabilistically Bounded Staleness for Practical
Partial Quorums", VLDB 2012): how many versions behind a read is, and how likely a read that starts
``t`` ms after a write completed is to see that write (or a newer one). Here they are measured on a
recorded history in true time, not predicted from a latency model.

Which write a read saw
----------------------
Histories are split by ``key`` (``None`` for a single register). Writes are ``write``/``put`` (the
value written), ``cas`` (its new value ``value[1]``), ``append`` and ``add`` (a set's element).
Only ``ok`` writes count as *completed*; an ``unknown`` write may have taken effect, so a read may
return it (it completes, for this purpose, at the end of time); a ``fail`` write never took
effect. Reads are ``ok`` ``read``/``get`` operations. Written values are unique in capgym's
workloads, so a read's value names its write exactly; where values repeat, the read is credited
to the write of that value that completed last (never over-reporting staleness). A read of
``None`` (or ``""``, kv's absent key) that no write wrote returns the *initial* value. A value no
write wrote is *unexplained* and is left out of every measure (a linearizability checker will
report it).

Two read semantics are recognised:

* **register** -- the read returns one value, the latest write's;
* **set** -- the read returns a collection of values (a grow-only set such as the gossip
  broadcast's, or a kv ``append`` key whose value is the space-separated appended tokens); it saw a
  write if the write's value is in it.

Two writes are ordered when one completed before the other was invoked (real-time order); writes
that overlap are concurrent and neither is older.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from envs.world.records import FAIL, OK, Op

from .timeline import hashable

WRITES = ("write", "put", "cas", "append", "add")
READS = ("read", "get")
KINDS = frozenset(WRITES + READS)
_SCALARS = frozenset((int, str, float, bool, type(None)))  # hashable() returns these as they are
_first = itemgetter(0)
#: default t-visibility bins (ms): bin i is [EDGES[i], EDGES[i+1])
EDGES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _written(op: Op):
    v = op.value[1] if op.f == "cas" else op.value
    return v.strip() if op.f == "append" and isinstance(v, str) else hashable(v)


def _read_set(op: Op, has_appends: bool):
    """The values a set-semantics read returned, or ``None`` for a register read."""
    out = op.output
    if isinstance(out, list | tuple | set | frozenset):
        return {hashable(x) for x in out}
    if has_appends and isinstance(out, str):
        return set(out.split())
    return None


def staleness(history: Sequence[Op], edges: Sequence[float] = EDGES, *, visibility: bool = True) -> dict:
    """Stale reads, k-staleness and t-visibility of ``history``.

    * A read ``r`` is **stale** when it misses a write completed before it began: some ``ok`` write
      ``w2`` has ``w2.complete < r.invoke`` and the value ``r`` returned is certainly older than
      ``w2`` -- it is the initial value, or was written by ``w1`` with ``w1.complete < w2.invoke``
      (register); or ``w2``'s value is not in what ``r`` returned (set). A linearizable history has
      no stale read.
    * Its **k-staleness** is the number of such missed writes ``w2``: for a register, the ``ok``
      writes invoked after the returned write completed and completed before the read began (every
      write so completed, for a read of the initial value); for a set, the completed writes absent
      from the read. Fresh reads have ``k = 0``. Reported: ``k_max``, ``k_mean`` and ``k_counts``
      (pairs ``[k, number of reads]``).
    * **t-visibility**: over all pairs (``ok`` write ``w``, ``ok`` read ``r`` of the same key) with
      lag ``r.invoke - w.complete`` in bin ``[edges[i], edges[i+1])``, the fraction in which ``r``
      returned ``w`` or newer (for a register: a value not certainly older than ``w``, i.e. not the
      initial value and not written by a write that completed before ``w`` was invoked; for a set:
      ``w``'s value is in the read). ``None`` for an empty bin. Pairs per read are bounded by the
      writes completed in the last ``edges[-1]`` ms.

    ``visibility=False`` leaves ``t_visibility`` out (the costliest part; every other field is the
    same). k-staleness costs nothing more than the stale-read count itself, so it is always given.

    Per key, the completed writes are sorted once by completion time, with the running maximum of
    their invocation times; a register read ``r`` that returned a write completed at ``cw`` is then
    stale iff ``cw`` is below that maximum over the writes completed before ``r`` began -- one
    binary search per read, vectorised over all of a key's register reads. Only the stale ones need
    their ``k`` counted.
    """
    edges = np.asarray(edges, dtype=float)
    keys: dict = defaultdict(list)
    for op in history:
        if op.f in KINDS:
            key = op.key
            keys[key if type(key) in _SCALARS else hashable(key)].append(op)
    reads = stale = unexplained = 0
    ks: list[int] = []
    stale_ids: list = []
    nb = len(edges) - 1
    seen_w = np.zeros(nb)
    pairs = np.zeros(nb)
    for ops in keys.values():
        has_appends = False
        done = []  # ok writes with a completion time: (complete, value, invoke)
        completes: dict = {}  # value -> completion time of its (last) write; unknown -> inf
        ok_reads = []
        for op in ops:
            f = op.f
            if f in READS:
                if op.status == OK:
                    ok_reads.append(op)
                continue
            if f == "append":
                has_appends = True
            if op.status == FAIL:
                continue
            v = op.value
            if f == "cas" or f == "append" or type(v) not in _SCALARS:
                v = _written(op)
            if op.status == OK and op.complete is not None:
                c = op.complete
                done.append((c, v, op.invoke))
            else:
                c = math.inf
            completes[v] = max(completes.get(v, -math.inf), c)
        done.sort(key=_first)  # stable, as sorted() by completion was
        Cv = np.array([c for c, _, _ in done], dtype=float)  # completion times, sorted
        Iv = np.array([i for _, _, i in done], dtype=float)  # their invocation times
        PM = np.maximum.accumulate(Iv) if len(Iv) else Iv  # latest invoke among the first j completed
        k_of: list[int] = []  # k of this key's counted reads, in history order
        ids: list = []
        reg_at, reg_x, reg_c = [], [], []  # register reads: their slot in k_of, invoke, cw
        set_x, set_got = [], []
        for r in ok_reads:
            x = r.invoke
            v = r.output
            t = type(v)
            if t in _SCALARS and (t is not str or not has_appends):
                got = None  # a plain register read; hashable(v) is v
            else:
                got = _read_set(r, has_appends)
                v = hashable(v)
            if got is None:
                if v in completes:
                    cw = completes[v]
                elif v is None or v == "":
                    cw = -math.inf  # the initial value
                else:
                    unexplained += 1
                    continue
                reg_at.append(len(k_of))
                reg_x.append(x)
                reg_c.append(cw)
                k_of.append(0)
            else:
                # missed = completed before r began, and absent from r (values are unique)
                p = int(np.searchsorted(Cv, x, side="left"))
                k_of.append(max(0, p - sum(1 for v in got if completes.get(v, math.inf) < x)))
                set_x.append(x)
                set_got.append(got)
            ids.append(r.id)
        X, C = np.array(reg_x, dtype=float), np.array(reg_c, dtype=float)
        if len(X) and len(Cv):
            p = np.searchsorted(Cv, X, side="left")  # writes completed before each read began
            hit = (p > 0) & (C < PM[np.maximum(p - 1, 0)])
            for i in np.flatnonzero(hit).tolist():
                cw, pi = C[i], int(p[i])
                if cw > -math.inf:
                    q = int(np.searchsorted(Cv, cw, side="right"))
                    k_of[reg_at[i]] = int(np.count_nonzero(Iv[q:pi] > cw))
                else:
                    k_of[reg_at[i]] = pi
        reads += len(k_of)
        ks += k_of
        for k, rid in zip(k_of, ids):
            if k:
                stale += 1
                if len(stale_ids) < 20:
                    stale_ids.append(rid)
        if visibility and len(Cv):
            vals = [v for _, v, _ in done]
            for x, got in zip(set_x, set_got):
                lo = int(np.searchsorted(Cv, x - edges[-1], side="right"))
                hi = int(np.searchsorted(Cv, x - edges[0], side="right"))
                if hi > lo:
                    b = np.searchsorted(edges, x - Cv[lo:hi], side="right") - 1
                    hit = np.array([vals[j] in got for j in range(lo, hi)], dtype=float)
                    keep = (b >= 0) & (b < nb)
                    pairs += np.bincount(b[keep], minlength=nb)
                    seen_w += np.bincount(b[keep], weights=hit[keep], minlength=nb)
            if len(X):
                _visibility(X, C, Cv, Iv, edges, pairs, seen_w)
    kc = np.bincount(np.array(ks, dtype=np.int64)) if ks else np.zeros(0, dtype=np.int64)
    out = {
        "reads": reads,
        "stale_reads": stale,
        "stale_fraction": stale / reads if reads else None,
        "stale_examples": stale_ids,
        "unexplained_reads": unexplained,
        "k_max": int(max(ks)) if ks else None,
        "k_mean": float(np.mean(ks)) if ks else None,
        "k_counts": [[k, int(c)] for k, c in enumerate(kc) if c],
    }
    if visibility:
        out["t_visibility"] = {
            "t": edges[:-1].tolist(),
            "p": [float(s / n) if n else None for s, n in zip(seen_w, pairs)],
            "pairs": pairs.astype(int).tolist(),
        }
    return out


def _visibility(x, cw, Cv, Iv, edges, pairs, seen_w) -> None:
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


def summarize(history, trace=None) -> dict:
    """Staleness measures of a run (the trace is not needed)."""
    return staleness(history)
