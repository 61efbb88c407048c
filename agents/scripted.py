"""Scripted policies for the capgym environments, usable through the same API as learned ones.

A policy is a function ``policy(observation, action_mask) -> action`` over one agent's
observation vector and mask (``obs["observation"]``, ``obs["action_mask"]``). In every capgym
environment the **last** action index is the no-op: it is the only legal action when the agent owes
no decision, and an agent that owes one and answers the no-op gets the protocol's textbook default.

* :func:`textbook` -- the protocol's own (default) choice, always;
* :func:`make_random` -- uniform over the legal actions (seeded);
* :func:`always` -- a fixed choice when legal (Register-v0: ``always(0)`` local, ``always(1)``
  quorum, ``always(2)`` refuse), the textbook default otherwise;
* :func:`greedy` -- the highest legal choice (Commons-v0: the largest harvest);
* :func:`make_restrained` -- Commons-v0: a small harvest while the known level is healthy.

:data:`SCRIPTED` names them for the command line (``capgym evaluate --background NAME``, ``--baselines``):
:func:`scripted_names` lists the names that apply to a game, :func:`make_scripted` builds one.

:func:`run_episode` plays one whole episode of an AEC or Parallel environment with a policy per
agent (or one for all) and returns the returns and the observer's global measures.
:func:`schelling` plays every mix of a cooperating and a defecting policy: an N-player Schelling
diagram (``metrics.alignment.game_class`` names the game it makes).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np

Policy = Callable[[np.ndarray, np.ndarray], int]


def _noop(mask) -> int:
    return len(mask) - 1


def textbook(obs, mask) -> int:
    """The protocol's textbook choice: the no-op, which the environment answers with the default."""
    return _noop(mask)


def make_random(seed: int = 0) -> Policy:
    """Uniform over the legal actions, from a seeded generator."""
    rng = random.Random(seed)

    def policy(obs, mask) -> int:
        legal = [i for i, m in enumerate(mask) if m]
        return legal[0] if len(legal) == 1 else rng.choice(legal)

    return policy


def always(action: int) -> Policy:
    """Choose ``action`` whenever it is legal (else the no-op: the textbook default or nothing)."""

    def policy(obs, mask) -> int:
        return action if mask[action] else _noop(mask)

    policy.__name__ = f"always_{action}"
    return policy


always_local = always(0)  # Register-v0
always_quorum = always(1)  # Register-v0
always_refuse = always(2)  # Register-v0


def election_eager(obs, mask) -> int:
    """Election-v0: the shortest election timeout, and always stand (``obs[0]`` is 1 at a timeout
    decision, ``obs[1]`` at a stand decision). The no-op when nothing is owed."""
    if obs[0] > 0:
        return 0
    return 1 if obs[1] > 0 and mask[1] else _noop(mask)


def election_shirker(obs, mask) -> int:
    """Election-v0: the longest timeout, and never stand: leave leading to the others (a free rider
    on a leader the others elect)."""
    if obs[0] > 0:
        return len(mask) - 3  # the longest of the k fixed timeouts (k: the textbook draw; k+1: no-op)
    return 0 if obs[1] > 0 and mask[0] else _noop(mask)


def greedy(obs, mask) -> int:
    """The highest-numbered legal choice (Commons-v0: harvest as much as possible)."""
    legal = [i for i, m in enumerate(mask[:-1]) if m]
    return legal[-1] if legal else _noop(mask)


def make_restrained(action: int = 1, threshold: float = 0.5) -> Policy:
    """Commons-v0: harvest level ``action`` while the known level (``obs[0]``, a fraction of the
    capacity, valid when ``obs[1]`` is 1) is at least ``threshold``; otherwise harvest nothing."""

    def policy(obs, mask) -> int:
        if not mask[0]:
            return _noop(mask)
        return action if obs[1] > 0 and obs[0] >= threshold and mask[action] else 0

    return policy


ALL_GAMES = None  # a policy that applies to every game

#: name -> (factory ``seed -> Policy``, the env ids it applies to or ``ALL_GAMES``, one line on what it does)
SCRIPTED: dict[str, tuple[Callable[[int], Policy], tuple[str, ...] | None, str]] = {
    "textbook": (lambda seed: textbook, ALL_GAMES, "the protocol's own (default) choice"),
    "random": (make_random, ALL_GAMES, "uniform over the legal choices (seeded)"),
    "always_local": (lambda seed: always_local, ("capgym/Register-v0",), "answer every operation locally"),
    "always_quorum": (lambda seed: always_quorum, ("capgym/Register-v0",), "answer every operation by quorum"),
    "always_refuse": (lambda seed: always_refuse, ("capgym/Register-v0",), "refuse every operation"),
    "eager": (lambda seed: election_eager, ("capgym/Election-v0",), "shortest election timeout, always stand"),
    "shirker": (lambda seed: election_shirker, ("capgym/Election-v0",), "longest election timeout, never stand"),
    "greedy": (lambda seed: greedy, ("capgym/Commons-v0",), "the largest legal harvest"),
    "restrained": (lambda seed: make_restrained(), ("capgym/Commons-v0",),
                   "a small harvest while the known level is healthy, none below half"),
}


def _env_id(env_id: str) -> str:
    return env_id if "/" in env_id else f"capgym/{env_id}"


def scripted_names(env_id: str) -> list[str]:
    """The names in :data:`SCRIPTED` that apply to the game ``env_id`` (``capgym/Register-v0`` or
    ``Register-v0``), in the registry's order."""
    env_id = _env_id(env_id)
    return [n for n, (_f, games, _d) in SCRIPTED.items() if games is ALL_GAMES or env_id in games]


def make_scripted(name: str, env_id: str, seed: int = 0) -> Policy:
    """The scripted policy ``name`` for the game ``env_id``, from a generator seeded with ``seed``
    (only ``random`` draws). ``ValueError`` (one line listing the valid names) when ``name`` is
    unknown or does not apply to the game."""
    valid = scripted_names(env_id)
    if name not in valid:
        why = "does not apply to" if name in SCRIPTED else "is not a scripted policy of"
        raise ValueError(f"{name!r} {why} {_env_id(env_id)} (choose from {', '.join(valid)})")
    return SCRIPTED[name][0](seed)


def run_episode(env, policies: Policy | Mapping[str, Policy], seed: int | None = None) -> dict:
    """Play one episode of ``env`` (AEC or Parallel) with ``policies`` (one, or one per agent).

    Returns ``{"returns": {agent: total reward}, "global": the observer's measures, "steps": n}``.
    """
    pick = (lambda a: policies[a]) if isinstance(policies, Mapping) else (lambda a: policies)
    returns: dict = {}
    steps = 0
    if hasattr(env, "agent_iter"):
        env.reset(seed=seed)
        returns = dict.fromkeys(env.possible_agents, 0.0)
        for agent in env.agent_iter():
            obs, reward, term, trunc, _info = env.last()
            returns[agent] += reward
            action = None if term or trunc else int(pick(agent)(obs["observation"], obs["action_mask"]))
            env.step(action)
            steps += 1
    else:
        obs, _ = env.reset(seed=seed)
        returns = dict.fromkeys(env.possible_agents, 0.0)
        while env.agents:
            actions = {a: int(pick(a)(obs[a]["observation"], obs[a]["action_mask"])) for a in env.agents}
            obs, rewards, _t, _tr, _i = env.step(actions)
            for a, r in rewards.items():
                returns[a] += r
            steps += 1
    return {"returns": returns, "global": env.global_measures(), "steps": steps}


def schelling(make_env, cooperate: Policy | Mapping[str, Policy], defect: Policy | Mapping[str, Policy], n: int,
              seeds: Sequence[int]) -> dict:
    """An N-player Schelling diagram from scripted policies (Schelling 1973; as used for sequential
    social dilemmas by Leibo et al. 2017 and Hughes et al. 2018): for each number ``m`` of
    cooperators among ``n`` agents (agents ``node_0 .. node_{m-1}`` cooperate, the rest defect),
    the mean return of a cooperator and of a defector over ``seeds`` (one episode each).

    ``make_env()`` gives a fresh environment (AEC or Parallel). ``cooperate`` and ``defect`` are one
    policy each, or one per seat (agent name -> policy: trained networks, seat by seat). Returns
    ``{"cooperator": [C(k)], "defector": [D(k)]}`` indexed by ``k`` = the number of *other* cooperators (0..n-1; a
    cooperator with ``k`` others is in the episode with ``m = k + 1``, a defector in ``m = k``),
    ``"total": [mean sum of returns for m = 0..n]``, and the per-seed values (``"per_seed"``:
    ``{m: [(cooperator mean, defector mean, total), ...]}``, ``None`` for an absent type).
    """
    per_seed: dict[int, list] = {}
    for m in range(n + 1):
        rows = []
        for seed in seeds:
            seats = {}
            for i in range(n):
                who = cooperate if i < m else defect
                seats[f"node_{i}"] = who[f"node_{i}"] if isinstance(who, Mapping) else who
            res = run_episode(make_env(), seats, seed=seed)
            r = [res["returns"][f"node_{i}"] for i in range(n)]
            rows.append((sum(r[:m]) / m if m else None, sum(r[m:]) / (n - m) if m < n else None, sum(r)))
        per_seed[m] = rows

    def mean(m, j):
        xs = [row[j] for row in per_seed[m]]
        return sum(xs) / len(xs)

    return {"cooperator": [mean(k + 1, 0) for k in range(n)], "defector": [mean(k, 1) for k in range(n)],
            "total": [mean(m, 2) for m in range(n + 1)], "per_seed": per_seed}


# --- Byzantine-v0 (envs/byzantine_game.py): scripted adversaries ------------------------------------
# Actions 0 honest, 1 drop, 2 delay, 3 equivocate, 4 corrupt, 5 collude (with `collude: true`; else the
# no-op, which an owing adversary's agent answers as honest); observation[0:8] the
# one-hot of the phase's message type (request, pre_prepare, prepare, commit, checkpoint, view_change,
# new_view, other); observation[13] is 1 for a view-change-timeout decision (the two-sided game), which
# these adversaries leave at the textbook T. A self-contained block: BYZANTINE_BASELINES names them.

def byzantine_phase(action: int) -> Policy:
    """Byzantine-v0: ``action`` in every phase; the textbook T at a view-change-timeout decision."""

    def policy(obs, mask) -> int:
        return _noop(mask) if not mask[0] or obs[13] > 0 else action

    policy.__name__ = f"byzantine_phase_{action}"
    return policy


def byzantine_slow_primary(obs, mask) -> int:
    """Byzantine-v0: delay every pre-prepare (just below the view-change timeout by default, so the
    primary is slow but never replaced: the performance attack of Clement et al., "Making Byzantine
    Fault Tolerant Systems Tolerate Byzantine Faults", NSDI 2009); honest in every other phase."""
    if not mask[0] or obs[13] > 0:
        return _noop(mask)
    return 2 if obs[1] > 0 else 0


def byzantine_mute_backup(obs, mask) -> int:
    """Byzantine-v0: drop prepares and commits (a backup that withholds its votes), honest otherwise."""
    if not mask[0] or obs[13] > 0:
        return _noop(mask)
    return 1 if obs[2] > 0 or obs[3] > 0 else 0


#: Byzantine-v0's scripted adversaries by name (the textbook no-op is ``honest``)
BYZANTINE_BASELINES: dict[str, Policy] = {
    "honest": byzantine_phase(0),
    "drop": byzantine_phase(1),
    "delay": byzantine_phase(2),
    "equivocate": byzantine_phase(3),
    "corrupt": byzantine_phase(4),
    "slow_primary": byzantine_slow_primary,
    "mute_backup": byzantine_mute_backup,
}

# Byzantine-v0's adversaries by name in the registry too (``--background drop``, ``--baselines``)
SCRIPTED.update({name: (lambda seed, p=p: p, ("capgym/Byzantine-v0",), f"Byzantine-v0: {name} in every phase"
                        if p.__name__.startswith("byzantine_phase") else (p.__doc__ or name).splitlines()[0])
                 for name, p in BYZANTINE_BASELINES.items()})
