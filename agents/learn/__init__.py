"""Learned agents: PPO learners (independent, parameter-shared, centralized critic), env runners,
Ray agent actors, checkpoints and RLlib integration. See ``docs/learning.md``.

* :mod:`agents.learn.config` -- every hyperparameter, one pydantic model (``TrainConfig``);
* :mod:`agents.learn.nets` -- the actor-critic networks (MLP, or GRU: ``learner.recurrent``) and masked
  action sampling;
* :mod:`agents.learn.runner` -- N environment copies stepped together, acting with policy copies;
* :mod:`agents.learn.ppo` -- PPO (CleanRL-style): the learner and the training loop;
* :mod:`agents.learn.mappo` -- the centralized critic's global state (MAPPO);
* :mod:`agents.learn.actors` -- one Ray actor per agent (or sharing group);
* :mod:`agents.learn.checkpoint` -- save/load per-agent weights, ``load_policy(path)``;
* :mod:`agents.learn.rllib_ppo` -- RLlib's PPO as a backend (``learner.backend: rllib``), masks enforced.

torch is imported by the submodules, never here.
"""
