"""Jepsen's set checker: which acknowledged adds a set lost.

Knossos-free and linear: a *set* workload (``envs/world/workload.py``) adds unique elements to a
set per key and reads whole sets, ending with final reads after the last heal. Following Jepsen's
``jepsen.checker/set`` (Kingsbury, *Jepsen* analyses of last-write-wins stores such as Cassandra and
Riak), each add is judged against the **final reads** of its key -- here every process's last
``ok`` read of that key (so the final-read phase, in which every client reads every key, supplies
one per client):

* **ok** -- an acknowledged (``ok``) add whose element some final read contains;
* **lost** -- an acknowledged add whose element no final read contains: a write the store said it
  kept, gone;
* **unexpected** -- an element in a final read that no add ever attempted;
* **recovered** -- an add of unknown outcome (the client timed out) whose element a final read
  contains: it did happen.

Failed adds (``fail``: definitely not done) that show up anyway are counted as ``unexpected`` too.
A read's output is a list, tuple or set of elements; ``None`` is the empty set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from envs.world.records import OK, UNKNOWN, Op

from .timeline import hashable, order

EXAMPLES = 20  # elements listed in full per outcome (all are counted)


def is_set_history(history: Sequence[Op]) -> bool:
    """True when the history is a set workload's (it has ``add`` operations)."""
    return any(op.f == "add" for op in history)


def set_check(history: Sequence[Op]) -> dict:
    """Jepsen's set verdict over ``history`` (list of :class:`~envs.world.records.Op`).

    Returns ``valid`` (no lost and no unexpected element; ``None`` when no key has a final read, or
    no add was acknowledged and no read saw an unexpected element: nothing to judge),
    the counts ``attempted`` (adds), ``acknowledged`` (``ok`` adds), ``ok``, ``lost``,
    ``unexpected``, ``recovered``, up to :data:`EXAMPLES` of each as ``lost_elements`` and so on
    (in value order), ``final_reads`` (how many reads were judged) and ``keys_without_final_read``
    (keys with adds but no ``ok`` read: their adds are neither ok nor lost).
    """
    adds: dict = defaultdict(dict)  # key -> element -> status
    last_read: dict = {}  # (key, process) -> the process's last ok read (by invocation)
    for op in history:
        key = hashable(op.key)
        if op.f == "add":
            adds[key][hashable(op.value)] = op.status
        elif op.f == "read" and op.status == OK:
            prev = last_read.get((key, op.process))
            if prev is None or op.invoke >= prev.invoke:
                last_read[(key, op.process)] = op
    seen: dict = defaultdict(set)  # key -> elements some final read holds
    judged: set = set()
    for (key, _p), op in last_read.items():
        judged.add(key)
        seen[key] |= {hashable(x) for x in (op.output or ())}
    out = {k: [] for k in ("ok", "lost", "unexpected", "recovered")}
    attempted = acknowledged = 0
    missing_reads = 0
    for key in set(adds) | judged:
        mine = adds.get(key, {})
        attempted += len(mine)
        acknowledged += sum(s == OK for s in mine.values())
        if key not in judged:
            missing_reads += 1
            continue
        for x, status in mine.items():
            if x in seen[key]:
                out["ok" if status == OK else "recovered" if status == UNKNOWN else "unexpected"].append(x)
            elif status == OK:
                out["lost"].append(x)
        out["unexpected"] += [x for x in seen[key] if x not in mine]
    # nothing to judge (no final read, or no add acknowledged and nothing unexpected): no verdict
    nothing = not judged or (acknowledged == 0 and not out["unexpected"])
    res: dict = {"valid": None if nothing else (not out["lost"] and not out["unexpected"]),
                 "attempted": attempted, "acknowledged": acknowledged,
                 "final_reads": len(last_read), "keys_without_final_read": missing_reads}
    for k, xs in out.items():
        res[k] = len(xs)
        res[f"{k}_elements"] = sorted(xs, key=order)[:EXAMPLES]
    return res
