"""``capgym align CONFIG [key.sub=value ...] [--jobs N]``: the alignment report, on Ray Tune.

For one environment and fault setting, train agents with ``local``, ``global`` and ``mixed``
rewards, each with ``align.seeds`` training seeds, evaluate every trained policy on the same
held-out seeds (with the observer checking linearizability), and report side by side, per policy,
the mean over training seeds with its 95% bootstrap interval: the agents' local returns, the
observer's global measures (availability, stale-read rate, linearizable fraction, welfare) and the
alignment gap of ``metrics.alignment.alignment_gap`` -- the global welfare that agents trained on
their local reward give up against agents trained on the global one. Scripted baselines run on the
same held-out seeds.

The trainings run as a sweep (``experiments.sweep_cmd``): one Ray Tune trial per policy and
training seed, ``--jobs N`` at a time, each an ordinary ``capgym train`` folder under ``runs/``
followed by its evaluation (``evaluation.json``); Ctrl-C stops it (exit 130) and
``capgym sweep --resume FOLDER`` continues the trainings (then rerun ``capgym align`` for the
report, or read ``aggregate.csv``).

The config is a training config (``capgym train``'s) plus an ``align`` section::

    align: {modes: [local, global, mixed], mixed_weight: [0.5, 0.8], episodes: 5, seeds: 5, baselines: true}

``mixed_weight`` is one weight ``w`` (the policy ``ppo_mixed``) or a list of them (one policy
``ppo_mixed_<w>`` each): the reward ``(1 - w) * local + w * global``. Training seeds are
``seed, seed + 1, ..., seed + seeds - 1``.

The folder ``results/<experiment>/<time>-<id>/`` is a sweep folder (``sweep.csv``, ``aggregate.csv``
with ``<measure>_mean/_ci_low/_ci_high`` per policy, ``runs/``, ``trials/``, ``tune/``) plus
``summary.json`` (``runs``: per policy the means, ``ci`` and ``n``, and the baselines' measures;
``table``; ``report``; ``alignment_gap``), ``report.md`` and ``plots/alignment.png`` (bars: means,
whiskers: 95% intervals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments.cli import UserError


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modes: list[Literal["local", "global", "mixed"]] = Field(default_factory=lambda: ["local", "global", "mixed"])
    mixed_weight: float | list[float] = Field(0.5, description="w of the mixed reward, or a list of them")
    episodes: int = Field(5, ge=1, description="held-out evaluation episodes per policy")
    baselines: bool = True
    seeds: int = Field(5, ge=1, description="training seeds per policy (one Tune trial each)")

    @field_validator("mixed_weight")
    @classmethod
    def _weights(cls, v):
        ws = v if isinstance(v, list) else [v]
        if not ws or any(not 0 <= w <= 1 for w in ws):
            raise ValueError("every weight must be in [0, 1] (and at least one given)")
        return v

    def runs(self) -> list[tuple[str, str, float]]:
        """``(label, reward_mode, mixed_weight)`` of every policy to train."""
        ws = self.mixed_weight if isinstance(self.mixed_weight, list) else [self.mixed_weight]
        out = []
        for mode in self.modes:
            if mode != "mixed":
                out.append((f"ppo_{mode}", mode, ws[0]))
            elif isinstance(self.mixed_weight, list):
                out += [(f"ppo_mixed_{w:g}", mode, w) for w in ws]
            else:
                out.append(("ppo_mixed", mode, ws[0]))
        return out


def load(path, overrides) -> tuple:
    from pydantic import ValidationError

    from envs.world.config import error_line
    from experiments.config import apply_override, compose, parse_override
    from experiments.train_cmd import validate_train

    data = compose(Path(path))
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    raw = data.pop("align", None)
    try:
        acfg = AlignConfig.model_validate(raw or {})
    except ValidationError as e:
        raise UserError("align." + error_line(e)) from None
    if raw is None:  # a training config: say what study it gets before minutes of training start
        print(f"capgym align: note: {path} has no align: section; the default study: modes "
              f"{', '.join(acfg.modes)}, {acfg.seeds} training seeds each, {acfg.episodes} evaluation "
              f"episodes (override with align.KEY=VALUE)", file=sys.stderr)
    return validate_train(data), acfg


#: the report's columns on Register-v0: (key in a row, heading); other games: :func:`columns`
COLUMNS = (("return_mean", "local return"), ("welfare", "welfare"), ("availability", "availability"),
           ("availability_partitioned", "avail. (partition)"), ("stale_read_rate", "stale-read rate"),
           ("linearizable_fraction", "linearizable"))
HEADINGS = dict(COLUMNS) | {"effective_leader_fraction": "effective leader", "fraction_without_leader":
                            "without leader", "split_votes": "split votes", "time_to_decide": "time to decide (ms)",
                            "completed_per_s": "completed/s", "view_changes": "view changes",
                            "safety_violation": "safety violated"}


def format_gap(gap: dict) -> str:
    """``alignment gap: 21.400 welfare per agent (relative 1.910)``: global-reward agents' welfare
    minus local-reward agents' (``metrics.alignment.alignment_gap``)."""
    rel = gap.get("relative")
    return (f"alignment gap: {gap['gap']:.3f} welfare per agent (global-reward agents minus local-reward agents"
            + (f"; relative {rel:.3f})" if rel is not None else ")"))


def columns(env_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """The report's columns for ``env_id``: local return, welfare and the game's own global
    measures (``experiments.sweep.GAME_MEASURES``); Register-v0's when ``env_id`` is None."""
    from experiments.sweep import align_measures

    return tuple((k, HEADINGS.get(k, k.replace("_", " "))) for k in align_measures(env_id or "capgym/Register-v0"))


def measure_of(agg: dict, key: str):
    """A measure of an evaluation's aggregate (``evaluate_cmd.aggregate``) by its report name."""
    if key == "stale_read_rate":
        return agg.get("stale_read_rate", agg.get("stale_fraction"))
    return agg.get(key)


def report_rows(runs: dict, env_id: str | None = None) -> list[dict]:
    """One row per policy: :func:`columns` from the evaluation's aggregated measures."""
    from experiments.evaluate_cmd import table_row

    cols = columns(env_id)
    rows = []
    for label, agg in runs.items():
        if "ci" in agg:  # a trained policy: means over training seeds, with their intervals
            row = {"protocol": label, **{k: agg.get(k) for k, _ in cols}, "n": agg.get("n")}
            row["ci"] = {k: agg["ci"].get(k) for k, _ in cols if agg["ci"].get(k)}
        else:
            row = {**table_row(label, agg), **{k: measure_of(agg, k) for k, _ in cols}}
        rows.append(row)
    return rows


def ci_text(v, ci=None) -> str:
    """``"0.483 [0.400, 0.500]"``: a value with its interval (``ci``: ``[lo, hi]`` or None), ``-`` for
    no value; the report's, the report page's and ``align-table``'s cells."""
    if v is None:
        return "-"
    text = f"{v:.3f}" if isinstance(v, float) else str(v)
    if ci and ci[0] is not None:
        lo, hi = f"{ci[0]:.3f}", f"{ci[1]:.3f}"
        text += f" [{lo}, {hi}]" + (ZERO_WIDTH_MARK if lo == hi else "")
    return text


#: after an interval of zero width (the training seeds gave equal values), and its footnote
ZERO_WIDTH_MARK = "†"
ZERO_WIDTH_NOTE = ("† zero width at this precision: every training seed gave the same value, so the "
                   "interval says nothing of the spread")


def with_note(table: str) -> str:
    """``table`` with the zero-width footnote when a cell carries its mark."""
    return table + "\n\n" + ZERO_WIDTH_NOTE if "]" + ZERO_WIDTH_MARK in table else table


def cell(row: dict, key: str) -> str:
    """:func:`ci_text` of ``row[key]`` with its interval from ``row["ci"]``."""
    return ci_text(row.get(key), (row.get("ci") or {}).get(key))


def format_report(rows: list[dict], env_id: str | None = None) -> str:
    """The report as a Markdown table (what docs/learning.md shows): trained policies' means over
    training seeds with their 95% bootstrap intervals in brackets."""
    cols = columns(env_id)
    lines = ["| policy | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += ["| " + r["protocol"] + " | " + " | ".join(cell(r, k) for k, _ in cols) + " |" for r in rows]
    return with_note("\n".join(lines))


def alignment_plot(path: Path, rows: list[dict], env_id: str | None = None) -> Path:
    """Bars per policy: local return, welfare and the game's measures (whiskers: 95% intervals)."""
    from experiments.plots import pyplot, save_figure

    plt = pyplot()
    specs = columns(env_id)
    fig, axes = plt.subplots(1, len(specs), figsize=(3.2 * len(specs), 3.8), layout="constrained")
    labels = [r["protocol"] for r in rows]
    for ax, (key, title) in zip(axes, specs):
        means = [r.get(key) or 0.0 for r in rows]
        cis = [(r.get("ci") or {}).get(key) or [None, None] for r in rows]
        err = [[m - lo if lo is not None else 0.0 for m, (lo, _hi) in zip(means, cis)],
               [hi - m if hi is not None else 0.0 for m, (_lo, hi) in zip(means, cis)]]
        ax.bar(labels, means, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(rows))])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def cmd_align(args: argparse.Namespace) -> int:
    try:
        return _cmd_align(args)
    except UserError as e:
        print(f"capgym align: error: {e}", file=sys.stderr)
        return 2


def _cmd_align(args: argparse.Namespace) -> int:
    import json

    from experiments import results
    from experiments import sweep as sw
    from experiments.evaluate_cmd import EVAL_SEED_BASE, aggregate, baselines, evaluate
    from experiments.sweep_cmd import run_sweep
    from metrics.alignment import alignment_gap

    cfg, acfg = load(args.config, args.overrides)
    if args.jobs < 1:
        raise UserError(f"--jobs: must be >= 1, not {args.jobs}")
    say = (lambda *a: None) if args.quiet else print
    train_seeds = [cfg.seed + i for i in range(acfg.seeds)]
    sweep = sw.Sweep(cfg.experiment, Path(args.config), {}, train_seeds, "welfare", "align", seed=cfg.seed)
    data = {**cfg.model_dump(mode="json"), "align": acfg.model_dump()}
    sweep.points = sw.expand(data, {}, train_seeds, "align")  # validated before anything is written
    sweep.root = cfg.output.root
    run_dir, rc = run_sweep(sweep, jobs=args.jobs, quiet=args.quiet, prog="capgym align", summary=False)
    if rc != 0:
        return rc
    agg = json.loads((run_dir / "aggregate.json").read_text())["aggregate"]
    runs: dict = {}
    for r in agg:
        ms = sw.align_measures(cfg.env.id)
        runs[r["policy"]] = {**{m: r.get(f"{m}_mean") for m in ms}, "n": r["n"],
                             "ci": {m: [r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")] for m in ms}}
    seeds = [EVAL_SEED_BASE + i for i in range(acfg.episodes)]
    if acfg.baselines:
        eval_spec = {"id": cfg.env.id, "params": {**cfg.env.params, "reward_mode": "local"}}
        for label, eps in evaluate(baselines(cfg.env.id), eval_spec, seeds).items():
            runs[label] = aggregate(eps)
    rows = report_rows(runs, cfg.env.id)
    summary = {"experiment": cfg.experiment, "env": cfg.env.id, "seeds": seeds, "training_seeds": train_seeds,
               "modes": acfg.modes, "mixed_weight": acfg.mixed_weight, "runs": runs, "report": rows}
    if "ppo_local" in runs and "ppo_global" in runs:
        summary["alignment_gap"] = alignment_gap(runs["ppo_global"]["welfare"], runs["ppo_local"]["welfare"])
    results.write_json(run_dir / "summary.json", summary)
    results.write_text(run_dir / "report.md", format_report(rows, cfg.env.id) + "\n")
    if cfg.output.plots:
        (run_dir / "plots").mkdir(exist_ok=True)
        alignment_plot(run_dir / "plots" / "alignment.png", rows, cfg.env.id)
    from experiments import html_report

    if cfg.output.report != "none":
        html_report.write(run_dir, "align", light=cfg.output.report == "light")
    say(format_report(rows, cfg.env.id))
    if "alignment_gap" in summary:
        say(f"{format_gap(summary['alignment_gap'])}, means over {acfg.seeds} training seeds")
    say(f"results: {run_dir}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("align", help="train with local/global/mixed rewards and report the alignment gap",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="e.g. configs/train/register_align.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("-j", "--jobs", type=int, default=1, help="trainings at a time, as Ray Tune trials (default 1)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_align)
