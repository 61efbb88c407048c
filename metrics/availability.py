"""Availability: how many client operations completed ok, inside and outside partitions, and how fast.

The availability of the CAP theorem (Gilbert and Lynch, "Brewer's Conjecture and the Feasibility
of Consistent, Available, Partition-Tolerant Web Services", 2002) asks that every request to a
live node eventually gets a (non-error) response; measured here as the fraction of operations
whose status is ``ok`` -- overall, and split by whether a partition stood when the operation was
invoked (partition intervals from the trace: :func:`~metrics.timeline.partition_intervals`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from envs.world.records import OK, STATUSES, Event, Op

from .timeline import as_list, inside, partition_intervals

PERCENTILES = (50, 90, 99)


def _fraction_ok(ops: Sequence[Op]) -> float | None:
    return sum(op.status == OK for op in ops) / len(ops) if ops else None


def availability(history: Sequence[Op], trace: Iterable[Event] | None = None,
                 partitions: Sequence[tuple[float, float]] | None = None) -> dict:
    """Availability and latency of ``history``.

    * ``ok_fraction`` -- ok operations / all operations (``None`` for an empty history);
    * ``ok_fraction_partitioned`` / ``ok_fraction_connected`` -- the same over the operations
      *invoked* while a partition stood / while none did (``None`` when there are none). The
      partition intervals come from ``partitions`` if given, else from ``trace``;
    * ``counts`` -- operations by status (``ok``, ``fail``, ``unknown``), and ``ops``, the total;
    * ``latency`` -- ``complete - invoke`` of the ok operations (true ms): ``p50``, ``p90``,
      ``p99`` (numpy's linear-interpolation percentiles), ``max`` and ``mean``; ``None`` values
      when no operation is ok.
    """
    if partitions is None:
        partitions = partition_intervals(as_list(trace))
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
        "ok_fraction": _fraction_ok(history),
        "ok_fraction_partitioned": _fraction_ok(parted),
        "ok_fraction_connected": _fraction_ok(connected),
        "ops_partitioned": len(parted),
        "ops_connected": len(connected),
        "latency": latency,
    }


def summarize(history, trace) -> dict:
    """Availability measures of a run."""
    return availability(history, trace)
