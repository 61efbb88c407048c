"""The actor-critic network of a PPO agent, and action sampling under an action mask.

Action masking (Huang & Ontañón 2020, "A Closer Look at Invalid Action Masking"): logits of
illegal actions are set to ``-inf`` before the softmax, so they are never sampled and get no
probability mass, and the same masked distribution is used in the PPO loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def layer(i: int, o: int, std: float = np.sqrt(2)) -> nn.Linear:
    """A linear layer with orthogonal weights and zero bias (as in CleanRL / the PPO paper's code)."""
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


def mlp(i: int, hidden: list[int], o: int, out_std: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    for h in hidden:
        mods += [layer(i, h), nn.Tanh()]
        i = h
    mods.append(layer(i, o, out_std))
    return nn.Sequential(*mods)


class ActorCritic(nn.Module):
    """``actor(obs) -> logits`` over the actions, ``critic(x) -> value``.

    ``critic_dim`` is the critic's input width: the agent's own observation (independent PPO) or
    the global state (MAPPO's centralized critic; the actor never sees it).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], critic_dim: int | None = None):
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.critic_dim = critic_dim or obs_dim
        self.actor = mlp(obs_dim, hidden, n_actions, 0.01)
        self.critic = mlp(self.critic_dim, hidden, 1, 1.0)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def dist(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log-probabilities, probabilities)`` of the masked categorical distribution."""
        logits = self.actor(obs).masked_fill(~mask, -torch.inf)
        logp = torch.log_softmax(logits, -1)
        return logp, logp.exp()


def entropy(logp: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of a masked categorical: illegal actions contribute 0 (their ``-inf`` log-probability
    is replaced by 0 *before* the product, so neither the value nor its gradient is ``0 * -inf``)."""
    return -(p * logp.masked_fill(~mask, 0.0)).sum(-1)


@torch.no_grad()
def act(net: ActorCritic, obs: torch.Tensor, mask: torch.Tensor, gen: torch.Generator | None,
        greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (or, ``greedy``, take the most likely) legal actions; returns ``(actions, log-probs)``."""
    logp, p = net.dist(obs, mask)
    if greedy:
        a = logp.argmax(-1)
    else:
        a = torch.multinomial(p, 1, generator=gen).squeeze(-1)
    return a, logp.gather(-1, a.unsqueeze(-1)).squeeze(-1)


class StackedPolicy:
    """The runner's copies of every group's network, stacked and run in numpy.

    Acting needs thousands of tiny forward passes (one per environment step); doing them for all
    groups at once as batched matrix products ``(G, B, in) @ (G, in, out)`` in numpy avoids
    PyTorch's per-call overhead. Weights come from the learners' ``state_dict`` s (:meth:`load`),
    so the copies are exact; they are never trained here.
    """

    def __init__(self, weights: list[dict]):
        self.load(weights)

    @staticmethod
    def _layers(sd: dict, prefix: str) -> list[str]:
        idx = sorted(int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".") and k.endswith(".weight"))
        return [f"{prefix}.{i}" for i in idx]

    def load(self, weights: list[dict]) -> None:
        sd0 = weights[0]
        self.net = {}
        for prefix in ("actor", "critic"):
            layers = []
            for name in self._layers(sd0, prefix):
                W = np.stack([w[f"{name}.weight"].detach().cpu().numpy().T for w in weights]).astype(np.float32)
                b = np.stack([w[f"{name}.bias"].detach().cpu().numpy() for w in weights])[:, None, :].astype(np.float32)
                layers.append((W, b))
            self.net[prefix] = layers

    def _forward(self, prefix: str, x: np.ndarray) -> np.ndarray:
        layers = self.net[prefix]
        for j, (W, b) in enumerate(layers):
            x = np.matmul(x, W) + b
            if j < len(layers) - 1:
                x = np.tanh(x)
        return x

    def value(self, x: np.ndarray) -> np.ndarray:
        """Values ``(G, B)`` for critic inputs ``(G, B, C)``."""
        return self._forward("critic", x)[..., 0]

    def act(self, x: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None,
            greedy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Masked sampling (Gumbel-max) or argmax: ``(actions, log-probs)``, each ``(G, B)``."""
        logits = np.where(mask, self._forward("actor", x), -np.inf)
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        if greedy:
            a = logp.argmax(-1)
        else:
            a = (logp + rng.gumbel(size=logp.shape)).argmax(-1)
        return a, np.take_along_axis(logp, a[..., None], -1)[..., 0]
