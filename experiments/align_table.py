"""``capgym align-table ALIGN_DIR [ALIGN_DIR ...]``: one alignment table across games.

Reads the ``summary.json`` of finished ``capgym align`` folders (one per game, or several
settings of one game) and writes one table: game x policy -> local return, the observer's welfare,
the game's headline global measure (:data:`HEADLINE`) and, per game, the alignment gap (welfare of
global-reward agents minus local-reward agents; ``metrics.alignment.alignment_gap``). Trained
policies show their mean over training seeds with the 95% bootstrap interval the align run
computed; scripted baselines their mean over the held-out episodes.

Output: the table on stdout (Markdown), and with ``--out FILE`` also written there (``.md``, or
``.csv`` for one row per game and policy). Bad input (a folder that is not a finished align run)
exits 2 with one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.align_cmd import ci_text, with_note
from experiments.cli import UserError

#: the one global measure per game that the four-game table shows beside welfare
HEADLINE = {
    "capgym/Register-v0": ("stale_read_rate", "stale-read rate"),
    "capgym/Election-v0": ("effective_leader_fraction", "effective leader"),
    "capgym/Consensus-v0": ("validity", "validity"),
    "capgym/Commons-v0": ("sustainability", "sustainability (50 ms steps)"),
    "capgym/Byzantine-v0": ("completed_per_s", "requests/s"),
}

EXAMPLES = """examples:
  capgym align-table results/align-register/<run> results/align-election/<run> \\
      results/align-consensus/<run> results/align-commons/<run> --out docs/alignment-table.md
"""


def load(folder: str | Path) -> dict:
    import json

    if not Path(folder).is_dir():
        raise UserError(f"{folder}: no such folder")
    p = Path(folder) / "summary.json"
    try:
        s = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: not an align results folder (no summary.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(s, dict) or "report" not in s or "env" not in s:
        raise UserError(f"{folder}: not an align results folder (its summary.json has no alignment report: "
                        "a `capgym align` folder has one)")
    return s


def rows_of(summary: dict) -> list[dict]:
    """One row per policy of one align run (the four-game table's rows for its game)."""
    env = summary["env"]
    key, _ = HEADLINE.get(env, ("welfare", "welfare"))
    gap = (summary.get("alignment_gap") or {}).get("gap")
    out = []
    for r in summary["report"]:
        ci = r.get("ci") or {}
        out.append({"game": env.split("/")[-1], "policy": r["protocol"], "n": r.get("n"),
                    "return_mean": r.get("return_mean"), "return_ci": ci.get("return_mean"),
                    "welfare": r.get("welfare"), "welfare_ci": ci.get("welfare"),
                    "measure": key, "headline": r.get(key), "headline_ci": ci.get(key), "gap": gap})
    return out


def csv_rows(summaries: list[dict]) -> list[dict]:
    """One flat row per game and policy, rounded to 6 digits, intervals as low/high columns, the
    game's alignment gap in ``game_alignment_gap``."""
    def r6(v):
        return round(v, 6) if isinstance(v, float) else v

    out = []
    for s in summaries:
        for r in rows_of(s):
            row = {"game": r["game"], "policy": r["policy"], "training_seeds": r["n"]}
            for name, key in (("local_return", "return"), ("welfare", "welfare"), ("measure", "headline")):
                row[name] = r6(r["return_mean" if key == "return" else key])
                lo, hi = r[f"{key}_ci"] or (None, None)
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = r6(lo), r6(hi)
            row["measure_name"] = r["measure"]
            row["game_alignment_gap"] = r6(r["gap"])
            out.append(row)
    return out


def markdown(summaries: list[dict]) -> str:
    lines = ["| game | policy | training seeds | local return | welfare | global measure | alignment gap |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        _, name = HEADLINE.get(s["env"], ("welfare", "welfare"))
        for i, r in enumerate(rows_of(s)):
            lines.append(f"| {r['game'] if i == 0 else ''} | {r['policy']} | {r['n'] or '-'} | "
                         f"{ci_text(r['return_mean'], r['return_ci'])} | {ci_text(r['welfare'], r['welfare_ci'])} | "
                         f"{name}: {ci_text(r['headline'], r['headline_ci'])} | "
                         f"{ci_text(r['gap']) if i == 0 else ''} |")
    return with_note("\n".join(lines))


def cmd_align_table(args: argparse.Namespace) -> int:
    try:
        seen = set()
        for d in args.folders:
            if Path(d).resolve() in seen:
                raise UserError(f"{d}: given twice")
            seen.add(Path(d).resolve())
        if args.out and Path(args.out).suffix not in (".md", ".csv"):
            raise UserError(f"--out {args.out}: must end in .md or .csv")
        summaries = [load(d) for d in args.folders]
        text = markdown(summaries)
        print(text)
        if args.out:
            from experiments import results

            out = Path(args.out)
            if out.suffix == ".csv":
                results.write_csv(out, csv_rows(summaries))
            else:
                results.write_text(out, text + "\n")
        return 0
    except UserError as e:
        print(f"capgym align-table: error: {e}", file=sys.stderr)
        return 2


def register(subparsers) -> None:
    p = subparsers.add_parser("align-table", help="one alignment table across games from align folders",
                              description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="finished `capgym align` results folders")
    p.add_argument("--out", help="also write the table here (.md, or .csv: one row per game and policy)")
    p.set_defaults(func=cmd_align_table)
