"""RLlib's PPO as a training backend (``learner.backend: rllib``), on RLlib's new API stack
(RLModule, Learner, EnvRunner, ConnectorV2).

The same training config as capgym's own PPO; :func:`rllib_config` maps its keys onto RLlib's
``PPOConfig`` (:data:`KEY_MAP` says how), and :func:`unsupported` names, in one line, a setting RLlib
cannot honour (MAPPO's central critic, a GRU policy, ``norm_adv: false``, ...). Training
(:func:`train`) has :func:`agents.learn.ppo.train`'s signature and result, so ``capgym train``,
``capgym align`` and ``capgym sweep`` run it unchanged:

* **Action masks are enforced.** :class:`MaskedObs` turns each agent's observation into
  ``{"observations": ..., "action_mask": ...}``, the keys of RLlib's example
  ``ActionMaskingTorchRLModule`` (``ray.rllib.examples.rl_modules.classes.action_masking_rlm``);
  :class:`agents.learn.rllib_module.MaskedPPOTorchRLModule` is that module adapted to RLlib's
  current PPO module: it adds ``log(mask)`` to the logits, so an illegal action has probability 0
  when sampling and in the loss. The wrapper also counts actions the mask forbade
  (``illegal_actions`` in each iteration's row; always 0).
* **Independent learners** (one RLModule per agent) or, with ``learner.share``, one shared module
  whose input has the agent's one-hot appended (as capgym's parameter sharing).
* **Everything runs in this process** (``num_env_runners=0``, ``num_learners=0``): in a sweep a
  trial needs no Ray resources beyond its own.
* **The checkpoint is capgym's**: the RLModules' actor and critic (RLlib's MLP encoders and heads,
  ``fcnet_activation: tanh``) are the same layers as capgym's :class:`~agents.learn.nets.ActorCritic`,
  so :func:`to_capgym` copies them into its ``state_dict`` and ``checkpoint/`` holds ordinary
  capgym weights that ``capgym evaluate`` and ``load_policy`` read; RLlib's own checkpoint
  (``Algorithm.save_to_path``) goes to ``checkpoint/rllib/`` beside them.

Install with the ``rllib`` extra: ``pip install -e '.[rllib]'``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.wrappers import BaseParallelWrapper

ENV_NAME = "capgym_rllib"
SHARED = "shared"

#: how capgym's training keys become RLlib's ``PPOConfig`` settings (documented in docs/learning.md)
KEY_MAP = {
    "seed": "debugging(seed=...)",
    "ppo.total_steps": "train() until num_env_steps_sampled_lifetime >= total_steps",
    "ppo.num_envs": "env_runners(num_envs_per_env_runner=...)",
    "ppo.num_steps": "train_batch_size_per_learner = num_envs * num_steps",
    "ppo.num_minibatches": "minibatch_size = num_envs * num_steps / num_minibatches",
    "ppo.update_epochs": "num_epochs",
    "ppo.lr": "lr",
    "ppo.anneal_lr": "lr as a schedule, linear to 0 (true) or constant (false)",
    "ppo.gamma": "gamma",
    "ppo.gae_lambda": "lambda_",
    "ppo.clip_coef": "clip_param",
    "ppo.clip_vloss": "vf_clip_param: RLlib's default 10 (true; it clips the squared error) or inf (false)",
    "ppo.ent_coef": "entropy_coeff",
    "ppo.vf_coef": "vf_loss_coeff",
    "ppo.max_grad_norm": "grad_clip, grad_clip_by='global_norm'",
    "ppo.norm_adv": "true only (RLlib standardizes advantages over the train batch)",
    "ppo.hidden": "fcnet_hiddens (tanh, separate actor and critic encoders, no hidden head layers)",
    "ppo.reward_scale": "1.0 only",
    "learner.share": "one RLModule for all agents (agent one-hot appended) or one per agent",
    "learner.critic": "local only",
    "learner.recurrent": "none only",
    "learner.device": "cpu, or auto/cuda: the local Learner on a GPU when torch sees one",
    "learner.torch_threads": "torch.set_num_threads in this process",
    "ray.address": "null only (RLlib runs in this process)",
}


def unsupported(cfg) -> str | None:
    """One line naming the first setting of ``cfg`` (a ``TrainConfig``) that RLlib's PPO cannot
    honour, or ``None``."""
    lc, c = cfg.learner, cfg.ppo
    if lc.critic != "local":
        return "learner.critic: central (MAPPO) is not available with learner.backend: rllib"
    if lc.recurrent != "none":
        return "learner.recurrent: a recurrent policy is not available with learner.backend: rllib"
    if not c.norm_adv:
        return "ppo.norm_adv: false is not available with learner.backend: rllib (it always standardizes advantages)"
    if c.reward_scale != 1.0:
        return "ppo.reward_scale: must be 1.0 with learner.backend: rllib"
    if lc.device not in ("auto", "cpu", "cuda"):
        return f"learner.device: {lc.device!r} is not available with learner.backend: rllib (auto, cpu or cuda)"
    if cfg.ray.address is not None:
        return "ray.address: learner.backend: rllib runs in this process (null); learner.backend: ray joins a cluster"
    return None


def installed() -> str | None:
    """``None`` when RLlib can be imported, else one line saying how to install it."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray.rllib") is not None and importlib.util.find_spec("tree") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else "learner.backend: rllib needs RLlib: pip install -e '.[rllib]'"


class MaskedObs(BaseParallelWrapper):
    """A capgym Parallel environment as RLlib's action-masking module wants it.

    Each observation becomes ``{"observations": <capgym observation> [++ agent one-hot],
    "action_mask": <mask as float32>}``. Actions the last mask forbade are counted
    (``illegal``); when the episode ends every agent's info carries ``capgym``: the episode's
    returns per agent, the observer's global measures and that count."""

    def __init__(self, env, share: bool = False):
        super().__init__(env)
        self.share = share
        agents = list(env.possible_agents)
        sp = env.observation_space(agents[0])
        d, k = sp["observation"].shape[0], sp["action_mask"].shape[0]
        self._onehot = {a: np.eye(len(agents), dtype=np.float32)[i] for i, a in enumerate(agents)}
        self._space = spaces.Dict({
            "observations": spaces.Box(-np.inf, np.inf, (d + (len(agents) if share else 0),), np.float32),
            "action_mask": spaces.Box(0.0, 1.0, (k,), np.float32)})
        self.masks: dict = {}
        self.returns: dict = {}
        self.illegal = 0

    def observation_space(self, agent):
        return self._space

    def _wrap(self, obs: dict) -> dict:
        self.masks = {a: o["action_mask"] for a, o in obs.items()}
        out = {}
        for a, o in obs.items():
            x = o["observation"].astype(np.float32)
            if self.share:
                x = np.concatenate([x, self._onehot[a]])
            out[a] = {"observations": x, "action_mask": o["action_mask"].astype(np.float32)}
        return out

    def reset(self, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self.returns = dict.fromkeys(self.env.possible_agents, 0.0)
        self.illegal = 0
        return self._wrap(obs), infos

    def step(self, actions):
        for a, x in actions.items():
            if not self.masks[a][int(x)]:
                self.illegal += 1
        obs, rew, term, trunc, infos = self.env.step(actions)
        for a, r in rew.items():
            self.returns[a] += float(r)
        if not self.env.agents:  # the episode is over: its summary rides on the last infos
            g = next(iter(infos.values()), {}).get("global", {}) if infos else {}
            summary = {"returns": dict(self.returns), "global": g, "illegal": self.illegal}
            infos = {a: {**infos.get(a, {}), "capgym": summary} for a in self.env.possible_agents}
        return self._wrap(obs), rew, term, trunc, infos


def env_creator(env_config: dict):
    """RLlib's env factory: ``env_config = {"id", "params", "share"}``."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from agents.learn.config import EnvSpec, make_env

    share = bool(env_config.get("share", False))
    spec = EnvSpec(id=env_config["id"], params=env_config.get("params", {}))
    return ParallelPettingZooEnv(MaskedObs(make_env(spec), share))


def _callbacks():
    from ray.rllib.callbacks.callbacks import RLlibCallback

    from agents.learn.runner import numeric_measures

    class EpisodeSummary(RLlibCallback):
        """Sums over the episodes that ended in an iteration (RLlib clears ``sum`` metrics each
        iteration): their count, each agent's return, each global measure (and how many had it),
        and the illegal actions taken."""

        def on_episode_end(self, *, episode, metrics_logger, **kwargs):
            infos = episode.get_infos(-1)
            s = next((i["capgym"] for i in infos.values() if isinstance(i, dict) and "capgym" in i), None)
            if s is None:
                return
            log = metrics_logger.log_value
            log(("capgym", "episodes"), 1, reduce="sum")
            log(("capgym", "illegal"), s["illegal"], reduce="sum")
            for a, r in s["returns"].items():
                log(("capgym", "return", a), r, reduce="sum")
            for k, v in numeric_measures(s["global"]).items():
                log(("capgym", "global", k), v, reduce="sum")
                log(("capgym", "global_n", k), 1, reduce="sum")

    return EpisodeSummary


def lr_setting(cfg):
    """``lr``: constant, or (``anneal_lr``) a schedule over sampled env steps that gives
    iteration ``i`` (of ``n``) ``lr * (1 - i / n)``, as capgym's PPO does (the schedule is read
    after each iteration's batch is sampled)."""
    c = cfg.ppo
    if not c.anneal_lr:
        return c.lr
    n = math.ceil(c.total_steps / c.batch_steps)
    return [[0, c.lr], [c.batch_steps, c.lr], [c.batch_steps * (n + 1), 0.0]]


def use_gpu(cfg) -> bool:
    if cfg.learner.device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def rllib_config(cfg):
    """RLlib's ``PPOConfig`` for a capgym ``TrainConfig`` (see :data:`KEY_MAP`)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from agents.learn.config import make_env
    from agents.learn.rllib_module import MaskedPPOTorchRLModule

    why = unsupported(cfg)
    if why:
        raise ValueError(why)
    c, share = cfg.ppo, cfg.learner.share
    agents = list(make_env(cfg.env).possible_agents)
    model = {"fcnet_hiddens": list(c.hidden), "fcnet_activation": "tanh", "head_fcnet_hiddens": [],
             "vf_share_layers": False}
    modules = [SHARED] if share else agents
    spec = MultiRLModuleSpec(rl_module_specs={
        m: RLModuleSpec(module_class=MaskedPPOTorchRLModule, model_config=dict(model)) for m in modules})
    mapping = (lambda aid, *a, **k: SHARED) if share else (lambda aid, *a, **k: aid)
    batch = c.batch_steps
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config={"id": cfg.env.id, "params": dict(cfg.env.params), "share": share})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=c.num_envs, rollout_fragment_length=c.num_steps)
        .learners(num_learners=0, num_gpus_per_learner=1 if use_gpu(cfg) else 0)
        .training(train_batch_size_per_learner=batch, minibatch_size=batch // c.num_minibatches,
                  num_epochs=c.update_epochs, lr=lr_setting(cfg), gamma=c.gamma, lambda_=c.gae_lambda,
                  clip_param=c.clip_coef, vf_clip_param=10.0 if c.clip_vloss else float("inf"),
                  entropy_coeff=c.ent_coef, vf_loss_coeff=c.vf_coef, grad_clip=c.max_grad_norm,
                  grad_clip_by="global_norm", use_kl_loss=False, kl_coeff=0.0)
        .rl_module(rl_module_spec=spec)
        .multi_agent(policies=set(modules), policy_mapping_fn=mapping)
        .callbacks(_callbacks())
        .reporting(metrics_num_episodes_for_smoothing=1)
        .debugging(seed=cfg.seed, log_level="ERROR")
    )


def build(cfg):
    """An RLlib PPO ``Algorithm`` for a capgym ``TrainConfig``."""
    import logging

    from ray.tune.registry import register_env

    for name in ("ray.rllib", "ray.tune"):  # its notices (new API stack, gputil) are not capgym's
        logging.getLogger(name).setLevel(logging.ERROR)

    register_env(ENV_NAME, env_creator)
    return rllib_config(cfg).build_algo()


# --- RLlib's modules as capgym weights ---------------------------------------------------------------
def _linears(sd: dict, prefixes: tuple[str, ...]) -> list[str]:
    """The Linear layers under ``prefixes`` (in order), as ``state_dict`` key stems."""
    out = []
    for p in prefixes:
        idx = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(re.escape(p) + r"\.(\d+)\.weight", k))})
        out += [f"{p}.{i}" for i in idx]
    return out


def to_capgym(module_sd: dict) -> dict:
    """An RLlib PPO module's ``state_dict`` (MLP encoders, ``pi`` and ``vf`` heads) as the
    ``state_dict`` of capgym's :class:`~agents.learn.nets.ActorCritic`: ``actor.0, actor.2, ...``
    (Linear, Tanh, Linear, ...) and the same for ``critic``."""
    import torch

    out = {}
    for mine, theirs in (("actor", ("encoder.actor_encoder.net.mlp", "pi.net.mlp")),
                         ("critic", ("encoder.critic_encoder.net.mlp", "vf.net.mlp"))):
        for j, stem in enumerate(_linears(module_sd, theirs)):
            for part in ("weight", "bias"):
                out[f"{mine}.{2 * j}.{part}"] = torch.as_tensor(module_sd[f"{stem}.{part}"]).detach().cpu().clone()
    return out


# --- training -------------------------------------------------------------------------------------
def _row(it: int, result: dict, sps: float, agents: list[str], modules: list[str]) -> dict:
    """One ``metrics.csv`` row from an RLlib ``train()`` result, in capgym's columns."""
    er = result.get("env_runners", {})
    cg = er.get("capgym", {})
    n = int(_count(cg.get("episodes")))  # (an iteration in which no episode ended sums nothing: NaN)
    row: dict = {"iteration": it, "env_steps": env_steps(result), "sps": round(sps, 1), "episodes": n,
                 "illegal_actions": int(_count(cg.get("illegal")))}
    if n:
        rets = {a: float(cg.get("return", {}).get(a, 0.0)) / n for a in agents}
        row["return_mean"] = float(np.mean(list(rets.values())))
        row.update({f"return/{a}": v for a, v in rets.items()})
        counts = cg.get("global_n", {})
        for k in sorted(cg.get("global", {})):
            row[f"global/{k}"] = float(cg["global"][k]) / max(1, int(_count(counts.get(k, 1))))
    learners = result.get("learners", {})
    stats = []
    for m in modules:
        s = learners.get(m, {})
        one = {"policy_loss": float(s.get("policy_loss", np.nan)), "value_loss": float(s.get("vf_loss", np.nan)),
               "entropy": float(s.get("entropy", np.nan))}
        stats.append(one)
        row.update({f"{k}/{m}": v for k, v in one.items()})
    for k in ("policy_loss", "value_loss", "entropy"):
        row[k] = float(np.mean([s[k] for s in stats]))
    return row


def _count(x) -> float:
    """A summed metric, 0 where nothing was summed (RLlib reports NaN or leaves it out)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(x) else x


def env_steps(result: dict) -> int:
    """Environment steps sampled so far, from an RLlib ``train()`` result."""
    er = result.get("env_runners", {})
    for k in ("num_env_steps_sampled_lifetime", "num_env_steps_sampled"):
        if k in er:
            return int(er[k])
    return int(result.get("num_env_steps_sampled_lifetime", 0))


def train(cfg, on_iteration: Callable[[dict], None] | None = None, stop: Callable[[], bool] = lambda: False,
          progress: bool = False, native: str | Path | None = None):
    """Train with RLlib's PPO as ``cfg`` (a ``TrainConfig`` with ``learner.backend: rllib``) says;
    returns an :class:`agents.learn.ppo.Trained` whose weights are capgym's. ``native``: a folder
    for RLlib's own checkpoint of the final algorithm."""
    import torch
    from tqdm import tqdm

    from agents.learn.ppo import Trained, learner_dims
    from agents.learn.runner import groups_for

    torch.set_num_threads(cfg.learner.torch_threads)
    agents, dims = learner_dims(cfg)
    groups = groups_for(len(agents), cfg.learner.share)
    modules = [SHARED] if cfg.learner.share else agents
    c = cfg.ppo
    iterations = math.ceil(c.total_steps / c.batch_steps)
    out = Trained(cfg, agents, groups, [], dims)
    start = time.perf_counter()
    algo = build(cfg)

    def weights() -> list[dict]:
        return [to_capgym(algo.get_module(m).state_dict()) for m in modules]

    try:
        with tqdm(total=iterations * c.batch_steps, unit="step", desc="train (rllib)", disable=not progress,
                  dynamic_ncols=True, leave=False) as bar:
            for it in range(iterations):
                if stop():
                    out.interrupted = True
                    break
                t0 = time.perf_counter()
                result = algo.train()
                n = env_steps(result)
                row = _row(it, result, (n - out.env_steps) / (time.perf_counter() - t0), agents, modules)
                bar.update(n - out.env_steps)
                out.env_steps = n
                out.rows.append(row)
                if on_iteration:
                    on_iteration(row)
                if n >= c.total_steps:
                    break
        out.weights = weights()
        if native is not None:
            algo.save_to_path(str(Path(native).resolve()))
    except KeyboardInterrupt:
        out.interrupted = True
        out.weights = weights()
    finally:
        out.seconds = time.perf_counter() - start
        algo.stop()
    return out
