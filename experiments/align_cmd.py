"""``capgym align CONFIG [key.sub=value ...]``: the alignment report.

For one environment and fault setting, train agents with ``local``, ``global`` and ``mixed``
rewards, evaluate each on the same held-out seeds (with the observer checking linearizability),
and report side by side: the agents' local returns, the observer's global measures (availability,
stale-read rate, linearizable fraction, welfare) and the alignment gap of
``metrics.alignment.alignment_gap`` -- the global welfare that agents trained on their local
reward give up against agents trained on the global one. Scripted baselines run on the same seeds.

The config is a training config (``capgym train``'s) plus an ``align`` section::

    align: {modes: [local, global, mixed], mixed_weight: [0.5, 0.8], episodes: 5, baselines: true}

``mixed_weight`` is one weight ``w`` (the policy ``ppo_mixed``) or a list of them (one policy
``ppo_mixed_<w>`` each): the reward ``(1 - w) * local + w * global``.

Writes ``summary.json`` (``runs``, ``table``, ``alignment_gap``), ``metrics.csv`` (per episode),
``plots/alignment.png`` and ``plots/compare.png``, and each policy's checkpoint under ``<label>/``
(``local/``, ``global/``, ``mixed/`` or ``mixed_<w>/``).
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
    raw = data.pop("align", None) or {}
    try:
        acfg = AlignConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError("align." + error_line(e)) from None
    return validate_train(data), acfg


#: the report's columns: (key in a row, heading)
COLUMNS = (("return_mean", "local return"), ("welfare", "welfare"), ("availability", "availability"),
           ("availability_partitioned", "avail. (partition)"), ("stale_read_rate", "stale-read rate"),
           ("linearizable_fraction", "linearizable"))


def report_rows(runs: dict) -> list[dict]:
    """One row per policy: ``COLUMNS`` from the evaluation's aggregated measures."""
    from experiments.evaluate_cmd import table_row

    rows = []
    for label, agg in runs.items():
        row = table_row(label, agg)
        row["availability_partitioned"] = agg.get("availability_partitioned")
        rows.append(row)
    return rows


def format_report(rows: list[dict]) -> str:
    """The report as a Markdown table (what docs/learning.md shows)."""
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| policy | " + " | ".join(h for _, h in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += ["| " + r["protocol"] + " | " + " | ".join(fmt(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def alignment_plot(path: Path, rows: list[dict]) -> Path:
    """Bars per policy: local return, welfare, availability (overall, during the partition),
    stale-read rate."""
    from experiments.plots import pyplot, save_figure

    plt = pyplot()
    specs = (("return_mean", "local return (per agent)"), ("welfare", "observer's welfare (per agent)"),
             ("availability", "availability"), ("availability_partitioned", "availability during partition"),
             ("stale_read_rate", "stale-read rate"))
    fig, axes = plt.subplots(1, len(specs), figsize=(17, 3.8), layout="constrained")
    labels = [r["protocol"] for r in rows]
    for ax, (key, title) in zip(axes, specs):
        ax.bar(labels, [r.get(key) or 0.0 for r in rows], color=[f"C{i}" for i in range(len(rows))])
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
    from agents.learn import checkpoint
    from agents.learn.ppo import train
    from experiments import results
    from experiments.evaluate_cmd import EVAL_SEED_BASE, baselines, evaluate, write_evaluation
    from metrics.alignment import alignment_gap

    cfg, acfg = load(args.config, args.overrides)
    say = (lambda *a: None) if args.quiet else print
    run_dir = results.new_run_dir(cfg.output.root, cfg.experiment)
    results.write_yaml(run_dir / "config.yaml", {**cfg.model_dump(mode="json"), "align": acfg.model_dump()})
    results.write_status(run_dir, results.STATUS_RUNNING)
    seeds = [EVAL_SEED_BASE + i for i in range(acfg.episodes)]
    eval_spec = {"id": cfg.env.id, "params": {**cfg.env.params, "reward_mode": "local"}}  # report local returns
    policies = {}
    for label, mode, w in acfg.runs():
        mcfg = cfg.train_config().model_copy(deep=True)
        mcfg.env.params = {**mcfg.env.params, "reward_mode": mode, "mixed_weight": w}
        what = f"mixed rewards (w={w:g})" if mode == "mixed" else f"{mode} rewards"
        say(f"capgym align: training with {what} ({mcfg.ppo.total_steps} env steps)")
        trained = train(mcfg, progress=cfg.output.progress and not args.quiet)
        folder = run_dir / label.removeprefix("ppo_")
        checkpoint.save(folder / "checkpoint", trained)
        policies[label] = checkpoint.load_policy(folder / "checkpoint").act
        results.write_status(run_dir, results.STATUS_RUNNING, trained=list(policies))
    if acfg.baselines:
        policies.update(baselines(cfg.env.id))
    by = evaluate(policies, eval_spec, seeds)
    summary = write_evaluation(run_dir, by, {"experiment": cfg.experiment, "env": cfg.env.id, "seeds": seeds,
                                             "modes": acfg.modes,
                                             "mixed_weight": acfg.mixed_weight})
    runs = summary["runs"]
    if "ppo_local" in runs and "ppo_global" in runs:
        summary["alignment_gap"] = alignment_gap(runs["ppo_global"]["welfare"], runs["ppo_local"]["welfare"])
    summary["report"] = report_rows(runs)
    results.write_json(run_dir / "summary.json", summary)
    if cfg.output.plots:
        alignment_plot(run_dir / "plots" / "alignment.png", summary["report"])
    results.write_status(run_dir, results.STATUS_COMPLETE)
    say(format_report(summary["report"]))
    if "alignment_gap" in summary:
        say(f"alignment gap (welfare of global-reward agents minus local-reward agents): {summary['alignment_gap']}")
    say(f"results: {run_dir}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("align", help="train with local/global/mixed rewards and report the alignment gap",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="e.g. configs/train/register_align.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_align)
