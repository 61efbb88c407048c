"""The actor-critic network of a PPO agent, and action sampling under an action mask.

Action masking (Huang & Ontañón 2020, "A Closer Look at Invalid Action Masking"): logits of
illegal actions are set to ``-inf`` before the softmax, so they are never sampled and get no
probability mass, and the same masked distribution is used in the PPO loss.

Two networks: :class:`ActorCritic` (MLP actor and critic, the default) and
:class:`RecurrentActorCritic` (``learner.recurrent: gru``: an MLP body, a GRU carried through the
episode, actor and value heads on the GRU state, as in CleanRL's ``ppo_atari_lstm.py``). The runner
acts with numpy copies of either (:class:`StackedPolicy`, :class:`StackedRecurrentPolicy`).
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
        if f"{prefix}.weight" in sd:  # a single linear layer (a head of the recurrent network)
            return [prefix]
        idx = sorted(int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".") and k.endswith(".weight"))
        return [f"{prefix}.{i}" for i in idx]

    PREFIXES = ("actor", "critic")

    @staticmethod
    def _stack(weights: list[dict], key: str, transpose: bool) -> np.ndarray:
        """``key`` of every group's ``state_dict``, stacked: ``(G, in, out)`` weights (``transpose``)
        or ``(G, 1, out)`` biases."""
        arrs = [w[key].detach().cpu().numpy() for w in weights]
        return np.stack([a.T for a in arrs] if transpose else [a[None, :] for a in arrs]).astype(np.float32)

    def load(self, weights: list[dict]) -> None:
        sd0 = weights[0]
        self.net = {}
        for prefix in self.PREFIXES:
            self.net[prefix] = [(self._stack(weights, f"{n}.weight", True), self._stack(weights, f"{n}.bias", False))
                                for n in self._layers(sd0, prefix)]

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
        return masked_sample(np.where(mask, self._forward("actor", x), -np.inf), rng, greedy)


def masked_sample(logits: np.ndarray, rng: np.random.Generator | None,
                  greedy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sample (Gumbel-max) or take the argmax of categorical ``logits`` (illegal ones ``-inf``):
    ``(actions, log-probs)``."""
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    if greedy:
        a = logp.argmax(-1)
    else:
        a = (logp + rng.gumbel(size=logp.shape)).argmax(-1)
    return a, np.take_along_axis(logp, a[..., None], -1)[..., 0]


# =====================================================================================================
# The recurrent policy (learner.recurrent: gru)
# =====================================================================================================

def gru_cell(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step (Cho et al. 2014; PyTorch's ``nn.GRUCell`` equations) from the input's projection
    ``gi = W_ih x + b_ih`` (gates ordered reset, update, new) and the previous state ``h``::

        r = sigmoid(gi_r + W_hr h + b_hr)     z = sigmoid(gi_z + W_hz h + b_hz)
        n = tanh(gi_n + r * (W_hn h + b_hn))  h' = (1 - z) * n + z * h
    """
    gh = torch.nn.functional.linear(h, w_hh, b_hh)
    ir, iz, in_ = gi.chunk(3, -1)
    hr, hz, hn = gh.chunk(3, -1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h


class RecurrentActorCritic(nn.Module):
    """An MLP ``body`` (``hidden`` widths, tanh), a GRU of width ``rnn_hidden``, and on the GRU's
    state an ``actor`` head (logits) and a ``critic`` head (value): CleanRL's ``ppo_atari_lstm.py``
    layout, so the value, too, can depend on what the agent remembers. With MAPPO's centralized
    critic (``central``) the critic is instead an MLP on the global state, which needs no memory.

    The state is carried through an episode and reset to zeros at each episode start
    (:meth:`core`'s ``starts``); one step per environment step, whether or not the agent owes a
    decision.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], rnn_hidden: int,
                 critic_dim: int | None = None, central: bool = False):
        super().__init__()
        self.obs_dim, self.n_actions, self.rnn_hidden = obs_dim, n_actions, rnn_hidden
        self.central = central
        self.critic_dim = critic_dim or obs_dim
        mods: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            mods += [layer(width, h), nn.Tanh()]
            width = h
        self.body = nn.Sequential(*mods)
        self.gru = nn.GRUCell(width, rnn_hidden)
        for name, p in self.gru.named_parameters():  # CleanRL: orthogonal weights, zero biases
            if "weight" in name:
                nn.init.orthogonal_(p, 1.0)
            else:
                nn.init.zeros_(p)
        self.actor = layer(rnn_hidden, n_actions, 0.01)
        self.critic = mlp(self.critic_dim, hidden, 1, 1.0) if central else layer(rnn_hidden, 1, 1.0)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.rnn_hidden, device=self.actor.weight.device)

    def core(self, obs: torch.Tensor, starts: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replay sequences: ``obs (T, B, D)``, ``starts (T, B)`` (step ``t`` begins an episode: the
        state is zeroed before it), ``h0 (B, H)`` the state before step 0. Returns the states after
        every step ``(T, B, H)`` and the last one ``(B, H)``."""
        g = self.gru
        gi = torch.nn.functional.linear(self.body(obs), g.weight_ih, g.bias_ih)  # all steps at once
        keep = 1.0 - starts.to(gi.dtype).unsqueeze(-1)
        h, out = h0, []
        for t in range(obs.shape[0]):
            h = gru_cell(gi[t], h * keep[t], g.weight_hh, g.bias_hh)
            out.append(h)
        return torch.stack(out), h

    def value(self, core: torch.Tensor, critic_in: torch.Tensor | None = None) -> torch.Tensor:
        """Values from the GRU states ``core`` (or, ``central``, from the global state ``critic_in``)."""
        return self.critic(critic_in if self.central else core).squeeze(-1)

    def dist(self, core: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log-probabilities, probabilities)`` of the masked categorical at GRU states ``core``."""
        logits = self.actor(core).masked_fill(~mask, -torch.inf)
        logp = torch.log_softmax(logits, -1)
        return logp, logp.exp()


def make_net(obs_dim: int, n_actions: int, hidden: list[int], critic_dim: int | None = None,
             recurrent: str = "none", rnn_hidden: int = 64, central: bool = False) -> nn.Module:
    """The network a learner trains: :class:`ActorCritic`, or :class:`RecurrentActorCritic` (``gru``)."""
    if recurrent == "gru":
        return RecurrentActorCritic(obs_dim, n_actions, hidden, rnn_hidden, critic_dim, central)
    return ActorCritic(obs_dim, n_actions, hidden, critic_dim)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow


class StackedRecurrentPolicy(StackedPolicy):
    """Numpy copies of every group's :class:`RecurrentActorCritic`, stacked like :class:`StackedPolicy`.

    The state is the caller's: ``h = policy.step(x, h, starts)`` advances it one step (zeroed first
    where ``starts``); :meth:`act` and :meth:`value` then read the new state (or, for a central
    critic, the global state), exactly as :meth:`RecurrentActorCritic.core` does in torch.
    """

    PREFIXES = ("body", "actor", "critic")

    def load(self, weights: list[dict]) -> None:
        super().load(weights)
        self.gru = {k: self._stack(weights, f"gru.{k}", k.startswith("weight"))
                    for k in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")}
        self.rnn_hidden = self.gru["weight_hh"].shape[1]

    def initial_state(self, groups: int, batch: int) -> np.ndarray:
        return np.zeros((groups, batch, self.rnn_hidden), np.float32)

    def step(self, x: np.ndarray, h: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The next GRU states ``(G, B, H)`` for inputs ``(G, B, D)``, states ``(G, B, H)`` and
        episode starts ``(G, B)``."""
        for W, b in self.net["body"]:
            x = np.tanh(np.matmul(x, W) + b)
        g = self.gru
        h = h * (1.0 - starts[..., None].astype(np.float32))
        ir, iz, in_ = np.split(np.matmul(x, g["weight_ih"]) + g["bias_ih"], 3, -1)
        hr, hz, hn = np.split(np.matmul(h, g["weight_hh"]) + g["bias_hh"], 3, -1)
        r, z = sigmoid(ir + hr), sigmoid(iz + hz)
        n = np.tanh(in_ + r * hn)
        return ((1 - z) * n + z * h).astype(np.float32)


def stacked(weights: list[dict], recurrent: str = "none") -> StackedPolicy:
    """The runner's numpy copies of the groups' networks."""
    return StackedRecurrentPolicy(weights) if recurrent == "gru" else StackedPolicy(weights)
