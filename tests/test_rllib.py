"""RLlib's PPO trains on a capgym environment through its PettingZoo wrapper; capgym's learners run
as Ray actors. Both start Ray (one ``ray.init`` per session via ``actors.ensure_ray``), which takes
tens of seconds on a small shared machine, hence ``slow``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray.rllib")

ENV = {"id": "capgym/Register-v0", "params": {"nodes": 3, "duration_ms": 500, "check_linearizability": False}}


@pytest.mark.slow
def test_rllib_ppo_trains_on_register():
    from agents.learn import rllib_ppo

    algo = rllib_ppo.build(ENV, train_batch=256, minibatch=128, epochs=1)
    try:
        r = algo.train()
        r = algo.train()
    finally:
        algo.stop()
    assert rllib_ppo.env_steps(r) >= 512
    rets = r["env_runners"]["agent_episode_returns_mean"]
    assert set(rets) == {"node_0", "node_1", "node_2"} and all(np.isfinite(v) for v in rets.values())


@pytest.mark.slow
def test_ray_backend_one_actor_per_agent():
    from agents.learn.config import TrainConfig
    from agents.learn.ppo import train

    cfg = TrainConfig.model_validate({"env": ENV, "ppo": {"total_steps": 512, "num_envs": 4, "num_steps": 64},
                                      "learner": {"backend": "ray"}})
    tr = train(cfg)
    assert len(tr.weights) == 3 and tr.env_steps == 512
    assert np.isfinite(tr.rows[-1]["value_loss"])
