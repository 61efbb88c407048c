"""The observer with Byzantine nodes: it judges correct nodes and their clients only.

A node is Byzantine from its trace's ``byzantine`` event on (``envs/world/byzantine.py``); the
observer then leaves it out *for the whole run*: its events, and every client operation sent to it
(its clients talk to a liar, so nothing can be promised them): their reads are left out, and their
writes stay in the history as *unknown* (they may have taken effect at any time after their
invocation, as a faulty client's requests may in PBFT's model: Castro and Liskov, OSDI 1999,
section 2: safety is for correct clients, and faulty clients' operations are linearized too).
:func:`correct_view` says whom it left out. :func:`log_agreement` checks the replicated-log
property that crash-tolerant and Byzantine-tolerant replication share: no two correct replicas
put different commands at the same position (Raft's State Machine Safety, PBFT's safety).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from envs.world.records import UNKNOWN, Event, Op

#: operations that change nothing (left out when a Byzantine node's client made them)
READS = frozenset({"read", "get"})


def byzantine_nodes(events: list[Event]) -> dict[int, str]:
    """node -> the (last) strategy of every node the trace marks Byzantine."""
    return {e.node: e.fields.get("strategy") for e in events if e.kind == "byzantine"}


def correct_view(history: list[Op], events: list[Event]) -> tuple[list[Op], list[Event], dict | None]:
    """``(history, events, left_out)``: the operations of correct nodes' clients, the events of
    correct nodes (world events and the ``byzantine`` marks kept), and ``None`` when every node is
    correct, else ``{"nodes": {node: strategy}, "ops_left_out": k, "why": ...}``. Check
    linearizability on ``history + faulty_writes(...)``: a faulty client's writes may take effect."""
    byz = byzantine_nodes(events)
    if not byz:
        return history, events, None
    kept = [op for op in history if op.node not in byz]
    evs = [e for e in events if e.node is None or e.node not in byz or e.kind == "byzantine"]
    return kept, evs, {
        "nodes": {str(k): v for k, v in sorted(byz.items())},
        "ops_left_out": len(history) - len(kept),
        "why": "Byzantine nodes and their clients are not judged: measures cover correct nodes and their "
               "clients; the linearizability check also counts the left-out writes as unknown",
    }


def faulty_writes(history: list[Op], nodes: Any) -> list[Op]:
    """The operations that clients of ``nodes`` (Byzantine) made and that may change state, as
    *unknown* ones (they may have taken effect at any time after their invocation, or never)."""
    return [replace(op, status=UNKNOWN, complete=None, output=None)
            for op in history if op.node in nodes and op.f not in READS]


def log_agreement(events: list[Event], exclude: Any = ()) -> dict | None:
    """Do correct replicas agree on their logs? From ``execute`` records (``seq``, ``op``: PBFT) and
    ``commit`` records (``index``, ``cmd``: Raft, Multi-Paxos): ``positions`` seen, ``conflicts`` (the
    positions where two correct replicas hold different commands) and the first one
    (``{position, values: {node: command}}``); None when there are no such records."""
    acc = LogAgreement(exclude)
    for e in events:
        acc.add(e)
    return acc.result()


def _shown(command: Any) -> str:
    """A log entry's command as the report shows it: ``repr``, and for ``None`` what it means (Raft's
    no-op entry of a new leader, PBFT's null request), not an entry that is missing."""
    return "None (a no-op: Raft's new-leader entry or PBFT's null request)" if command is None else repr(command)


class LogAgreement:
    """:func:`log_agreement` as a fold over a stream of events, one at a time (``add``): it holds
    each position's command per replica (what grows with the log), not the events."""

    #: the kinds it reads (any other is ignored)
    KINDS = frozenset({"execute", "commit"})

    def __init__(self, exclude: Any = ()):
        self.exclude = exclude
        self.seen: dict = {}
        self.found = False

    def add(self, e: Event) -> None:
        if e.node in self.exclude:
            return
        if e.kind == "execute":
            pos, val = e.fields.get("seq"), e.fields.get("op")
        elif e.kind == "commit" and "index" in e.fields:
            pos, val = e.fields.get("index"), e.fields.get("cmd")
        else:
            return
        self.found = True
        self.seen.setdefault(pos, {}).setdefault(e.node, _freeze(val))

    def result(self) -> dict | None:
        if not self.found:
            return None
        seen = self.seen
        conflicts = [p for p, by in seen.items() if len(set(by.values())) > 1]
        first = None
        if conflicts:
            p = min(conflicts)
            first = {"position": p, "values": {str(n): _shown(v) for n, v in sorted(seen[p].items())}}
        return {"positions": len(seen), "conflicts": len(conflicts), "first_conflict": first}


def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v
