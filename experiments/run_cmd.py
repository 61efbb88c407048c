"""``capgym run CONFIG [key.sub=value ...]``: run a config and leave a results folder behind.

The config is composed, overridden and validated before anything runs (a mistake: one line,
exit 2, nothing written). Then each protocol runs in the sim under the same scenario, its history
and trace are saved, the observer measures them, and the summary, the time series, plots and the
wandb run are written. Ctrl-C or SIGTERM stops the simulation between two chunks of events; what there
is gets saved and ``status.json`` says ``interrupted`` (exit 130): the simulation stops within one chunk
of events, its streamed trace and history are kept, and the summary skips the linearizability search;
a signal after the simulation stops at once (``capgym report`` rebuilds the summary).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

EXAMPLES = """examples:
  capgym run configs/quickstart.yaml                        ABD vs eventual vs Raft under partitions
  capgym run configs/gossip.yaml world.nodes=7 seed=3       override any key (value parsed as YAML)
  capgym run configs/echo.yaml nemesis.random.interval_ms=500 wandb.mode=disabled
  capgym run configs/quickstart.yaml 'compare=[{name: abd}, {name: raft}]'
"""


class StopFlag:
    """Set by SIGINT/SIGTERM while a run is going; a second Ctrl-C stops at once.

    While the simulation runs, a signal sets the flag and the sim stops at its next chunk (at most
    ``runner.CHUNK_EVENTS`` events); the history and the trace are saved and the summary is made
    without the linearizability search. Once the simulation is over (``simulating`` False) the
    records are already on disk, so a signal stops at once (``capgym report`` rebuilds the rest).
    """

    def __init__(self):
        self.set = False
        self.simulating = True
        self._old = {}

    def __call__(self) -> bool:
        return self.set

    def _handle(self, signum, frame):
        if (self.set and signum == signal.SIGINT) or not self.simulating:
            self.set = True
            raise KeyboardInterrupt
        self.set = True
        print("\ncapgym run: stopping (interrupted); saving what there is", file=sys.stderr)

    def __enter__(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self  # e.g. a Ray Tune trial's thread: whoever owns the process handles signals
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old = {}


def execute(cfg, quiet: bool = False) -> tuple[Path, int]:
    """Run a validated :class:`~experiments.config.RunConfig` into a new results folder; returns
    the folder and the exit status."""
    from experiments import results, runner
    from experiments.cli import UserError

    if cfg.runtime == "live":  # an unreachable cluster is one line, before a folder is made
        from experiments.live import check_reachable

        check_reachable(cfg.ray.address)
    run_dir = results.new_run_dir(cfg.output.root, cfg.experiment)
    results.write_yaml(run_dir / "config.yaml", cfg.resolved())
    results.write_status(run_dir, results.STATUS_RUNNING)
    say = (lambda *a: None) if quiet else print
    say(f"capgym run: {cfg.experiment} -> {run_dir}")
    datas: list[runner.RunData] = []
    reached: dict[str, float] = {}
    stop = StopFlag()
    ray_started = False
    try:
        if cfg.runtime == "live":  # one Ray session for every protocol of the run
            from experiments.live import ensure_ray

            ray_started = ensure_ray(cfg.ray.address)
        with stop:
            for entry in cfg.entries():
                if stop():
                    break
                folder = results.entry_dir(run_dir, entry.tag, bool(cfg.compare))
                folder.mkdir(parents=True, exist_ok=True)
                d = runner.run_entry(cfg, entry, stop, progress=cfg.output.progress and not quiet,
                                     trace_path=folder / "trace.parquet")
                for note in results.save_records(folder, d.history, d.trace, jsonl=cfg.output.trace_jsonl,
                                                 shiviz=cfg.output.shiviz and not stop(),
                                                 max_export_events=cfg.output.max_export_events):
                    say(f"capgym run: {entry.tag}: {note}")
                datas.append(d)
                reached[entry.tag] = d.sim_ms
                results.write_status(run_dir, results.STATUS_RUNNING, sim_ms=reached)
            interrupted = stop()
            stop.simulating = False
            from experiments.report import write_outputs

            summary, series, paths = write_outputs(run_dir, cfg, datas,
                                                   make_plots=cfg.output.plots and not interrupted,
                                                   check=not interrupted)
            if cfg.output.report != "none":
                from experiments import html_report

                html_report.write_run(run_dir, cfg, datas, summary, series, cfg.output.report_messages,
                                      light=cfg.output.report == "light")
            if not cfg.output.trace:  # streamed for the measures, not kept
                for d in datas:
                    if hasattr(d.events, "path"):
                        d.events.path.unlink(missing_ok=True)
    except KeyboardInterrupt:
        results.write_status(run_dir, results.STATUS_INTERRUPTED, sim_ms=reached)
        print(f"capgym run: interrupted; partial results in {run_dir}", file=sys.stderr)
        return run_dir, 130
    except UserError:
        results.write_status(run_dir, results.STATUS_FAILED, sim_ms=reached)
        raise
    except Exception as e:
        results.write_text(run_dir / "error.txt", traceback.format_exc())
        results.write_status(run_dir, results.STATUS_FAILED, sim_ms=reached, error=f"{type(e).__name__}: {e}")
        print(f"capgym run: internal error: {type(e).__name__}: {e} (traceback in {run_dir / 'error.txt'})",
              file=sys.stderr)
        return run_dir, 4  # a bug, not a check that failed (1) nor bad input (2)
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    if interrupted:
        results.write_status(run_dir, results.STATUS_INTERRUPTED, sim_ms=reached)
        print(f"capgym run: interrupted; partial results in {run_dir}", file=sys.stderr)
        return run_dir, 130

    from experiments import tracking

    wandb_dir = tracking.log_run(cfg, run_dir, summary["runs"], series, paths)
    results.write_status(run_dir, results.STATUS_COMPLETE, sim_ms=reached,
                         wandb=str(wandb_dir.relative_to(run_dir.resolve())) if wandb_dir else None)
    say(runner.format_table(summary["table"]))
    say(f"results: {run_dir}  (summary.json, metrics.csv, {len(paths)} plots"
        f"{', report.html' if cfg.output.report != 'none' else ''}"
        f"{', wandb ' + cfg.wandb.mode if wandb_dir else ''})")
    return run_dir, 0


def cmd_run(args: argparse.Namespace) -> int:
    from experiments.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.resolved(), sort_keys=False), end="")
        return 0
    return execute(cfg, quiet=args.quiet)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run a config (sim or live) and write a results folder",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="a YAML run config, e.g. configs/quickstart.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override a config key, e.g. world.nodes=7 seed=3 (value parsed as YAML)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_run)
