"""Consensus: agreement, validity, integrity, termination, time and rounds to decide.

The properties are those of uniform consensus as stated by Cachin, Guerraoui and Rodrigues,
*Introduction to Reliable and Secure Distributed Programming* (2011), §5.1, read off the trace:
a node's input is its ``propose`` event, its output its ``decide`` event (``docs/trace.md``). An
event may carry ``instance`` (several consensus instances in one run, e.g. Multi-Paxos slots);
events without it belong to instance ``None``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from envs.world.records import Event

from .timeline import as_list, down_at_end, hashable, node_ids, order


def consensus(trace: Iterable[Event], nodes: Iterable[int] | None = None) -> dict:
    """Check the consensus properties on a trace; one pass over it.

    Per instance:

    * **agreement** -- no two ``decide`` events (any nodes, crashed ones included: *uniform*
      agreement) carry different values. Violations list the instance and the values.
    * **validity** -- every decided value was some node's ``propose``d value in that instance.
      ``None`` (not checkable) when the trace holds no ``propose`` event at all.
    * **integrity** -- no node decides twice with different values (recording the same decision
      again, e.g. after a restart, is not a second decision; those are counted as
      ``repeated_decides``).
    * **termination** -- the fraction of *live* nodes (not crashed at the end of the trace) that
      decided, pooled over instances: decided (instance, live node) pairs / (instances x live nodes).
      ``None`` when the trace has no instance.
    * **time to decide** -- true time from the first ``propose`` to the last ``decide`` of the
      instance (from its first ``decide`` when nothing was proposed in it); the maximum is reported.
    * **rounds to decide** -- the largest ``round`` field of its ``decide`` events (``None``
      when no decide carries a round).

    Instances and values are listed in value order (:func:`~metrics.timeline.order`: slot 2 before
    slot 10). ``nodes`` defaults to every node of the trace (:func:`~metrics.timeline.node_ids`).
    """
    trace = as_list(trace)
    nodes = sorted(nodes) if nodes is not None else node_ids(trace)
    proposed: dict = defaultdict(set)
    first_propose: dict = {}
    decided: dict = defaultdict(dict)  # instance -> node -> first decided value
    values: dict = defaultdict(dict)  # instance -> hashable value -> original value
    first_decide: dict = {}
    last_decide: dict = {}
    rounds: dict = {}
    changed: list[dict] = []
    repeated = 0
    any_propose = False
    for e in trace:
        if e.kind == "propose":
            inst = e.fields.get("instance")
            proposed[inst].add(hashable(e.fields.get("value")))
            first_propose.setdefault(inst, e.t)
            any_propose = True
        elif e.kind == "decide":
            inst = e.fields.get("instance")
            v = hashable(e.fields.get("value"))
            values[inst].setdefault(v, e.fields.get("value"))
            mine = decided[inst]
            if e.node in mine:
                if mine[e.node] == v:
                    repeated += 1
                else:
                    changed.append({"instance": inst, "node": e.node, "first": values[inst][mine[e.node]],
                                    "then": e.fields.get("value"), "t": e.t})
            else:
                mine[e.node] = v
            first_decide.setdefault(inst, e.t)
            last_decide[inst] = e.t
            r = e.fields.get("round")
            if r is not None:
                rounds[inst] = max(rounds.get(inst, r), r)

    instances = sorted(set(proposed) | set(decided), key=order)
    disagreements = [{"instance": i, "values": [values[i][v] for v in sorted(values[i], key=order)]}
                     for i in instances if len(values[i]) > 1]
    invalid = []
    if any_propose:
        invalid = [{"instance": i, "value": values[i][v]} for i in instances
                   for v in sorted(values[i], key=order) if v not in proposed[i]]
    down = down_at_end(trace)
    live = [n for n in nodes if n not in down]
    per_instance = []
    done = 0
    for i in instances:
        d = sum(1 for n in live if n in decided[i])
        done += d
        start = first_propose.get(i, first_decide.get(i))
        per_instance.append({
            "instance": i,
            "decided": len(decided[i]),
            "termination": d / len(live) if live else None,
            "time_to_decide": last_decide[i] - start if i in last_decide else None,
            "rounds": rounds.get(i),
        })
    times = [p["time_to_decide"] for p in per_instance if p["time_to_decide"] is not None]
    return {
        "instances": len(instances),
        "agreement": not disagreements,
        "agreement_violations": disagreements,
        "validity": (not invalid) if any_propose else None,
        "validity_violations": invalid,
        "integrity": not changed,
        "integrity_violations": changed,
        "repeated_decides": repeated,
        "live_nodes": len(live),
        "termination": done / (len(instances) * len(live)) if instances and live else None,
        "time_to_decide": max(times) if times else None,
        "rounds_to_decide": max(rounds.values()) if rounds else None,
        "per_instance": per_instance,
    }


def summarize(history, trace) -> dict:
    """Consensus measures of a run (the history is not needed)."""
    return consensus(trace)
