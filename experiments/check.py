"""``capgym check FILE... --model register|cas-register|kv``: linearizability of recorded histories.

Prints one verdict line per file (naming the operation that could not be linearized), or one JSON
object per file with ``--json``. Exit status: 0 all linearizable, 1 some not, 3 some unknown (the
time budget ran out) and none false, 2 bad input (unreadable file, unknown format, malformed line).
"""

from __future__ import annotations

import json
import sys

from experiments.cli import UserError

FORMAT_CHOICES = ("auto", "jepsen-log", "jepsen-edn", "jsonl")
MODEL_CHOICES = ("register", "cas-register", "kv")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="check recorded histories for linearizability",
        description="Check histories for linearizability (Wing-Gong-Lowe search, split by key). "
        "Exit status: 0 all linearizable, 1 some not, 3 some unknown (timeout), 2 bad input.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="history files")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help="sequential model (default: the smallest one with all the history's operations)")
    p.add_argument("--format", dest="fmt", choices=FORMAT_CHOICES, default="auto",
                   help="history format (default: detected from the file)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="time budget per file in seconds; past it the verdict is unknown")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(func=run)


def _verdict_line(path: str, r) -> str:
    from metrics.models import MODELS

    if r.ok is True:
        return f"{path}: linearizable ({r.model}, {r.ops} ops, {r.elapsed:.3f} s)"
    if r.ok == "unknown":
        return f"{path}: unknown: time budget ran out after {r.elapsed:.3f} s ({r.model}, {r.ops} ops)"
    key = "" if r.failing_key is None else f" on key {r.failing_key!r}"
    return (f"{path}: NOT linearizable ({r.model}, {r.ops} ops, {r.elapsed:.3f} s): "
            f"{MODELS[r.model].describe(r.failing_op)}"
            f" cannot be linearized{key}; longest linearizable prefix {r.prefix_len} ops")


def run(args) -> int:
    """Check each file; bad input is one line on stderr and exit status 2.

    (Reported here rather than raised to ``cli.main``: under ``python -m experiments.cli`` that
    module runs as ``__main__`` and would not recognise this module's ``UserError`` class.)
    """
    try:
        return _run(args)
    except UserError as e:
        print(f"capgym check: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from metrics.history_io import HistoryError, read_history
    from metrics.linearizability import check
    from metrics.models import MODELS, guess_model

    if args.timeout is not None and args.timeout < 0:
        raise UserError(f"--timeout must be >= 0, got {args.timeout}")
    histories = []  # read everything first: bad input stops the run before any checking
    for path in args.files:
        try:
            ops = read_history(path, args.fmt)
            model = MODELS[args.model] if args.model else guess_model(ops)
        except (HistoryError, ValueError) as e:
            raise UserError(str(e) if isinstance(e, HistoryError) else f"{path}: {e}") from None
        histories.append((path, ops, model))

    verdicts = []
    for path, ops, model in histories:
        try:
            r = check(ops, model, timeout=args.timeout)
        except ValueError as e:  # an operation the model does not have
            raise UserError(f"{path}: {e}") from None
        verdicts.append(r.ok)
        if args.json:
            print(json.dumps({"file": path, **r.to_dict()}, default=repr), flush=True)
        else:
            print(_verdict_line(path, r), flush=True)
    if False in verdicts:
        return 1
    if "unknown" in verdicts:
        return 3
    return 0
