"""PPO on Register-v0 for a fixed number of environment steps: capgym's trainer beside RLlib's PPO.

Both train independent policies (one per agent) with the same network ([64, 64]), batch
(1024 env steps per update) and 4 epochs, on the same environment (5 nodes, a fixed partition);
both run in this process (RLlib: local EnvRunner and Learner, ``num_env_runners=0``). Printed:
environment steps per second of each (wall-clock, setup excluded), then ``ratio: <capgym over RLlib>``.

    python benchmarks/train_vs_rllib.py [--steps 8192]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def capgym_sps(env: dict, steps: int) -> float:
    from agents.learn.config import TrainConfig
    from agents.learn.ppo import train

    cfg = TrainConfig.model_validate({"env": env, "ppo": {"total_steps": steps, "num_envs": 8, "num_steps": 128,
                                                          "update_epochs": 4, "num_minibatches": 4}})
    tr = train(cfg)
    return tr.env_steps / tr.seconds


def rllib_sps(env: dict, steps: int, opts: dict) -> float:
    from agents.learn import rllib_ppo

    algo = rllib_ppo.build(env, **opts)
    try:
        n0 = rllib_ppo.env_steps(algo.train())  # a warm-up iteration, not timed
        t0 = time.perf_counter()
        while True:
            n = rllib_ppo.env_steps(algo.train())
            if n - n0 >= steps:
                return (n - n0) / (time.perf_counter() - t0)
    finally:
        algo.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8192, help="environment steps timed for each trainer")
    args = ap.parse_args()
    cfg = yaml.safe_load((ROOT / "configs" / "train" / "rllib_register.yaml").read_text())
    env, opts = cfg["env"], cfg["rllib"]
    ours = capgym_sps(env, args.steps)
    print(f"capgym PPO: {ours:,.0f} env steps/s ({args.steps} steps, 5 agents, independent learners)")
    theirs = rllib_sps(env, args.steps, opts)
    print(f"RLlib PPO:  {theirs:,.0f} env steps/s ({args.steps} steps, new API stack, local runner)")
    print(f"ratio: {ours / theirs:.1f}")


if __name__ == "__main__":
    main()
