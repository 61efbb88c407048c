"""Helpers the measures share: what stood when, read off a trace in true time.

A trace is a list of :class:`~envs.world.records.Event` in the order things happened (non-decreasing
true time ``t``); ``docs/trace.md`` lists the kinds. Intervals are half-open ``[start, end)`` in true
milliseconds; an interval still open when the trace ends gets ``end = math.inf`` unless an ``end``
is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from envs.world.records import Event


def as_list(trace: Iterable[Event] | None) -> list[Event]:
    """The trace as a list (a ``Trace`` object or any iterable of events is read once)."""
    if trace is None:
        return []
    return trace if isinstance(trace, list) else list(trace)


def order(v) -> tuple:
    """A sort key that orders values read from a trace as values, not as text.

    ``None`` first, then numbers (``2 < 10``), then strings, then tuples and lists (element by
    element, each with this same key), then anything else by ``repr``. Sorting by ``repr`` alone
    puts term 10 before term 2; this key never compares two types that Python cannot order.
    """
    if v is None:
        return (0,)
    if isinstance(v, int | float):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    if isinstance(v, list | tuple):
        return (3, tuple(order(x) for x in v))
    return (4, repr(v))


def node_ids(trace: Sequence[Event]) -> list[int]:
    """The nodes of the run: ``0..n-1`` where ``n`` is the vector-clock length, or else the ids seen."""
    n = 0
    seen: set[int] = set()
    for e in trace:
        if e.node is not None:
            seen.add(e.node)
            if len(e.vc) > n:
                n = len(e.vc)
    return sorted(seen.union(range(n)))


def partition_intervals(trace: Iterable[Event], end: float | None = None) -> list[tuple[float, float]]:
    """Intervals of true time during which some link was cut.

    A partition stands from a ``partition`` event with a non-empty ``cuts`` until the next ``heal``
    (or a ``partition`` event whose ``cuts`` is empty); a ``partition`` event while one stands only
    changes its shape and does not split the interval.
    """
    out: list[tuple[float, float]] = []
    since = None
    for e in trace:
        if e.kind == "partition" and e.fields.get("cuts"):
            if since is None:
                since = e.t
        elif e.kind in ("heal", "partition") and since is not None:
            out.append((since, e.t))
            since = None
    if since is not None:
        out.append((since, math.inf if end is None else end))
    return out


def down_intervals(trace: Iterable[Event], end: float | None = None) -> dict[int, list[tuple[float, float]]]:
    """Per node, the intervals of true time between its ``crash`` and its next ``start`` (restart)."""
    out: dict[int, list[tuple[float, float]]] = {}
    since: dict[int, float] = {}
    for e in trace:
        if e.kind == "crash" and e.node not in since:
            since[e.node] = e.t
        elif e.kind == "start" and e.node in since:
            out.setdefault(e.node, []).append((since.pop(e.node), e.t))
    for node, t in since.items():
        out.setdefault(node, []).append((t, math.inf if end is None else end))
    return out


def down_at_end(trace: Iterable[Event]) -> set[int]:
    """Nodes crashed and not restarted when the trace ends."""
    down: set[int] = set()
    for e in trace:
        if e.kind == "crash":
            down.add(e.node)
        elif e.kind == "start":
            down.discard(e.node)
    return down


def inside(times: Sequence[float], intervals: Sequence[tuple[float, float]]) -> np.ndarray:
    """Boolean mask: ``times[i]`` lies in one of the disjoint, sorted intervals ``[start, end)``."""
    times = np.asarray(times, dtype=float)
    if not len(intervals):
        return np.zeros(len(times), dtype=bool)
    starts = np.array([a for a, _ in intervals], dtype=float)
    ends = np.array([b for _, b in intervals], dtype=float)
    i = np.searchsorted(starts, times, side="right") - 1  # last interval starting at or before t
    ok = i >= 0
    mask = np.zeros(len(times), dtype=bool)
    mask[ok] = times[ok] < ends[i[ok]]
    return mask


_SCALARS = frozenset((int, str, float, bool, type(None)))


def hashable(v):
    """A hashable stand-in for a value read from a trace or history (lists become tuples)."""
    if type(v) in _SCALARS:
        return v
    if isinstance(v, list | tuple):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((str(k), hashable(x)) for k, x in v.items()))
    if isinstance(v, set | frozenset):
        return frozenset(hashable(x) for x in v)
    return v
