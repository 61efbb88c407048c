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

from experiments.cli import UserError

#: the one global measure per game that the four-game table shows beside welfare
HEADLINE = {
    "capgym/Register-v0": ("stale_read_rate", "stale-read rate"),
    "capgym/Election-v0": ("effective_leader_fraction", "effective leader"),
    "capgym/Consensus-v0": ("agreement", "agreement"),
    "capgym/Commons-v0": ("sustainability", "sustainability (s)"),
    "capgym/Byzantine-v0": ("completed_per_s", "requests/s"),
}

EXAMPLES = """examples:
  capgym align-table results/align-register/<run> results/align-election/<run> \\
      results/align-consensus/<run> results/align-commons/<run> --out docs/alignment-table.md
"""


def load(folder: str | Path) -> dict:
    import json

    p = Path(folder) / "summary.json"
    try:
        s = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: not an align results folder (no summary.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(s, dict) or "report" not in s or "env" not in s:
        raise UserError(f"{folder}: not an align results folder (summary.json has no report)")
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
                    "headline": r.get(key), "headline_ci": ci.get(key), "gap": gap})
    return out


def _cell(v, ci=None) -> str:
    if v is None:
        return "-"
    text = f"{v:.3f}" if isinstance(v, float) else str(v)
    if ci and ci[0] is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def markdown(summaries: list[dict]) -> str:
    lines = ["| game | policy | training seeds | local return | welfare | global measure | alignment gap |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        _, name = HEADLINE.get(s["env"], ("welfare", "welfare"))
        for i, r in enumerate(rows_of(s)):
            lines.append(f"| {r['game'] if i == 0 else ''} | {r['policy']} | {r['n'] or '-'} | "
                         f"{_cell(r['return_mean'], r['return_ci'])} | {_cell(r['welfare'], r['welfare_ci'])} | "
                         f"{name}: {_cell(r['headline'], r['headline_ci'])} | "
                         f"{_cell(r['gap']) if i == 0 else ''} |")
    return "\n".join(lines)


def cmd_align_table(args: argparse.Namespace) -> int:
    try:
        summaries = [load(d) for d in args.folders]
        text = markdown(summaries)
        print(text)
        if args.out:
            from experiments import results

            out = Path(args.out)
            if out.suffix == ".csv":
                results.write_csv(out, [r for s in summaries for r in rows_of(s)])
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
