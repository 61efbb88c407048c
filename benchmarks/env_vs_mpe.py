"""Agent steps per second: capgym Register-v0 beside PettingZoo's MPE simple_spread_v3.

Register-v0: 5 agents, random legal actions, random nemesis on (partitions, crashes, pauses, clock
faults, loss), default horizon (5 s of simulated time per episode), episode ends and the
observer's global measures (linearizability check included) counted in the time. MPE
simple_spread_v3 (package ``mpe2``, a benchmark-only dependency): 3 agents, 25 cycles per episode,
random actions. Both run in the same process, interleaved in rounds so that machine load hits
both alike, each with the same kind of random policy (Python's ``random`` over the legal actions).
Each side is made by its package's own entry point: MPE's ``env()`` comes with its standard
wrappers (OrderEnforcing, AssertOutOfBounds; its parallel form converts the AEC one), capgym's
``env()`` is what ``pettingzoo.make("aec", "capgym/Register-v0")`` returns (no wrappers).

An *agent step* is one agent acting: in the AEC API one ``step`` call; in the Parallel API, one
``step`` counts every agent that was given an action (in capgym most of them only no-op). A
*decision* is an agent step with a real choice: not a done agent's last step, and (in capgym's
Parallel API) not an agent whose mask allows only the no-op. Both are printed for every run. The
last line is the AEC ratio, where agent steps and decisions nearly coincide.

    python benchmarks/env_vs_mpe.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def aec_rate(make, seconds: float, rng: random.Random) -> tuple[int, float, int]:
    """Agent steps, seconds, and decisions (steps of agents that were not done)."""
    env = make()
    steps, decisions, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.reset(seed=rng.randrange(10**6))
        for _agent in env.agent_iter():
            obs, _r, term, trunc, _i = env.last()
            if term or trunc:
                action = None
                decisions -= 1
            elif isinstance(obs, dict):
                action = rng.choice([i for i, m in enumerate(obs["action_mask"].tolist()) if m])
            else:
                action = rng.randrange(env.action_space(_agent).n)
            env.step(action)
            steps += 1
            decisions += 1
    return steps, time.perf_counter() - t0, decisions


def parallel_rate(make, seconds: float, rng: random.Random) -> tuple[int, float, int]:
    """Agent steps, seconds, and decisions (agents given more than a no-op to choose from)."""
    env = make()
    steps, decisions, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        obs, _ = env.reset(seed=rng.randrange(10**6))
        while env.agents:
            actions = {}
            for a in env.agents:
                o = obs[a]
                if isinstance(o, dict):
                    legal = [i for i, m in enumerate(o["action_mask"].tolist()) if m]
                    actions[a] = rng.choice(legal)
                    decisions += len(legal) > 1
                else:
                    actions[a] = rng.randrange(env.action_space(a).n)
                    decisions += 1
            obs, *_ = env.step(actions)
            steps += len(actions)
    return steps, time.perf_counter() - t0, decisions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.seconds <= 0 or args.rounds < 1:
        print("error: --seconds must be > 0 and --rounds >= 1", file=sys.stderr)
        return 2
    try:
        from mpe2 import simple_spread_v3
    except ImportError:
        print("error: the benchmark needs the mpe2 package (pip install mpe2)", file=sys.stderr)
        return 2
    from envs import commons  # noqa: F401  (imports the env machinery before timing)
    from envs.register import env as register_aec
    from envs.register import parallel_env as register_par

    cap = {"nodes": 5, "faults": True}
    mpe = {"N": 3, "max_cycles": 25}
    runs = {
        ("capgym Register-v0", "aec"): (lambda: register_aec(**cap), aec_rate),
        ("MPE simple_spread_v3", "aec"): (lambda: simple_spread_v3.env(**mpe), aec_rate),
        ("capgym Register-v0", "parallel"): (lambda: register_par(**cap), parallel_rate),
        ("MPE simple_spread_v3", "parallel"): (lambda: simple_spread_v3.parallel_env(**mpe), parallel_rate),
    }
    total = {k: [0, 0.0, 0] for k in runs}
    rng = random.Random(0)
    for _ in range(args.rounds):
        for k, (make, rate) in runs.items():
            s, t, d = rate(make, args.seconds, rng)
            total[k][0] += s
            total[k][1] += t
            total[k][2] += d
    sps = {k: s / t for k, (s, t, _d) in total.items()}
    for (name, api), (_s, t, d) in total.items():
        print(f"{name:22s} {api:8s} agent steps/s: {sps[name, api]:10.0f}   decisions/s: {d / t:10.0f}")
    par = sps[("capgym Register-v0", "parallel")] / sps[("MPE simple_spread_v3", "parallel")]
    print(f"parallel ratio: {par:.2f}")
    aec = sps[("capgym Register-v0", "aec")] / sps[("MPE simple_spread_v3", "aec")]
    print(f"ratio: {aec:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
