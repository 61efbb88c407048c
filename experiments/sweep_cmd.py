"""``capgym sweep SWEEP.yaml [key=value ...] [--jobs N]``: a grid of trials over seeds, on Ray Tune.

The sweep file (see :mod:`experiments.sweep`) names a base config (a run, training or align config),
a grid and seeds. Every trial (grid point x seed, and policy for align bases) is composed and
validated first (one bad value: one line naming it, exit 2, nothing written). Then the sweep is a
Ray Tune experiment (``Tuner`` over a ``grid_search`` of the trials, on a local Ray instance with the
dashboard off, or the instance this process already has): each trial runs the ordinary command
(:func:`experiments.run_cmd.execute`, :func:`experiments.train_cmd.execute`) in its Tune worker and
leaves its ordinary results folder under ``results/<name>/<time>-<id>/runs/``; ``--jobs N`` caps the
trials running at once (each reserves ``resources:``, one CPU by default; a trial whose command
starts Ray actors -- a live run's nodes, Ray learners -- reserves them too, in one placement group
per trial, :func:`trial_resources`). Training trials report
each iteration's ``return_mean`` and ``env_steps`` to Tune. At the end: ``sweep.csv``, the
aggregate (mean, std and 95% bootstrap CI over seeds, printed and saved) and a plot of the chosen
measure against the first grid axis.

Ctrl-C or SIGTERM stops the sweep: Tune stops the trials in progress (their folders stay, marked
``running``; they count as unfinished) and saves its state; the finished trials are aggregated,
``status.json`` says ``interrupted`` and the exit status is 130. ``capgym sweep --resume SWEEP_DIR``
continues it (``Tuner.restore``): finished trials (a record in ``trials/``) are never run again, the
unfinished ones run from the start, and the aggregate is the one an uninterrupted sweep gives. A
resumed sweep keeps the ``--jobs`` it started with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import traceback
from pathlib import Path

EXAMPLES = """examples:
  capgym sweep configs/sweeps/cap.yaml                       the CAP trade-off vs partition length
  capgym sweep configs/sweeps/cap.yaml --jobs 2 seeds=5      five seeds, two trials at a time
  capgym sweep configs/sweeps/train-lr.yaml ppo.total_steps=4096     a grid over a training config
  capgym sweep configs/sweeps/raft-nodes.yaml world.duration_ms=2000 --measure time_without_leader
  capgym sweep --resume results/cap-sweep/<time>-<id>         continue an interrupted sweep
"""


# --- one trial (in a Tune worker) -----------------------------------------------------------------
def run_point(kind: str, point: dict, measure: str, report=None) -> dict:
    """Run one trial (``points.json``'s entry) with the ordinary command, in this process.

    Returns its record: ``index``, ``run_dir``, ``rc`` (the command's exit status), ``status`` (the
    run folder's), ``measures`` (per protocol for runs; else one dict) and ``error``. ``report`` is
    called with each training iteration's row (with ``run_dir``)."""
    import copy

    from experiments import results
    from experiments import sweep as sw

    rec = {"index": point["index"], "run_dir": None, "rc": 1, "status": "failed", "measures": {}, "error": None}
    try:
        cfg = sw.validate_kind(kind, copy.deepcopy(point["config"]))
        if kind == "run":
            from experiments.run_cmd import execute

            run_dir, rc = execute(cfg, quiet=True)
        else:
            from experiments.train_cmd import execute

            run_dir, rc = execute(cfg, quiet=True, on_iteration=report)
        rec.update(run_dir=str(run_dir), rc=rc)
        summary = {}
        if (run_dir / "summary.json").is_file():
            summary = json.loads((run_dir / "summary.json").read_text())
        if kind == "run":
            rec["measures"] = {label: sw.headline(s) for label, s in summary.get("runs", {}).items()}
        elif kind == "train":
            rec["measures"] = sw.train_measures(summary, measure)
        elif rc == 0:
            rec["measures"] = _evaluate_policy(cfg, point, run_dir)
        rec["status"] = results.read_status(run_dir).get("status") or "failed"
    except Exception as e:  # the command records its own failures; this is anything else
        rec["error"] = f"{type(e).__name__}: {e}"
    return rec


def _evaluate_policy(cfg, point: dict, run_dir: Path) -> dict:
    """An align trial's policy on ``episodes`` held-out seeds (local rewards, the observer checking
    linearizability), as ``capgym align`` evaluates it; written to ``run_dir/evaluation.json``."""
    from agents.learn import checkpoint
    from experiments import results
    from experiments.align_cmd import report_rows
    from experiments.evaluate_cmd import EVAL_SEED_BASE, aggregate, evaluate
    from experiments.sweep import align_measures

    label = point["policy"][0]
    seeds = [EVAL_SEED_BASE + i for i in range(point["episodes"])]
    spec = {"id": cfg.env.id, "params": {**cfg.env.params, "reward_mode": "local"}}
    by = evaluate({label: checkpoint.load_policy(run_dir / "checkpoint").act}, spec, seeds)
    agg = aggregate(by[label])
    row = report_rows({label: agg}, cfg.env.id)[0]
    results.write_json(run_dir / "evaluation.json", {"policy": label, "seeds": seeds, "measures": agg})
    return {m: row.get(m) for m in align_measures(cfg.env.id)}


def tune_trial(config: dict) -> None:
    """The Tune trainable: one trial. A trial whose record exists (finished before an interruption
    whose Tune state did not see it) is not run again; its record is reported. On a cluster
    (``collector`` set) the trial runs in a temporary folder on its own node and hands its folder
    and record, by value, to the sweep's :class:`Collector` on the machine that started the sweep."""
    from ray import tune

    from experiments import results

    s, point = config["sweep"], config["point"]
    kind, measure = s["kind"], s["measure"]

    def report(row):  # each training iteration (a scheduler decides from these; see _scheduler)
        tune.report({k: row[k] for k in ("env_steps", "return_mean", "run_dir") if k in row})

    hook = report if kind != "run" else None
    if s.get("collector"):
        rec = _trial_by_value(s["collector"], point, kind, measure, hook)
    else:
        record = Path(s["dir"]) / "trials" / f"{point['index']:04d}.json"
        if record.is_file():
            rec = json.loads(record.read_text())
        else:
            rec = run_point(kind, point, measure, hook)
            record.parent.mkdir(exist_ok=True)
            results.write_json(record, rec)
    final = {"rc": rec["rc"], "trial_done": 1}
    m = rec["measures"]
    if kind != "run" and isinstance(m.get(measure), (int, float)):
        final[measure] = m[measure]
    tune.report(final)


def _trial_by_value(name: str, point: dict, kind: str, measure: str, hook) -> dict:
    """One trial on a cluster node: its record from the collector if it has one; else the trial
    runs in a temporary folder here, and the folder (tar.gz) and record go to the collector, which
    returns the record with the folder's path on the sweep's machine."""
    import io
    import shutil
    import tarfile
    import tempfile

    import ray

    collector = ray.get_actor(name)
    rec = ray.get(collector.record.remote(point["index"]))
    if rec is not None:
        return rec
    tmp = tempfile.mkdtemp(prefix="capgym-trial-")
    try:
        cfg = dict(point["config"], output={**point["config"].get("output", {}), "root": tmp})
        rec = run_point(kind, {**point, "config": cfg}, measure, hook)
        rec["node"] = ray.get_runtime_context().get_node_id()
        data, folder = b"", None
        if rec["run_dir"]:
            folder = Path(rec["run_dir"]).name
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(rec["run_dir"], arcname=folder)
            data = buf.getvalue()
        return ray.get(collector.put.remote(rec, folder, data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Collector:
    """Runs on the machine that started the sweep (a Ray actor pinned to its node): receives each
    trial's results folder (a tar.gz, by value) and record, unpacks the folder into the sweep's
    ``runs/`` and writes the record to ``trials/``."""

    def __init__(self, sweep_dir: str):
        self.dir = Path(sweep_dir)

    def record(self, index: int) -> dict | None:
        p = self.dir / "trials" / f"{index:04d}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def put(self, rec: dict, folder: str | None, data: bytes) -> dict:
        import io
        import tarfile

        from experiments import results

        if folder:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(self.dir / "runs", filter="data")
            rec = dict(rec, run_dir=str(self.dir / "runs" / folder))
        (self.dir / "trials").mkdir(exist_ok=True)
        results.write_json(self.dir / "trials" / f"{rec['index']:04d}.json", rec)
        return rec


def trial_dirname(trial) -> str:
    return f"trial-{trial.config['point']['index']:04d}"


def _progress_callback(sweep_dir: Path, labels: list[str], quiet: bool):
    from ray import tune

    class Progress(tune.Callback):
        """``[done/total] label: ok`` as trials finish (done counts the trial records)."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            if quiet:
                return
            i = trial.config["point"]["index"]
            done = len(list((sweep_dir / "trials").glob("*.json")))
            last = trial.last_result or {}
            state = ("ok" if last.get("rc") == 0 else "FAILED") if "trial_done" in last else "stopped early"
            print(f"[{done}/{len(labels)}] {labels[i]}: {state}", flush=True)

    return Progress()


# --- the sweep (driver) ---------------------------------------------------------------------------
def _records(sweep_dir: Path) -> dict[int, dict]:
    out = {}
    for p in sorted((sweep_dir / "trials").glob("*.json")):
        rec = json.loads(p.read_text())
        out[rec["index"]] = rec
    return out


def run_sweep(sweep, jobs: int = 1, quiet: bool = False, sweep_dir: Path | None = None,
              prog: str = "capgym sweep", summary: bool = True) -> tuple[Path, int]:
    """Run every trial of a loaded :class:`~experiments.sweep.Sweep` on Ray Tune, aggregate, and
    return the sweep folder and the exit status (0; 4 when a trial failed; 130 when interrupted).
    With ``sweep_dir`` (a folder this function made before) the Tune experiment there is restored
    and continued instead of starting a new one. ``prog`` starts the progress and error lines (a
    command built on sweeps, such as ``capgym align``, gives its own name); ``summary=False`` leaves
    the aggregate table and the ``results:`` line to the caller."""
    from experiments.live import ensure_ray

    say = (lambda *a, **k: None) if quiet else print
    resume = sweep_dir is not None
    total = len(sweep.points)
    # before anything is written: a cluster that cannot be reached is one line, exit 2; a local
    # instance has room for `jobs` trials at once, placement groups included
    need = max(trial_cpus(sweep, p) for p in sweep.points)
    started = ensure_ray(sweep.address,
                         num_cpus=None if sweep.address else max(math.ceil(jobs * need), os.cpu_count() or 1))
    try:
        from experiments.live.driver import release_pool

        release_pool()  # idle live actors of this process would hold CPUs the trials reserve
        check_fits(sweep)
        return _run_sweep(sweep, jobs, quiet, sweep_dir, say, resume, total, prog, summary)
    finally:
        if started:
            import ray

            ray.shutdown()


def trial_bundles(sweep, point) -> list[dict]:
    """The placement group of one trial: its own bundle (``resources:``) first, then one bundle per
    Ray actor its command starts (:func:`experiments.sweep.own_ray_bundles`: live node actors, Ray
    learners)."""
    head = {"CPU": sweep.resources["cpu"]}
    if sweep.resources.get("gpu"):
        head["GPU"] = sweep.resources["gpu"]
    return [head] + [dict(b) for b in point.bundles]


def trial_cpus(sweep, point) -> float:
    return sum(b.get("CPU", 0.0) for b in trial_bundles(sweep, point))


def check_fits(sweep) -> None:
    """A one-line UserError when some trial's placement group can never be placed on the Ray
    instance (more CPUs or GPUs in all than it has, or a bundle bigger than its biggest node):
    Tune would wait for it forever."""
    import ray

    from experiments.cli import UserError

    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for p in sweep.points:
        bundles = trial_bundles(sweep, p)
        for res in ("CPU", "GPU"):
            want = sum(b.get(res, 0.0) for b in bundles)
            if want > total.get(res, 0.0) + 1e-9:
                own = f", with {len(bundles) - 1} Ray actors of its own" if len(bundles) > 1 else ""
                raise UserError(f"resources: trial {p.label()} needs {want:g} {res}s{own}, but the Ray instance has "
                                f"{total.get(res, 0.0):g} (lower resources.{res.lower()} or the actors' share, "
                                f"or use a bigger cluster)")
            big = max(b.get(res, 0.0) for b in bundles)
            if nodes and big > max(n.get(res, 0.0) for n in nodes) + 1e-9:
                raise UserError(f"resources: trial {p.label()} asks for {big:g} {res}s in one bundle, more than any "
                                f"node of the Ray instance has")


def trial_resources(sweep):
    """What ``tune.with_resources`` gets: the plain ``resources:`` when no trial starts Ray actors of
    its own, else one placement group per trial (``PlacementGroupFactory``, from the bundles saved
    with each trial), which Tune reserves whole before the trial starts and into which the trial's
    actors go (Tune's placement groups capture child tasks)."""
    if not any(p.bundles for p in sweep.points):
        return dict(sweep.resources)
    from ray.tune import PlacementGroupFactory

    head = trial_bundles(sweep, sweep.points[0])[0]
    return lambda config: PlacementGroupFactory([dict(head)] + [dict(b) for b in config["point"].get("bundles") or []])


def _run_sweep(sweep, jobs, quiet, sweep_dir, say, resume, total, prog="capgym sweep",
               summary=True) -> tuple[Path, int]:
    from experiments import results

    if not resume:
        sweep_dir = results.new_run_dir(sweep.root, sweep.name).resolve()
        for p in sweep.points:  # every trial's folder goes under <sweep>/runs/
            p.data["output"] = {**p.data.get("output", {}), "root": str(sweep_dir), "progress": False,
                         "report": "light"}
            p.data["experiment"] = "runs"
        results.write_yaml(sweep_dir / "sweep.yaml", {**sweep.resolved(), "jobs": jobs})
        results.write_json(sweep_dir / "points.json", [p.to_json() for p in sweep.points])
    results.write_status(sweep_dir, results.STATUS_RUNNING, runs=total, done=len(_records(sweep_dir)))
    where = f"the Ray cluster at {sweep.address}" if sweep.address else "Ray Tune"
    say(f"{prog}: {sweep.name}: {total} trials ({sweep.kind} configs), {jobs} at a time on {where}"
        f"{' (resumed)' if resume else ''} -> {sweep_dir}")

    interrupted = False
    try:
        interrupted = _tune(sweep, sweep_dir, jobs, quiet, resume)
    except KeyboardInterrupt:  # a second Ctrl-C: aggregate what there is right away
        interrupted = True
    except Exception as e:
        results.write_text(sweep_dir / "error.txt", traceback.format_exc())
        results.write_status(sweep_dir, results.STATUS_FAILED, runs=total, error=f"{type(e).__name__}: {e}")
        print(f"{prog}: Ray Tune failed: {type(e).__name__}: {e}", file=sys.stderr)
        return sweep_dir, 1
    records = _records(sweep_dir)
    interrupted = interrupted or len(records) < total
    try:
        rc = _aggregate(sweep_dir, sweep, records, say if summary else (lambda *a, **k: None), prog)
    except Exception as e:
        results.write_text(sweep_dir / "error.txt", traceback.format_exc())
        results.write_status(sweep_dir, results.STATUS_FAILED, runs=total, done=len(records),
                             error=f"{type(e).__name__}: {e}")
        print(f"{prog}: aggregation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return sweep_dir, 1
    if interrupted:
        results.write_status(sweep_dir, results.STATUS_INTERRUPTED, runs=total, done=len(records))
        print(f"{prog}: interrupted after {len(records)}/{total} trials; partial results in {sweep_dir} "
              f"(continue with: capgym sweep --resume {sweep_dir})", file=sys.stderr)
        return sweep_dir, 130
    results.write_status(sweep_dir, results.STATUS_COMPLETE, runs=total, done=len(records))
    return sweep_dir, rc


def _tune(sweep, sweep_dir: Path, jobs: int, quiet: bool, resume: bool) -> bool:
    """Start (or restore) the Tune experiment and wait for it; True when it was interrupted.

    SIGTERM is turned into Tune's own graceful stop (SIGUSR1: stop the trials, save the state), as
    is Ctrl-C (Tune's SIGINT handler)."""
    import logging

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter, which verbose=0 silences
    # a scheduler's metric is missing from iterations where no episode ended (ASHA skips those)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    from ray import tune

    stopped = {"set": False}

    def on_term(signum, frame):
        stopped["set"] = True
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's handler while it runs; ours (below) before

    # after ray.init, which installs a SIGTERM handler of its own (exit at once)
    old = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, on_term),
                                                (signal.SIGUSR1, lambda *a: stopped.update(set=True)))}
    collector = None
    try:
        name = None
        if sweep.address:  # trials hand their folders back by value to this machine
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            name = f"capgym-sweep-{sweep_dir.name}"
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            collector = ray.remote(Collector).options(name=name, num_cpus=0, scheduling_strategy=here,
                                                      get_if_exists=True).remote(str(sweep_dir))
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
        trainable = tune.with_resources(tune_trial, trial_resources(sweep))
        if stopped["set"]:
            return True
        if resume:
            tuner = tune.Tuner.restore(str(sweep_dir / "tune"), trainable, resume_unfinished=True,
                                       restart_errored=True)
        else:
            labels = [p.label() for p in sweep.points]
            space = {"sweep": {"dir": str(sweep_dir), "kind": sweep.kind, "measure": sweep.measure,
                               "collector": name},
                     "point": tune.grid_search([p.to_json() for p in sweep.points])}
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(max_concurrent_trials=jobs, trial_dirname_creator=trial_dirname,
                                            reuse_actors=sweep.scheduler is None,
                                            scheduler=_scheduler(sweep, sweep_dir)),
                run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=0,
                                          callbacks=[_progress_callback(sweep_dir, labels, quiet),
                                                     *_wandb_callback(sweep, sweep_dir)]))
        tuner.fit()
        return stopped["set"]  # (a Ctrl-C, which Tune handles itself, shows as trials without records)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if collector is not None:
            import ray

            ray.kill(collector)


def _wandb_callback(sweep, sweep_dir: Path) -> list:
    """Tune's ``WandbLoggerCallback`` when the sweep file has a ``wandb:`` section whose mode is not
    ``disabled``: one wandb run per trial (named after the trial, grouped as ``<name>-<folder>``,
    the trial's config as ``wandb.config``), logging everything the trial reports to Tune (each
    training iteration's ``return_mean`` and ``env_steps``; at the end its exit status and measure).
    Offline by default (no account, no network): the runs are written straight into the sweep
    folder, ``wandb/offline-run-<time>-<trial id>/`` (the logging actors run on this machine), for
    ``wandb sync`` later. (Not into Tune's trial folders: Tune copies those from its staging area
    when the trial ends, before the run's last records are written.)"""
    w = sweep.wandb
    if not w or w["mode"] == "disabled":
        return []
    from ray.air.integrations.wandb import WandbLoggerCallback

    if w["mode"] == "offline":
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    return [WandbLoggerCallback(project=w["project"], group=f"{sweep.name}-{sweep_dir.name}", mode=w["mode"],
                                entity=w["entity"], tags=list(w["tags"]) or None, excludes=["run_dir"],
                                dir=str(sweep_dir), reinit="finish_previous")]


def _scheduler(sweep, sweep_dir: Path):
    """ASHA on the training return (``scheduler: asha``): rungs from a quarter of the longest
    training, doubling, half the trials stopped at each. A trial it stops is killed with its actor
    (a function trainable stopped mid-training cannot end cleanly), so the scheduler itself, in the
    driver, writes the trial's record: status ``stopped``, the last reported return and env steps,
    and its folder (left as it was, ``running``)."""
    if sweep.scheduler != "asha":
        return None
    import math

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from experiments import results

    by_value = bool(sweep.address)

    class StoppingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            record = sweep_dir / "trials" / f"{trial.config['point']['index']:04d}.json"
            if action == TrialScheduler.STOP and "trial_done" not in result and not record.is_file():
                record.parent.mkdir(exist_ok=True)
                results.write_json(record, {
                    "index": trial.config["point"]["index"], "run_dir": None if by_value else result.get("run_dir"),
                    "rc": 0, "status": "stopped", "error": None, "stopped_early": True,
                    "measures": {k: result.get(k) for k in ("return_mean", "env_steps")}})
            return action

    iters = max(math.ceil(p.cfg.ppo.total_steps / p.cfg.ppo.batch_steps) for p in sweep.points)
    return StoppingASHA(time_attr="training_iteration", metric="return_mean", mode="max", max_t=iters,
                        grace_period=max(1, iters // 4), reduction_factor=2, stop_last_trials=False)


def _aggregate(sweep_dir: Path, sweep, records: dict[int, dict], say, prog: str = "capgym sweep") -> int:
    """Write sweep.csv, aggregate.csv/.txt/.json and the plot; print the table. 1 if a trial failed."""
    from experiments import results
    from experiments import sweep as sw

    keys = list(sweep.grid)
    rows = []
    for p in sweep.points:
        rows.extend(sw.rows_of_trial(sweep, p, records.get(p.index)))
    results.write_csv(sweep_dir / "sweep.csv", rows)
    agg = sw.aggregate(rows, keys, sw.measures_of(sweep), sweep.entity, sweep.seed)
    results.write_csv(sweep_dir / "aggregate.csv", agg)
    table = sw.format_aggregate(agg, keys, sweep.measure, sweep.entity, sw.TABLE_MEASURES[sweep.kind])
    results.write_text(sweep_dir / "aggregate.txt", table + "\n")
    results.write_json(sweep_dir / "aggregate.json", {"sweep": sweep.resolved(), "aggregate": agg})
    made = "sweep.csv, aggregate.csv"
    if keys:  # (capgym align's sweep has no grid axis: it draws its own plot)
        (sweep_dir / "plots").mkdir(exist_ok=True)
        png = sw.plot(sweep_dir / "plots" / f"{sweep.measure.replace('/', '_')}.png", agg, keys, sweep.measure,
                      sweep.entity)
        made += f", plots/{png.name}"
        if sweep.kind == "run":
            _log_wandb(sweep_dir, sweep, agg, png)
    from experiments.html_report import write as write_report

    write_report(sweep_dir, "sweep")  # report.html
    say(table)
    say(f"results: {sweep_dir}  ({made}, report.html)")
    failed = [r for r in records.values() if r["rc"] != 0 or r.get("error")]
    for r in failed:
        print(f"{prog}: trial {sweep.points[r['index']].label()} failed: "
              f"{r.get('error') or 'exit status ' + str(r['rc'])} ({r.get('run_dir') or 'no folder'})", file=sys.stderr)
    return 4 if failed else 0  # a failed trial is an error (4), not a verdict (1)


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


def load_resumable(folder: str | Path):
    """The :class:`~experiments.sweep.Sweep` saved in a sweep folder (``sweep.yaml``,
    ``points.json`` and Tune's state in ``tune/``), or a one-line UserError."""
    import yaml

    from experiments import sweep as sw
    from experiments.cli import UserError

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--resume: {folder}: no such folder")
    try:
        spec = yaml.safe_load((folder / "sweep.yaml").read_text())
        points = json.loads((folder / "points.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        raise UserError(f"--resume: {folder} is not a sweep folder (no sweep.yaml and points.json)") from None
    if not (folder / "tune" / "tuner.pkl").is_file():
        raise UserError(f"--resume: {folder} has no Ray Tune state to restore (tune/tuner.pkl)")
    try:
        s = sw.Sweep(spec["name"], Path(spec["base"]), spec["grid"], spec["seeds"], spec["measure"], spec["kind"],
                     spec.get("seed", 0), address=(spec.get("ray") or {}).get("address"),
                     resources=spec.get("resources") or {"cpu": 1.0, "gpu": 0.0}, scheduler=spec.get("scheduler"),
                     wandb=spec.get("wandb"))
        s.points = [sw.point_from_json(s.kind, p) for p in points]
    except (KeyError, TypeError) as e:
        raise UserError(f"--resume: {folder}: sweep.yaml or points.json is damaged ({e})") from None
    return s, int(spec.get("jobs", 1))


# --- the command ----------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.cli import UserError
    from experiments.sweep import load_sweep

    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs: must be >= 1, not {args.jobs}")
    if args.resume:
        if args.sweep or args.overrides or args.measure or args.address:
            raise UserError("--resume: takes the sweep folder only (no sweep file, overrides or --measure)")
        sweep, jobs = load_resumable(args.resume)
        if args.jobs is not None and args.jobs != jobs:
            print(f"capgym sweep: note: a resumed sweep keeps --jobs {jobs}", file=sys.stderr)
        return run_sweep(sweep, jobs=jobs, quiet=args.quiet, sweep_dir=Path(args.resume).resolve())[1]
    if not args.sweep:
        raise UserError("SWEEP: give a sweep file (or --resume SWEEP_DIR)")
    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.measure:
        overrides.append(f"measure={args.measure}")
    sweep = load_sweep(args.sweep, overrides)
    if args.dry_run:
        for p in sweep.points:
            print(p.label())
        print(f"{len(sweep.points)} trials ({sweep.kind} configs)")
        return 0
    return run_sweep(sweep, jobs=args.jobs or 1, quiet=args.quiet)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of configs over seeds on Ray Tune and aggregate",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP", nargs="?", help="a sweep file, e.g. configs/sweeps/cap.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="a sweep key (seeds=3, measure=...) or a key of the base config applied to every trial")
    p.add_argument("-j", "--jobs", type=int, default=None, help="trials at a time (default 1)")
    p.add_argument("--measure", help="the measure to plot against the first grid axis")
    p.add_argument("--address", metavar="HOST:PORT", help="run the trials on this Ray cluster (or auto)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep in this folder")
    p.add_argument("--dry-run", action="store_true", help="validate and list the trials, run nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_sweep)
