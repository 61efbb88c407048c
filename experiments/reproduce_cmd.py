"""``capgym reproduce NAME [--quick] [--check] [key=value ...]``: a paper's figure and claims, from real runs.

The reproductions live in :mod:`experiments.reproductions` (one module each: its docstring cites
the paper and says how faithful it is). Parameters come from ``configs/reproduce/<NAME>.yaml``
(``--quick`` merges its ``quick:`` section: a seconds-long version), then from ``key=value``
overrides; they are validated before anything runs (a mistake: one line, exit 2, nothing
written). Results go to a new folder ``results/reproduce-<NAME>/<time>-<id>/``::

    config.yaml    the parameters used          table.csv     the figure's numbers
    results.json   table, claims, findings      summary.txt   what was found and the claims table
    <NAME>.png     the figure                   status.json   running -> complete | interrupted

Every reproduction checks itself: ``results.json`` holds a ``claims`` list, one row per published
number (the paper's value and where it says it, ours, the tolerance and how it was chosen, whether
it holds, and for a known gap a documented ``deviation``; :mod:`experiments.reproductions.claims`).
Exit status: 0 done; with ``--check``, 1 when a claim neither holds nor is a documented deviation;
2 bad input (one line, nothing written); 4 internal error (a bug: one line, the traceback in
``error.txt``); 130 interrupted.

Ctrl-C or SIGTERM stops between trials; what was measured is written (status ``interrupted``,
exit 130).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

from experiments.run_cmd import StopFlag

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "reproduce"

EXAMPLES = """examples:
  capgym reproduce raft-election                Ongaro & Ousterhout 2014, Fig. 16 (election time CDF, both graphs)
  capgym reproduce raft-split-vote --quick      the Raft thesis 9.2: split votes with fixed latency vs the closed form
  capgym reproduce pbs --check                  exit 1 if a claim of the paper fails (paper vs ours in summary.txt)
  capgym reproduce cap --quick                  availability and linearizability vs partition fraction
  capgym reproduce pbs ps_reads=50000           Bailis et al. 2012 on the Dynamo store: p_s, k-staleness, WARS
  capgym reproduce flp                          duelling proposers, the FLP adversary, Ben-Or rounds vs n
  capgym reproduce --list
"""


def load_params(name: str, quick: bool, overrides: list[str]):
    """The validated ``Params`` of reproduction ``name``."""
    from pydantic import ValidationError

    from envs.world.config import error_line
    from experiments import reproductions
    from experiments.cli import UserError
    from experiments.config import apply_override, merge, parse_override, read_yaml

    try:
        mod = reproductions.get(name)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    path = CONFIGS / f"{name}.yaml"
    data = read_yaml(path) if path.is_file() else {}
    quick_part = data.pop("quick", None) or {}
    if quick:
        data = merge(data, quick_part)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    try:
        return mod, mod.Params.model_validate(data)
    except ValidationError as e:
        raise UserError(error_line(e)) from None


class _Stop(StopFlag):
    """``capgym run``'s stop flag: SIGINT/SIGTERM stop the reproduction, a second Ctrl-C at once."""

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True
        print("\ncapgym reproduce: stopping (interrupted); saving what there is", file=sys.stderr)


def reproduce(name: str, quick: bool = False, overrides: list[str] = (), root: str = "results",
              quiet: bool = False, check: bool = False) -> tuple[Path, int, dict]:
    """Run reproduction ``name`` into a new results folder: ``(folder, exit status, results)``.

    The status is 0, or 1 with ``check`` when a claim neither holds nor is a documented deviation,
    4 when the reproduction raised (a bug), 130 when interrupted."""
    from experiments import results
    from experiments.reproductions import claims as claims_mod

    mod, params = load_params(name, quick, list(overrides))
    say = (lambda *a: None) if quiet else print
    out = results.new_run_dir(root, f"reproduce-{name}")
    results.write_yaml(out / "config.yaml", {"reproduction": name, "quick": quick, **params.model_dump(mode="json")})
    results.write_status(out, results.STATUS_RUNNING)
    say(f"capgym reproduce: {name}{' (quick)' if quick else ''} -> {out}")
    stop = _Stop()
    try:
        with stop:
            res = mod.run(params, out, stop)
    except KeyboardInterrupt:
        results.write_status(out, results.STATUS_INTERRUPTED)
        print(f"capgym reproduce: interrupted; partial results in {out}", file=sys.stderr)
        return out, 130, {}
    except Exception as e:
        results.write_text(out / "error.txt", traceback.format_exc())
        results.write_status(out, results.STATUS_FAILED, error=f"{type(e).__name__}: {e}")
        print(f"capgym reproduce: internal error: {type(e).__name__}: {e} (traceback in {out / 'error.txt'})",
              file=sys.stderr)
        return out, 4, {}
    columns = list(dict.fromkeys(k for row in res["table"] for k in row))  # rows of several parts
    results.write_csv(out / "table.csv", [{k: row.get(k) for k in columns} for row in res["table"]])
    claims = res.get("claims", [])
    results.write_json(out / "results.json", {"reproduction": name, "quick": quick, "table": res["table"],
                                              "claims": claims, "findings": res["findings"]})
    summary = res["summary"] + "\n\n" + claims_mod.table(claims)
    results.write_text(out / "summary.txt", summary + "\n")
    status = results.STATUS_INTERRUPTED if stop() else results.STATUS_COMPLETE
    results.write_status(out, status, plots=[str(Path(p).relative_to(out)) for p in res["plots"]])
    from experiments import html_report

    mode = html_report.default_mode()
    if mode != "none":
        html_report.write(out, "reproduce", light=mode == "light")
    say(summary)
    say(f"results: {out}  (table.csv, results.json, summary.txt, {', '.join(Path(p).name for p in res['plots'])})")
    if stop():
        return out, 130, res
    bad = claims_mod.failing(claims)
    if check and bad:
        for c in bad:
            print(f"capgym reproduce: claim fails: {c['claim']}: paper {claims_mod.fmt(c['paper'])}, ours "
                  f"{claims_mod.fmt(c['ours'])} ({c['tolerance']})", file=sys.stderr)
        return out, 1, res
    return out, 0, res


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Bad input raises ``UserError``: one line on stderr, exit 2 (``cli.main``)."""
    if args.list or not args.name:
        from experiments import reproductions

        for name in reproductions.available():
            doc = (reproductions.get(name).__doc__ or "").strip().splitlines()[0]
            print(f"{name:15s} {doc}")
        return 0
    return reproduce(args.name, args.quick, args.overrides, args.root, args.quiet, args.check)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce a paper's figure from real runs",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    from experiments.reproductions import REPRODUCTIONS

    p.add_argument("name", nargs="?", metavar="NAME", help=f"a reproduction: {', '.join(REPRODUCTIONS)} (--list)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a parameter, e.g. trials=50")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (for tests and a first look)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a claim neither holds nor is a documented deviation")
    p.add_argument("--root", default="results", help="results root folder (default results)")
    p.add_argument("--list", action="store_true", help="list the reproductions")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_reproduce)
