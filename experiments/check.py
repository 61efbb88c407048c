"""``capgym check FILE... [--model M] [--independent]``: linearizability of recorded histories.

Prints one verdict line per file (naming the operation that could not be linearized), or one JSON
object per file with ``--json``. Exit status, one meaning each: 0 every file linearizable, 1 some
file not linearizable (only ever a verdict), 2 bad input (one line naming the file and line;
nothing is checked), 3 some verdict unknown (the time budget ran out) and none false, 4 an
internal error (a bug in capgym: one line, never a traceback).
"""

from __future__ import annotations

import json
import os
import sys

from experiments.cli import UserError

FORMAT_CHOICES = ("auto", "jepsen-log", "jepsen-edn", "jsonl")
MODEL_CHOICES = ("register", "cas-register", "etcd", "kv")

EPILOG = """formats (detected when --format is not given):
  jepsen-log   Jepsen's jepsen.util log lines (also inside jepsen.log, with timestamps and threads)
  jepsen-edn   Jepsen's history.edn, Knossos's EDN histories (a map a line, or one list/vector)
  jsonl        capgym's history.jsonl
  Entries of non-client processes (:nemesis) are skipped and counted (skipped_ops).

models:
  register      read, write
  cas-register  read, write, cas [expected new]; a :fail cas did not happen (Knossos's rule)
  etcd          cas-register, but a :fail cas observed another value (Porcupine's etcd model)
  kv            get, put, append on string values, per :key

algorithms (--algorithm): auto picks the O(n log n) zone test (Gibbons & Korach 1997) for keys whose
  operations are reads and writes of distinct values, and the Wing-Gong-Lowe search otherwise

exit status: 0 linearizable, 1 not linearizable, 2 bad input, 3 unknown (time budget ran out),
             4 internal error (a bug in capgym; CAPGYM_DEBUG=1 shows the traceback)
"""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "check",
        help="check recorded histories for linearizability",
        description="Check histories for linearizability (Wing-Gong-Lowe search, split by key).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="history files")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help="sequential model (default: the smallest one with all the history's operations)")
    p.add_argument("--format", dest="fmt", choices=FORMAT_CHOICES, default="auto",
                   help="history format (default: detected from the file)")
    p.add_argument("--independent", action="store_true",
                   help="values are jepsen.independent [key value] tuples: check and report each key")
    p.add_argument("--algorithm", choices=("auto", "wgl", "zones"), default="auto",
                   help="auto (default): the O(n log n) zone test where it applies (reads and writes of "
                        "distinct values), else the Wing-Gong-Lowe search; or force one")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="time budget per file in seconds; past it the verdict is unknown")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(func=run)


def _verdict_line(path: str, r, where) -> str:
    from metrics.models import MODELS

    skipped = (f", {r.skipped_ops} non-client {'entry' if r.skipped_ops == 1 else 'entries'} skipped"
               if r.skipped_ops else "")
    how = f"{r.model}, {r.algorithm}, {r.ops} ops{skipped}"
    if r.ok is True:
        return f"{path}: linearizable ({how}, {r.elapsed:.3f} s)"
    if r.ok == "unknown":
        return f"{path}: unknown: time budget ran out after {r.elapsed:.3f} s ({how})"
    key = "" if r.failing_key is None else f" on key {r.failing_key!r}"
    describe = MODELS[r.model].describe

    def at(op):
        w = where(op)
        return f" (invoked at {w})" if w else ""

    if r.conflict:  # the zone test: the operations whose zones cannot be ordered
        ops = "; ".join(describe(op) + at(op) for op in r.conflict)
        return f"{path}: NOT linearizable ({how}, {r.elapsed:.3f} s){key}: these operations conflict: {ops}"
    return (f"{path}: NOT linearizable ({how}, {r.elapsed:.3f} s): "
            f"{describe(r.failing_op)}{at(r.failing_op)}"
            f" cannot be linearized{key}; longest linearizable prefix {r.prefix_len} ops")


def _key_lines(r) -> list[str]:
    words = {True: "linearizable", False: "NOT linearizable", "unknown": "unknown"}
    from metrics.timeline import order  # keys as values: 2 before 10

    parts = sorted(r.partitions, key=lambda p: order(p.key))
    return [f"  key {p.key!r}: {words[p.ok]} ({p.ops} ops)" for p in parts]


def run(args) -> int:
    """Check each file; bad input is one line on stderr and exit status 2, an internal error 4.

    (Reported here rather than raised to ``cli.main``: under ``python -m experiments.cli`` that
    module runs as ``__main__`` and would not recognise this module's ``UserError`` class.)
    """
    try:
        return _run(args)
    except UserError as e:
        print(f"capgym check: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback, and never 1 (which means "not linearizable")
        if os.environ.get("CAPGYM_DEBUG"):
            raise
        from experiments.cli import internal_error_line

        print(internal_error_line("check", e), file=sys.stderr)
        return 4


def _run(args) -> int:
    from metrics.history_io import HistoryError, independent, read_history
    from metrics.linearizability import check
    from metrics.models import MODELS, guess_model

    if args.timeout is not None and args.timeout < 0:
        raise UserError(f"--timeout must be >= 0, got {args.timeout}")
    histories = []  # read everything first: bad input stops the run before any checking
    for path in args.files:
        try:
            ops = read_history(path, args.fmt)
            if args.independent:
                ops = independent(ops, path)
            model = MODELS[args.model] if args.model else guess_model(ops)
        except HistoryError as e:
            raise UserError(str(e)) from None
        except ValueError as e:
            raise UserError(f"{path}: {e}") from None
        histories.append((path, ops, model))

    verdicts = []
    for path, ops, model in histories:
        where = getattr(ops, "where", lambda op: None)
        try:
            r = check(ops, model, timeout=args.timeout, every_key=args.independent, algorithm=args.algorithm)
        except ValueError as e:  # an operation the model does not have, or cannot apply
            msg = str(e)
            at = ops.locate(msg) if hasattr(ops, "locate") else None
            raise UserError(f"{at}: {msg}" if at else f"{path}: {msg}") from None
        verdicts.append(r.ok)
        if args.json:
            d = {"file": path, **r.to_dict()}
            if r.failing_op is not None:
                d["failing_op_at"] = where(r.failing_op)
            print(json.dumps(d, default=repr), flush=True)
        else:
            print(_verdict_line(path, r, where), flush=True)
            if args.independent:
                print("\n".join(_key_lines(r)), flush=True)
    if False in verdicts:
        return 1
    if "unknown" in verdicts:
        return 3
    return 0
