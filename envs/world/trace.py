"""The trace: every event of a run, in the order it happened, as the observer sees it.

Events are stored as plain tuples ``(kind, node, t, clock, lamport, fields)`` while the run goes
(cheap to append); ``fields`` is either a dict or a tuple whose names are given by :data:`FIELDS`
for the kinds the runtime records. :meth:`Trace.events` yields them as
:class:`~envs.world.records.Event`. The kinds are listed in ``docs/trace.md``.

Vector clocks are kept by replaying the trace incrementally (:meth:`Trace.replay`): every node
event ticks its node's entry, and a ``recv`` first merges the clock its message's ``send`` had. This
is exactly the textbook rule (Fidge 1988, Mattern 1989), computed on demand, on the events recorded
so far, so the simulator's hot loop carries no clock vectors; ``ctx.vclock`` replays up to now.
Lamport clocks are kept eagerly by the runtime.

Exports: JSON Lines (optionally gzip-compressed) and a ShiViz log (https://bestchai.bitbucket.io/shiviz/):
a regular expression on the first line, a blank line, then for each node event a line with its text
followed by a line ``host {"host": count, ...}`` giving its vector clock.
"""

from __future__ import annotations

import gc
import gzip
import json
from collections.abc import Callable, Iterator
from typing import IO

from .records import Event

#: field names of the tuple-encoded kinds the runtime records
FIELDS = {
    "start": ("restart",),
    "crash": (),
    "pause": (),
    "resume": (),
    "slow": ("factor",),
    "send": ("dst", "mid", "msg"),
    "recv": ("src", "mid", "msg"),
    "drop": ("src", "dst", "mid", "why"),
    "timer": ("name",),
    "client": ("op", "f"),
    "reply": ("op", "status"),
    "ask": ("point",),
    "decision": ("point", "action"),
    "partition": ("cuts", "shape"),
    "heal": (),
    "loss": ("value",),
    "clock": ("fault", "value"),
}

SHIVIZ_REGEX = r"(?<event>.*)\n(?<host>\S*) (?<clock>{.*})"


def host(node: int) -> str:
    return f"n{node}"


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


class Exports:
    """JSON Lines and ShiViz exports of anything with ``events()`` (vector clocks included)."""

    def exported(self) -> Iterator[Event]:
        """The events to export, with their vector clocks."""
        return self.events()

    def write_jsonl(self, f: IO[str]) -> None:
        dumps = json.dumps
        for e in self.exported():
            f.write(dumps(_jsonable(e.to_dict()), separators=(",", ":")) + "\n")

    def save_jsonl(self, path: str) -> None:
        """Write the trace as JSON Lines; gzip-compressed when ``path`` ends in ``.gz``."""
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as f:
            self.write_jsonl(f)

    def write_shiviz(self, f: IO[str]) -> None:
        f.write(SHIVIZ_REGEX + "\n\n")
        for e in self.exported():
            if e.node is None:
                continue
            clock = {host(i): c for i, c in enumerate(e.vc) if c}
            text = e.kind + ("" if not e.fields else " " + json.dumps(_jsonable(e.fields), sort_keys=True))
            f.write(f"{text}\n{host(e.node)} {json.dumps(clock)}\n")

    def save_shiviz(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            self.write_shiviz(f)



class EventTrace(Exports):
    """A trace that is already a list of :class:`Event` (a live run's, or one read from a file)."""

    def __init__(self, events: list[Event]):
        self.raw_events = list(events)

    def __len__(self) -> int:
        return len(self.raw_events)

    def events(self, kinds: set | None = None) -> Iterator[Event]:
        return iter(self.raw_events) if kinds is None else (e for e in self.raw_events if e.kind in kinds)

    def __iter__(self) -> Iterator[Event]:
        return self.events()


class Trace(Exports):
    def __init__(self, n: int, keep_sent: bool = False, messages: bool = True):
        self.n = n
        self.messages = messages  # send/recv recorded: without them vector clocks cannot be derived
        self._raw: list[tuple] = []
        self._flush = self._buffered = None  # set by follow()
        self.vcs: list[tuple] = []  # vector clock of raw[i], for the replayed prefix
        self._vc = [[0] * n for _ in range(n)]
        self._sent: dict[int, tuple] = {}  # message id -> vector clock of its send
        self._keep_sent = keep_sent  # a duplicated message is received more than once
        self._sink = None  # set by stream()
        self.buffer = 0
        self.drained = 0  # events handed to the sink and forgotten
        self._replayed = False  # replay() has run: its state must follow every event

    def stream(self, sink: Callable[[list], None], buffer: int = 65536) -> None:
        """Stream the trace: from now on :meth:`drain` hands the events recorded so far to
        ``sink(records)`` (a list of raw tuples, in order) and forgets them, and :meth:`maybe_drain`
        does so once ``buffer`` events are waiting. Vector clocks (``ctx.vclock``) keep working:
        the replay's state is carried over, only its per-event record is dropped."""
        self._sink, self.buffer = sink, buffer

    def drain(self) -> None:
        """Hand every event recorded so far to the sink and drop it from memory."""
        raw = self.raw
        if self._sink is None or not raw:
            return
        if self._replayed:  # someone read vector clocks: keep the replay's state up to the last event
            self.replay()
        # the sink makes a few objects per event and no cycles: a cyclic-GC pass over a big run's
        # heap every few hundred of them would cost more than the writing (as in the core's loop)
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            self._sink(raw)
        finally:
            if gc_was_on:
                gc.enable()
        self.drained += len(raw)
        raw.clear()  # in place: the core appends to this list
        self.vcs.clear()

    def maybe_drain(self) -> None:
        """:meth:`drain` when the buffer is full."""
        if self._sink is not None and len(self) - self.drained >= self.buffer:
            self.drain()

    def follow(self, raw: list, flush: Callable[[], None], buffered: Callable[[], int]) -> None:
        """Take events from a runtime that buffers them: ``flush()`` appends them to ``raw`` (in the
        order they happened) and ``buffered()`` counts those not yet appended."""
        self._raw, self._flush, self._buffered = raw, flush, buffered

    @property
    def raw(self) -> list[tuple]:
        """Every event so far, as tuples ``(kind, node, t, clock, lamport, fields)``."""
        if self._flush is not None:
            self._flush()
        return self._raw

    def __len__(self) -> int:
        """Events recorded so far (drained ones included)."""
        return self.drained + len(self._raw) + (self._buffered() if self._buffered is not None else 0)

    def replay(self) -> None:
        """Bring the vector clocks up to the last recorded event."""
        raw, vcs, clocks, sent = self.raw, self.vcs, self._vc, self._sent
        self._replayed = True
        if not self.messages:  # no causal record to derive them from
            vcs.extend([()] * (len(raw) - len(vcs)))
            return
        append = vcs.append
        for i in range(len(vcs), len(raw)):
            r = raw[i]
            node = r[1]
            if node is None:
                append(())
                continue
            v = clocks[node]
            kind = r[0]
            if kind == "recv":
                mid = r[5][1]
                sv = sent.get(mid) if self._keep_sent else sent.pop(mid, None)
                if sv is not None:
                    v = clocks[node] = list(map(max, v, sv))
            v[node] += 1
            tv = tuple(v)
            append(tv)
            if kind == "send":
                sent[r[5][1]] = tv

    def vclock(self, node: int) -> tuple:
        """Node ``node``'s vector clock after the last recorded event."""
        if not self.messages:
            raise RuntimeError("vector clocks need the full trace: run the Sim with full_trace=True")
        self.replay()
        return tuple(self._vc[node])

    def event(self, i: int) -> Event:
        self.replay()
        r = self.raw[i]
        fields = r[5]
        if type(fields) is tuple:
            fields = dict(zip(FIELDS[r[0]], fields))
        return Event(r[0], r[1], r[2], r[3], r[4], self.vcs[i], fields)

    def records(self, kinds: set | None = None) -> Iterator[tuple]:
        """The raw records ``(kind, node, t, clock, lamport, fields)`` without vector clocks: cheap.
        ``fields`` is a dict for protocol records and a tuple (names in :data:`FIELDS`) otherwise."""
        if kinds is None:
            return iter(self.raw)
        return (r for r in self.raw if r[0] in kinds)

    def events(self, kinds: set | None = None) -> Iterator[Event]:
        self.replay()
        names = FIELDS
        for r, vc in zip(self.raw, self.vcs):
            if kinds is None or r[0] in kinds:
                fields = r[5]
                if type(fields) is tuple:
                    fields = dict(zip(names[r[0]], fields))
                yield Event(r[0], r[1], r[2], r[3], r[4], vc, fields)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

def load_jsonl(path: str) -> list[Event]:
    """Read a trace written by :meth:`Trace.save_jsonl` (plain or ``.gz``)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [Event.from_dict(json.loads(line)) for line in f if line.strip()]
