"""The ``capgym`` command.

Each subcommand lives in its own module under ``experiments/`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning the exit status. Modules are imported lazily so that ``capgym --help``
and ``capgym check`` stay fast (no torch or Ray import unless the command needs it).

Exit statuses, one meaning each in every command: 0 success, 1 a check failed (only ever a
verdict: not linearizable, a claim that does not hold), 2 bad input (one line on stderr), 3 unknown
verdict (a time budget ran out), 4 internal error (a bug: one line, never a traceback;
``CAPGYM_DEBUG=1`` re-raises it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand name -> module under experiments/ that provides register(subparsers)
COMMANDS = {
    "run": "experiments.run_cmd",
    "check": "experiments.check",
    "report": "experiments.report",
    "list": "experiments.list_cmd",
    "train": "experiments.train_cmd",
    "evaluate": "experiments.evaluate_cmd",
    "align": "experiments.align_cmd",
    "align-table": "experiments.align_table",
    "sweep": "experiments.sweep_cmd",
    "reproduce": "experiments.reproduce_cmd",
}

EXAMPLES = """examples:
  capgym run configs/quickstart.yaml                 the CAP trade-off: ABD vs eventual vs Raft
  capgym run configs/gossip.yaml world.nodes=7 seed=3
  capgym check history.jsonl --model kv --json       linearizability of a recorded history
  capgym check history.edn --independent             a jepsen.independent history, key by key
  capgym report results/quickstart/<run>/            rebuild a run's summary and plots
  capgym list                                        protocols, environments, nemesis kinds, configs
  capgym train configs/train/register.yaml           PPO agents on Register-v0
  capgym sweep configs/sweeps/cap.yaml --jobs 2      a grid of runs over seeds, aggregated
  capgym reproduce raft-election                     a paper's figure from real runs
"""


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capgym",
        description="capgym: a multi-agent testbed of agents on a partitioned network with no global clock.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in COMMANDS.values():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:  # a command whose module has not landed yet
            if e.name != modname:
                raise
            continue
        mod.register(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse with overrides and options in any order: ``KEY=VALUE`` words that argparse leaves over
    (those after an option) join the command's ``overrides``, in the order given."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(w.startswith("-") or "=" not in w for w in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parse_args(parser, argv)
    except KeyboardInterrupt:  # (importing the commands takes a moment)
        print("capgym: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"capgym {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("capgym: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not the user's mistake: never a traceback, never status 1
        if os.environ.get("CAPGYM_DEBUG"):
            raise
        print(internal_error_line(args.command, e), file=sys.stderr)
        return 4


def internal_error_line(command: str, e: BaseException) -> str:
    """The one line printed for an unexpected exception (exit status 4)."""
    first = str(e).splitlines()[0] if str(e) else ""
    return (f"capgym {command}: internal error: {type(e).__name__}: {first} "
            f"(a bug in capgym; CAPGYM_DEBUG=1 shows the traceback)")


if __name__ == "__main__":
    # run through the importable module so that ``except UserError`` matches the class that the
    # subcommand modules raise (``python -m`` would otherwise load this file twice)
    from experiments.cli import main as _main

    sys.exit(_main())
