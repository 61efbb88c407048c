"""``capgym report DIR``: rebuild a results folder's report.html, and a run's summary, metrics and plots.

Any results folder's ``report.html`` (a run, training, evaluation, alignment study, sweep or
reproduction: :mod:`experiments.html_report`) is rebuilt from its saved files; a run's summary,
``metrics.csv`` and plots too.

:func:`write_outputs` is what ``capgym run`` calls at the end of a run too, so a report rebuilds
exactly the summary the run wrote: both compute it only from the resolved config, the history and
the trace.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.cli import UserError
from experiments.html_report import WINDOW_MESSAGES

if TYPE_CHECKING:
    from experiments import runner
    from experiments.config import RunConfig

EXAMPLES = """examples:
  capgym report results/quickstart/20250101-120000-a1b2c3/
  capgym report results/raft/<run>/ --no-plots
  capgym report results/raft/<run>/ --messages 5000 --start-ms 2000    another window of the space-time diagram
  capgym report results/cap-sweep/<sweep>/                             a sweep's (or training's, ...) report.html
"""


def analyse(cfg: RunConfig, datas: list[runner.RunData], check: bool = True) -> tuple[dict, dict]:
    """The summary (per protocol and the comparison table) and the per-bucket series;
    ``check=False`` skips the linearizability search (an interrupted run)."""
    from experiments import runner

    summaries = {d.entry.tag: runner.summarize(d.history, d.events, d.sim_ms, d.entry, d.interrupted, check=check)
                 for d in datas}
    series = {d.entry.tag: runner.series(d.history, d.events, d.sim_ms) for d in datas}
    summary = {
        "experiment": cfg.experiment,
        "seed": cfg.seed,
        "runtime": cfg.runtime,
        "protocols": [e.tag for e in cfg.entries()],
        "completed": [d.entry.tag for d in datas if not d.interrupted],
        "table": runner.table_rows(summaries),
        "runs": summaries,
    }
    return summary, series


def write_outputs(run_dir: Path, cfg: RunConfig, datas: list[runner.RunData], make_plots: bool = True,
                  rewards: dict | None = None, check: bool = True) -> tuple[dict, dict, list[Path]]:
    """Write ``summary.json``, ``metrics.csv`` and (if asked) ``plots/*.png``; returns the summary,
    the series and the plot paths. A trace may be a list of events or a trace file: plots read
    only its faults, and its messages only when there are few enough to draw."""
    from experiments import plots, results
    from metrics.timeline import partition_intervals

    summary, series = analyse(cfg, datas, check=check)
    results.write_json(run_dir / "summary.json", summary)
    results.write_csv(run_dir / "metrics.csv",
                      [{"protocol": label, **row} for label, rows in series.items() for row in rows])
    paths: list[Path] = []
    if make_plots and datas:
        pdir = run_dir / "plots"
        pdir.mkdir(exist_ok=True)
        end = max(d.sim_ms for d in datas)
        parts = partition_intervals(_faults(datas[0].events), end=end)  # the same scenario for every protocol
        paths.append(plots.timeline(pdir / "timeline.png", series, parts))
        paths.append(plots.latency(pdir / "latency.png", {d.entry.tag: d.history for d in datas}))
        for d in datas:
            if _count_sends(d.events) <= plots.SPACETIME_MAX_MESSAGES:  # a short run: a few hundred arrows
                events, last = _drawn(d.events)
                paths.append(plots.spacetime(pdir / f"spacetime-{d.entry.tag}.png", events,
                                             cfg.world.nodes, d.entry.tag, end=last))
        if len(datas) > 1:
            paths.append(plots.compare(pdir / "compare.png", summary["table"]))
        if rewards:
            paths.append(plots.rewards(pdir / "rewards.png", rewards))
    return summary, series, paths


def _faults(events) -> list:
    """The partition and heal events of a trace (a list, or a trace file read by kind)."""
    if hasattr(events, "counts"):
        return list(events.events(kinds=("partition", "heal")))
    return events


def _drawn(events) -> tuple:
    """What the space-time diagram draws of a trace (its messages, drops and crashes; a trace file is
    read for those kinds alone) and the trace's last true time."""
    from experiments import plots

    if hasattr(events, "counts"):
        return list(events.events(kinds=plots.SPACETIME_KINDS)), events.span()["last_t"]
    return events, None


def _count_sends(events) -> int:
    from experiments import plots

    if hasattr(events, "counts"):
        return events.counts()["kinds"].get("send", 0)
    return plots.count_messages(events)


def load_run(run_dir: Path) -> tuple[RunConfig, list[runner.RunData]]:
    """The config and each protocol's saved records of a run folder."""
    from experiments import results, runner
    from experiments.config import load_resolved

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_resolved(run_dir / "config.yaml")
    status = results.read_status(run_dir)
    reached = status.get("sim_ms", {})
    compare = bool(cfg.compare)
    datas = []
    for entry in cfg.entries():
        folder = results.entry_dir(run_dir, entry.tag, compare)
        if not (folder / "history.jsonl").is_file():
            continue  # an interrupted comparison did not get to this protocol
        try:
            history, events = results.load_records(folder)
        except FileNotFoundError:
            raise UserError(f"{folder}: no trace.parquet or trace.jsonl.gz (the run had output.trace: false)") from None
        except ValueError as e:
            raise UserError(str(e)) from None
        sim_ms = reached.get(entry.tag, cfg.world.duration_ms)
        datas.append(runner.RunData(entry, history, events, sim_ms, sim_ms < cfg.world.duration_ms))
    if not datas:
        raise UserError(f"{run_dir}: holds no protocol's history")
    return cfg, datas


def cmd_report(args: argparse.Namespace) -> int:
    from experiments import html_report, runner

    if args.messages < 1:
        raise UserError(f"--messages: must be >= 1, not {args.messages}")
    if not 0 <= args.start_ms < float("inf"):
        raise UserError(f"--start-ms: must be a time >= 0 (ms), not {args.start_ms:g}")
    run_dir = Path(args.run_dir)
    kind = html_report.detect_kind(run_dir)
    if kind != "run":
        if args.no_html:
            raise UserError(f"{run_dir}: a {kind} folder: only its report.html can be rebuilt (drop --no-html)")
        path = html_report.write(run_dir, kind)
        print(f"wrote {path} ({kind}, {html_report.size_text(path)})")
        return 0
    cfg, datas = load_run(run_dir)
    end = cfg.world.duration_ms
    if args.start_ms >= end:
        raise UserError(f"--start-ms: {args.start_ms:g} ms is past the run's end ({end:g} ms of simulated time)")
    summary, series, paths = write_outputs(run_dir, cfg, datas, make_plots=not args.no_plots)
    print(runner.format_table(summary["table"]))
    print(f"rebuilt {run_dir / 'summary.json'}, metrics.csv and {len(paths)} plots")
    if not args.no_html:
        path = html_report.write_run(run_dir, cfg, datas, summary, series, args.messages, args.start_ms)
        print(f"wrote {path} ({html_report.size_text(path)})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="rebuild a run's summary, plots and report.html from its saved files",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="DIR", help="a results folder (run, train, evaluate, align, sweep, reproduce)")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots (a run)")
    p.add_argument("--no-html", action="store_true", help="no report.html (a run)")
    p.add_argument("--messages", type=int, default=WINDOW_MESSAGES,
                   help="messages per space-time diagram (a window of a longer trace; default %(default)s)")
    p.add_argument("--start-ms", type=float, default=0.0, help="true time the diagrams' window starts at")
    p.set_defaults(func=cmd_report)
