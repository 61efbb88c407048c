"""The learned-against-scripted table of ``docs/byzantine.md`` (issue 19): Byzantine-v0 adversaries
trained with capgym's PPO beside the scripted ones, on the same held-out seeds.

    python -m experiments.byzantine_table RUN_F [RUN_F_PLUS_1] [--episodes 10] [--json out.json]

``RUN_F`` / ``RUN_F_PLUS_1``: ``capgym train configs/train/byzantine.yaml`` run folders (or their
checkpoints), trained with ``adversaries`` = f and f + 1. For each, on seeds
``EVAL_SEED_BASE + i`` (never used in training) and with the linearizability check on, it plays
the trained policy (greedy, and sampled with a fixed seed), every
``agents.scripted.BYZANTINE_BASELINES`` policy, uniform random, and the world's scripted colluding
``pbft`` strategy on the same nodes (``adversary_strategy: pbft``: it owes no decisions; with
f + 1 nodes, the primary among them, it is known to break safety). It prints one Markdown row per
policy: completed requests per second of simulated time, view changes (the highest view a correct
replica entered), episodes with a safety violation (correct replicas executed different requests
at one sequence number, or the correct clients' history is not linearizable), and the
adversaries' mean team (global) return. A two-sided run (``env.params.honest_learners=true``)
plays each side trained or scripted against the other instead.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def rows_for(path: str, episodes: int) -> list[dict]:
    from agents import scripted
    from agents.learn import checkpoint
    from experiments.evaluate_cmd import EVAL_SEED_BASE, evaluate

    meta, weights = checkpoint.load(path)
    spec = {"id": meta["env"]["id"], "params": dict(meta["env"].get("params", {}))}
    spec["params"].update(check_linearizability=True, reward_mode="global")
    seeds = [EVAL_SEED_BASE + i for i in range(episodes)]
    pol = checkpoint.Policy(meta, weights, greedy=True, seed=0)
    sampled = checkpoint.Policy(meta, weights, greedy=False, seed=0)
    k = spec["params"].get("adversaries", 1)
    if spec["params"].get("honest_learners"):
        return two_sided_rows(spec, seeds, pol, k)
    rnd = scripted.make_random(0)
    policies = {"trained (PPO, greedy)": pol.act, "trained (PPO, sampled)": sampled.act,
                "random": lambda a, o, m: rnd(o, m)}
    for name, p in scripted.BYZANTINE_BASELINES.items():
        policies[f"scripted {name}"] = lambda a, o, m, p=p: p(o, m)
    by = evaluate(policies, spec, seeds)
    world = {"id": spec["id"], "params": {**spec["params"], "adversary_strategy": "pbft"}}
    by["world strategy pbft"] = evaluate({"-": lambda a, o, m: len(m) - 1}, world, seeds)["-"]
    return summarize(by, k)


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
        out.append({"adversaries": k, "policy": label, "episodes": len(eps),
                    "completed_per_s": float(np.mean([x["completed_per_s"] for x in g])),
                    "view_changes": float(np.mean([x["view_changes"] for x in g])),
                    "violations": sum(bool(x["safety_violation"]) for x in g),
                    "log_conflicts": sum(x["log_agreement"]["conflicts"] > 0 for x in g),
                    "not_linearizable": sum(x["linearizable"] is False for x in g),
                    "team_return": float(np.mean([e["welfare"] for e in eps]))})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| adversaries | policy | completed requests/s | view changes | safety violations | team return |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['adversaries']} | {r['policy']} | {r['completed_per_s']:.1f} | {r['view_changes']:.1f} "
                     f"| {r['violations']}/{r['episodes']} | {r['team_return']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="training run folders or checkpoints (adversaries = f, then f + 1)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args(argv)
    rows = [r for path in a.runs for r in rows_for(path, a.episodes)]
    print(markdown(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
