"""The learned-against-scripted table of ``docs/byzantine.md`` (issue 19): Byzantine-v0 adversaries
trained with capgym's PPO beside the scripted ones, on the same held-out seeds.

    python -m experiments.byzantine_table RUN [RUN ...] [--episodes 10] [--json out.json]

Each ``RUN`` is a ``capgym train configs/train/byzantine.yaml`` run folder (or its checkpoint).
Runs that differ only in their training seed form one *group* (same ``adversaries``,
``reward_mode``, ``collude`` and ``honest_learners``); a group's trained rows are the means over its
runs (its training seeds) of each run's figures, with 95% percentile-bootstrap intervals over the
training seeds (``experiments.sweep.bootstrap_ci``; none for one run). For each run, on seeds
``EVAL_SEED_BASE + i`` (never used in training) and with the linearizability check on, it plays
the trained policy (greedy, and sampled with a fixed seed). Once per number of adversaries it plays
every ``agents.scripted.BYZANTINE_BASELINES`` policy, uniform random, the world's scripted colluding
``pbft`` strategy on the same nodes (``adversary_strategy: pbft``: it owes no decisions; with f + 1
nodes, the primary among them, it is known to break safety) and, when a group of that size was
trained with ``collude``, uniform random over the choices with collude among them and the scripted
policy that colludes in every phase. It prints one Markdown
row per policy: completed requests per second of simulated time, view changes (the highest view a
correct replica entered), episodes with a safety violation (correct replicas executed different
requests at one sequence number, or the correct clients' history is not linearizable; for trained
rows the mean count per training seed), and the adversaries' mean team (global) return. A two-sided
run (``env.params.honest_learners=true``) plays each side trained or scripted against the other.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

MEASURES = ("completed_per_s", "view_changes", "violations", "team_return")


def load(path: str):
    from agents.learn import checkpoint

    meta, weights = checkpoint.load(path)
    spec = {"id": meta["env"]["id"], "params": dict(meta["env"].get("params", {}))}
    reward = spec["params"].get("reward_mode", "global")
    spec["params"].update(check_linearizability=True, reward_mode="global")
    return meta, weights, spec, reward


def group_key(spec: dict, reward: str) -> tuple:
    p = spec["params"]
    return (bool(p.get("honest_learners")), p.get("adversaries", 1), reward, bool(p.get("collude")))


def eval_seeds(episodes: int) -> list[int]:
    from experiments.evaluate_cmd import EVAL_SEED_BASE

    return [EVAL_SEED_BASE + i for i in range(episodes)]


def trained_label(reward: str, collude: bool) -> str:
    return f"trained (PPO, {reward} reward{', collude available' if collude else ''})"


def trained_rows(path: str, episodes: int) -> list[dict]:
    """One run's trained policy, greedy and sampled (or, two-sided, each side against the other)."""
    from agents.learn import checkpoint
    from experiments.evaluate_cmd import evaluate

    meta, weights, spec, reward = load(path)
    seeds = eval_seeds(episodes)
    pol = checkpoint.Policy(meta, weights, greedy=True, seed=0)
    k = spec["params"].get("adversaries", 1)
    if spec["params"].get("honest_learners"):
        return two_sided_rows(spec, seeds, pol, k)
    sampled = checkpoint.Policy(meta, weights, greedy=False, seed=0)
    label = trained_label(reward, bool(spec["params"].get("collude")))
    return summarize(evaluate({f"{label}, greedy": pol.act, f"{label}, sampled": sampled.act}, spec, seeds), k)


def scripted_rows(spec: dict, episodes: int) -> list[dict]:
    """Random, every scripted baseline, scripted collude (when ``spec`` offers it) and the world's
    ``pbft`` strategy, with ``spec``'s adversaries."""
    from agents import scripted
    from experiments.evaluate_cmd import evaluate

    params = {**spec["params"], "honest_learners": False, "collude": False}
    seeds = eval_seeds(episodes)
    rnd = scripted.make_random(0)
    policies = {"random": lambda a, o, m: rnd(o, m)}
    for name, p in scripted.BYZANTINE_BASELINES.items():
        policies[f"scripted {name}"] = lambda a, o, m, p=p: p(o, m)
    by = evaluate(policies, {"id": spec["id"], "params": params}, seeds)
    if spec["params"].get("collude"):  # the choices with collude among them
        rnd6, collude = scripted.make_random(0), scripted.byzantine_phase(5)
        by.update(evaluate({"random (collude available)": lambda a, o, m: rnd6(o, m),
                            "scripted collude": lambda a, o, m: collude(o, m)},
                           {"id": spec["id"], "params": {**params, "collude": True}}, seeds))
    world = {"id": spec["id"], "params": {**params, "adversary_strategy": "pbft"}}
    by["world strategy pbft"] = evaluate({"-": lambda a, o, m: len(m) - 1}, world, seeds)["-"]
    return summarize(by, params.get("adversaries", 1))


def two_sided_rows(spec: dict, seeds: list[int], pol, k: int) -> list[dict]:
    """A two-sided run (``honest_learners``): each side trained or scripted, against the other."""
    from agents import scripted
    from experiments.evaluate_cmd import evaluate

    byz = {f"node_{i}" for i in (spec["params"].get("byzantine_nodes") or range(k))}
    sides = {"trained": pol.act,
             "slow_primary": lambda a, o, m: scripted.byzantine_slow_primary(o, m),
             "drop": lambda a, o, m: scripted.BYZANTINE_BASELINES["drop"](o, m)}
    honest = {"trained T": pol.act, "textbook T": lambda a, o, m: scripted.textbook(o, m)}
    policies = {}
    for an, adv in sides.items():
        for hn, hon in honest.items():
            policies[f"two-sided: {an} adversary vs {hn}"] = (
                lambda a, o, m, adv=adv, hon=hon: adv(a, o, m) if a in byz else hon(a, o, m))
    return summarize(evaluate(policies, spec, seeds), k)


def summarize(by: dict, k: int) -> list[dict]:
    out = []
    for label, eps in by.items():
        g = [e["global"] for e in eps]
        out.append({"adversaries": k, "policy": label, "episodes": len(eps), "seeds": 1,
                    "completed_per_s": float(np.mean([x["completed_per_s"] for x in g])),
                    "view_changes": float(np.mean([x["view_changes"] for x in g])),
                    "violations": sum(bool(x["safety_violation"]) for x in g),
                    "log_conflicts": sum(x["log_agreement"]["conflicts"] > 0 for x in g),
                    "not_linearizable": sum(x["linearizable"] is False for x in g),
                    "team_return": float(np.mean([e["welfare"] for e in eps]))})
    return out


def aggregate(per_run: list[list[dict]]) -> list[dict]:
    """Rows of the same policy over several runs (training seeds): the mean of each run's figure,
    its 95% bootstrap interval over the runs (``ci``), the per-run values (``per_seed``) and how
    many runs had any violation (``seeds_violating``)."""
    from experiments.sweep import bootstrap_ci

    if len(per_run) == 1:
        return per_run[0]
    out = []
    for i, first in enumerate(per_run[0]):
        rs = [rows[i] for rows in per_run]
        assert all(r["policy"] == first["policy"] for r in rs)
        row = {**first, "seeds": len(rs), "ci": {}, "per_seed": {}}
        for j, m in enumerate((*MEASURES, "log_conflicts", "not_linearizable")):
            xs = [float(r[m]) for r in rs]
            row[m] = float(np.mean(xs))
            row["per_seed"][m] = xs
            row["ci"][m] = bootstrap_ci(xs, seed=(i, j))
        row["seeds_violating"] = sum(r["violations"] > 0 for r in rs)
        out.append(row)
    return out


def table_rows(paths: list[str], episodes: int) -> list[dict]:
    """Every group's trained rows (means over its training seeds), and after the trained rows of
    each number of adversaries, the scripted rows for it (played once)."""
    groups: dict[tuple, list[str]] = {}
    specs: dict[tuple, dict] = {}
    for path in paths:
        _meta, _w, spec, reward = load(path)
        key = group_key(spec, reward)
        groups.setdefault(key, []).append(path)
        specs[key] = spec
    rows: list[dict] = []
    keys = sorted(groups, key=lambda k: (k[0], k[1]))  # stable: the order given within one size
    for i, key in enumerate(keys):
        rows += aggregate([trained_rows(p, episodes) for p in groups[key]])
        last_of_size = i + 1 == len(keys) or keys[i + 1][:2] != key[:2]
        if not key[0] and last_of_size:
            same = [k for k in keys if k[:2] == key[:2]]
            spec = specs[key]
            spec = {**spec, "params": {**spec["params"], "collude": any(k[3] for k in same)}}
            rows += scripted_rows(spec, episodes)
    return rows


def fmt(r: dict, m: str, digits: int = 1) -> str:
    v = r[m]
    if m == "violations":
        text = f"{v:.{digits}f}/{r['episodes']}" if r.get("seeds", 1) > 1 else f"{v}/{r['episodes']}"
    else:
        text = f"{v:.{digits}f}"
    lo, hi = (r.get("ci") or {}).get(m, (None, None))
    if lo is not None and r.get("seeds", 1) > 1:
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def markdown(rows: list[dict]) -> str:
    lines = ["| adversaries | policy | training seeds | completed requests/s | view changes | safety violations "
             "| team return |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = str(r["seeds"]) if r["policy"].startswith(("trained", "two-sided")) else "-"
        lines.append(f"| {r['adversaries']} | {r['policy']} | {seeds} | {fmt(r, 'completed_per_s')} "
                     f"| {fmt(r, 'view_changes')} | {fmt(r, 'violations')} | {fmt(r, 'team_return')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="training run folders or checkpoints (runs differing only in the "
                   "training seed are aggregated)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args(argv)
    rows = table_rows(a.runs, a.episodes)
    print(markdown(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
