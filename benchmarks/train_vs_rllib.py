"""PPO on Register-v0 for a fixed number of environment steps: capgym's trainer beside RLlib's PPO.

One training config, ``configs/train/rllib_register.yaml`` (5 nodes, a fixed partition, independent
policies with the same network [64, 64], 8 copies x 128 steps = 1024 env steps per update, 4 epochs,
4 minibatches), trained twice in this process: by capgym's PPO (``learner.backend=local``) and by
RLlib's (``learner.backend=rllib``: RLlib's PPOConfig mapped from the same keys, action masks
enforced, local EnvRunner and Learner). Printed: environment steps per second of each over the
timed iterations (the first iteration of each is a warm-up, not timed), then
``ratio: <capgym over RLlib>``.

    python benchmarks/train_vs_rllib.py [--steps 8192]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "train" / "rllib_register.yaml"


def steps_per_second(backend: str, steps: int) -> tuple[float, int]:
    """Env steps/s of one training over ``steps`` timed env steps (after one warm-up iteration)."""
    from agents.learn import rllib_ppo
    from agents.learn.ppo import train
    from experiments.train_cmd import load_train_config

    cfg = load_train_config(CONFIG, [f"learner.backend={backend}", "learner.device=cpu"])
    batch = cfg.ppo.batch_steps
    cfg = load_train_config(CONFIG, [f"learner.backend={backend}", "learner.device=cpu",
                                     f"ppo.total_steps={steps + batch}"]).train_config()
    tr = (rllib_ppo.train if backend == "rllib" else train)(cfg)
    rows = tr.rows[1:]
    done = [r["env_steps"] for r in tr.rows]
    timed = done[-1] - done[0]
    seconds = sum((b - a) / r["sps"] for a, b, r in zip(done, done[1:], rows))
    return timed / seconds, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8192, help="environment steps timed for each trainer")
    args = ap.parse_args()
    from experiments.live import ensure_ray

    ours, n = steps_per_second("local", args.steps)
    print(f"capgym PPO: {ours:,.0f} env steps/s ({n} steps, 5 agents, independent learners)")
    ensure_ray(None)  # RLlib's Algorithm needs Ray up (dashboard off); it runs in this process
    theirs, n = steps_per_second("rllib", args.steps)
    print(f"RLlib PPO:  {theirs:,.0f} env steps/s ({n} steps, new API stack, local runner, action masks)")
    print(f"ratio: {ours / theirs:.1f}")


if __name__ == "__main__":
    main()
