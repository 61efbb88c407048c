"""Proximal Policy Optimization for capgym's agents, CleanRL-style (Schulman et al. 2017; the
implementation details of Huang et al. 2022, "The 37 Implementation Details of PPO").

Three ways to learn, chosen in the config (``learner:``):

* **independent PPO** (default): one learner per agent. Each learner owns its network and its
  optimizer and is handed only its own agent's observations, actions and rewards
  (:func:`agents.learn.runner.split`); it computes its own advantages from them.
* **parameter sharing** (``share: true``): one learner for all agents, the agent's index appended
  to its observation as a one-hot.
* **MAPPO** (``critic: central``): as above, but the critic reads the global state
  (:mod:`agents.learn.mappo`) during training; the actor still reads only the local observation.

Any of them may be **recurrent** (``recurrent: gru``, :class:`~agents.learn.nets.RecurrentActorCritic`),
as in CleanRL's ``ppo_atari_lstm.py``: the runner carries each agent's GRU state through the rollout
and stores it as it was at the rollout's start; the update replays each environment copy's sequence
from that state (zeroing it at episode starts), and minibatches are whole sequences, not steps.

Learners run in this process (``backend: local``) or each in its own Ray actor (``backend: ray``,
:mod:`agents.learn.actors`). Either way the loop is the same, top to bottom in :func:`train`:

1. the :class:`~agents.learn.runner.EnvRunner` plays ``num_steps`` steps in each of ``num_envs``
   environment copies with the runner's policy copies;
2. each learner gets its agents' slice of the rollout and runs PPO's clipped update
   (:meth:`PPOLearner.update`);
3. the runner's policy copies are refreshed from the learners' new weights;
4. one row of metrics (returns per agent, the observer's global measures of the episodes that
   finished, losses, entropy, steps per second) goes to ``on_iteration``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from agents.learn import mappo
from agents.learn.config import PPOConfig, TrainConfig, make_env, resolve_device
from agents.learn.nets import entropy, make_net, stacked
from agents.learn.runner import EnvRunner, groups_for, numeric_measures, split


def gae(rewards: np.ndarray, values: np.ndarray, ends: np.ndarray, next_values: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016) over ``(T, ...)`` arrays.

    ``ends[t]``: the episode ended after step ``t`` (no bootstrap across it). Returns
    ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float32)
    last = np.zeros_like(next_values, dtype=np.float32)
    for t in reversed(range(T)):
        nxt = next_values if t == T - 1 else values[t + 1]
        live = 1.0 - ends[t]
        delta = rewards[t] + gamma * nxt * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv, adv + values


class PPOLearner:
    """One agent's (or one sharing group's) learner: its network, its optimizer, its experience.

    :meth:`update` takes the group's own rollout slice (``runner.split``) and nothing else.
    """

    def __init__(self, obs_dim: int, n_actions: int, critic_dim: int, cfg: PPOConfig, seed: int,
                 device: str = "cpu", torch_threads: int | None = None, recurrent: str = "none",
                 rnn_hidden: int = 64, central: bool = False):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.cfg = cfg
        self.device = torch.device(resolve_device(device))
        self.recurrent = recurrent != "none"
        torch.manual_seed(seed)
        self.net = make_net(obs_dim, n_actions, cfg.hidden, critic_dim, recurrent, rnn_hidden,
                            central).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1e-5)
        self.gen = torch.Generator().manual_seed(seed)
        self.batch: dict | None = None  # the last experience handed to this learner

    def get_weights(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def set_weights(self, sd: dict) -> None:
        self.net.load_state_dict(sd)

    def state(self) -> dict:
        """Weights and optimizer state (for checkpoints)."""
        return {"net": self.get_weights(), "opt": self.opt.state_dict()}

    def update(self, batch: dict[str, np.ndarray], frac: float = 1.0) -> dict[str, float]:
        """PPO's clipped update on this learner's own experience; ``frac`` anneals the learning rate."""
        c = self.cfg
        self.batch = batch
        if c.anneal_lr:
            self.opt.param_groups[0]["lr"] = frac * c.lr
        rewards = batch["rewards"] * c.reward_scale
        adv, ret = gae(rewards, batch["values"], batch["ends"], batch["next_values"], c.gamma, c.gae_lambda)
        if self.recurrent:
            return self._update_sequences(batch, adv, ret)
        dev = self.device
        flat = lambda x, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=dev).reshape(
            -1, *x.shape[3:])
        obs = flat(batch["obs"])
        cin = flat(batch["critic_in"]) if "critic_in" in batch else obs
        mask = flat(batch["mask"], torch.bool)
        actions = flat(batch["actions"], torch.int64)
        old_logp, old_v = flat(batch["logp"]), flat(batch["values"])
        adv_t, ret_t = flat(adv), flat(ret)
        # steps with a real choice (more than one legal action); forced no-ops carry no policy gradient
        choice = (mask.sum(-1) > 1).float()
        n = obs.shape[0]
        mb = n // c.num_minibatches
        stats = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"), 0.0)
        count = 0
        for _ in range(c.update_epochs):
            perm = torch.randperm(n, generator=self.gen).to(dev)
            for s in range(0, n, mb):
                i = perm[s:s + mb]
                logp_all, p = self.net.dist(obs[i], mask[i])
                self._step(logp_all, p, self.net.value(cin[i]), mask[i], actions[i], old_logp[i], old_v[i],
                           adv_t[i], ret_t[i], choice[i], stats)
                count += 1
        return {k: v / max(count, 1) for k, v in stats.items()}

    def _update_sequences(self, batch: dict[str, np.ndarray], adv: np.ndarray, ret: np.ndarray) -> dict[str, float]:
        """The recurrent update (CleanRL's ``ppo_atari_lstm.py``): the batch is ``N`` sequences of ``T``
        steps (one per environment copy and agent of the group); each minibatch is ``N /
        num_minibatches`` whole sequences, replayed through the GRU from their stored initial state
        ``h0``, the state zeroed before every episode start."""
        c, dev = self.cfg, self.device
        seq = lambda x, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=dev).reshape(
            x.shape[0], -1, *x.shape[3:])  # (T, E, g, ...) -> (T, N, ...)
        obs = seq(batch["obs"])
        cin = seq(batch["critic_in"]) if "critic_in" in batch else None
        mask = seq(batch["mask"], torch.bool)
        actions = seq(batch["actions"], torch.int64)
        old_logp, old_v = seq(batch["logp"]), seq(batch["values"])
        adv_t, ret_t = seq(adv), seq(ret)
        starts = seq(batch["starts"], torch.bool)
        h0 = torch.as_tensor(np.ascontiguousarray(batch["h0"]), dtype=torch.float32, device=dev).reshape(
            -1, self.net.rnn_hidden)
        choice = (mask.sum(-1) > 1).float()
        n = obs.shape[1]
        mb = max(n // c.num_minibatches, 1)
        stats = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"), 0.0)
        count = 0
        for _ in range(c.update_epochs):
            perm = torch.randperm(n, generator=self.gen).to(dev)
            for s in range(0, n, mb):
                i = perm[s:s + mb]
                core, _ = self.net.core(obs[:, i], starts[:, i], h0[i])
                logp_all, p = self.net.dist(core, mask[:, i])
                v = self.net.value(core, None if cin is None else cin[:, i])
                self._step(logp_all, p, v, mask[:, i], actions[:, i], old_logp[:, i], old_v[:, i],
                           adv_t[:, i], ret_t[:, i], choice[:, i], stats)
                count += 1
        return {k: v / max(count, 1) for k, v in stats.items()}

    def _step(self, logp_all, p, v, mask, actions, old_logp, old_v, adv, ret, w, stats: dict) -> None:
        """One gradient step of PPO's clipped loss on a minibatch (any shape of steps): the masked
        distribution ``(logp_all, p)``, ``v`` the critic's values, ``w`` 1 where the step had a
        real choice (only those carry policy gradient and entropy). Adds to ``stats``."""
        c = self.cfg
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        ratio = (logp - old_logp).exp()
        nw = w.sum().clamp(min=1.0)
        a = adv
        if c.norm_adv:
            sel = w > 0
            if sel.sum() > 1:
                a = (a - a[sel].mean()) / (a[sel].std() + 1e-8)
        pg = torch.max(-a * ratio, -a * ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef))
        pg_loss = (pg * w).sum() / nw
        ent = (entropy(logp_all, p, mask) * w).sum() / nw
        if c.clip_vloss:
            v_clip = old_v + (v - old_v).clamp(-c.clip_coef, c.clip_coef)
            v_loss = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2).mean()
        else:
            v_loss = 0.5 * ((v - ret) ** 2).mean()
        loss = pg_loss - c.ent_coef * ent + c.vf_coef * v_loss
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
        self.opt.step()
        with torch.no_grad():
            logr = logp - old_logp
            stats["approx_kl"] += float((((ratio - 1) - logr) * w).sum() / nw)
            stats["clipfrac"] += float((((ratio - 1).abs() > c.clip_coef).float() * w).sum() / nw)
        stats["policy_loss"] += float(pg_loss.detach())
        stats["value_loss"] += float(v_loss.detach())
        stats["entropy"] += float(ent.detach())


# =====================================================================================================
# Learner backends: in this process, or one Ray actor per learner
# =====================================================================================================

class LocalLearners:
    """The learners as plain objects in this process."""

    def __init__(self, specs: list[dict]):
        self.learners = [PPOLearner(**s) for s in specs]

    def update(self, batches: list[dict], frac: float) -> list[dict]:
        return [lr.update(b, frac) for lr, b in zip(self.learners, batches)]

    def weights(self) -> list[dict]:
        return [lr.get_weights() for lr in self.learners]

    def states(self) -> list[dict]:
        return [lr.state() for lr in self.learners]

    def close(self) -> None:
        pass


def make_learners(cfg: TrainConfig, specs: list[dict]):
    if cfg.learner.backend == "ray":
        from agents.learn.actors import RayLearners

        return RayLearners(cfg, specs)
    return LocalLearners(specs)


# =====================================================================================================
# The training loop
# =====================================================================================================

@dataclass
class Trained:
    """What :func:`train` leaves: the config, each group's weights, the metric rows."""

    cfg: TrainConfig
    agents: list[str]
    groups: list[list[int]]
    weights: list[dict]
    dims: dict
    rows: list[dict] = field(default_factory=list)
    env_steps: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def policy_nets(self) -> list[nn.Module]:
        nets = []
        lc = self.cfg.learner
        for w in self.weights:
            net = make_net(self.dims["obs_dim"], self.dims["n_actions"], self.cfg.ppo.hidden, self.dims["critic_dim"],
                           lc.recurrent, lc.rnn_hidden, lc.critic == "central")
            net.load_state_dict(w)
            nets.append(net)
        return nets


def learner_dims(cfg: TrainConfig) -> tuple[list[str], dict]:
    env = make_env(cfg.env)
    agents = list(env.possible_agents)
    a0 = agents[0]
    d = env.observation_space(a0)["observation"].shape[0]
    k = int(env.action_space(a0).n)
    env.close()
    A = len(agents)
    obs_dim = d + (A if cfg.learner.share else 0)
    critic_dim = mappo.state_dim(A, d) if cfg.learner.critic == "central" else obs_dim
    return agents, {"obs_dim": obs_dim, "n_actions": k, "critic_dim": critic_dim, "env_obs_dim": d}


def recurrent_spec(cfg: TrainConfig) -> dict:
    """The learner keywords of a recurrent policy (none for the default MLP, so its learners are
    built exactly as before)."""
    lc = cfg.learner
    if lc.recurrent == "none":
        return {}
    return {"recurrent": lc.recurrent, "rnn_hidden": lc.rnn_hidden, "central": lc.critic == "central"}


def iteration_row(it: int, env_steps: int, sps: float, agents: list[str], groups: list[list[int]],
                  stats: list[dict], episodes: list) -> dict:
    """One row of ``metrics.csv``: mean episode returns per agent and global measures over the
    episodes that finished during this iteration, then each learner's losses."""
    row: dict = {"iteration": it, "env_steps": env_steps, "sps": round(sps, 1), "episodes": len(episodes)}
    if episodes:
        R = np.array([e.returns for e in episodes])
        row["return_mean"] = float(R.mean())
        for i, a in enumerate(agents):
            row[f"return/{a}"] = float(R[:, i].mean())
        ms = [numeric_measures(e.measures) for e in episodes]
        for k in sorted({k for m in ms for k in m}):
            vals = [m[k] for m in ms if k in m]
            row[f"global/{k}"] = float(np.mean(vals))
    for g, s in zip(groups, stats):
        name = agents[g[0]] if len(g) == 1 else "shared"
        for k, v in s.items():
            row[f"{k}/{name}"] = v
    for k in ("policy_loss", "value_loss", "entropy"):
        row[k] = float(np.mean([s[k] for s in stats]))
    return row


def train(cfg: TrainConfig, on_iteration: Callable[[dict], None] | None = None,
          stop: Callable[[], bool] = lambda: False, progress: bool = False) -> Trained:
    """Train PPO agents as ``cfg`` says; returns their weights and the metric rows."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.learner.torch_threads)
    c = cfg.ppo
    agents, dims = learner_dims(cfg)
    groups = groups_for(len(agents), cfg.learner.share)
    specs = [dict(obs_dim=dims["obs_dim"], n_actions=dims["n_actions"], critic_dim=dims["critic_dim"], cfg=c,
                  seed=cfg.seed * 1000 + gi, device=cfg.learner.device, torch_threads=cfg.learner.torch_threads,
                  **recurrent_spec(cfg))
             for gi in range(len(groups))]
    learners = make_learners(cfg, specs)
    weights = learners.weights()
    runner = EnvRunner(cfg, stacked(weights, cfg.learner.recurrent))
    iterations = math.ceil(c.total_steps / c.batch_steps)
    out = Trained(cfg, agents, groups, [], dims)
    start = time.perf_counter()
    central = cfg.learner.critic == "central"
    try:
        with tqdm(total=iterations * c.batch_steps, unit="step", desc="train", disable=not progress,
                  dynamic_ncols=True, leave=False) as bar:
            for it in range(iterations):
                if stop():
                    out.interrupted = True
                    break
                t0 = time.perf_counter()
                roll = runner.rollout(c.num_steps)                                     # 1. act
                batches = [split(roll, g, cfg.learner.share, central) for g in groups]  # own data only
                stats = learners.update(batches, 1.0 - it / iterations)               # 2. learn
                weights = learners.weights()                                          # 3. refresh copies
                runner.policy.load(weights)
                out.env_steps += c.batch_steps
                sps = c.batch_steps / (time.perf_counter() - t0)
                row = iteration_row(it, out.env_steps, sps, agents, groups, stats, runner.take_episodes())
                out.rows.append(row)                                                  # 4. log
                if on_iteration:
                    on_iteration(row)
                bar.update(c.batch_steps)
                if "return_mean" in row:
                    bar.set_postfix(ret=f"{row['return_mean']:.2f}", sps=f"{sps:.0f}")
    except KeyboardInterrupt:
        out.interrupted = True
    finally:
        out.weights = weights
        out.seconds = time.perf_counter() - start
        learners.close()
    return out
