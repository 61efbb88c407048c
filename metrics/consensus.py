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

from .timeline import as_list, hashable, node_ids, order


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
    acc = Consensus(nodes)
    for e in trace:
        acc.add(e)
    return acc.result()


class Consensus:
    """:func:`consensus` as a fold over a stream of events, one at a time (``add``), for a trace
    read in chunks: it holds what the measure needs (proposed and decided values per instance and
    node), not the events. ``nodes``: the run's nodes (:func:`~metrics.timeline.node_ids`)."""

    #: the kinds it reads (any other is ignored)
    KINDS = frozenset({"propose", "decide", "crash", "start"})

    def __init__(self, nodes: Iterable[int]):
        self.nodes = sorted(nodes)
        self.proposed: dict = defaultdict(set)
        self.first_propose: dict = {}
        self.decided: dict = defaultdict(dict)  # instance -> node -> first decided value
        self.values: dict = defaultdict(dict)  # instance -> hashable value -> original value
        self.first_decide: dict = {}
        self.last_decide: dict = {}
        self.rounds: dict = {}
        self.changed: list[dict] = []
        self.repeated = 0
        self.any_propose = False
        self.down: set = set()  # crashed and not restarted (:func:`~metrics.timeline.down_at_end`)

    def add(self, e: Event) -> None:
        kind = e.kind
        if kind == "propose":
            inst = e.fields.get("instance")
            self.proposed[inst].add(hashable(e.fields.get("value")))
            self.first_propose.setdefault(inst, e.t)
            self.any_propose = True
        elif kind == "decide":
            inst = e.fields.get("instance")
            v = hashable(e.fields.get("value"))
            values = self.values
            values[inst].setdefault(v, e.fields.get("value"))
            mine = self.decided[inst]
            if e.node in mine:
                if mine[e.node] == v:
                    self.repeated += 1
                else:
                    self.changed.append({"instance": inst, "node": e.node, "first": values[inst][mine[e.node]],
                                         "then": e.fields.get("value"), "t": e.t})
            else:
                mine[e.node] = v
            self.first_decide.setdefault(inst, e.t)
            self.last_decide[inst] = e.t
            r = e.fields.get("round")
            if r is not None:
                self.rounds[inst] = max(self.rounds.get(inst, r), r)
        elif kind == "crash":
            self.down.add(e.node)
        elif kind == "start":
            self.down.discard(e.node)

    def result(self) -> dict:
        proposed, decided, values, rounds = self.proposed, self.decided, self.values, self.rounds
        instances = sorted(set(proposed) | set(decided), key=order)
        disagreements = [{"instance": i, "values": [values[i][v] for v in sorted(values[i], key=order)]}
                         for i in instances if len(values[i]) > 1]
        invalid = []
        if self.any_propose:
            invalid = [{"instance": i, "value": values[i][v]} for i in instances
                       for v in sorted(values[i], key=order) if v not in proposed[i]]
        live = [n for n in self.nodes if n not in self.down]
        per_instance = []
        done = 0
        for i in instances:
            d = sum(1 for n in live if n in decided[i])
            done += d
            start = self.first_propose.get(i, self.first_decide.get(i))
            per_instance.append({
                "instance": i,
                "decided": len(decided[i]),
                "termination": d / len(live) if live else None,
                "time_to_decide": self.last_decide[i] - start if i in self.last_decide else None,
                "rounds": rounds.get(i),
            })
        times = [p["time_to_decide"] for p in per_instance if p["time_to_decide"] is not None]
        return {
            "instances": len(instances),
            "agreement": not disagreements,
            "agreement_violations": disagreements,
            "validity": (not invalid) if self.any_propose else None,
            "validity_violations": invalid,
            "integrity": not self.changed,
            "integrity_violations": self.changed,
            "repeated_decides": self.repeated,
            "live_nodes": len(live),
            "termination": done / (len(instances) * len(live)) if instances and live else None,
            "time_to_decide": max(times) if times else None,
            "rounds_to_decide": max(rounds.values()) if rounds else None,
            "per_instance": per_instance,
        }


def summarize(history, trace) -> dict:
    """Consensus measures of a run (the history is not needed)."""
    return consensus(trace)
