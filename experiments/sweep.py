"""Sweeps: a grid over any base config (a run, a training or an alignment study) times seeds, run
as Ray Tune trials that are ordinary commands, then aggregated with bootstrap confidence intervals.

A sweep file names a base config, the grid and the seeds::

    name: cap-partitions                     # the results folder results/<name>/ (default: file name)
    base: ../quickstart.yaml                 # a run, training or align config (next to this file, or in the project)
    set: {wandb.mode: disabled}              # overrides applied to every trial (optional)
    grid:                                    # every combination of these values
      world.nodes: [3, 5, 7]
      nemesis.random.interval_ms: [500, 1000]
    seeds: [0, 1, 2]                         # or a count: seeds: 3 means 0, 1, 2
    measure: availability                    # the measure plotted against the first grid axis (optional)
    seed: 0                                  # the sweep's own seed: the bootstrap's resampling (optional)
    ray: {address: null}                     # a Ray cluster to run the trials on (optional; --address)
    resources: {cpu: 1, gpu: 0}              # what Tune reserves for each trial (optional); trials that
                                             # start Ray actors (live runs, Ray learners) also reserve
                                             # theirs: one placement group per trial
    scheduler: asha                          # training bases: stop poor trials early (optional)
    wandb: {mode: offline}                   # one wandb run per trial from what it reports to Tune
                                             # (WandbLoggerCallback; offline unless mode: online)

The **kind** of the base is read from its keys: an ``align:`` section makes it an align config, an
``env:``/``ppo:``/``learner:`` section a training config, anything else a run config. Grid keys are
that kind's own override keys (``world.nodes`` for runs; ``ppo.lr``, ``env.params.reward_mode``,
``learner.share`` for training; those and ``align.mixed_weight`` for align), and the default
measure is the kind's (``availability``, ``return_mean``, ``welfare``). One trial is:

* run: one ``capgym run`` of the point's config with one seed (a row per protocol it compares);
* train: one ``capgym train`` (a row; each iteration's figures are also reported to Tune);
* align: one training of one reward mode and weight of the point's ``align`` section with one seed,
  then its policy evaluated (local rewards) on ``align.episodes`` held-out seeds, as ``capgym
  align`` does (a row per policy label ``ppo_local``, ``ppo_global``, ``ppo_mixed[_<w>]``).

Every trial's config is composed and validated with the kind's own validation before anything runs.

Results::

    results/<name>/<YYYYmmdd-HHMMSS>-<id>/
        sweep.yaml       the sweep as resolved (base, kind, grid, seeds, measure, seed)
        points.json      every trial: index, grid values, seed, policy label (align), its full config
        status.json      running -> complete | interrupted | failed
        runs/<time>-<id>/  one ordinary results folder per trial
        trials/<index>.json  a finished trial's record (its folder, exit status, measures)
        tune/            Ray Tune's experiment state (what ``capgym sweep --resume`` restores)
        sweep.csv        one row per trial (and protocol): grid values, seed, measures
        aggregate.csv    per grid point (and protocol / policy): n, mean, std, and the 95% bootstrap
                         interval of the mean (<measure>_ci_low, <measure>_ci_high) over seeds
        aggregate.txt    the printed table (mean [95% CI])
        plots/<measure>.png  the measure (mean, 95% CI band) against the first grid axis
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.cli import UserError
from experiments.config import RunConfig, apply_override, compose, parse_override, read_yaml, validate

#: the project root: base configs not found next to the sweep file are looked up here
ROOT = Path(__file__).resolve().parent.parent
SWEEP_KEYS = ("name", "base", "set", "grid", "seeds", "measure", "seed", "ray", "resources", "scheduler", "wandb")
RUN_KEYS = tuple(RunConfig.model_fields)
KINDS = ("run", "train", "align")

#: headline measures of one protocol's run, read from its summary.json (``linearizable`` as 1/0)
MEASURES = ("availability", "availability_partitioned", "availability_connected", "linearizable",
            "stale_read_rate", "messages_per_op", "latency_p50_ms", "latency_p99_ms", "ops",
            "partitioned_ms", "time_without_leader", "elections", "split_votes", "lonely_elections",
            "lost_writes", "termination",
            "time_to_decide", "rounds_to_decide", "time_to_converge")
#: a training run's measures: the last iteration's mean return and the observer's global measures
#: of the episodes that ended in it (``global/<name>`` in metrics.csv), env steps and steps/s
TRAIN_MEASURES = ("return_mean", "availability", "availability_partitioned", "stale_fraction", "linearizable",
                  "messages", "env_steps", "sps")
#: an alignment trial's measures: its policy evaluated on held-out seeds (local rewards)
ALIGN_MEASURES = ("return_mean", "welfare", "availability", "availability_partitioned", "stale_read_rate",
                  "linearizable_fraction")
#: each game's global measures in the alignment report (means over held-out episodes; booleans
#: as the fraction of episodes where they held), after ``return_mean`` and ``welfare``
GAME_MEASURES = {
    "capgym/Register-v0": ALIGN_MEASURES[2:],
    "capgym/Election-v0": ("effective_leader_fraction", "fraction_without_leader", "elections", "split_votes",
                           "safety"),
    "capgym/Consensus-v0": ("termination", "agreement", "validity", "time_to_decide"),
    "capgym/Commons-v0": ("efficiency", "equality", "sustainability", "peace", "collapsed"),
    "capgym/Byzantine-v0": ("completed_per_s", "view_changes", "safety_violation"),
}


def align_measures(env_id: str) -> tuple[str, ...]:
    """The measures of an alignment trial on ``env_id``: local return, welfare, the game's own."""
    return ALIGN_MEASURES[:2] + GAME_MEASURES.get(env_id, ALIGN_MEASURES[2:])
KIND_MEASURES = {"run": MEASURES, "train": TRAIN_MEASURES, "align": ALIGN_MEASURES}
DEFAULT_MEASURE = {"run": "availability", "train": "return_mean", "align": "welfare"}
#: the column that splits a grid point's rows besides the seed (none for training)
ENTITY = {"run": "protocol", "train": None, "align": "policy"}
#: measures shown in the printed aggregate table (besides the plotted one)
TABLE_MEASURES = {"run": ("availability", "linearizable", "stale_read_rate", "messages_per_op"),
                  "train": ("return_mean", "availability", "stale_fraction"),
                  "align": ("return_mean", "welfare", "availability", "stale_read_rate")}
#: bootstrap resamples per interval
N_RESAMPLES = 2000


@dataclass
class Point:
    """One trial of the sweep: a grid point (key -> value), a seed, for align bases the policy
    ``(label, reward mode, mixed weight)``, and its validated config (``cfg``) with the plain data
    it was validated from (``data``; what the trial re-validates in its worker)."""

    index: int
    values: dict[str, Any]
    seed: int
    cfg: Any
    data: dict = field(default_factory=dict)
    policy: tuple[str, str, float] | None = None
    episodes: int = 0
    bundles: list[dict] = field(default_factory=list)

    def label(self) -> str:
        pol = f" policy={self.policy[0]}" if self.policy else ""
        return (" ".join(f"{k}={v}" for k, v in self.values.items()) + pol + f" seed={self.seed}").strip()

    def to_json(self) -> dict:
        return {"index": self.index, "values": self.values, "seed": self.seed,
                "policy": list(self.policy) if self.policy else None, "episodes": self.episodes,
                "bundles": self.bundles, "config": self.data}


@dataclass
class Sweep:
    name: str
    base: Path
    grid: dict[str, list]
    seeds: list[int]
    measure: str
    kind: str = "run"
    seed: int = 0
    points: list[Point] = field(default_factory=list)
    address: str | None = None
    resources: dict = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    scheduler: str | None = None
    root: str = "results"
    wandb: dict | None = None

    @property
    def entity(self) -> str | None:
        return ENTITY[self.kind]

    def resolved(self) -> dict:
        return {"name": self.name, "base": str(self.base), "kind": self.kind, "grid": self.grid,
                "seeds": self.seeds, "measure": self.measure, "seed": self.seed, "ray": {"address": self.address},
                "resources": self.resources, "scheduler": self.scheduler, "wandb": self.wandb,
                "runs": len(self.points)}


# --- loading and expanding ------------------------------------------------------------------------
def kind_of(data: dict) -> str:
    """``align`` (an ``align:`` section), ``train`` (``env``/``ppo``/``learner``) or ``run``."""
    if "align" in data:
        return "align"
    if any(k in data for k in ("env", "ppo", "learner")):
        return "train"
    return "run"


def kind_keys(kind: str) -> tuple[str, ...]:
    """The top-level keys of a config of this kind (what grid and override keys start with)."""
    if kind == "run":
        return RUN_KEYS
    from experiments.train_cmd import TrainRunConfig

    keys = tuple(TrainRunConfig.model_fields)
    return keys + ("align",) if kind == "align" else keys


def _find_base(base: Any, here: Path) -> Path:
    if not isinstance(base, str) or not base:
        raise UserError("base: must name a config file, e.g. base: ../quickstart.yaml")
    for p in (here / base, ROOT / base, Path(base)):
        if p.is_file():
            return p
    raise UserError(f"base: no config {base!r} (looked next to the sweep file and in {ROOT})")


def _seeds(v: Any) -> list[int]:
    if isinstance(v, bool):
        raise UserError("seeds: must be a count or a list of integers")
    if isinstance(v, int):
        if v < 1:
            raise UserError("seeds: a count must be >= 1")
        return list(range(v))
    if isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool) for s in v):
        if len(set(v)) != len(v):
            raise UserError("seeds: repeated seed")
        return list(v)
    raise UserError("seeds: must be a count or a non-empty list of integers")


def _grid(v: Any, kind: str) -> dict[str, list]:
    if not isinstance(v, dict) or not v:
        raise UserError("grid: must map override keys to lists of values, e.g. {world.nodes: [3, 5]}")
    keys = kind_keys(kind)
    out = {}
    for k, vals in v.items():
        k = str(k)
        parse_override(f"{k}=0")  # a well-formed key, or one line naming it
        if k == "seed" or k.startswith("experiment") or k.startswith("output"):
            raise UserError(f"grid.{k}: cannot be swept (use seeds: for seeds)")
        if k.split(".")[0] not in keys:
            raise UserError(f"grid.{k}: unknown key (the base is a {kind} config; its keys: {', '.join(keys)})")
        if not isinstance(vals, list) or not vals:
            raise UserError(f"grid.{k}: must be a non-empty list of values")
        out[k] = vals
    return out


def _resources(v: Any) -> dict:
    """``{cpu, gpu}`` reserved per trial (defaults 1 and 0); a one-line UserError otherwise."""
    v = {} if v is None else v
    if not isinstance(v, dict) or set(v) - {"cpu", "gpu"}:
        raise UserError("resources: must be {cpu: N, gpu: N} (what each trial reserves)")
    out = {"cpu": v.get("cpu", 1), "gpu": v.get("gpu", 0)}
    for k, x in out.items():
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 or (k == "cpu" and x == 0):
            raise UserError(f"resources.{k}: must be a number {'> 0' if k == 'cpu' else '>= 0'}, not {x!r}")
    return {k: float(x) for k, x in out.items()}


def _wandb(v: Any) -> dict | None:
    """The sweep's ``wandb:`` section (``experiments.config.WandbConfig``: mode, project, entity,
    tags), or ``None`` when absent; a one-line UserError when malformed."""
    if v is None:
        return None
    from pydantic import ValidationError

    from envs.world.config import error_line
    from experiments.config import WandbConfig

    if not isinstance(v, dict):
        raise UserError("wandb: must be {mode: offline|online|disabled, project: ..., tags: [...]}")
    try:
        return WandbConfig.model_validate(v).model_dump(mode="json")
    except ValidationError as e:
        raise UserError("wandb." + error_line(e)) from None


def load_sweep(path: str | Path, overrides: list[str] = ()) -> Sweep:
    """Read a sweep file, apply overrides (sweep keys like ``seeds=2`` go to the sweep, the base
    kind's keys like ``world.duration_ms=500`` or ``ppo.total_steps=2048`` to every trial), expand
    the grid and validate every trial. Any mistake: a one-line :class:`UserError`."""
    path = Path(path)
    spec = read_yaml(path)
    cfg_over: list[tuple[list[str], Any]] = []
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] in ("grid", "set") and len(parts) > 1:  # grid.ppo.lr=[...]: one dotted grid key
            if not isinstance(spec.get(parts[0]) or {}, dict):
                raise UserError(f"{parts[0]}: must map override keys to values")
            spec[parts[0]] = {**(spec.get(parts[0]) or {}), ".".join(parts[1:]): value}
        elif parts[0] in SWEEP_KEYS:
            apply_override(spec, parts, value)
        else:
            cfg_over.append((parts, value))
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{unknown[0]}: unknown key (a sweep file has {', '.join(SWEEP_KEYS)})")
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise UserError(f"name: {name!r} is not a folder name (letters, digits, _ . -)")
    base = _find_base(spec.get("base"), path.parent)
    data = compose(base)
    kind = kind_of(data)
    keys = kind_keys(kind)
    for parts, _ in cfg_over:
        if parts[0] not in keys:
            raise UserError(f"{'.'.join(parts)}: unknown key (a sweep key {', '.join(SWEEP_KEYS)} "
                            f"or a {kind}-config key {', '.join(keys)})")
    grid = _grid(spec.get("grid"), kind)
    seeds = _seeds(spec.get("seeds", 1))
    measure = spec.get("measure", DEFAULT_MEASURE[kind])
    known = KIND_MEASURES[kind] + (tuple(m for g in GAME_MEASURES.values() for m in g) if kind == "align" else ())
    if measure not in known and not (kind == "train" and str(measure).startswith("global/")):
        raise UserError(f"measure: {measure!r} is not a measure of a {kind} sweep "
                        f"(choose from {', '.join(KIND_MEASURES[kind])})")
    sseed = spec.get("seed", 0)
    if not isinstance(sseed, int) or isinstance(sseed, bool) or sseed < 0:
        raise UserError("seed: the sweep's seed must be an integer >= 0")
    ray = spec.get("ray") or {}
    if not isinstance(ray, dict) or set(ray) - {"address"}:
        raise UserError("ray: must be {address: HOST:PORT} (or null for a local Ray instance)")
    address = ray.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        raise UserError("ray.address: must be HOST:PORT, auto, or null")
    resources = _resources(spec.get("resources"))
    scheduler = spec.get("scheduler")
    if scheduler not in (None, "asha"):
        raise UserError(f"scheduler: {scheduler!r} is not a scheduler (asha, or leave it out)")
    if scheduler and kind != "train":
        raise UserError(f"scheduler: asha needs trials that report a training return each iteration "
                        f"(a train base; this base is a {kind} config)")
    tracking = _wandb(spec.get("wandb"))
    common = spec.get("set") or {}
    if not isinstance(common, dict):
        raise UserError("set: must map override keys to values")
    for k, v in common.items():
        parts, _ = parse_override(f"{k}=0")
        if parts[0] not in keys:
            raise UserError(f"set.{k}: unknown key (the base is a {kind} config; its keys: {', '.join(keys)})")
        apply_override(data, parts, copy.deepcopy(v))
    for parts, value in cfg_over:
        apply_override(data, parts, value)
    sweep = Sweep(name, base, grid, seeds, measure, kind, sseed, address=address, resources=resources,
                  scheduler=scheduler, wandb=tracking)
    sweep.points = expand(data, grid, seeds, kind)
    sweep.root = sweep.points[0].cfg.output.root
    return sweep


def combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def validate_kind(kind: str, data: dict):
    """The validated config of one trial (``RunConfig`` or ``TrainRunConfig``; for align, the
    training config with the ``align`` section checked and dropped) or a one-line UserError."""
    if kind == "run":
        return validate(data)
    from experiments.train_cmd import validate_train

    return validate_train({k: v for k, v in data.items() if k != "align"})


def _align_section(data: dict):
    from pydantic import ValidationError

    from envs.world.config import error_line
    from experiments.align_cmd import AlignConfig

    try:
        return AlignConfig.model_validate(data.get("align") or {})
    except ValidationError as e:
        raise UserError("align." + error_line(e)) from None


def expand(data: dict, grid: dict[str, list], seeds: list[int], kind: str = "run") -> list[Point]:
    """Validated configs for every grid combination (times policy, for align) times seed; a bad
    one raises a :class:`UserError` naming the grid value."""
    points = []
    for values in combinations(grid):
        where = " ".join(f"{k}={v!r}" for k, v in values.items())
        d0 = copy.deepcopy(data)
        for k, v in values.items():
            try:
                apply_override(d0, k.split("."), copy.deepcopy(v))
            except UserError as e:
                raise UserError(f"grid {k}={v!r}: {e}") from None
        policies: list = [None]
        episodes = 0
        if kind == "align":
            try:
                acfg = _align_section(d0)
            except UserError as e:
                raise UserError(f"grid {where}: {e}") from None
            policies, episodes = acfg.runs(), acfg.episodes
        for pol in policies:
            for seed in seeds:
                d = copy.deepcopy(d0)
                if pol is not None:
                    d.pop("align", None)
                    params = d.setdefault("env", {}).setdefault("params", {})
                    params.update({"reward_mode": pol[1], "mixed_weight": pol[2]})
                d["seed"] = seed
                try:
                    cfg = validate_kind(kind, d)
                    _refuse_own_ray(kind, cfg)
                except UserError as e:
                    raise UserError(f"grid {where}: {e}") from None
                points.append(Point(len(points), values, seed, cfg, cfg.model_dump(mode="json"),
                                    tuple(pol) if pol else None, episodes, own_ray_bundles(kind, cfg)))
    return points


def _refuse_own_ray(kind: str, cfg) -> None:
    """Trials that start Ray work of their own (live runs, Ray learners) run on the sweep's Ray
    instance inside their trial's placement group (:func:`own_ray_bundles`); pointing one at a Ray
    cluster of its own cannot work from inside a trial, so that is refused in one line."""
    own = (kind == "run" and cfg.runtime == "live") or (kind != "run" and cfg.learner.backend == "ray")
    if own and cfg.ray.address is not None:
        raise UserError("ray.address: a sweep's trials run on the sweep's Ray instance; give the cluster to the "
                        "sweep (ray: {address: ...} in the sweep file, or --address), not to its trials")


def own_ray_bundles(kind: str, cfg) -> list[dict]:
    """The Ray resources a trial's own actors ask for, one bundle per actor (Ray's resource names):
    a live run's node actors (``world.nodes`` plus the driver's spares, plus one for a restart's
    replacement starting before the crashed actor is gone) at the live runtime's CPU share each;
    a training's learner actors with ``learner.backend: ray`` (one per agent, or one shared) at
    ``ray.num_cpus_per_learner`` / ``num_gpus_per_learner`` each. None for anything else.
    The sweep reserves them with the trial's own bundle in one placement group per trial, which
    the trial's actors fall into (Tune captures child tasks), so a trial never waits on CPUs that
    other trials hold."""
    if kind == "run" and cfg.runtime == "live":
        from experiments.live.driver import LiveOptions

        opt = LiveOptions()
        return [{"CPU": float(opt.actor_cpus)}] * (cfg.world.nodes + opt.spares + 1)
    if kind != "run" and cfg.learner.backend == "ray":
        from agents.learn.config import make_env

        env = make_env(cfg.env)
        n = 1 if cfg.learner.share else len(env.possible_agents)
        env.close()
        one = {"CPU": float(cfg.ray.num_cpus_per_learner)}
        if cfg.ray.num_gpus_per_learner:
            one["GPU"] = float(cfg.ray.num_gpus_per_learner)
        return [one] * n
    return []


def point_from_json(kind: str, j: dict) -> Point:
    """A :class:`Point` saved with :meth:`Point.to_json` (``points.json``), re-validated."""
    return Point(j["index"], j["values"], j["seed"], validate_kind(kind, copy.deepcopy(j["config"])), j["config"],
                 tuple(j["policy"]) if j.get("policy") else None, j.get("episodes", 0), j.get("bundles") or [])


# --- reading the trials back ----------------------------------------------------------------------
def headline(s: dict) -> dict:
    """The headline measures of one protocol's summary (``summary.json["runs"][label]``)."""
    lat = s.get("latency_ms") or {}
    el = s.get("election") or {}
    co = s.get("consensus") or {}
    cv = s.get("convergence") or {}
    lin = s.get("linearizable")
    out = {
        "availability": s.get("availability"),
        "availability_partitioned": s.get("availability_partitioned"),
        "availability_connected": s.get("availability_connected"),
        "linearizable": None if lin is None else int(bool(lin)),
        "stale_read_rate": s.get("stale_read_rate"),
        "messages_per_op": s.get("messages_per_op"),
        "latency_p50_ms": lat.get("p50"),
        "latency_p99_ms": lat.get("p99"),
        "ops": s.get("ops"),
        "partitioned_ms": s.get("partitioned_ms"),
        "time_without_leader": el.get("time_without_leader"),
        "elections": el.get("elections"),
        "split_votes": el.get("split_votes"),
        "lonely_elections": el.get("lonely_elections"),
        "lost_writes": s.get("lost_writes"),
        "termination": co.get("termination"),
        "time_to_decide": co.get("time_to_decide"),
        "rounds_to_decide": co.get("rounds_to_decide"),
        "time_to_converge": cv.get("time_to_converge"),
    }
    return {k: out[k] for k in MEASURES}


def train_measures(summary: dict, measure: str | None = None) -> dict:
    """A training run's measures from its ``summary.json`` (the last value of each figure)."""
    last = summary.get("last") or {}
    out = {"return_mean": last.get("return_mean"), "env_steps": summary.get("env_steps"), "sps": summary.get("sps")}
    for k in TRAIN_MEASURES:
        if k not in out:
            out[k] = last.get(f"global/{k}")
    if measure and measure.startswith("global/"):
        out[measure] = last.get(measure)
    return out


def measures_of(sweep: Sweep) -> tuple[str, ...]:
    ms = KIND_MEASURES[sweep.kind]
    if sweep.kind == "align" and sweep.points:
        ms = align_measures(sweep.points[0].cfg.env.id)
    return ms if sweep.measure in ms else ms + (sweep.measure,)


def rows_of_trial(sweep: Sweep, point: Point, record: dict | None) -> list[dict]:
    """``sweep.csv`` rows of one trial from its record (``trials/<index>.json``; ``None``: not run):
    one per protocol for runs, one for training, one (its policy) for align."""
    ms = measures_of(sweep)
    base = {"run": point.index, **point.values}
    if sweep.kind == "align":
        base["policy"] = point.policy[0]
    base["seed"] = point.seed
    status = (record or {}).get("status") or "not run"
    where = (record or {}).get("run_dir") or ""
    got = (record or {}).get("measures") or {}
    if sweep.kind == "run":
        if not got:
            return [{**base, "protocol": e.tag, "status": status, **dict.fromkeys(ms), "run_dir": where}
                    for e in point.cfg.entries()]
        return [{**base, "protocol": label, "status": status, **{m: s.get(m) for m in ms}, "run_dir": where}
                for label, s in got.items()]
    return [{**base, "status": status, **{m: got.get(m) for m in ms}, "run_dir": where}]


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); ``None`` for no values."""
    xs = _finite(xs)
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def _finite(xs) -> list[float]:
    out = []
    for x in xs:
        if x is None or x == "":
            continue
        x = float(x)
        if not math.isnan(x):
            out.append(x)
    return out


def bootstrap_ci(xs: list[float], seed) -> tuple[float | None, float | None]:
    """The 95% bootstrap confidence interval of the mean of ``xs`` (``scipy.stats.bootstrap``,
    percentile method, :data:`N_RESAMPLES` resamples drawn from ``numpy.random.default_rng(seed)``).
    One value or none: ``(None, None)``; all values equal: ``(x, x)``."""
    import numpy as np
    from scipy.stats import bootstrap

    xs = _finite(xs)
    if len(xs) < 2:
        return None, None
    if max(xs) == min(xs):
        return xs[0], xs[0]
    res = bootstrap((np.asarray(xs),), np.mean, n_resamples=N_RESAMPLES, confidence_level=0.95,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def aggregate(rows: list[dict], keys: list[str], measures=MEASURES, entity: str | None = "protocol",
              seed: int = 0) -> list[dict]:
    """Per grid point (and ``entity``: protocol or policy), in first-seen order, over the seeds of
    its complete trials: ``n``, the seeds, and for every measure ``<m>_mean``, ``<m>_std`` (sample
    standard deviation), ``<m>_ci_low`` and ``<m>_ci_high`` (the 95% bootstrap interval of the mean,
    :func:`bootstrap_ci`, resampled with the seed ``(seed, group number, measure number)``, so the
    same rows give the same numbers whatever order the trials finished in)."""
    group_keys = keys + ([entity] if entity else [])
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "complete":
            groups.setdefault(tuple(repr(r[k]) for k in group_keys), []).append(r)
    out = []
    for gi, rs in enumerate(groups.values()):
        rs = sorted(rs, key=lambda r: r["seed"])
        row = {k: rs[0][k] for k in group_keys} | {"n": len(rs), "seeds": " ".join(str(r["seed"]) for r in rs)}
        for mi, m in enumerate(measures):
            xs = [r[m] for r in rs]
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(xs)
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = bootstrap_ci(xs, [seed, gi, mi])
        out.append(row)
    return out


def _cell(r: dict, m: str) -> str:
    mean, lo, hi = r.get(f"{m}_mean"), r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")
    if mean is None:
        return "-"
    return f"{mean:.3f}" + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")


def format_aggregate(agg: list[dict], keys: list[str], measure: str, entity: str | None = "protocol",
                     table_measures=TABLE_MEASURES["run"]) -> str:
    """A fixed-width table: grid values, entity, n, then the mean [95% CI] of the chosen measures."""
    ms = [measure] + [m for m in table_measures if m != measure]
    ents = [entity] if entity else []
    head = keys + ents + ["n"] + ms
    cells = [[str(r[k]) for k in keys + ents] + [str(r["n"])] + [_cell(r, m) for m in ms] for r in agg]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda cs: "  ".join(c.rjust(w) for c, w in zip(cs, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(c) for c in cells])


def plot(path: Path, agg: list[dict], keys: list[str], measure: str, entity: str | None = "protocol") -> Path:
    """The measure's mean against the first grid axis, with its 95% bootstrap interval as a shaded
    band; one line per entity (protocol or policy) and combination of the other axes."""
    from experiments.plots import pyplot, save_figure

    plt = pyplot()
    x_key, others = keys[0], keys[1:]
    lines: dict[str, list[tuple]] = {}
    for r in agg:
        if r.get(f"{measure}_mean") is None:
            continue
        name = " ".join(([str(r[entity])] if entity else []) + [f"{k}={r[k]}" for k in others]) or measure
        lines.setdefault(name, []).append((r[x_key], r[f"{measure}_mean"], r[f"{measure}_ci_low"],
                                           r[f"{measure}_ci_high"]))
    numeric = all(isinstance(r[x_key], (int, float)) and not isinstance(r[x_key], bool) for r in agg)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    cats = list(dict.fromkeys(str(r[x_key]) for r in agg))
    for i, (name, pts) in enumerate(lines.items()):
        xs = [p[0] if numeric else cats.index(str(p[0])) for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", ms=4, lw=1.3, color=f"C{i}", label=name)
        lo = [p[2] if p[2] is not None else p[1] for p in pts]
        hi = [p[3] if p[3] is not None else p[1] for p in pts]
        ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
    if not numeric:
        ax.set_xticks(range(len(cats)), cats)
    if not lines:
        ax.text(0.5, 0.5, f"no values of {measure}", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{measure} (mean, 95% bootstrap CI over seeds)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["Sweep", "Point", "load_sweep", "expand", "combinations", "headline", "rows_of_trial", "aggregate",
           "format_aggregate", "plot", "mean_std", "bootstrap_ci", "kind_of", "validate_kind", "point_from_json",
           "train_measures", "MEASURES", "TRAIN_MEASURES", "ALIGN_MEASURES", "KIND_MEASURES", "GAME_MEASURES",
           "align_measures"]
