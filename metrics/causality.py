"""Causality: updates applied and messages delivered out of causal order, from vector clocks.

Happened-before is Lamport's ("Time, Clocks, and the Ordering of Events in a Distributed System",
CACM 1978), read off vector clocks (Fidge 1988; Mattern 1989): ``a -> b`` iff ``vc(a) <= vc(b)``
element-wise and ``vc(a) != vc(b)``. Causal delivery is Birman, Schiper and Stephenson's ("Lightweight
Causal and Atomic Group Multicast", TOCS 1991): if ``send(m1) -> send(m2)`` and both go to node ``p``,
``p`` delivers ``m1`` before ``m2``.

Both checks use one fact about the vector clocks of events (Mattern 1989): for an event ``e`` and a
set ``S`` of other events, ``e`` happened before some event of ``S`` iff ``vc(e) <= max(vc(S))``
element-wise (the maximum of the clocks of ``S``). So each node keeps just the element-wise maximum
of what it has applied or received, and each check costs O(n) -- one pass over the trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import le

from envs.world.records import Event

from .timeline import as_list

BEFORE, AFTER, EQUAL, CONCURRENT = "before", "after", "equal", "concurrent"
EXAMPLES = 20  # violations listed in full (all are counted)


def _pad(a: Sequence[int], b: Sequence[int]) -> tuple[tuple, tuple]:
    n = max(len(a), len(b))
    return tuple(a) + (0,) * (n - len(a)), tuple(b) + (0,) * (n - len(b))


def vc_compare(a: Sequence[int], b: Sequence[int]) -> str:
    """How the events stamped ``a`` and ``b`` relate: ``"before"`` (a -> b), ``"after"`` (b -> a),
    ``"equal"`` or ``"concurrent"``. Missing entries count as 0."""
    a, b = _pad(a, b)
    le_ = all(map(le, a, b))
    ge_ = all(map(le, b, a))
    if le_ and ge_:
        return EQUAL
    if le_:
        return BEFORE
    if ge_:
        return AFTER
    return CONCURRENT


def happens_before(a: Sequence[int], b: Sequence[int]) -> bool:
    """``a -> b``: every entry of ``a`` is at most ``b``'s, and they differ."""
    return vc_compare(a, b) == BEFORE


def concurrent(a: Sequence[int], b: Sequence[int]) -> bool:
    """Neither ``a -> b`` nor ``b -> a`` (and not the same event)."""
    return vc_compare(a, b) == CONCURRENT


def _covered(v: tuple, m: list[int] | None) -> bool:
    """``v <= m`` element-wise (``m`` the running maximum, ``None`` when empty)."""
    if m is None:
        return False
    if len(v) > len(m):
        return not any(v[len(m):]) and all(map(le, v[:len(m)], m))
    return all(map(le, v, m))


def _join(m: list[int] | None, v: tuple) -> list[int]:
    if m is None:
        return list(v)
    if len(v) > len(m):
        m.extend([0] * (len(v) - len(m)))
    for i, x in enumerate(v):
        if x > m[i]:
            m[i] = x
    return m


def causal_order(trace: Iterable[Event]) -> dict:
    """Causal-order violations in one pass over the trace.

    * **applies** -- an ``apply`` event carrying ``origin_vc`` (the vector clock of the write it
      applies) at node ``p`` is *out of causal order* when ``p`` had already applied another update
      ``u2`` with ``origin_vc(u) -> origin_vc(u2)``: ``u2`` was applied before ``u`` although ``u``
      happened before it. Applying the same update again (equal ``origin_vc``) is not checked.
    * **messages** -- a ``recv`` of message ``m`` at ``p`` violates causal delivery when ``p`` had
      already received another message ``m2`` with ``send(m) -> send(m2)`` (vector clocks of the
      ``send`` events, matched by ``mid``). FIFO violations are the case of one sender. A duplicate
      delivery of the same ``mid`` is not checked again.

    Returns the counts checked and violated, and up to 20 examples of each
    (``{"node", "t", "origin_vc"}`` / ``{"node", "t", "mid", "src"}``).
    """
    trace = as_list(trace)
    applied_max: dict = {}
    applied: dict = {}
    recv_max: dict = {}
    received: set = set()
    sent: dict = {}
    n_apply = n_recv = bad_apply = bad_recv = 0
    ex_apply: list[dict] = []
    ex_recv: list[dict] = []
    for e in trace:
        kind = e.kind
        if kind == "send":
            sent[e.fields.get("mid")] = e.vc
        elif kind == "recv":
            mid = e.fields.get("mid")
            vc = sent.get(mid)
            if vc is None or (e.node, mid) in received:
                continue
            received.add((e.node, mid))
            n_recv += 1
            m = recv_max.get(e.node)
            if _covered(vc, m):
                bad_recv += 1
                if len(ex_recv) < EXAMPLES:
                    ex_recv.append({"node": e.node, "t": e.t, "mid": mid, "src": e.fields.get("src")})
            recv_max[e.node] = _join(m, vc)
        elif kind == "apply":
            ovc = e.fields.get("origin_vc")
            if ovc is None:
                continue
            ovc = tuple(ovc)
            mine = applied.setdefault(e.node, set())
            if ovc in mine:
                continue
            mine.add(ovc)
            n_apply += 1
            m = applied_max.get(e.node)
            if _covered(ovc, m):
                bad_apply += 1
                if len(ex_apply) < EXAMPLES:
                    ex_apply.append({"node": e.node, "t": e.t, "origin_vc": list(ovc)})
            applied_max[e.node] = _join(m, ovc)
    return {
        "applies_checked": n_apply,
        "applies_out_of_order": bad_apply,
        "apply_examples": ex_apply,
        "messages_checked": n_recv,
        "messages_out_of_order": bad_recv,
        "message_examples": ex_recv,
        "causal": bad_apply == 0 and bad_recv == 0,
    }


def summarize(history, trace) -> dict:
    """Causal-order measures of a run (the history is not needed)."""
    return causal_order(trace)
