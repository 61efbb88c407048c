"""MAPPO's centralized critic (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative
Multi-Agent Games"): during training each agent's critic sees a **global state**, while its actor
sees only the agent's own observation, so the trained policy still acts on local information.

The global state here is what the observer could give the critic from outside the system: every
agent's observation vector side by side (the "concatenation of local observations" variant of
the MAPPO paper, §4.1), followed by a one-hot of the agent whose value is estimated (the
"agent-specific" state). Nothing of it reaches the actor or the checkpointed policy's inputs.

The learner is :class:`agents.learn.ppo.PPOLearner` unchanged: MAPPO differs from independent PPO
only in what its critic reads (``critic_dim`` and the batch's ``critic_in``).
"""

from __future__ import annotations

import numpy as np


def state_dim(n_agents: int, obs_dim: int) -> int:
    return n_agents * obs_dim + n_agents


def global_state(obs: np.ndarray) -> np.ndarray:
    """``obs`` ``(E, A, D)`` -> agent-specific global states ``(E, A, A*D + A)``."""
    e, a, d = obs.shape
    joint = np.broadcast_to(obs.reshape(e, 1, a * d), (e, a, a * d))
    ident = np.broadcast_to(np.eye(a, dtype=obs.dtype), (e, a, a))
    return np.concatenate([joint, ident], axis=-1)
