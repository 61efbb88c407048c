"""Reading histories: what Jepsen, Knossos, Maelstrom and capgym write.

Every reader returns a :class:`History` (a ``list[Op]``, ``envs.world.records.Op``, that also
knows each operation's source line and how many non-client entries it skipped). For the Jepsen
formats, ``invoke`` and ``complete`` are event indices (the entry's position in the history), which
keeps real-time order exactly. Jepsen's completion types map to statuses as Jepsen means them:

* ``:ok``    -> ``"ok"``, the operation happened and ``:value`` is its result;
* ``:fail``  -> ``"fail"``, it did not happen (a read that ``:timed-out`` is ``"unknown"``);
* ``:info``, or an ``:invoke`` never completed -> ``"unknown"`` (``complete=None``).

A completion is matched to its process's outstanding invocation. Entries of processes that are not
clients (``:process :nemesis``, or any process that is not an integer) are skipped and counted in
``History.skipped_ops``. Fields the checker does not use (``:time``, ``:index``, ``:error``,
``:node`` ...) are ignored whatever their shape. Malformed input raises :class:`HistoryError`,
whose one-line message names the file and the line.

Formats:

``jepsen-log``  ``jepsen.util`` event lines, as Jepsen logs them: the old form
                ``INFO  jepsen.util - 3<TAB>:ok<TAB>:read<TAB>2`` and ``jepsen.log``'s form with a
                timestamp and thread, ``INFO [2019-04-17 17:38:16,855] jepsen worker 0 -
                jepsen.util 0<TAB>:invoke<TAB>:write<TAB>1``; a completion may carry its
                ``:error`` after the value. Other lines are ignored (they are other log output).
``jepsen-edn``  Jepsen's ``history.edn`` and Knossos's histories: one map a line
                (``{:process 0, :type :invoke, :f :write, :value 3, :time 1234, :index 0}``), or
                one EDN list or vector of maps (``;`` comments allowed), maps spread over lines,
                ``#jepsen.history.Op{...}`` records. ``:key`` is kept as the operation's key.
``jsonl``       one ``Op`` as a JSON object a line (``envs.world.records``).

EDN is read by the ``edn-format`` library; flat one-map-per-line files (the common case, 30x faster)
take a fast path for the subset they use, and anything it does not recognise goes to the library.
Values come out as Python data: keywords as ``":name"`` strings, vectors and lists as lists, maps
as dicts, sets as frozensets. :func:`independent` splits ``jepsen.independent``'s ``[key value]``
values into keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from envs.world.records import FAIL, OK, STATUSES, UNKNOWN, Op, history_from_jsonl
from metrics.models import freeze

FORMATS = ("jepsen-log", "jepsen-edn", "jsonl")
_TYPES = ("invoke", "ok", "fail", "info")


class Keyword(str):
    """An EDN keyword, ``:name``: a string that is not equal to the string ``":name"``."""

    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, Keyword) and str.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((Keyword, str.__str__(self)))

    def __repr__(self):
        return str.__str__(self)


TIMED_OUT = Keyword(":timed-out")


class HistoryError(ValueError):
    """Input that is not a history in the expected format; the message names file and line."""


class History(list):
    """A ``list[Op]`` with what its reader learned.

    ``lines[op.id]`` is where the operation's invocation was read (``"FILE:LINE"``, or
    ``"FILE: entry N"`` for a multi-line EDN document); ``skipped_ops`` counts the history entries
    (Jepsen's ops: an invocation and a completion are two) of non-client processes that were left out.
    """

    def __init__(self, ops=(), lines: dict | None = None, skipped_ops: int = 0):
        super().__init__(ops)
        self.lines = lines or {}
        self.skipped_ops = skipped_ops

    def where(self, op: Op) -> str | None:
        return self.lines.get(op.id)

    def locate(self, message: str) -> str | None:
        """Where the operation named by an ``"op N: ..."`` message was read, if known."""
        head = message.split(":", 1)[0]
        return self.lines.get(int(head[3:])) if head.startswith("op ") and head[3:].isdigit() else None


# --- EDN values ----------------------------------------------------------------------------------
# The fast path: nil, true/false, integers, "strings" with simple escapes, :keywords, [vectors].

_TOKEN = re.compile(r'\s*(?:(\[)|(\])|"((?:[^"\\]|\\[nrt"\\])*)"|(:[\w\-?!*+<>=.]+)|(-?\d+)(?![\w.])'
                    r'|(nil|true|false)(?![\w\-?!]))[\s,]*')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _edn_fast(text: str, pos: int):
    """One value of the fast subset at ``pos``: (value, end). Raises ValueError outside the subset."""
    m = _TOKEN.match(text, pos)
    if not m:
        raise ValueError(f"cannot read a value at {text[pos:pos + 20]!r}")
    opening, closing, string, keyword, integer, word = m.groups()
    if opening:
        items, pos = [], m.end()
        while True:
            m2 = _TOKEN.match(text, pos)
            if m2 and m2.group(2):
                return items, m2.end()
            item, pos = _edn_fast(text, pos)
            items.append(item)
    if closing:
        raise ValueError("unexpected ]")
    if string is not None:
        if "\\" in string:
            string = re.sub(r"\\(.)", lambda e: _ESCAPES[e.group(1)], string)
        return string, m.end()
    if keyword:
        return Keyword(keyword), m.end()
    if integer:
        return int(integer), m.end()
    return {"nil": None, "true": True, "false": False}[word], m.end()


def _edn_library():
    import edn_format

    return edn_format


_TAG_NAME = re.compile(r"handle tag \w*\(?([^()\s]+)\)?\s*$")


def _edn_loads_all(text: str) -> list:
    """Every top-level form of ``text``, through edn-format, converted by :func:`_plain`.

    Tags edn-format does not know (``#jepsen.history.Op{...}``, any record) read as their value.
    Raises ValueError with edn-format's reason.
    """
    edn = _edn_library()
    for _ in range(64):  # each round registers one unknown tag
        try:
            return [_plain(v) for v in edn.loads_all(text)]
        except NotImplementedError as e:
            m = _TAG_NAME.search(str(e))
            if not m:
                raise ValueError(str(e)) from None
            edn.add_tag(m.group(1), lambda v: v)
        except Exception as e:  # whatever the library raises on input it cannot read is bad input
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"not EDN: {reason[:120]}") from None
    raise ValueError("too many unknown tags")


def _plain(v):
    """An edn-format value as plain Python: keywords -> :class:`Keyword`, symbols -> str, vectors/lists ->
    list, maps -> dict, sets -> frozenset, characters -> str; numbers, strings, nil as they are."""
    edn = _edn_library()
    if isinstance(v, edn.Keyword):
        return Keyword(":" + v.name)
    if isinstance(v, edn.Symbol):
        return str(v)
    if isinstance(v, (str, int, float, type(None))):
        return v
    if isinstance(v, Mapping):
        return {freeze(_plain(k)): _plain(x) for k, x in v.items()}
    if isinstance(v, Sequence):
        return [_plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return frozenset(freeze(_plain(x)) for x in v)
    return v  # Decimal, Fraction, datetime (#inst), UUID (#uuid): hashable as they are


def parse_edn_value(text: str):
    """Parse one EDN value (any EDN; the common subset without the library). Raises ValueError."""
    try:
        value, pos = _edn_fast(text, 0)
        if pos == len(text):
            return value
    except (ValueError, KeyError):
        pass
    forms = _edn_loads_all(text)
    if len(forms) != 1:
        raise ValueError(f"expected one value, found {len(forms)}")
    return forms[0]


# one ``:key value`` pair of a flat map; the value a string, keyword, integer, nil/true/false or a
# flat vector, each ending at a separator (so ``:a/b``, ``1.5`` or ``#inst`` go to the library)
_END = r"(?=[\s,]|$)"
_EDN_PAIR = re.compile(r'\s*:([\w\-?!]+)\s+(?:"((?:[^"\\]|\\[nrt"\\])*)"' + _END + r"|(:[\w\-?!*+<>=.]+)" + _END
                       + r"|(-?\d+)" + _END + r"|(nil|true|false)" + _END + r"|(\[[^\[\]{}#\"]*\]))\s*,?")
_WORDS = {"nil": None, "true": True, "false": False}


def _edn_map_fast(line: str) -> dict:
    s = line.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError("expected a map {...}")
    body, pos, out = s[1:-1], 0, {}
    n, match = len(body), _EDN_PAIR.match
    while pos < n:
        m = match(body, pos)
        if not m:
            if not body[pos:].strip():
                break
            raise ValueError(f"cannot read a :key value pair at {body[pos:pos + 20]!r}")
        key, string, keyword, integer, word, vector = m.groups()
        if string is not None:
            value = re.sub(r"\\(.)", lambda e: _ESCAPES[e.group(1)], string) if "\\" in string else string
        elif keyword:
            value = Keyword(keyword)
        elif integer:
            value = int(integer)
        elif word:
            value = _WORDS[word]
        else:
            value, end = _edn_fast(vector, 0)
            if end != len(vector):
                raise ValueError(f"unexpected text {vector[end:]!r}")
        out[key] = value
        pos = m.end()
    return out


def parse_edn_map(line: str) -> dict:
    """Parse one EDN map on a line; top-level keyword keys lose their colon (``{:a 1}`` -> ``{"a": 1}``).

    Raises ValueError when the line is not exactly one map.
    """
    try:
        return _edn_map_fast(line)
    except (ValueError, KeyError):
        pass
    forms = _edn_loads_all(line)
    if len(forms) != 1 or not isinstance(forms[0], dict):
        what = "nothing" if not forms else f"{len(forms)} values" if len(forms) > 1 else type(forms[0]).__name__
        raise ValueError(f"expected a map {{...}}, found {what}")
    return _op_map(forms[0])


def _op_map(d: dict) -> dict:
    return {(k[1:] if isinstance(k, str) and k.startswith(":") else k): v for k, v in d.items()}


# --- turning Jepsen events into operations -------------------------------------------------------

def _is_client(process) -> bool:
    return isinstance(process, int) and not isinstance(process, bool)


class _Builder:
    """Pairs Jepsen invoke/complete events into operations, by process."""

    def __init__(self, where: str):
        self.where = where
        self.ops = History()
        self.open: dict = {}  # process -> its outstanding op
        self.index = 0  # event counter: the time of each event

    def event(self, loc: str, process, type_, f, value, key=None):
        """One history entry. ``loc`` is "FILE:LINE" for errors; ``type_`` and ``f`` without colon."""
        if not _is_client(process):
            self.ops.skipped_ops += 1
            return
        if type_ not in _TYPES:
            raise HistoryError(f"{loc}: unknown event type {type_!r} (expected :invoke, :ok, :fail or :info)")
        if not isinstance(f, str) or not f:
            raise HistoryError(f"{loc}: :f must be a keyword, got {f!r}")
        self.index += 1
        if type_ == "invoke":
            if process in self.open:  # a process runs one operation at a time (Jepsen, Knossos)
                before = self.ops.lines.get(self.open[process].id)
                raise HistoryError(f"{loc}: process {process} invokes again before its :invoke at {before} completed")
            op = Op(id=len(self.ops), process=process, f=f, value=value, key=key, invoke=self.index)
            self.ops.append(op)
            self.ops.lines[op.id] = loc
            self.open[process] = op
            return
        op = self.open.pop(process, None)
        if op is None:
            raise HistoryError(f"{loc}: :{type_} of process {process} without an :invoke")
        if op.f != f:
            raise HistoryError(f"{loc}: :{type_} :{f} completes an :invoke :{op.f}")
        if type_ == "ok":
            op.status, op.complete = OK, self.index
            if f in ("read", "get"):
                op.output = value
        elif type_ == "fail" and value != TIMED_OUT:
            op.status, op.complete = FAIL, self.index
        else:  # :info, or a read that timed out: may happen any time, or never
            op.status, op.complete = UNKNOWN, None

    def entry(self, loc: str, d) -> None:
        """One history entry given as a map (``process``, ``type``, ``f``, ``value``, ``key``)."""
        if not isinstance(d, dict):
            raise HistoryError(f"{loc}: expected a map {{:process .., :type .., :f ..}}, got {_short(d)}")
        if "process" not in d:
            raise HistoryError(f"{loc}: an entry without :process")
        if not _is_client(d["process"]):
            self.ops.skipped_ops += 1
            return
        for k in ("type", "f"):
            if k not in d:
                raise HistoryError(f"{loc}: an entry without :{k}")
        type_, f = d["type"], d["f"]
        if not isinstance(type_, str):
            raise HistoryError(f"{loc}: :type must be a keyword, got {_short(type_)}")
        type_ = type_[1:] if type_.startswith(":") else str(type_)  # (plain strings from Python dicts)
        if isinstance(f, str) and f.startswith(":"):
            f = f[1:]
        self.event(loc, d["process"], type_, f, d.get("value"), d.get("key"))


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


# ``jepsen.util`` lines: "INFO  jepsen.util - P<TAB>:type<TAB>:f<TAB>value[<TAB>error]", or with
# jepsen.log's "INFO [date time] thread - " before "jepsen.util P<TAB>...".
_LOG_LINE = re.compile(r"(?:^|\s)jepsen\.util(?:\s+-|:)?\s+(\S+)\s+:(\w[\w\-]*)\s+(\S+)(?:\s+(.*?))?\s*$")


def _log_value(raw: str):
    """The value of a jepsen.util line: the first EDN form (an ``:error`` may follow it)."""
    if not raw:
        return None
    try:
        value, end = _edn_fast(raw, 0)
        if end == len(raw) or raw[end - 1] in " \t,":
            return value
    except (ValueError, KeyError):
        pass
    forms = _edn_loads_all(raw.split("\t", 1)[0])
    if not forms:
        raise ValueError(f"cannot read a value at {raw[:20]!r}")
    return forms[0]


def read_jepsen_log(text: str, where: str = "<history>") -> History:
    """Parse a Jepsen log's ``jepsen.util`` event lines (both forms, see the module); other lines are ignored."""
    b = _Builder(where)
    for no, line in enumerate(text.splitlines(), 1):
        m = _LOG_LINE.search(line)
        if not m:
            continue
        proc, type_, f, raw = m.groups()
        loc = f"{where}:{no}"
        if not re.fullmatch(r"-?\d+", proc):  # :nemesis, or another non-client process
            b.ops.skipped_ops += type_ in _TYPES  # (other lines that name jepsen.util are not events)
            continue
        if not f.startswith(":") or len(f) == 1:
            raise HistoryError(f"{loc}: malformed jepsen.util event: :f must be a keyword, got {f!r}")
        try:
            value = _log_value(raw)
        except ValueError as e:
            raise HistoryError(f"{loc}: malformed jepsen.util event: {e}") from None
        b.event(loc, int(proc), type_, f[1:], value)
    return b.ops


def read_jepsen_edn(text: str, where: str = "<history>") -> History:
    """Parse a Jepsen/Knossos EDN history: a map a line, or one EDN document (see the module)."""
    entries = _edn_lines(text, where)
    if entries is None:  # not one map a line: read the document whole
        entries = _edn_document(text, where)
    b = _Builder(where)
    for loc, d in entries:
        b.entry(loc, d)
    return b.ops


def _edn_lines(text: str, where: str):
    """[(loc, map)] when every line holds one map (a list's brackets may open and close the
    first and last), else None. A line the library cannot read at all raises HistoryError."""
    lines = [(no, s) for no, s in ((no, line.strip()) for no, line in enumerate(text.splitlines(), 1))
             if s and not s.startswith(";")]
    if not lines:
        return []
    first, last = lines[0][1], lines[-1][1]
    if first[:1] in "[(":
        closing = "]" if first[0] == "[" else ")"
        if not last.endswith(closing):
            return None
        lines[0] = (lines[0][0], first[1:].strip())
        lines[-1] = (lines[-1][0], lines[-1][1][:-1].strip())
        lines = [(no, s) for no, s in lines if s]
    out = []
    for no, s in lines:
        try:
            out.append((f"{where}:{no}", _edn_map_fast(s)))
            continue
        except (ValueError, KeyError):
            pass
        if not (s.startswith("{") or s.startswith("#")):
            return None  # part of a map or list spread over lines
        try:
            forms = _edn_loads_all(s)
        except ValueError as e:
            try:  # a map spread over lines can still be a valid document
                return _edn_document(text, where)
            except HistoryError:
                raise HistoryError(f"{where}:{no}: malformed EDN entry: {e}") from None
        if len(forms) != 1:
            return None
        d = forms[0]
        out.append((f"{where}:{no}", _op_map(d) if isinstance(d, dict) else d))
    return out


def _edn_document(text: str, where: str):
    """A whole EDN document: one list/vector of maps, or maps one after another."""
    try:
        forms = _edn_loads_all(text)
    except ValueError as e:
        m = re.search(r"lexpos (\d+)", str(e))
        loc = f"{where}:{text.count(chr(10), 0, int(m.group(1))) + 1}" if m else where
        raise HistoryError(f"{loc}: malformed EDN: {e}") from None
    if len(forms) == 1 and isinstance(forms[0], list):
        forms = forms[0]
    return [(f"{where}: entry {i}", _op_map(d) if isinstance(d, dict) else d) for i, d in enumerate(forms, 1)]


def read_jsonl(text: str, where: str = "<history>") -> History:
    """Parse capgym's own JSON Lines history (``envs.world.records.history_from_jsonl``), checking each line."""
    ops = History()
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        loc = f"{where}:{no}"
        try:
            (op,) = history_from_jsonl(line)
        except (ValueError, TypeError, RecursionError) as e:
            raise HistoryError(f"{loc}: not an operation record: {str(e)[:120]}") from None
        times = (op.invoke,) if op.complete is None else (op.invoke, op.complete)
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in times):
            raise HistoryError(f"{loc}: invoke and complete must be finite numbers")
        if not isinstance(op.id, int) or isinstance(op.id, bool):
            raise HistoryError(f"{loc}: id must be an integer, got {_short(op.id)}")
        if not isinstance(op.f, str) or not op.f:
            raise HistoryError(f"{loc}: f must be an operation name (a string), got {_short(op.f)}")
        if op.status not in STATUSES:
            raise HistoryError(f"{loc}: unknown status {_short(op.status)}")
        if op.status != UNKNOWN and op.complete is None:
            raise HistoryError(f"{loc}: a {op.status} operation needs a completion time")
        if op.complete is not None and op.complete < op.invoke:
            raise HistoryError(f"{loc}: completes before it is invoked")
        ops.lines.setdefault(op.id, loc)
        ops.append(op)
    return ops


READERS = {"jepsen-log": read_jepsen_log, "jepsen-edn": read_jepsen_edn, "jsonl": read_jsonl}


def detect_format(text: str, where: str = "<history>") -> str:
    """Guess the format from the first 1000 lines: EDN (a map ``{:``, a record ``#...{``, or a list
    or vector), JSON (``{"``), or ``jepsen.util`` event lines among other log output."""
    lines = [s for s in (line.strip() for line in text.splitlines()[:1000]) if s and not s.startswith(";")]
    if lines:
        head = lines[0]
        if head.startswith("{"):
            return "jsonl" if re.match(r'\{\s*"', head) else "jepsen-edn"
        if re.match(r"(#[\w.\-/]+\s*)?[\[({]", head) and not _LOG_LINE.search(head):
            return "jepsen-edn"
    if any(_LOG_LINE.search(s) for s in lines):
        return "jepsen-log"
    raise HistoryError(f"{where}: cannot tell the history format (use --format {'|'.join(FORMATS)})")


def read_history(path: str | Path, fmt: str = "auto") -> History:
    """Read a history file in ``fmt`` (one of FORMATS, or ``"auto"`` to detect it). Raises HistoryError."""
    where = str(path)
    if fmt != "auto" and fmt not in READERS:
        raise HistoryError(f"unknown history format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # (a byte-order mark is dropped)
    except (OSError, UnicodeDecodeError) as e:
        raise HistoryError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    given = fmt != "auto"
    if not given:
        fmt = detect_format(text, where)
    ops = READERS[fmt](text, where)
    if not ops:  # an empty file, or a format that is not the file's: nothing to judge is not a verdict
        skipped = f" ({ops.skipped_ops} non-client entries skipped)" if ops.skipped_ops else ""
        hint = f" read as {fmt}: is it another format?" if given and text.strip() else ""
        raise HistoryError(f"{where}: no client operations{skipped}{hint}")
    return ops


def read_entries(entries: list[dict], where: str = "<history>") -> History:
    """Jepsen history entries given as Python dicts (``{"process": 0, "type": "invoke", "f": "write",
    "value": 3}``; keys and keywords with or without a colon), paired into operations."""
    b = _Builder(where)
    for i, d in enumerate(entries, 1):
        if isinstance(d, dict):
            d = {(k[1:] if isinstance(k, str) and k.startswith(":") else k): v for k, v in d.items()}
        b.entry(f"{where}: entry {i}", d)
    return b.ops


# --- jepsen.independent --------------------------------------------------------------------------

def independent(ops: list[Op], where: str = "<history>") -> History:
    """Split ``jepsen.independent``'s ``[key value]`` values into one history per key.

    Each operation's ``value`` must be a pair ``[k v]``; it becomes ``key=k, value=v`` (a cas
    ``[k [from to]]`` becomes ``value=[from, to]``, as Maelstrom's lin-kv writes it), and a read's
    output ``[k v]`` becomes ``v``. Raises HistoryError naming the operation that is not a pair, or
    an operation that already has a key.
    """
    lines = getattr(ops, "lines", {})
    out = History(lines=dict(lines), skipped_ops=getattr(ops, "skipped_ops", 0))
    for op in ops:
        loc = lines.get(op.id) or f"{where}: op {op.id}"
        if op.key is not None:
            raise HistoryError(f"{loc}: --independent: the operation already has a key ({_short(op.key)})")
        if not (isinstance(op.value, (list, tuple)) and len(op.value) == 2):
            raise HistoryError(f"{loc}: --independent needs [key value] values, got {_short(op.value)}")
        k, v = op.value
        output = op.output
        if op.status == OK and op.f in ("read", "get") and output is not None:
            if not (isinstance(output, (list, tuple)) and len(output) == 2):
                raise HistoryError(f"{loc}: --independent: the read returned {_short(output)}, not [key value]")
            if output[0] != k:
                raise HistoryError(f"{loc}: --independent: a read of key {_short(k)} returned key {_short(output[0])}")
            output = output[1]
        out.append(Op(op.id, op.process, op.f, v, freeze(k), op.node, op.invoke, op.complete, op.status, output))
    return out
