"""Checkpoints of trained agents, and loading one as a policy.

A checkpoint is a folder::

    meta.json          env spec, agent names, groups, network sizes, learner settings
    node_0.pt ...      each agent's network ``state_dict`` (torch.save), or shared.pt when the
                       agents share parameters

Weights load with ``torch.load(path, weights_only=True)``: plain tensors, no pickled code.

:func:`load_policy` turns a checkpoint into ``policy(ask) -> action`` for the live runtime (or any
``Sim`` agent): it builds the observation the agent was trained on from the ``Ask`` (the game's
local features, the node's clock reading, 1.0 for "owes a decision") and returns the most likely
legal choice. ``policy.act(agent, obs, mask)`` does the same from a PettingZoo observation.

A recurrent policy (``learner.recurrent: gru``) keeps each agent's GRU state between calls: every
``act`` (or ``policy(ask)``) of an agent is one step of its memory. ``policy.reset()`` forgets all
agents' states (call it at every episode start), ``policy.reset(agent)`` one agent's. In training
the state advanced once per environment step, including steps where the agent owed no decision
(its observation then says so); ``capgym evaluate`` plays it the same way, while ``policy(ask)``
advances it only at the node's decisions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from agents.learn.nets import make_net

META = "meta.json"


def weight_file(meta: dict, group: int) -> str:
    g = meta["groups"][group]
    return "shared.pt" if len(g) > 1 else f"{meta['agents'][g[0]]}.pt"


def save(folder: str | Path, trained) -> Path:
    """Write ``trained`` (an :class:`agents.learn.ppo.Trained`) as a checkpoint folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = trained.cfg
    meta = {"env": cfg.env.model_dump(mode="json"), "agents": trained.agents, "groups": trained.groups,
            "dims": trained.dims, "hidden": cfg.ppo.hidden, "share": cfg.learner.share,
            "critic": cfg.learner.critic, "seed": cfg.seed, "env_steps": trained.env_steps,
            "recurrent": cfg.learner.recurrent, "rnn_hidden": cfg.learner.rnn_hidden,
            "backend": cfg.learner.backend}
    for gi, w in enumerate(trained.weights):
        tmp = folder / f".{weight_file(meta, gi)}.tmp"
        torch.save({k: v.detach().cpu() for k, v in w.items()}, tmp)
        tmp.replace(folder / weight_file(meta, gi))
    tmp = folder / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(folder / META)
    return folder


def find(path: str | Path) -> Path:
    """The checkpoint folder at ``path``: the folder itself or a training run's ``checkpoint/``."""
    p = Path(path)
    for cand in (p, p / "checkpoint"):
        if (cand / META).is_file():
            return cand
    raise FileNotFoundError(f"{path}: not a checkpoint (no {META} here or in checkpoint/)")


def load(path: str | Path) -> tuple[dict, list[dict]]:
    """``(meta, weights per group)``; weights loaded with ``weights_only=True``."""
    folder = find(path)
    meta = json.loads((folder / META).read_text())
    weights = [torch.load(folder / weight_file(meta, gi), weights_only=True, map_location="cpu")
               for gi in range(len(meta["groups"]))]
    return meta, weights


class Policy:
    """Trained agents' actors (critics unused): greedy (or sampled) legal actions. A recurrent
    policy keeps one GRU state per agent between calls; :meth:`reset` forgets them."""

    def __init__(self, meta: dict, weights: list[dict], greedy: bool = True, seed: int = 0):
        self.meta = meta
        d = meta["dims"]
        self.recurrent = meta.get("recurrent", "none") != "none"
        self.nets = []
        for w in weights:
            net = make_net(d["obs_dim"], d["n_actions"], meta["hidden"], d["critic_dim"], meta.get("recurrent", "none"),
                           meta.get("rnn_hidden", 64), meta.get("critic") == "central")
            net.load_state_dict(w)
            net.eval()
            self.nets.append(net)
        self.agents = meta["agents"]
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.group_of = {i: (gi, g.index(i)) for gi, g in enumerate(meta["groups"]) for i in g}
        self.greedy = greedy
        self.gen = torch.Generator().manual_seed(seed)
        self._game = None
        self.states: dict[int, torch.Tensor] = {}  # agent index -> its GRU state (recurrent policies)

    def reset(self, agent: str | int | None = None) -> None:
        """Forget the GRU state of ``agent`` (name or index), or of every agent: the next call
        starts an episode. Nothing to forget for a feed-forward policy."""
        if agent is None:
            self.states.clear()
        else:
            self.states.pop(self.index[agent] if isinstance(agent, str) else int(agent), None)

    @torch.no_grad()
    def act(self, agent: str | int, obs, mask) -> int:
        """The action of ``agent`` (name or index) for one observation vector and action mask."""
        i = self.index[agent] if isinstance(agent, str) else int(agent)
        gi, pos = self.group_of[i]
        x = np.asarray(obs, dtype=np.float32)
        if self.meta["share"]:
            x = np.concatenate([x, np.eye(len(self.meta["groups"][gi]), dtype=np.float32)[pos]])
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        net = self.nets[gi]
        x = torch.from_numpy(x)
        if self.recurrent:  # one step of this agent's memory, from zeros after a reset
            h = self.states.get(i)
            core, self.states[i] = net.core(x[None, None], torch.zeros(1, 1, dtype=torch.bool),
                                            net.initial_state(1) if h is None else h)
            x = core[0, 0]
        logp, p = net.dist(x, m)
        if self.greedy:
            return int(logp.argmax())
        return int(torch.multinomial(p, 1, generator=self.gen))

    @property
    def game(self):
        """The environment's game object (features and masks of an ``Ask``)."""
        if self._game is None:
            from agents.learn.config import EnvSpec, make_env

            self._game = make_env(EnvSpec(**self.meta["env"])).game
        return self._game

    def __call__(self, ask, clock_ms: float | None = None) -> int:
        """``policy(ask) -> action``: the trained choice for a pending decision of node ``ask.node``.

        The observation is the game's local features of ``ask``, the node's clock in seconds
        (``clock_ms`` when given, else ``ask.t``) and 1.0 (a decision is owed). The answer is the
        game's choice index, which is the protocol's action for Register-v0, Election-v0 and
        Consensus-v0 (Commons-v0's harvest also needs the world's resource level).
        """
        g = self.game
        k = g.n_actions
        t = ask.t if clock_ms is None else clock_ms
        obs = [*g.features(ask), t / 1000.0, 1.0]
        mask = [*g.mask(ask), 0]
        if not any(mask[:k]):
            return ask.default
        return self.act(int(ask.node), obs, mask)


def load_policy(path: str | Path, greedy: bool = True, seed: int = 0) -> Policy:
    """A checkpoint as a callable ``policy(ask) -> action`` (see :class:`Policy`)."""
    meta, weights = load(path)
    return Policy(meta, weights, greedy, seed)
