"""Reading histories: Jepsen register logs, Jepsen EDN key-value histories and capgym's JSON Lines.

Every reader returns ``list[Op]`` (``envs.world.records.Op``). For the Jepsen formats, ``invoke``
and ``complete`` are event indices (the line's position among the history's events), which keeps
real-time order exactly. Jepsen's completion types map to statuses as Jepsen means them:

* ``:ok``    -> ``"ok"``, the operation happened and ``:value`` is its result;
* ``:fail``  -> ``"fail"``, it did not happen (a read that ``:timed-out`` is ``"unknown"``);
* ``:info``, or an ``:invoke`` never completed -> ``"unknown"`` (``complete=None``).

A completion is matched to its process's outstanding invocation. Malformed input raises
:class:`HistoryError`, whose message names the file and the line.

Formats (see ``../shared/data/porcupine/README.md`` for the Jepsen ones):

``jepsen-log``  ``INFO  jepsen.util - 3<TAB>:ok<TAB>:read<TAB>2``; lines that are not
                ``jepsen.util`` event lines are ignored (they are other log output).
``jepsen-edn``  ``{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}``, one map a
                line; keys are kept as strings.
``jsonl``       one ``Op`` as a JSON object a line (``envs.world.records``).
"""

from __future__ import annotations

import re
from pathlib import Path

from envs.world.records import FAIL, OK, STATUSES, UNKNOWN, Op, history_from_jsonl

FORMATS = ("jepsen-log", "jepsen-edn", "jsonl")


class HistoryError(ValueError):
    """Input that is not a history in the expected format; the message names file and line."""


# --- EDN-like values: nil, true/false, integers, "strings", :keywords, [vectors] ---------------

_TOKEN = re.compile(r'\s*(?:(\[)|(\])|"((?:[^"\\]|\\.)*)"|(:[^\s,\[\]{}"]+)|(-?\d+)|(nil|true|false))[\s,]*')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_edn_value(text: str):
    """Parse one EDN scalar or vector (the subset Jepsen histories use). Raises ValueError."""
    value, pos = _edn_at(text, 0)
    if pos != len(text):
        raise ValueError(f"unexpected text {text[pos:]!r}")
    return value


def _edn_at(text: str, pos: int):
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
            item, pos = _edn_at(text, pos)
            items.append(item)
    if closing:
        raise ValueError("unexpected ]")
    if string is not None:
        return re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), string), m.end()
    if keyword:
        return keyword, m.end()
    if integer:
        return int(integer), m.end()
    return {"nil": None, "true": True, "false": False}[word], m.end()


_EDN_PAIR = re.compile(r'\s*:([\w\-?!]+)\s+((?:"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^,}\s]+))\s*,?')


def parse_edn_map(line: str) -> dict:
    """Parse a flat EDN map ``{:k v, ...}`` whose values are scalars or vectors."""
    s = line.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError("expected a map {...}")
    body, pos, out = s[1:-1], 0, {}
    while pos < len(body):
        m = _EDN_PAIR.match(body, pos)
        if not m:
            raise ValueError(f"cannot read a :key value pair at {body[pos:pos + 20]!r}")
        out[m.group(1)] = parse_edn_value(m.group(2))
        pos = m.end()
    return out


# --- turning Jepsen events into operations -------------------------------------------------------

class _Builder:
    """Pairs Jepsen invoke/complete events into operations, by process."""

    def __init__(self, where: str):
        self.where = where
        self.ops: list[Op] = []
        self.open: dict = {}  # process -> its outstanding op
        self.index = 0  # event counter: the time of each event

    def event(self, line_no: int, process, type_: str, f: str, value, key=None):
        self.index += 1
        if type_ == "invoke":
            # an earlier invocation left open by this process stays unknown (Jepsen's :info case)
            op = Op(id=len(self.ops), process=process, f=f, value=value, key=key, invoke=self.index)
            self.ops.append(op)
            self.open[process] = op
            return
        op = self.open.pop(process, None)
        if op is None:
            raise HistoryError(f"{self.where}:{line_no}: :{type_} of process {process} without an :invoke")
        if op.f != f:
            raise HistoryError(f"{self.where}:{line_no}: :{type_} :{f} completes an :invoke :{op.f}")
        if type_ == "ok":
            op.status, op.complete = OK, self.index
            if f in ("read", "get"):
                op.output = value
        elif type_ == "fail" and value != ":timed-out":
            op.status, op.complete = FAIL, self.index
        elif type_ in ("fail", "info"):  # timed out / indeterminate: may happen any time, or never
            op.status, op.complete = UNKNOWN, None
        else:
            raise HistoryError(f"{self.where}:{line_no}: unknown event type :{type_}")


_LOG_LINE = re.compile(r"^\S+\s+jepsen\.util\s+-\s+(\S+)\s+:(\w+)\s+:([\w\-]+)\s*(.*?)\s*$")


def read_jepsen_log(text: str, where: str = "<history>") -> list[Op]:
    """Parse a Jepsen register log (``jepsen.util`` event lines); other lines are ignored."""
    b = _Builder(where)
    for no, line in enumerate(text.splitlines(), 1):
        m = _LOG_LINE.match(line)
        if not m:
            continue
        proc, type_, f, raw = m.groups()
        try:
            process = int(proc)
            value = parse_edn_value(raw) if raw else None
        except (ValueError, KeyError) as e:
            raise HistoryError(f"{where}:{no}: malformed jepsen.util event: {e}") from None
        if type_ not in ("invoke", "ok", "fail", "info"):
            raise HistoryError(f"{where}:{no}: unknown event type :{type_}")
        if f == "cas" and type_ == "invoke" and not (isinstance(value, list) and len(value) == 2):
            raise HistoryError(f"{where}:{no}: a cas needs [expected new], got {raw!r}")
        b.event(no, process, type_, f, value)
    return b.ops


def read_jepsen_edn(text: str, where: str = "<history>") -> list[Op]:
    """Parse a Jepsen EDN history, one ``{:process .., :type .., :f .., :key .., :value ..}`` a line."""
    b = _Builder(where)
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        try:
            d = parse_edn_map(line)
            process, type_, f = d["process"], d["type"], d["f"]
        except (ValueError, KeyError) as e:
            raise HistoryError(f"{where}:{no}: malformed EDN event: {e}") from None
        if not (isinstance(type_, str) and type_.startswith(":") and isinstance(f, str) and f.startswith(":")):
            raise HistoryError(f"{where}:{no}: :type and :f must be keywords")
        type_, f = type_[1:], f[1:]
        if type_ not in ("invoke", "ok", "fail", "info"):
            raise HistoryError(f"{where}:{no}: unknown event type :{type_}")
        b.event(no, process, type_, f, d.get("value"), d.get("key"))
    return b.ops


def read_jsonl(text: str, where: str = "<history>") -> list[Op]:
    """Parse capgym's own JSON Lines history (``envs.world.records.history_from_jsonl``), checking each line."""
    ops = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            (op,) = history_from_jsonl(line)
        except (ValueError, TypeError) as e:
            raise HistoryError(f"{where}:{no}: not an operation record: {e}") from None
        times = (op.invoke,) if op.complete is None else (op.invoke, op.complete)
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
            raise HistoryError(f"{where}:{no}: invoke and complete must be numbers")
        if op.status not in STATUSES:
            raise HistoryError(f"{where}:{no}: unknown status {op.status!r}")
        if op.status != UNKNOWN and op.complete is None:
            raise HistoryError(f"{where}:{no}: a {op.status} operation needs a completion time")
        if op.complete is not None and op.complete < op.invoke:
            raise HistoryError(f"{where}:{no}: completes before it is invoked")
        ops.append(op)
    return ops


READERS = {"jepsen-log": read_jepsen_log, "jepsen-edn": read_jepsen_edn, "jsonl": read_jsonl}


def detect_format(text: str, where: str = "<history>") -> str:
    """Guess the format: a map per line (EDN ``{:`` or JSON ``{"``), or ``jepsen.util`` event lines
    among the first 1000 lines of a log."""
    lines = [s for s in (line.strip() for line in text.splitlines()[:1000]) if s]
    if lines and lines[0].startswith("{"):
        return "jepsen-edn" if re.match(r"\{\s*:", lines[0]) else "jsonl"
    if any(_LOG_LINE.match(s) for s in lines):
        return "jepsen-log"
    raise HistoryError(f"{where}: cannot tell the history format (use --format {'|'.join(FORMATS)})")


def read_history(path: str | Path, fmt: str = "auto") -> list[Op]:
    """Read a history file in ``fmt`` (one of FORMATS, or ``"auto"`` to detect it)."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise HistoryError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if fmt == "auto":
        fmt = detect_format(text, where)
    if fmt not in READERS:
        raise HistoryError(f"unknown history format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    return READERS[fmt](text, where)
