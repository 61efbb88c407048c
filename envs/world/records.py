"""Record types shared by the world and the observer: client operations (histories) and trace events.

These are the only world types that ``metrics/`` imports.

History
-------
A history is a list of :class:`Op`, one per client operation, each carrying both its invocation and
its completion (Jepsen's pair of events folded into one record). Times are *true* times in
milliseconds: only the observer sees them; no node can.

``status`` follows Jepsen:

* ``"ok"``      -- the operation took effect, and ``output`` is its result;
* ``"fail"``    -- the operation definitely did not take effect;
* ``"unknown"`` -- it may have taken effect at any time after ``invoke``, or never
  (``complete`` is ``None``: the end of time).

Operation kinds (``f``) and their ``value`` / ``output``:

=========  ==========================  =============================
f          value (input)               output (result)
=========  ==========================  =============================
read       None                        value read (None: never written)
write      value                       None
cas        [expected, new]             None (ok: swapped, fail: did not hold expected)
get        None                        value read ("" when absent, for kv)
put        value                       None
append     value                       None
=========  ==========================  =============================

``key`` is ``None`` for a single register.

JSON Lines form (``--format jsonl``): one object per operation with the fields of :class:`Op`.

Trace
-----
A trace is an ordered list of :class:`Event`: ``kind``, ``node`` (int id, or ``None`` for
world events), ``t`` (true time, observer only), ``clock`` (the node's own clock reading),
``lamport``, ``vc`` (vector clock, a tuple indexed by node id) and ``fields`` (a dict).
See ``envs/world/trace.py`` for the kinds the runtime records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
STATUSES = (OK, FAIL, UNKNOWN)


@dataclass(slots=True)
class Op:
    """One client operation, invocation and completion together (true times, ms)."""

    id: int
    process: int
    f: str
    value: Any = None
    key: Any = None
    node: int | None = None
    invoke: float = 0.0
    complete: float | None = None
    status: str = UNKNOWN
    output: Any = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Op:
        return cls(**d)


def history_to_jsonl(ops: Iterable[Op]) -> str:
    return "".join(json.dumps(op.to_dict(), separators=(",", ":")) + "\n" for op in ops)


def history_from_jsonl(text: str) -> list[Op]:
    return [Op.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]


class Event(NamedTuple):
    """One trace event. ``t`` is true time (observer only); ``clock`` is the node's reading."""

    kind: str
    node: int | None
    t: float
    clock: float | None
    lamport: int
    vc: tuple
    fields: dict

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "node": self.node,
            "t": self.t,
            "clock": self.clock,
            "lamport": self.lamport,
            "vc": list(self.vc),
            **({"fields": self.fields} if self.fields else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        return cls(d["kind"], d["node"], d["t"], d.get("clock"), d.get("lamport", 0),
                   tuple(d.get("vc", ())), d.get("fields", {}))
