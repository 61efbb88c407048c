"""Linearizability of a read/write register whose writes have distinct values, in O(n log n).

Gibbons and Korach (SIAM J. Comput. 26(4), 1997, "Testing shared memories") show that when every
read can be mapped to the write it read from (a *read-mapping*, given when written values are
distinct), atomicity of a register is decidable in O(n log n). This module is their zone test, as
restated by Golab, Li and Shah (PODC 2011, "Analyzing consistency properties for fun and profit"):

* a *cluster* is one write and the reads that returned its value; reads of the initial value form
  the cluster of a virtual write that took effect before everything;
* a cluster's zone runs between ``f``, the earliest completion of its operations, and ``s``, the
  latest invocation. When ``f < s`` it is a *forward* zone ``(f, s)``: the value must have been
  the register's current one throughout it. Otherwise it is a *backward* zone ``[s, f]``;
* the history is linearizable iff (1) every read returned the initial value or a written one, and
  did not complete before that write was invoked; (2) no two forward zones overlap; (3) no backward
  zone lies strictly inside a forward zone.

Times that are equal count as concurrent (either order is allowed), so zones that only touch do
not conflict. Unknown operations (Jepsen's ``:info``) are handled soundly: an unknown read
constrains nothing and is dropped; an unknown write whose value no read returned may never have
happened and is dropped; an unknown write that was read completes at the end of time.

:func:`applies` says when the test may replace the Wing-Gong-Lowe search; ``metrics.linearizability.
check`` chooses it automatically and names it in the result (``algorithm: zones``).
"""

from __future__ import annotations

from bisect import bisect_left

from envs.world.records import OK, UNKNOWN, Op

INF = float("inf")
REGISTER_MODELS = ("register", "cas-register", "etcd")


def applies(ops: list[Op], model) -> bool:
    """Whether the zone test decides ``ops`` (one key, already prepared: failed ops and unknown
    reads dropped, values frozen): a register model, only reads and writes, write values distinct
    and none equal to the initial value."""
    if model.name not in REGISTER_MODELS:
        return False
    seen = set()
    for op in ops:
        if op.f == "write":
            v = op.value
            if v in seen or v == model.init:
                return False
            seen.add(v)
        elif op.f != "read":
            return False
    return True


def check_zones(ops: list[Op], init=None) -> tuple[bool, list[Op]]:
    """The zone test on one register's history (see the module). Returns ``(linearizable,
    conflict)``: ``conflict`` names the operations whose zones cannot be ordered (empty when
    linearizable). Requires :func:`applies`."""
    writes: dict = {}
    reads: list[Op] = []
    for op in ops:
        if op.f == "write":
            writes[op.value] = op
        elif op.status == OK:
            reads.append(op)
    # clusters: write value -> [f, s, op finishing at f, op starting at s, the write]
    clusters: dict = {}
    read_values = set()
    for r in reads:
        v = r.output
        if v == init:
            continue
        w = writes.get(v)
        if w is None:
            return False, [r]  # a value no write wrote
        if r.complete < w.invoke:
            return False, [r, w]  # read before the write began
        read_values.add(v)
    for v, w in writes.items():
        if w.status == UNKNOWN and v not in read_values:
            continue  # may never have happened
        fin = INF if w.status == UNKNOWN or w.complete is None else w.complete
        clusters[v] = [fin, w.invoke, w, w, w]
    init_zone = None
    for r in reads:
        v = r.output
        if v == init:
            if init_zone is None:
                init_zone = [-INF, r.invoke, None, r, None]
            elif r.invoke > init_zone[1]:
                init_zone[1], init_zone[3] = r.invoke, r
            continue
        c = clusters[v]
        if r.complete < c[0]:
            c[0], c[2] = r.complete, r
        if r.invoke > c[1]:
            c[1], c[3] = r.invoke, r
    zones = list(clusters.values()) + ([init_zone] if init_zone else [])
    forward = sorted((z for z in zones if z[0] < z[1]), key=lambda z: z[0])
    for a, b in zip(forward, forward[1:]):
        if b[0] < a[1]:  # b starts before a ends: two values current at once
            return False, _named(a, b)
    starts = [z[0] for z in forward]
    for z in zones:
        if z[0] < z[1]:
            continue
        s, f = z[1], z[0]  # backward zone [s, f]
        i = bisect_left(starts, s) - 1  # the forward zone starting last before s
        if i >= 0 and f < forward[i][1]:
            return False, _named(forward[i], z)
    return True, []


def _named(a, b) -> list[Op]:
    """The operations that bound two conflicting zones: each zone's write and its end operations."""
    out: list[Op] = []
    for z in (a, b):
        for op in (z[4], z[2], z[3]):
            if op is not None and op not in out:
                out.append(op)
    return out
