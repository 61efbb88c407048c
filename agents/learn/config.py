"""Every knob of a training run, in one place (validated by pydantic; unknown keys are errors).

A training config (``configs/train/*.yaml``)::

    env:     {id: capgym/Register-v0, params: {nodes: 5, duration_ms: 2000, reward_mode: local}}
    ppo:     {total_steps: 200000, num_envs: 8, num_steps: 128, lr: 3e-4, ...}   # PPOConfig
    learner: {backend: local, share: false, critic: local, device: auto,       # LearnerConfig
              recurrent: none, rnn_hidden: 64}                   # backend: local | ray | rllib
    ray:     {address: null, num_cpus_per_learner: 0.25}
    seed: 0

``total_steps`` and ``num_steps`` count **environment steps** (one Parallel ``step`` of one copy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvSpec(Strict):
    """Which capgym environment, and its constructor keywords (``envs/<game>.py`` ``Config``)."""

    id: str = Field("capgym/Register-v0", description="an id of envs.registry.ENVIRONMENTS")
    params: dict = Field(default_factory=dict, description="keyword arguments of the environment")


class PPOConfig(Strict):
    """PPO hyperparameters (names as in CleanRL's ``ppo.py``)."""

    total_steps: int = Field(100_000, ge=1, description="environment steps over all copies")
    num_envs: int = Field(8, ge=1, description="environment copies stepped together")
    num_steps: int = Field(128, ge=1, description="steps per copy per rollout")
    lr: float = Field(3e-4, gt=0)
    anneal_lr: bool = True
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    update_epochs: int = Field(4, ge=1)
    num_minibatches: int = Field(4, ge=1)
    clip_coef: float = Field(0.2, gt=0)
    clip_vloss: bool = True
    ent_coef: float = Field(0.01, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)
    norm_adv: bool = True
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="MLP layer widths")
    reward_scale: float = Field(1.0, gt=0, description="rewards are multiplied by this for learning")

    @property
    def batch_steps(self) -> int:
        return self.num_envs * self.num_steps


class LearnerConfig(Strict):
    backend: Literal["local", "ray", "rllib"] = Field(
        "local", description="learners in-process, one Ray actor each, or RLlib's PPO (agents.learn.rllib_ppo)")
    share: bool = Field(False, description="parameter sharing: one policy for all agents (agent id appended)")
    critic: Literal["local", "central"] = Field(
        "local", description="central: MAPPO, the critic sees the global state during training only")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1, ...")
    torch_threads: int = Field(1, ge=1, description="torch threads per process (small nets: 1 is fastest)")
    recurrent: Literal["none", "gru"] = Field(
        "none", description="gru: the policy carries a GRU state through each episode (agents.learn.nets)")
    rnn_hidden: int = Field(64, ge=1, description="width of the GRU state (learner.recurrent: gru)")


class RayLearnConfig(Strict):
    address: str | None = Field(None, description="Ray cluster address; null: a local Ray instance")
    num_cpus_per_learner: float = Field(0.25, gt=0, description="CPUs reserved per learner actor")
    num_gpus_per_learner: float = Field(0.0, ge=0)


class TrainConfig(Strict):
    """What :func:`agents.learn.ppo.train` needs."""

    seed: int = 0
    env: EnvSpec = Field(default_factory=EnvSpec)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    ray: RayLearnConfig = Field(default_factory=RayLearnConfig)

    @model_validator(mode="after")
    def _check(self):
        from envs.registry import ENVIRONMENTS

        if self.env.id not in ENVIRONMENTS:
            raise ValueError(f"env.id: unknown environment {self.env.id!r} "
                             f"(choose from {', '.join(ENVIRONMENTS)})")
        if self.ppo.batch_steps % self.ppo.num_minibatches:
            raise ValueError("ppo.num_minibatches: must divide num_envs * num_steps")
        if self.learner.recurrent != "none" and self.ppo.num_envs % self.ppo.num_minibatches:
            raise ValueError("ppo.num_minibatches: must divide ppo.num_envs with learner.recurrent "
                             "(a minibatch is whole environment sequences)")
        if self.learner.backend == "rllib":
            from agents.learn.rllib_ppo import installed, unsupported

            why = unsupported(self) or installed()
            if why:
                raise ValueError(why)
        return self


def make_env(spec: EnvSpec, **override):
    """A Parallel-API environment from ``spec`` (``override`` replaces some params)."""
    import importlib

    from envs.registry import ENVIRONMENTS

    module = importlib.import_module(ENVIRONMENTS[spec.id])
    return module.parallel_env(**{**spec.params, **override})


def resolve_device(name: str) -> str:
    """``auto``: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
