"""``capgym evaluate CHECKPOINT_DIR_OR_RUN [--seeds ...] [key.sub=value ...]``: run trained agents on
held-out seeds (and, with overrides, other fault schedules) and write a summary like ``capgym run``'s.

Seeds default to ``EVAL_SEED_BASE + i`` (never used in training, whose episodes draw seeds from
``seed * 1_000_003``). Overrides apply to the training config's environment, e.g.
``env.params.faults=true`` (random nemesis) or ``env.params.nemesis.schedule.0.shape=halves``.
The observer checks linearizability on every evaluation episode (Register-v0).

The folder ``results/<experiment>/<time>-<id>/`` gets ``config.yaml``, ``status.json``,
``summary.json`` (``runs``: measures per policy; ``table``: one row per policy), ``metrics.csv``
(one row per episode) and ``plots/compare.png``; ``--baselines`` adds scripted policies under the same
seeds: random and textbook for every game, Register-v0's always-local and always-quorum,
Election-v0's eager (shortest timeout, always stand) and shirker (longest, never stand), and
Commons-v0's greedy and restrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.cli import UserError

EVAL_SEED_BASE = 900_000_000

EXAMPLES = """examples:
  capgym evaluate results/train-register/<run>/
  capgym evaluate results/train-register/<run>/checkpoint --seeds 1 2 3 --baselines
  capgym evaluate results/train-register/<run>/ env.params.faults=true --episodes 20
"""


def env_spec(meta_env: dict, overrides=()) -> dict:
    """The training environment with evaluation overrides (``env.params.x=v`` or ``params.x=v``)."""
    from experiments.config import apply_override, parse_override

    data = {"env": {"id": meta_env["id"], "params": dict(meta_env.get("params", {}))}}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] != "env":
            parts = ["env", *parts]
        apply_override(data, parts, value)
    return data["env"]


def make_eval_env(spec: dict, check: bool = True):
    from pydantic import ValidationError

    from agents.learn.config import EnvSpec, make_env

    try:
        es = EnvSpec(**spec)
        env = make_env(es)
        if check and "check_linearizability" in type(env.cfg).model_fields:
            env = make_env(es, check_linearizability=True)
        return env
    except (ValueError, TypeError, KeyError, ValidationError) as e:
        raise UserError(f"env: {str(e).splitlines()[0]}") from None


def play(env, choose, seed: int) -> dict:
    """One episode of the Parallel ``env`` with ``choose(agent, obs, mask) -> action``."""
    obs, _ = env.reset(seed=seed)
    owner = getattr(choose, "__self__", None)
    if hasattr(owner, "reset"):  # a recurrent policy (agents.learn.checkpoint.Policy) starts afresh
        owner.reset()
    returns = dict.fromkeys(env.possible_agents, 0.0)
    steps = 0
    while env.agents:
        acts = {a: choose(a, obs[a]["observation"], obs[a]["action_mask"]) for a in env.agents}
        obs, rew, _t, _tr, _i = env.step(acts)
        for a, r in rew.items():
            returns[a] += r
        steps += 1
    return {"seed": seed, "returns": returns, "steps": steps, "global": env.global_measures()}


def aggregate(episodes: list[dict]) -> dict:
    """Mean figures over episodes: returns per agent, mean return, the observer's measures."""
    from agents.learn.runner import numeric_measures

    agents = list(episodes[0]["returns"])
    R = np.array([[e["returns"][a] for a in agents] for e in episodes])
    out: dict = {"episodes": len(episodes), "return_mean": float(R.mean()),
                 "returns": {a: float(R[:, i].mean()) for i, a in enumerate(agents)}}
    ms = [numeric_measures(e["global"]) for e in episodes]
    for k in sorted({k for m in ms for k in m}):
        out[k] = float(np.mean([m[k] for m in ms if k in m]))
    # over the episodes with a verdict: an unknown one (the checker's budget ran out) is neither
    lin = [v for e in episodes if isinstance(v := e["global"].get("linearizable"), bool)]
    out["linearizable_fraction"] = float(np.mean(lin)) if lin else None
    out["welfare"] = float(np.mean([e.get("welfare", np.nan) for e in episodes]))
    return out


def global_welfare(env, ep: dict) -> float:
    """The observer's welfare of a finished episode (the env's ``global`` reward, summed): computed
    from the episode object kept by the environment."""
    e = env.episode
    return float(e.welfare) if e is not None else float("nan")


def evaluate(policies: dict, spec: dict, seeds: list[int]) -> dict[str, list[dict]]:
    """Every policy (label -> ``choose``) on every seed of the environment ``spec``."""
    env = make_eval_env(spec)
    out: dict[str, list[dict]] = {}
    for label, choose in policies.items():
        eps = []
        for s in seeds:
            ep = play(env, choose, s)
            ep["welfare"] = global_welfare(env, ep)
            eps.append(ep)
        out[label] = eps
    return out


def baselines(env_id: str, seed: int = 0) -> dict:
    """The scripted policies played beside a trained one: ``random`` and ``textbook`` (the
    protocol's own choice) for every game, and each game's scripted policies."""
    from agents import scripted

    rnd = scripted.make_random(seed)
    per_game = {
        "capgym/Register-v0": {"always_local": scripted.always_local, "always_quorum": scripted.always_quorum},
        "capgym/Election-v0": {"eager": scripted.election_eager, "shirker": scripted.election_shirker},
        "capgym/Commons-v0": {"greedy": scripted.greedy, "restrained": scripted.make_restrained()},
    }
    out = {"random": lambda a, o, m: rnd(o, m), "textbook": lambda a, o, m: scripted.textbook(o, m)}
    for name, policy in per_game.get(env_id, {}).items():
        out[name] = lambda a, o, m, p=policy: p(o, m)
    return out


def table_row(label: str, agg: dict) -> dict:
    """A row in ``capgym run``'s table shape (``experiments.plots.compare`` draws it)."""
    ops = agg.get("ops") or 0
    lf = agg.get("linearizable_fraction")
    return {"protocol": label, "return_mean": agg["return_mean"], "welfare": agg.get("welfare"),
            "availability": agg.get("availability"), "stale_read_rate": agg.get("stale_fraction"),
            "messages_per_op": (agg.get("messages", 0) / ops) if ops else None,
            "linearizable": None if lf is None else (True if lf == 1.0 else False if lf == 0.0 else None),
            "linearizability_verdict": ("not_applicable" if lf is None else "linearizable" if lf == 1.0
                                        else "not_linearizable" if lf == 0.0 else None),
            "linearizable_fraction": lf}


def write_evaluation(run_dir: Path, results_by: dict[str, list[dict]], extra: dict, plots: bool = True) -> dict:
    from experiments import plots as P
    from experiments import results

    runs = {label: aggregate(eps) for label, eps in results_by.items()}
    summary = {**extra, "runs": runs, "table": [table_row(k, v) for k, v in runs.items()]}
    results.write_json(run_dir / "summary.json", summary)
    rows = []
    for label, eps in results_by.items():
        for e in eps:
            from agents.learn.runner import numeric_measures

            rows.append({"policy": label, "seed": e["seed"], "steps": e["steps"], "welfare": e["welfare"],
                         **{f"return/{a}": r for a, r in e["returns"].items()},
                         **{f"global/{k}": v for k, v in numeric_measures(e["global"]).items()},
                         "linearizable": e["global"].get("linearizable")})
    from experiments.train_cmd import table_rows

    results.write_csv(run_dir / "metrics.csv", table_rows(rows))
    if plots and "availability" in next(iter(runs.values())):
        (run_dir / "plots").mkdir(exist_ok=True)
        P.compare(run_dir / "plots" / "compare.png", summary["table"])
    return summary


def format_table(rows: list[dict]) -> str:
    cols = ["protocol", "return_mean", "welfare", "availability", "stale_read_rate", "linearizable_fraction"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["  ".join(f"{c:>14}" for c in cols)]
    lines += ["  ".join(f"{fmt(r.get(c)):>14}" for c in cols) for r in rows]
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.learn import checkpoint
    from experiments import results

    try:
        meta, weights = checkpoint.load(args.path)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if args.episodes < 1:
        raise UserError(f"--episodes: must be >= 1, not {args.episodes}")
    seeds = args.seeds if args.seeds else [EVAL_SEED_BASE + i for i in range(args.episodes)]
    spec = env_spec(meta["env"], args.overrides)
    make_eval_env(spec).close()  # validate before anything is written
    pol = checkpoint.Policy(meta, weights, greedy=not args.sample, seed=0)
    policies = {"trained": pol.act}
    if args.baselines:
        policies.update(baselines(spec["id"]))
    run_dir = results.new_run_dir(args.output_root, args.experiment)
    results.write_yaml(run_dir / "config.yaml", {"checkpoint": str(checkpoint.find(args.path)), "env": spec,
                                                 "seeds": seeds, "greedy": not args.sample})
    results.write_status(run_dir, results.STATUS_RUNNING)
    by = evaluate(policies, spec, seeds)
    summary = write_evaluation(run_dir, by, {"experiment": args.experiment, "env": spec["id"], "seeds": seeds,
                                             "checkpoint": str(checkpoint.find(args.path))})
    results.write_status(run_dir, results.STATUS_COMPLETE)
    from experiments.html_report import write as write_report

    write_report(run_dir, "evaluate")  # report.html
    if not args.quiet:
        print(format_table(summary["table"]))
        print(f"results: {run_dir}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="run trained agents on held-out seeds and faults",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="CHECKPOINT_DIR_OR_RUN", help="a checkpoint folder or a training run folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override the environment, e.g. env.params.faults=true")
    p.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (default: held-out seeds)")
    p.add_argument("--episodes", type=int, default=5, help="episodes when --seeds is not given (default 5)")
    p.add_argument("--sample", action="store_true", help="sample actions instead of taking the most likely")
    p.add_argument("--baselines", action="store_true", help="also evaluate scripted policies on the same seeds")
    p.add_argument("--experiment", default="evaluate", help="results/<experiment>/ (default: evaluate)")
    p.add_argument("--output-root", default="results", help="results root folder (default: results)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)
