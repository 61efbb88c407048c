"""RLlib's PPO module with action masking, for ``learner.backend: rllib`` (:mod:`agents.learn.rllib_ppo`).

Adapted from RLlib's example ``ActionMaskingTorchRLModule``
(``ray.rllib.examples.rl_modules.classes.action_masking_rlm``, Ray 2.60), which subclasses the
deprecated ``PPOTorchRLModule``; this one subclasses ``DefaultPPOTorchRLModule`` and is otherwise the
same idea: the observation is ``{"observations": ..., "action_mask": ...}``; the networks are built
for ``observations`` alone; the mask is taken off the batch before the forward pass and ``log(mask)``
(clamped to RLlib's ``FLOAT_MIN``) is added to the action logits, so an illegal action has
probability 0 when acting and in the loss. For the train pass the mask comes from the batch's
``action_mask`` column, which :meth:`compute_values` puts there when the learner's GAE connector
calls it on the dict observations first (as in the example).

Imports RLlib: only imported when that backend is used (the ``rllib`` extra).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.framework import try_import_torch
from ray.rllib.utils.torch_utils import FLOAT_MIN

torch, _nn = try_import_torch()

OBS, MASK = "observations", "action_mask"


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):
    """PPO's default torch module (MLP encoders, ``pi`` and ``vf`` heads) with masked logits."""

    def __init__(self, *, observation_space: gym.spaces.Dict | None = None, **kwargs):
        if not isinstance(observation_space, gym.spaces.Dict) or set(observation_space.spaces) != {OBS, MASK}:
            raise ValueError(f"MaskedPPOTorchRLModule needs a Dict observation space with keys {OBS!r} and {MASK!r}")
        self.observation_space_with_mask = observation_space
        super().__init__(observation_space=observation_space[OBS], **kwargs)

    def setup(self):
        super().setup()  # the networks, for the observations alone
        self.observation_space = self.observation_space_with_mask

    @staticmethod
    def _split(batch: dict) -> tuple[Any, dict]:
        """``(mask, batch with the observations alone under obs)``."""
        obs = batch[Columns.OBS]
        batch = dict(batch)
        batch[Columns.OBS] = obs[OBS]
        return obs[MASK], batch

    @staticmethod
    def _mask(out: dict, mask) -> dict:
        out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + torch.clamp(torch.log(mask), min=FLOAT_MIN)
        return out

    def _forward(self, batch: dict, **kwargs) -> dict:  # acting: inference and exploration
        mask, batch = self._split(batch)
        return self._mask(super()._forward(batch, **kwargs), mask)

    def _forward_train(self, batch: dict, **kwargs) -> dict:
        if isinstance(batch[Columns.OBS], dict):
            mask, batch = self._split(batch)
        else:
            mask = batch[MASK]
        return self._mask(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch: dict, embeddings=None):
        if isinstance(batch[Columns.OBS], dict):
            mask, flat = self._split(batch)
            batch[Columns.OBS] = flat[Columns.OBS]  # as the example does: the batch is changed in place,
            batch[MASK] = mask                      # so the train pass finds the mask as a column
        return super().compute_values(batch, embeddings)
