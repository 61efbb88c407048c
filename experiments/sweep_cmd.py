"""``capgym sweep SWEEP.yaml [key=value ...] [--jobs N]``: a grid of runs over seeds, aggregated.

The sweep file (see :mod:`experiments.sweep`) names a base run config, a grid and seeds. Every
combination times seed is validated first (one bad grid value: one line naming it, exit 2,
nothing written); then each runs as an ordinary ``capgym run`` (the same
:func:`experiments.run_cmd.execute`) into ``results/<name>/<time>-<id>/runs/``, ``--jobs N`` at a
time in worker processes. At the end: ``sweep.csv`` (one row per run and protocol), the aggregate
table (mean ± std over seeds, printed and saved) and a plot of the chosen measure against the
first grid axis. Ctrl-C or SIGTERM stops the sweep: no new run starts, runs in progress (told by a
SIGTERM) stop between time slices and save what they have, the finished runs are aggregated,
``status.json`` says ``interrupted`` and the exit status is 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path

from experiments.run_cmd import StopFlag

EXAMPLES = """examples:
  capgym sweep configs/sweeps/cap.yaml                       the CAP trade-off vs partition length
  capgym sweep configs/sweeps/cap.yaml --jobs 2 seeds=5      five seeds, two runs at a time
  capgym sweep configs/sweeps/raft-nodes.yaml world.duration_ms=2000 --measure time_without_leader
"""


# --- one run (in this process or a worker) ------------------------------------------------------
def _worker_init() -> None:
    """Workers ignore SIGINT/SIGTERM between runs; during a run, ``execute`` turns them into a
    clean stop. The parent decides when the sweep stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_one(index: int, cfg) -> tuple[int, str | None, int, str | None]:
    """Run one expanded config: ``(index, run folder, exit status, error)``."""
    from experiments.run_cmd import execute

    try:
        run_dir, rc = execute(cfg, quiet=True)
        return index, str(run_dir), rc, None
    except Exception as e:  # execute records failures in the run folder; this is anything else
        return index, None, 1, f"{type(e).__name__}: {e}"


class _Stop(StopFlag):
    """``capgym run``'s stop flag, for the sweep: SIGINT/SIGTERM stop it, a second Ctrl-C at once."""

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True
        print("\ncapgym sweep: stopping (interrupted); no new runs, saving what there is", file=sys.stderr)


# --- the sweep ------------------------------------------------------------------------------------
def run_sweep(sweep, jobs: int = 1, quiet: bool = False) -> tuple[Path, int]:
    """Run every point of a loaded :class:`~experiments.sweep.Sweep`, aggregate, and return the
    sweep folder and the exit status (0; 1 when a run failed; 130 when interrupted)."""
    from experiments import results

    say = (lambda *a, **k: None) if quiet else print
    sweep_dir = results.new_run_dir(sweep.root, sweep.name)
    results.write_yaml(sweep_dir / "sweep.yaml", sweep.resolved())
    results.write_status(sweep_dir, results.STATUS_RUNNING, runs=len(sweep.points), done=0)
    for p in sweep.points:  # every run goes under <sweep>/runs/
        p.cfg.output.root = str(sweep_dir)
        p.cfg.experiment = "runs"
        p.cfg.output.progress = False
    say(f"capgym sweep: {sweep.name}: {len(sweep.points)} runs ({len(sweep.points) // len(sweep.seeds)} grid points "
        f"x {len(sweep.seeds)} seeds), {jobs} at a time -> {sweep_dir}")

    outcome: dict[int, tuple[str | None, int, str | None]] = {}
    total = len(sweep.points)

    def done(index, run_dir, rc, err):
        outcome[index] = (run_dir, rc, err)
        p = sweep.points[index]
        state = {0: "ok", 130: "interrupted"}.get(rc, "FAILED")
        say(f"[{len(outcome)}/{total}] {p.label()}: {state}" + (f" ({err})" if err else ""))
        results.write_status(sweep_dir, results.STATUS_RUNNING, runs=total, done=len(outcome))

    stop = _Stop()
    try:
        with stop:
            if jobs <= 1:
                for p in sweep.points:
                    if stop():
                        break
                    done(*run_one(p.index, p.cfg))
                    if outcome[p.index][1] == 130:
                        stop.set = True
            else:
                _run_parallel(sweep.points, jobs, stop, done)
    except KeyboardInterrupt:  # a second Ctrl-C: aggregate what there is right away
        stop.set = True
    interrupted = stop()

    try:
        rc = _aggregate(sweep_dir, sweep, outcome, say)
    except Exception as e:
        results.write_text(sweep_dir / "error.txt", traceback.format_exc())
        results.write_status(sweep_dir, results.STATUS_FAILED, runs=total, done=len(outcome),
                             error=f"{type(e).__name__}: {e}")
        print(f"capgym sweep: aggregation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return sweep_dir, 1
    if interrupted:
        results.write_status(sweep_dir, results.STATUS_INTERRUPTED, runs=total, done=len(outcome))
        print(f"capgym sweep: interrupted after {len(outcome)}/{total} runs; partial results in {sweep_dir}",
              file=sys.stderr)
        return sweep_dir, 130
    results.write_status(sweep_dir, results.STATUS_COMPLETE, runs=total, done=len(outcome))
    return sweep_dir, rc


def _run_parallel(points, jobs: int, stop, done) -> None:
    """At most ``jobs`` runs at a time in worker processes; on a stop, no new run starts, and a
    SIGTERM is sent to the workers (a Ctrl-C may reach them from the terminal as well)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending = list(points)
    running = {}
    forwarded = False
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"),
                             initializer=_worker_init) as pool:
        while pending or running:
            while pending and len(running) < jobs and not stop():
                p = pending.pop(0)
                running[pool.submit(run_one, p.index, p.cfg)] = p
            if stop():
                pending.clear()
                if not forwarded:  # idle workers ignore it; busy ones stop their run and save it
                    for child in mp.active_children():  # only the workers this sweep started
                        os.kill(child.pid, signal.SIGTERM)
                    forwarded = True
            if not running:
                break
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                running.pop(f)
                done(*f.result())


def _aggregate(sweep_dir: Path, sweep, outcome: dict, say) -> int:
    """Write sweep.csv, aggregate.csv/.txt/.json and the plot; print the table."""
    from experiments import results
    from experiments import sweep as sw

    keys = list(sweep.grid)
    rows = []
    failed = 0
    for p in sweep.points:
        if p.index not in outcome:
            continue
        run_dir, rc, err = outcome[p.index]
        status = results.read_status(Path(run_dir)).get("status") if run_dir else "failed"
        failed += rc not in (0, 130)
        rows.extend(sw.rows_of_run(p, Path(run_dir) if run_dir else None, status or "failed"))
    results.write_csv(sweep_dir / "sweep.csv", rows)
    agg = sw.aggregate(rows, keys)
    results.write_csv(sweep_dir / "aggregate.csv", agg)
    table = sw.format_aggregate(agg, keys, sweep.measure)
    results.write_text(sweep_dir / "aggregate.txt", table + "\n")
    results.write_json(sweep_dir / "aggregate.json", {"sweep": sweep.resolved(), "aggregate": agg})
    (sweep_dir / "plots").mkdir(exist_ok=True)
    png = sw.plot(sweep_dir / "plots" / f"{sweep.measure}.png", agg, keys, sweep.measure)
    _log_wandb(sweep_dir, sweep, agg, png)
    say(table)
    say(f"results: {sweep_dir}  (sweep.csv, aggregate.csv, plots/{png.name})")
    return 1 if failed else 0


def _log_wandb(sweep_dir: Path, sweep, agg: list[dict], png: Path) -> None:
    """The aggregate as one wandb run (the base config's wandb mode; offline by default): the mean
    of every measure per grid point and protocol in its summary, the plot as an image."""
    cfg = sweep.points[0].cfg
    if cfg.wandb.mode == "disabled":
        return
    from experiments import tracking

    means = {}
    for r in agg:
        name = "_".join([str(r["protocol"])] + [f"{k}={r[k]}" for k in sweep.grid])
        means[name] = {k.removesuffix("_mean"): v for k, v in r.items() if k.endswith("_mean")}
    cfg = cfg.model_copy(update={"experiment": sweep.name})
    tracking.log_run(cfg, sweep_dir, means, {}, [png], name=f"sweep-{sweep.name}-{sweep_dir.name}")


# --- the command ----------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.cli import UserError
    from experiments.sweep import MEASURES, load_sweep

    if args.jobs < 1:
        raise UserError(f"--jobs: must be >= 1, not {args.jobs}")
    overrides = list(args.overrides)
    if args.measure:
        if args.measure not in MEASURES:
            raise UserError(f"--measure: {args.measure!r} is not a headline measure "
                            f"(choose from {', '.join(MEASURES)})")
        overrides.append(f"measure={args.measure}")
    sweep = load_sweep(args.sweep, overrides)
    if args.dry_run:
        for p in sweep.points:
            print(p.label())
        print(f"{len(sweep.points)} runs")
        return 0
    return run_sweep(sweep, jobs=args.jobs, quiet=args.quiet)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of configs over seeds and aggregate",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP", help="a sweep file, e.g. configs/sweeps/cap.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="a sweep key (seeds=3, measure=...) or a run-config key applied to every run")
    p.add_argument("-j", "--jobs", type=int, default=1, help="runs at a time, in worker processes (default 1)")
    p.add_argument("--measure", help="the measure to plot against the first grid axis")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_sweep)
