"""Sweeps: a grid of run configs times seeds, run as ordinary runs, then aggregated.

A sweep file names a base run config, the grid and the seeds::

    name: cap-partitions                     # the results folder results/<name>/ (default: file name)
    base: ../quickstart.yaml                 # a run config (relative to this file, or to the project)
    set: {wandb.mode: disabled}              # overrides applied to every run (optional)
    grid:                                    # every combination of these values
      world.nodes: [3, 5, 7]
      nemesis.random.interval_ms: [500, 1000]
    seeds: [0, 1, 2]                         # or a count: seeds: 3 means 0, 1, 2
    measure: availability                    # the measure plotted against the first grid axis

Grid keys are override keys (``key.sub``, as on the ``capgym run`` command line). Each expanded
config is composed and validated with :mod:`experiments.config` before anything runs.

Results::

    results/<name>/<YYYYmmdd-HHMMSS>-<id>/
        sweep.yaml       the sweep as resolved (base config path, grid, seeds, measure)
        status.json      running -> complete | interrupted | failed
        runs/<time>-<id>/  one ordinary run folder per (grid point, seed)
        sweep.csv        one row per run and protocol: grid values, seed, headline measures
        aggregate.csv    per grid point and protocol: n, mean and std of every measure over seeds
        aggregate.txt    the printed table (mean +- std)
        plots/<measure>.png  the measure (mean +- std over seeds) against the first grid axis
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
SWEEP_KEYS = ("name", "base", "set", "grid", "seeds", "measure")
RUN_KEYS = tuple(RunConfig.model_fields)

#: headline measures of one protocol's run, read from its summary.json (``linearizable`` as 1/0)
MEASURES = ("availability", "availability_partitioned", "availability_connected", "linearizable",
            "stale_read_rate", "messages_per_op", "latency_p50_ms", "latency_p99_ms", "ops",
            "partitioned_ms", "time_without_leader", "elections", "split_votes", "lonely_elections",
            "lost_writes", "termination",
            "time_to_decide", "rounds_to_decide", "time_to_converge")
#: measures shown in the printed aggregate table (besides the plotted one)
TABLE_MEASURES = ("availability", "linearizable", "stale_read_rate", "messages_per_op")


@dataclass
class Point:
    """One run of the sweep: a grid point (key -> value) and a seed, with its validated config."""

    index: int
    values: dict[str, Any]
    seed: int
    cfg: RunConfig

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) + f" seed={self.seed}"


@dataclass
class Sweep:
    name: str
    base: Path
    grid: dict[str, list]
    seeds: list[int]
    measure: str
    points: list[Point] = field(default_factory=list)
    root: str = "results"

    def resolved(self) -> dict:
        return {"name": self.name, "base": str(self.base), "grid": self.grid, "seeds": self.seeds,
                "measure": self.measure, "runs": len(self.points)}


# --- loading and expanding ------------------------------------------------------------------------
def _find_base(base: Any, here: Path) -> Path:
    if not isinstance(base, str) or not base:
        raise UserError("base: must name a run config file, e.g. base: ../quickstart.yaml")
    for p in (here / base, ROOT / base, Path(base)):
        if p.is_file():
            return p
    raise UserError(f"base: no run config {base!r} (looked next to the sweep file and in {ROOT})")


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


def _grid(v: Any) -> dict[str, list]:
    if not isinstance(v, dict) or not v:
        raise UserError("grid: must map override keys to lists of values, e.g. {world.nodes: [3, 5]}")
    out = {}
    for k, vals in v.items():
        k = str(k)
        parse_override(f"{k}=0")  # a well-formed key, or one line naming it
        if k == "seed" or k.startswith("experiment") or k.startswith("output"):
            raise UserError(f"grid.{k}: cannot be swept (use seeds: for seeds)")
        if not isinstance(vals, list) or not vals:
            raise UserError(f"grid.{k}: must be a non-empty list of values")
        out[k] = vals
    return out


def load_sweep(path: str | Path, overrides: list[str] = ()) -> Sweep:
    """Read a sweep file, apply overrides (sweep keys like ``seeds=2`` go to the sweep, run-config
    keys like ``world.duration_ms=500`` to every run), expand the grid and validate every run."""
    path = Path(path)
    spec = read_yaml(path)
    run_over: list[tuple[list[str], Any]] = []
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] in SWEEP_KEYS:
            apply_override(spec, parts, value)
        elif parts[0] in RUN_KEYS:
            run_over.append((parts, value))
        else:
            raise UserError(f"{'.'.join(parts)}: unknown key (a sweep key {', '.join(SWEEP_KEYS)} "
                            f"or a run-config key {', '.join(RUN_KEYS)})")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{unknown[0]}: unknown key (a sweep file has {', '.join(SWEEP_KEYS)})")
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise UserError(f"name: {name!r} is not a folder name (letters, digits, _ . -)")
    base = _find_base(spec.get("base"), path.parent)
    grid = _grid(spec.get("grid"))
    seeds = _seeds(spec.get("seeds", 1))
    measure = spec.get("measure", "availability")
    if measure not in MEASURES:
        raise UserError(f"measure: {measure!r} is not a headline measure (choose from {', '.join(MEASURES)})")
    common = spec.get("set") or {}
    if not isinstance(common, dict):
        raise UserError("set: must map override keys to values")

    data = compose(base)
    for k, v in common.items():
        parts, _ = parse_override(f"{k}=0")
        apply_override(data, parts, copy.deepcopy(v))
    for parts, value in run_over:
        apply_override(data, parts, value)
    sweep = Sweep(name, base, grid, seeds, measure)
    sweep.points = expand(data, grid, seeds)
    sweep.root = sweep.points[0].cfg.output.root
    return sweep


def combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def expand(data: dict, grid: dict[str, list], seeds: list[int]) -> list[Point]:
    """Validated configs for every grid combination times seed; a bad one raises a
    :class:`UserError` naming the grid value."""
    points = []
    for values in combinations(grid):
        for seed in seeds:
            d = copy.deepcopy(data)
            for k, v in values.items():
                try:
                    apply_override(d, k.split("."), copy.deepcopy(v))
                except UserError as e:
                    raise UserError(f"grid {k}={v!r}: {e}") from None
            d["seed"] = seed
            try:
                cfg = validate(d)
            except UserError as e:
                where = " ".join(f"{k}={v!r}" for k, v in values.items())
                raise UserError(f"grid {where}: {e}") from None
            points.append(Point(len(points), values, seed, cfg))
    return points


# --- reading the runs back ------------------------------------------------------------------------
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


def rows_of_run(point: Point, run_dir: Path | None, status: str) -> list[dict]:
    """``sweep.csv`` rows of one run: one per protocol (several when the base config compares)."""
    import json

    base = {"run": point.index, **point.values, "seed": point.seed}
    runs = {}
    if run_dir is not None and (run_dir / "summary.json").is_file():
        runs = json.loads((run_dir / "summary.json").read_text())["runs"]
    where = str(run_dir) if run_dir else ""
    if not runs:
        return [{**base, "protocol": e.tag, "status": status, **dict.fromkeys(MEASURES), "run_dir": where}
                for e in point.cfg.entries()]
    return [{**base, "protocol": label, "status": status, **headline(s), "run_dir": where}
            for label, s in runs.items()]


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); ``None`` for no values."""
    xs = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def aggregate(rows: list[dict], keys: list[str]) -> list[dict]:
    """Per grid point and protocol (in first-seen order): runs, and mean/std over the seeds of every
    measure (completed runs only)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "complete":
            groups.setdefault(tuple(repr(r[k]) for k in keys) + (r["protocol"],), []).append(r)
    out = []
    for rs in groups.values():
        row = {k: rs[0][k] for k in keys} | {"protocol": rs[0]["protocol"], "n": len(rs),
                                               "seeds": " ".join(str(r["seed"]) for r in rs)}
        for m in MEASURES:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([r[m] for r in rs])
        out.append(row)
    return out


def _pm(m, sd) -> str:
    return "-" if m is None else f"{m:.3f} ± {sd:.3f}"


def format_aggregate(agg: list[dict], keys: list[str], measure: str) -> str:
    """A fixed-width table: grid values, protocol, n, then mean ± std of the chosen measures."""
    ms = [measure] + [m for m in TABLE_MEASURES if m != measure]
    head = keys + ["protocol", "n"] + ms
    cells = [[str(r[k]) for k in keys] + [str(r["protocol"]), str(r["n"])]
             + [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in ms] for r in agg]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda cs: "  ".join(c.rjust(w) for c, w in zip(cs, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(c) for c in cells])


def plot(path: Path, agg: list[dict], keys: list[str], measure: str) -> Path:
    """The measure's mean (error bars: std over seeds) against the first grid axis; one line per
    protocol and combination of the other axes."""
    from experiments.plots import pyplot, save_figure

    plt = pyplot()
    x_key, others = keys[0], keys[1:]
    lines: dict[str, list[tuple]] = {}
    for r in agg:
        if r[f"{measure}_mean"] is None:
            continue
        name = " ".join([str(r["protocol"])] + [f"{k}={r[k]}" for k in others])
        lines.setdefault(name, []).append((r[x_key], r[f"{measure}_mean"], r[f"{measure}_std"]))
    numeric = all(isinstance(r[x_key], (int, float)) and not isinstance(r[x_key], bool) for r in agg)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    cats = list(dict.fromkeys(str(r[x_key]) for r in agg))
    for name, pts in lines.items():
        xs = [p[0] if numeric else cats.index(str(p[0])) for p in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", ms=4, capsize=3,
                    lw=1.3, label=name)
    if not numeric:
        ax.set_xticks(range(len(cats)), cats)
    if not lines:
        ax.text(0.5, 0.5, f"no values of {measure}", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{measure} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["Sweep", "Point", "load_sweep", "expand", "combinations", "headline", "rows_of_run",
           "aggregate", "format_aggregate", "plot", "mean_std", "MEASURES"]
