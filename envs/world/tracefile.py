"""The trace on disk: Parquet, written while the run goes, read back in batches.

A run's trace streams into ``trace.parquet`` (:class:`TraceWriter`): the sim's
:class:`~envs.world.trace.Trace` hands it the events recorded so far whenever its buffer fills
(:meth:`~envs.world.trace.Trace.drain`), and each batch becomes one Parquet row group, so the
memory a trace takes is bounded by its buffer, not by the run. :class:`TraceFile` reads it back one
row group at a time: events, only some kinds, or columnar counts without making any event.

Columns (one row per event, in the order the events happened; ``docs/trace.md`` has the schema):

=========  ==========  ==================================================================
``kind``   string      the event's kind (``send``, ``recv``, ``timer``, ``leader``, ...)
``node``   int32       the node it happened at; null for world events (faults, drops)
``t``      float64     true time, ms (observer only)
``clock``  float64     the node's own clock reading, ms; null for world events
``lamport`` int64      the node's Lamport clock after the event (0 for world events)
``src``    int32       ``send``/``recv``/``drop``: the sender
``dst``    int32       ``send``/``recv``/``drop``: the receiver
``mid``    int64       ``send``/``recv``/``drop``: the message id
``msg``    string      ``send``/``recv``: the message type (its JSON text when not a string)
``fields`` string      every other field, as one JSON object (null when there are none)
=========  ==========  ==================================================================

Vector clocks are not stored as vectors: they are a function of the columns above (every node
event ticks its node's entry; a ``recv`` first merges the clock of the ``send`` its ``mid`` names:
Fidge 1988, Mattern 1989). :meth:`TraceFile.events` with ``vc=True`` rebuilds them on demand by
replaying the file, holding one vector per node and one per message in flight.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .records import Event
from .trace import Exports

#: format version, in the file's metadata (``capgym.trace``)
VERSION = "1"
#: events per row group (the writer's buffer)
BATCH = 65536
#: rows made into :class:`Event` objects at a time when reading (a bounded window of them)
CHUNK = 8192
#: kinds whose fields are columns, not JSON
MESSAGE_KINDS = ("send", "recv", "drop")

SCHEMA = pa.schema([
    ("kind", pa.string()), ("node", pa.int32()), ("t", pa.float64()), ("clock", pa.float64()),
    ("lamport", pa.int64()), ("src", pa.int32()), ("dst", pa.int32()), ("mid", pa.int64()),
    ("msg", pa.string()), ("fields", pa.string()),
])


def _jsonable(v):
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


def _text(v) -> str | None:
    return v if v is None or type(v) is str else json.dumps(_jsonable(v), separators=(",", ":"))


class TraceWriter:
    """Writes trace records to a Parquet file as they come.

    ``path``: where the file goes; it is written under a temporary name beside it and moved into
    place by :meth:`close`, so a reader never sees half a file. ``n``: the number of nodes (kept in
    the metadata). ``names``: field names of the tuple-encoded kinds (``trace.FIELDS``).
    """

    def __init__(self, path: str | Path, n: int, names: dict):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.n, self.names, self.rows = n, names, 0
        meta = {b"capgym.trace": VERSION.encode(), b"capgym.nodes": str(n).encode()}
        self._w = pq.ParquetWriter(self.tmp, SCHEMA.with_metadata(meta), compression="zstd")

    def write(self, records: Iterable[tuple]) -> None:
        """Append records ``(kind, node, t, clock, lamport, fields)``: ``fields`` a tuple named by
        ``names[kind]`` or a dict. Writes one row group per :data:`BATCH` records."""
        batch = []
        for r in records:
            batch.append(r)
            if len(batch) == BATCH:
                self._write_batch(batch)
                batch = []
        if batch:
            self._write_batch(batch)

    def _write_batch(self, records: list[tuple]) -> None:
        kind, node, t, clock, lam, fs = zip(*records)  # columns, transposed in C
        # the message columns of send and recv (most of a trace) in one pass; the rest one by one
        other = self._other
        tup = tuple
        rows = [(nd, f[0], f[1], f[2], None) if k == "send" and type(f) is tup
                else (f[0], nd, f[1], f[2], None) if k == "recv" and type(f) is tup
                else other(k, nd, f) for k, nd, f in zip(kind, node, fs)]
        src, dst, mid, msg, fields = zip(*rows)
        if not all(type(m) is str for m in msg if m is not None):  # a message type that is not a string
            msg = [_text(m) for m in msg]
        cols = [kind, node, t, clock, lam, src, dst, mid, msg, fields]
        self._w.write_table(pa.Table.from_arrays([pa.array(c, type=fd.type) for c, fd in zip(cols, SCHEMA)],
                                                 schema=self._w.schema))
        self.rows += len(records)

    def _other(self, k: str, nd, f) -> tuple:
        """``(src, dst, mid, msg, fields)`` of an event other than a runtime's send or recv."""
        if type(f) is dict:  # a protocol record, or an event read back from a file
            if k in MESSAGE_KINDS:
                f = dict(f)
                s, d, m = f.pop("src", nd), f.pop("dst", nd), f.pop("mid", None)
                g = _text(f.pop("msg", None)) if k != "drop" else None
                return s, d, m, g, (_text(f) if f else None)
            return None, None, None, None, (_text(f) if f else None)
        if k == "drop":
            return f[0], f[1], f[2], None, _text({"why": f[3]})
        return None, None, None, None, (_text(dict(zip(self.names[k], f))) if f else None)

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        self._w.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the file (nothing is left behind)."""
        try:
            self._w.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_events(path: str | Path, events: Iterable[Event], n: int) -> Path:
    """Write :class:`Event` objects (a live run's, or a list) as a trace file; vector clocks are not
    stored (they are rebuilt from the messages on reading)."""
    w = TraceWriter(path, n, {})
    try:
        w.write((e.kind, e.node, e.t, e.clock, e.lamport, dict(e.fields)) for e in events)
    except BaseException:
        w.abort()
        raise
    return w.close()


class TraceFile(Exports):
    """A trace file, read one row group at a time (memory bounded by a row group).

    ``len(tf)`` is its number of events; ``tf.n`` its number of nodes. Iterating gives
    :class:`Event` objects without vector clocks (``vc == ()``); :meth:`events` can filter by kind
    and rebuild vector clocks. Raises ``ValueError`` (one line) for a file that is not a trace.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._pf = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as e:
            raise ValueError(f"{self.path}: not a Parquet trace ({e})") from None
        meta = self._pf.schema_arrow.metadata or {}
        if b"capgym.trace" not in meta:
            raise ValueError(f"{self.path}: a Parquet file but not a capgym trace (no capgym.trace metadata)")
        self.n = int(meta[b"capgym.nodes"])
        self._counts: dict = {}

    def __len__(self) -> int:
        return self._pf.metadata.num_rows

    def exported(self) -> Iterator[Event]:
        return self.events(vc=True)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def _batches(self, columns: list[str] | None = None, kinds: Iterable[str] | None = None,
                 exclude: Iterable[str] | None = None, exclude_nodes: Iterable[int] = ()):
        """The file's rows one row group at a time (``columns`` only), keeping the rows of ``kinds``,
        none of ``exclude``, and none of the nodes in ``exclude_nodes`` (world events and ``byzantine``
        marks kept). With a filter, each row group's ``kind`` (and ``node``) column is read first and a
        row group with no row to keep is skipped without reading the rest."""
        want = None if kinds is None else pa.array(sorted(kinds), pa.string())
        skip = None if exclude is None else pa.array(sorted(exclude), pa.string())
        drop = sorted(exclude_nodes)
        head = ["kind", "node"] if drop else ["kind"]
        for i in range(self._pf.num_row_groups):
            if want is None and skip is None and not drop:
                yield self._pf.read_row_group(i, columns=columns)
                continue
            hd = self._pf.read_row_group(i, columns=head)
            mask = None
            if want is not None:
                mask = pc.is_in(hd["kind"], value_set=want)
            if skip is not None:
                m = pc.invert(pc.is_in(hd["kind"], value_set=skip))
                mask = m if mask is None else pc.and_(mask, m)
            if drop:
                node = hd["node"]
                m = pc.or_(pc.is_null(node), pc.invert(pc.fill_null(pc.is_in(node, value_set=pa.array(drop, node.type)),
                                                                    False)))
                m = pc.or_(m, pc.equal(hd["kind"], "byzantine"))
                mask = m if mask is None else pc.and_(mask, m)
            kept = pc.sum(mask).as_py() or 0
            if not kept:
                continue
            tb = self._pf.read_row_group(i, columns=columns)
            yield tb if kept == len(tb) else tb.filter(mask)

    def events(self, kinds: Iterable[str] | None = None, vc: bool = False,
               exclude: Iterable[str] | None = None, exclude_nodes: Iterable[int] = (),
               chunk: int | None = None) -> Iterator[Event]:
        """The events in order, as :class:`Event`; only ``kinds`` (a set of names) when given, none
        of ``exclude``, none of the nodes in ``exclude_nodes`` (world events and the ``byzantine`` marks
        kept, as :func:`metrics.byzantine.correct_view` keeps them); ``vc=True`` rebuilds each node
        event's vector clock (world events get ``()``; not with ``exclude_nodes``).

        Events are made ``chunk`` rows at a time (default :data:`CHUNK`), so what is held at once is
        one row group's columns and one chunk's events, whatever the file's length."""
        if vc:
            if exclude_nodes:
                raise ValueError("events(vc=True) replays every node: exclude_nodes does not apply")
            yield from self._with_vc(kinds, exclude)
            return
        for tb in self._batches(kinds=kinds, exclude=exclude, exclude_nodes=exclude_nodes):
            yield from _events(tb, chunk or CHUNK)

    def span(self, exclude: Iterable[str] | None = None, exclude_nodes: Iterable[int] = ()) -> dict:
        """Columnar facts of the events :meth:`events` would give with the same filters, without
        making them: ``events`` (how many), ``first_t`` and ``last_t`` (the true times of the first
        and last, ``None`` when there are none) and ``nodes`` (the sorted ids of their nodes)."""
        n, first, last, nodes = 0, None, None, set()
        for tb in self._batches(columns=["kind", "node", "t"], exclude=exclude, exclude_nodes=exclude_nodes):
            if not len(tb):
                continue
            n += len(tb)
            if first is None:
                first = tb["t"][0].as_py()
            last = tb["t"][-1].as_py()
            nodes.update(pc.unique(tb["node"].drop_null()).to_pylist())
        return {"events": n, "first_t": first, "last_t": last, "nodes": sorted(nodes)}

    def _with_vc(self, kinds, exclude) -> Iterator[Event]:
        n = self.n
        clocks = [[0] * n for _ in range(n)]
        sent: dict[int, tuple] = {}
        for tb in self._batches():
            for e in _events(tb, CHUNK):
                node = e.node
                if node is None:
                    v = ()
                else:
                    cur = clocks[node]
                    if e.kind == "recv":
                        sv = sent.pop(e.fields["mid"], None)  # (a duplicate's second merge is a no-op)
                        if sv is not None:
                            cur = clocks[node] = list(map(max, cur, sv))
                    cur[node] += 1
                    v = tuple(cur)
                    if e.kind == "send":
                        sent[e.fields["mid"]] = v
                if (kinds is None or e.kind in kinds) and (exclude is None or e.kind not in exclude):
                    yield e._replace(vc=v)

    def repeated_mids(self) -> set:
        """The ids of the messages with more than one ``recv`` or ``drop`` (duplicated ones), from the
        columns: a reader replaying vector clocks can let go of every other send's clock at its one
        receive or drop."""
        chunks = [c for tb in self._batches(columns=["kind", "mid"], kinds=("recv", "drop")) for c in tb["mid"].chunks]
        if not chunks:
            return set()
        vc = pc.value_counts(pa.chunked_array(chunks, pa.int64()))
        return set(vc.field("values").filter(pc.greater(vc.field("counts"), 1)).to_pylist())

    def counts(self, exclude_nodes: Iterable[int] = (), only_nodes: Iterable[int] | None = None) -> dict:
        """Columnar counts, without making events: ``kinds`` (events per kind), ``sends_by_msg``
        (``send`` events per message type) and ``drops_by_why``. ``exclude_nodes``: leave out the
        events of these nodes (world events, whose node is null, and the ``byzantine`` marks are
        kept, as :func:`metrics.byzantine.correct_view` keeps them); ``only_nodes``: count only the
        events of these nodes. A file does not change once written: each answer is kept (a copy is
        returned), so the measures, the plots and the report read the file for it once."""
        key = (tuple(sorted(exclude_nodes)), None if only_nodes is None else tuple(sorted(only_nodes)))
        if key not in self._counts:
            self._counts[key] = self._count(*key)
        return {k: dict(v) for k, v in self._counts[key].items()}

    def _count(self, exclude_nodes: tuple, only_nodes: tuple | None) -> dict:
        kinds: Counter = Counter()
        by_msg: Counter = Counter()
        by_why: Counter = Counter()
        exclude = pa.array(sorted(exclude_nodes), pa.int64())
        only = None if only_nodes is None else pa.array(sorted(only_nodes), pa.int64())
        for tb in self._batches(columns=["kind", "node", "msg", "fields"]):
            if len(exclude):
                keep = pc.or_kleene(pc.is_null(tb["node"]), pc.invert(pc.is_in(tb["node"], value_set=exclude)))
                tb = tb.filter(pc.or_kleene(keep, pc.equal(tb["kind"], "byzantine")))
            if only is not None:
                tb = tb.filter(pc.fill_null(pc.is_in(tb["node"], value_set=only), False))
            for row in tb.group_by("kind").aggregate([("kind", "count")]).to_pylist():
                kinds[row["kind"]] += row["kind_count"]
            sends = tb.filter(pc.equal(tb["kind"], "send"))
            for row in sends.group_by("msg").aggregate([("kind", "count")]).to_pylist():
                by_msg[str(row["msg"])] += row["kind_count"]
            drops = tb.filter(pc.equal(tb["kind"], "drop"))
            for f in drops["fields"].to_pylist():
                by_why[str(json.loads(f)["why"]) if f else "None"] += 1
        return {"kinds": dict(kinds), "sends_by_msg": dict(by_msg), "drops_by_why": dict(by_why)}


_FLAT = frozenset((int, float, str, bool, type(None)))


def _events(tb: pa.Table, chunk: int = 0) -> Iterator[Event]:
    """The rows of ``tb`` as events, made ``chunk`` rows at a time (all at once when 0)."""
    if chunk and len(tb) > chunk:
        for i in range(0, len(tb), chunk):
            yield from _events(tb.slice(i, chunk))
        return
    cols = tb.to_pydict()
    loads = json.loads
    # the same text parsed once a chunk (gossip's apply of a value at every node: 98% repeats), and
    # each event given its own copy; only for flat objects of immutable values, so no two events share
    # anything they could change
    parsed: dict[str, dict] = {}
    for k, nd, t, c, la, s, d, m, g, f in zip(cols["kind"], cols["node"], cols["t"], cols["clock"],
                                              cols["lamport"], cols["src"], cols["dst"], cols["mid"],
                                              cols["msg"], cols["fields"]):
        if f is None:
            fields = {}
        else:
            fields = parsed.get(f)
            if fields is None:
                fields = loads(f)
                if all(type(v) in _FLAT for v in fields.values()):
                    parsed[f] = fields
                    fields = fields.copy()
            else:
                fields = fields.copy()
        if k == "send":
            fields = {"dst": d, "mid": m, "msg": g, **fields}
        elif k == "recv":
            fields = {"src": s, "mid": m, "msg": g, **fields}
        elif k == "drop":
            fields = {"src": s, "dst": d, "mid": m, **fields}
        yield Event(k, nd, t, c, la, (), fields)
