"""Cost: messages and bytes the nodes sent, per client operation.

The usual message-complexity measure of distributed algorithms (e.g. Lynch, *Distributed
Algorithms*, 1996, §2.1): every ``send`` event is one message, whether or not it was delivered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from envs.world.records import OK, Event, Op


def cost(history: Sequence[Op], trace: Iterable[Event]) -> dict:
    """Messages and bytes sent, overall and per operation.

    * ``messages`` -- the number of ``send`` events; ``by_type`` splits it by the ``msg`` field;
    * ``bytes`` -- the sum of the ``bytes`` field of the ``send`` events, or ``None`` when no send
      carries one;
    * ``messages_per_op`` / ``bytes_per_op`` -- divided by the number of operations in the history;
      ``messages_per_ok_op`` -- divided by the number of ``ok`` operations (``None`` when the
      divisor is 0);
    * ``dropped`` -- the number of ``drop`` events (messages lost to loss, partitions or crashes);
      ``dropped_by_why`` splits it by the event's ``why`` (``loss``, ``partition``, ``down``), since
      a message lost at random and one cut off by a partition are different faults.
    """
    nbytes = None
    by_type: Counter = Counter()
    by_why: Counter = Counter()
    for e in trace:
        if e.kind == "send":
            by_type[str(e.fields.get("msg"))] += 1
            b = e.fields.get("bytes")
            if b is not None:
                nbytes = (nbytes or 0) + b
        elif e.kind == "drop":
            by_why[str(e.fields.get("why"))] += 1
    return from_counts(history, by_type, by_why, nbytes)


def from_counts(history: Sequence[Op], sends_by_msg: dict, drops_by_why: dict, nbytes: int | None = None) -> dict:
    """:func:`cost` from counts already made (``send`` events per message type, ``drop`` events
    per ``why``): what a columnar trace gives without making one event per message."""
    messages, dropped = sum(sends_by_msg.values()), sum(drops_by_why.values())
    ops = len(history)
    ok = sum(op.status == OK for op in history)
    return {
        "messages": messages,
        "bytes": nbytes,
        "dropped": dropped,
        "dropped_by_why": dict(sorted(drops_by_why.items())),
        "ops": ops,
        "ok_ops": ok,
        "messages_per_op": messages / ops if ops else None,
        "bytes_per_op": nbytes / ops if ops and nbytes is not None else None,
        "messages_per_ok_op": messages / ok if ok else None,
        "by_type": dict(sorted(sends_by_msg.items())),
    }


def summarize(history, trace) -> dict:
    """Cost measures of a run."""
    return cost(history, trace)
