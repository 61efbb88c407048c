"""Availability: how many client operations completed ok, inside and outside partitions, and how fast.

The availability of the CAP theorem (Gilbert and Lynch, "Brewer's Conjecture and the Feasibility
of Consistent, Available, Partition-Tolerant Web Services", 2002) asks that every request to a
live node eventually gets a (non-error) response; measured here as the fraction of operations
whose status is ``ok`` -- overall, and split by whether a partition stood when the operation was
invoked (partition intervals from the trace: :func:`~metrics.timeline.partition_intervals`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from envs.world.records import OK, STATUSES, Event, Op

from .timeline import as_list, inside, partition_intervals

PERCENTILES = (50, 90, 99)


def _fraction(num: int, den: int) -> float | None:
    return num / den if den else None


def availability(history: Sequence[Op], trace: Iterable[Event] | None = None,
                 partitions: Sequence[tuple[float, float]] | None = None, *, latency: bool = True) -> dict:
    """Availability and latency of ``history``.

    * ``ok_fraction`` -- ok operations / all operations (``None`` for an empty history);
    * ``ok_fraction_partitioned`` / ``ok_fraction_connected`` -- the same over the operations
      *invoked* while a partition stood / while none did (``None`` when there are none). The
      partition intervals come from ``partitions`` if given, else from ``trace``;
    * ``counts`` -- operations by status (``ok``, ``fail``, ``unknown``), and ``ops``, the total;
    * ``latency`` -- ``complete - invoke`` of the ok operations (true ms): ``p50``, ``p90``,
      ``p99`` (numpy's linear-interpolation percentiles), ``max`` and ``mean``; ``None`` values
      when no operation is ok. ``latency=False`` leaves it out (every other field is the same).
    """
    if partitions is None:
        partitions = partition_intervals(as_list(trace))
    n = len(history)
    during = inside([op.invoke for op in history], partitions)
    ok = np.fromiter((op.status == OK for op in history), dtype=bool, count=n)
    n_parted, ok_parted = int(during.sum()), int(np.count_nonzero(ok & during))
    n_ok = int(ok.sum())
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(Counter(op.status for op in history))
    out = {
        "ops": n,
        "counts": counts,
        "ok_fraction": _fraction(n_ok, n),
        "ok_fraction_partitioned": _fraction(ok_parted, n_parted),
        "ok_fraction_connected": _fraction(n_ok - ok_parted, n - n_parted),
        "ops_partitioned": n_parted,
        "ops_connected": n - n_parted,
    }
    if latency:
        lat = np.array([op.complete - op.invoke for op in history if op.status == OK and op.complete is not None])
        out["latency"] = {f"p{q}": None for q in PERCENTILES} | {"max": None, "mean": None}
        if len(lat):
            out["latency"] = {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(lat, PERCENTILES))}
            out["latency"] |= {"max": float(lat.max()), "mean": float(lat.mean())}
    return out


def summarize(history, trace) -> dict:
    """Availability measures of a run."""
    return availability(history, trace)
