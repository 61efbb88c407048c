"""capgym environments under RLlib's PPO (Ray 2.x, the new API stack: RLModule, Learner, EnvRunner).

The Parallel environment goes through RLlib's PettingZoo wrapper
(``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv``). RLlib's default RLModule takes
a flat ``Box`` observation, so :class:`FlatObs` concatenates each agent's ``observation`` and
``action_mask`` (the mask is an input, not enforced: an illegal action gets the protocol's textbook
default in every capgym environment). Each agent gets its own RLModule (independent learners),
or one shared module with ``share=True``.

Install with the ``rllib`` extra: ``pip install -e '.[rllib]'``.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.wrappers import BaseParallelWrapper

ENV_NAME = "capgym_parallel"


class FlatObs(BaseParallelWrapper):
    """Observations ``observation ++ action_mask`` as one float32 ``Box``."""

    def __init__(self, env):
        super().__init__(env)
        a0 = env.possible_agents[0]
        sp = env.observation_space(a0)
        d = sp["observation"].shape[0] + sp["action_mask"].shape[0]
        self._space = spaces.Box(-np.inf, np.inf, (d,), np.float32)

    def observation_space(self, agent):
        return self._space

    @staticmethod
    def _flat(obs: dict) -> dict:
        return {a: np.concatenate([o["observation"], o["action_mask"].astype(np.float32)]) for a, o in obs.items()}

    def reset(self, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._flat(obs), infos

    def step(self, actions):
        obs, rew, term, trunc, infos = self.env.step(actions)
        return self._flat(obs), rew, term, trunc, infos


def env_creator(env_config: dict):
    """RLlib's env factory: ``env_config = {"id": ..., "params": {...}}``."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from agents.learn.config import EnvSpec, make_env

    return ParallelPettingZooEnv(FlatObs(make_env(EnvSpec(**env_config))))


def build(env: dict, hidden=(64, 64), train_batch: int = 1024, minibatch: int = 256, epochs: int = 4,
          lr: float = 3e-4, num_env_runners: int = 0, share: bool = False, seed: int = 0):
    """An RLlib PPO ``Algorithm`` on a capgym environment (``env``: ``{"id", "params"}``)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    from agents.learn.actors import ensure_ray
    from agents.learn.config import EnvSpec, make_env

    ensure_ray()
    register_env(ENV_NAME, env_creator)
    agents = make_env(EnvSpec(**env)).possible_agents
    policies = {"shared"} if share else set(agents)
    mapping = (lambda aid, *a, **k: "shared") if share else (lambda aid, *a, **k: aid)
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=env)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=train_batch, minibatch_size=minibatch, num_epochs=epochs, lr=lr)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(hidden)))
        .multi_agent(policies=policies, policy_mapping_fn=mapping)
        .debugging(seed=seed)
    )
    return config.build_algo()


def env_steps(result: dict) -> int:
    """Environment steps sampled so far, from an RLlib ``train()`` result."""
    er = result.get("env_runners", {})
    for k in ("num_env_steps_sampled_lifetime", "num_env_steps_sampled"):
        if k in er:
            return int(er[k])
    return int(result.get("num_env_steps_sampled_lifetime", 0))
