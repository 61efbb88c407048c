"""An environment runner: ``num_envs`` copies of a Parallel environment stepped together.

Each step, every copy's observations are stacked into one ``(E, A, D)`` array; each policy group
(one agent, or all agents when parameters are shared) picks actions for all copies in one batched
forward pass of its **policy copy** (the runner's copies are refreshed from the learners after
every update; they are never trained here). Finished episodes are reset at once with the next
seed, and their returns and the observer's global measures are kept for logging.

The rollout is plain numpy, ``T`` steps x ``E`` copies x ``A`` agents; :func:`split` hands each
learner only its own agents' slices (independent learning).

With a recurrent policy (``learner.recurrent: gru``) the runner also carries every agent's GRU state
from step to step and across rollouts, zeroes it where an episode starts, and records ``starts``
``(T, E)`` (step ``t`` is the first of an episode) and ``h0`` ``(E, A, H)`` (the states before the
rollout's first step), from which the learner replays the sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.learn import mappo
from agents.learn.config import TrainConfig, make_env
from agents.learn.nets import StackedPolicy, StackedRecurrentPolicy


def groups_for(n_agents: int, share: bool) -> list[list[int]]:
    """Agent indices per learner: one group per agent, or one group of all (parameter sharing)."""
    return [list(range(n_agents))] if share else [[i] for i in range(n_agents)]


def policy_input(obs: np.ndarray, group: list[int], share: bool) -> np.ndarray:
    """The actor's input for ``group``'s agents, ``(..., |g|, D')``: own observations (plus a one-hot of
    the agent's position when parameters are shared, so one network can tell agents apart)."""
    x = obs[..., group, :]
    if not share:
        return x
    eye = np.broadcast_to(np.eye(len(group), dtype=x.dtype), x.shape[:-1] + (len(group),))
    return np.concatenate([x, eye], axis=-1)


@dataclass
class Episode:
    """A finished episode of one copy: per-agent returns and the observer's global measures."""

    seed: int
    returns: list[float]
    length: int
    measures: dict = field(default_factory=dict)


def numeric_measures(m: dict) -> dict[str, float]:
    """The scalar numbers (and booleans, as 0/1) among an environment's global measures."""
    out = {}
    for k, v in m.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class EnvRunner:
    """``E`` copies of ``cfg.env``, acting with the groups' policy copies (``policy``)."""

    def __init__(self, cfg: TrainConfig, policy: StackedPolicy, num_envs: int | None = None,
                 seed_base: int | None = None, env_override: dict | None = None):
        self.cfg = cfg
        self.E = num_envs or cfg.ppo.num_envs
        self.envs = [make_env(cfg.env, **(env_override or {})) for _ in range(self.E)]
        env0 = self.envs[0]
        self.agents = env0.possible_agents
        self.A = len(self.agents)
        self.share = cfg.learner.share
        self.central = cfg.learner.critic == "central"
        self.groups = groups_for(self.A, self.share)
        self.policy = policy
        self.rng = np.random.default_rng(cfg.seed)
        # episode seeds: copy e plays seed_base + e, seed_base + e + E, ...
        self.seed_base = cfg.seed * 1_000_003 if seed_base is None else seed_base
        self.next_seed = [self.seed_base + e for e in range(self.E)]
        self.ret = np.zeros((self.E, self.A))
        self.length = np.zeros(self.E, dtype=np.int64)
        self.cur_seed = [0] * self.E
        self.obs = np.stack([self._reset(e) for e in range(self.E)])
        self.episodes: list[Episode] = []
        self.recurrent = isinstance(policy, StackedRecurrentPolicy)
        if self.recurrent:  # the GRU states (G, B, H), and which copies start an episode at the next step
            self.h = policy.initial_state(len(self.groups), self.E * self.A if self.share else self.E)
            self.starts = np.ones(self.E, dtype=bool)

    # --- one copy ---------------------------------------------------------------------------------
    def _reset(self, e: int) -> tuple:
        seed = self.next_seed[e]
        self.next_seed[e] += self.E
        self.cur_seed[e] = seed
        obs, _ = self.envs[e].reset(seed=seed)
        self.ret[e] = 0.0
        self.length[e] = 0
        return self._stack(obs)

    def _stack(self, obs: dict) -> np.ndarray:
        return np.stack([np.concatenate([obs[a]["observation"], obs[a]["action_mask"]]) for a in self.agents])

    @property
    def obs_dim(self) -> int:
        return self.envs[0].observation_space(self.agents[0])["observation"].shape[0]

    @property
    def n_actions(self) -> int:
        return int(self.envs[0].action_space(self.agents[0]).n)

    # --- acting -----------------------------------------------------------------------------------
    def split_obs(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.obs_dim
        return packed[..., :d].astype(np.float32), packed[..., d:].astype(bool)

    def group_inputs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Actor inputs ``(G, B, D')`` and (MAPPO) critic inputs ``(G, B, S)`` for all groups at once:
        independent groups are the agents (``B = E``), a shared group is everyone (``B = E * A``)."""
        E, A = obs.shape[:2]
        state = mappo.global_state(obs) if self.central else None
        if self.share:
            x = policy_input(obs, self.groups[0], True).reshape(1, E * A, -1)
            s = None if state is None else state.reshape(1, E * A, -1)
        else:
            x = obs.transpose(1, 0, 2)
            s = None if state is None else state.transpose(1, 0, 2)
        return np.ascontiguousarray(x), s

    def policy_step(self, obs: np.ndarray, mask: np.ndarray, greedy: bool = False, advance: bool = True):
        """Actions, log-probs and values ``(E, A)`` for observations ``(E, A, D)``, masks ``(E, A, K)``.

        A recurrent policy first steps its GRU states (zeroed where ``self.starts``) and acts from the
        new ones; ``advance=False`` leaves the runner's states as they were (the bootstrap value)."""
        E, A = obs.shape[:2]
        x, s = self.group_inputs(obs)
        m = mask.reshape(1, E * A, -1) if self.share else mask.transpose(1, 0, 2)
        if self.recurrent:
            starts = np.repeat(self.starts, A)[None] if self.share else np.broadcast_to(self.starts, (A, E))
            x = self.policy.step(x, self.h, starts)
            if advance:
                self.h = x
        a, lp = self.policy.act(x, m, self.rng, greedy)
        v = self.policy.value(x if s is None else s)
        back = (lambda y: y.reshape(E, A)) if self.share else (lambda y: y.T)
        return back(a), back(lp).astype(np.float32), back(v).astype(np.float32)

    def agent_states(self) -> np.ndarray:
        """The GRU states per copy and agent, ``(E, A, H)`` (from the groups' ``(G, B, H)``)."""
        h = self.h
        return h.reshape(self.E, self.A, -1) if self.share else h.transpose(1, 0, 2).copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step every copy; returns ``(rewards (E, A), ends (E,))`` and resets finished copies."""
        rewards = np.zeros((self.E, self.A), dtype=np.float32)
        ends = np.zeros(self.E, dtype=bool)
        for e, env in enumerate(self.envs):
            obs, rew, _term, _trunc, infos = env.step(dict(zip(self.agents, actions[e].tolist())))
            for i, a in enumerate(self.agents):
                rewards[e, i] = rew.get(a, 0.0)
            self.ret[e] += rewards[e]
            self.length[e] += 1
            if not env.agents:  # the episode is over (every agent truncated at the horizon)
                ends[e] = True
                m = next(iter(infos.values()), {}).get("global", {}) if infos else {}
                self.episodes.append(Episode(self.cur_seed[e], self.ret[e].tolist(), int(self.length[e]), m))
                self.obs[e] = self._reset(e)
            else:
                self.obs[e] = self._stack(obs)
        return rewards, ends

    def rollout(self, T: int) -> dict[str, np.ndarray]:
        """``T`` steps of every copy: the arrays PPO needs, ``(T, E, A, ...)``."""
        E, A = self.E, self.A
        d, k = self.obs_dim, self.n_actions
        out = {
            "obs": np.empty((T, E, A, d), np.float32), "mask": np.empty((T, E, A, k), bool),
            "actions": np.empty((T, E, A), np.int64), "logp": np.empty((T, E, A), np.float32),
            "values": np.empty((T, E, A), np.float32), "rewards": np.empty((T, E, A), np.float32),
            "ends": np.empty((T, E), bool),
        }
        if self.recurrent:
            out["h0"], out["starts"] = self.agent_states(), np.empty((T, E), bool)
        for t in range(T):
            obs, mask = self.split_obs(self.obs)
            a, lp, v = self.policy_step(obs, mask)
            out["obs"][t], out["mask"][t], out["actions"][t], out["logp"][t], out["values"][t] = obs, mask, a, lp, v
            if self.recurrent:
                out["starts"][t] = self.starts
            out["rewards"][t], out["ends"][t] = self.step(a)
            if self.recurrent:
                self.starts = out["ends"][t].copy()  # a copy that ended was reset: its next step starts anew
        obs, mask = self.split_obs(self.obs)
        out["next_values"] = self.policy_step(obs, mask, advance=False)[2]
        return out

    def take_episodes(self) -> list[Episode]:
        eps, self.episodes = self.episodes, []
        return eps


def split(roll: dict[str, np.ndarray], group: list[int], share: bool, central: bool) -> dict[str, np.ndarray]:
    """One learner's data: only the slices of ``group``'s agents (their own observations, actions,
    rewards). With a centralized critic (MAPPO) the critic input is the global state instead of the
    agent's own observation; rewards stay the agent's own."""
    x = policy_input(roll["obs"], group, share)
    batch = {
        "obs": x,
        "mask": roll["mask"][:, :, group],
        "actions": roll["actions"][:, :, group],
        "logp": roll["logp"][:, :, group],
        "values": roll["values"][:, :, group],
        "rewards": roll["rewards"][:, :, group],
        "ends": np.broadcast_to(roll["ends"][:, :, None], roll["actions"][:, :, group].shape).copy(),
        "next_values": roll["next_values"][:, group],
    }
    if "h0" in roll:  # a recurrent policy: the group's sequences' initial states and episode starts
        batch["h0"] = roll["h0"][:, group]
        batch["starts"] = np.broadcast_to(roll["starts"][:, :, None], batch["actions"].shape).copy()
    if central:
        T, E = roll["obs"].shape[:2]
        state = mappo.global_state(roll["obs"].reshape(T * E, *roll["obs"].shape[2:]))
        batch["critic_in"] = state.reshape(T, E, *state.shape[1:])[:, :, group]
    return batch
