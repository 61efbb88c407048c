"""Alignment: per-agent returns, global welfare, the local-vs-global alignment gap, and the
shared-resource measures of Perolat et al. (2017).

Rewards are given as a ``(T, N)`` array (step ``t``, agent ``i``) or as a mapping agent -> list of
per-step rewards (all of length ``T``; agents are then taken in sorted order).

The social outcome measures are those of Perolat, Leibo, Zambaldi, Beattie, Tuyls and Graepel, "A
multi-agent reinforcement learning model of common-pool resource appropriation" (NeurIPS 2017),
§3 "Social outcome metrics", with ``R^i = sum_t r^i_t`` the return of agent ``i`` over an episode of
``T`` steps (the variant used; written from the paper, the search tool did not find its text):

* efficiency   ``U = sum_i R^i / T``
* equality     ``E = 1 - sum_i sum_j |R^i - R^j| / (2 N sum_i R^i)``   (1 minus the Gini coefficient)
* sustainability ``S = (1/N) sum_i t^i`` with ``t^i = E[t | r^i_t > 0]``, the mean step (counted
  from 1) at which agent ``i`` was rewarded
* peace        ``P = (N T - sum_i sum_t I(i tagged at t)) / T``, the mean number of untagged agents
  per step; ``peace_fraction = P / N`` is the fraction of agent-steps not tagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def reward_matrix(rewards) -> np.ndarray:
    """Rewards as a float ``(T, N)`` array (a mapping is read in sorted agent order)."""
    if isinstance(rewards, Mapping):
        agents = sorted(rewards)
        cols = [np.asarray(rewards[a], dtype=float) for a in agents]
        if len({len(c) for c in cols}) > 1:
            raise ValueError("every agent needs a reward for every step")
        return np.stack(cols, axis=1) if cols else np.zeros((0, 0))
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"rewards must be a (T, N) array, got shape {r.shape}")
    return r


def returns(rewards) -> list[float]:
    """Per-agent returns ``R^i = sum_t r^i_t`` (undiscounted)."""
    return reward_matrix(rewards).sum(axis=0).tolist()


def welfare(rets: Sequence[float], how: str = "sum") -> float | None:
    """Global (utilitarian) welfare: the ``sum`` or ``mean`` of the agents' returns."""
    if how not in ("sum", "mean"):
        raise ValueError(f"welfare is 'sum' or 'mean', not {how!r}")
    if not len(rets):
        return 0.0 if how == "sum" else None
    return float(np.sum(rets) if how == "sum" else np.mean(rets))


def alignment_gap(welfare_global: float, welfare_local: float) -> dict:
    """How much global welfare agents trained on their local reward leave on the table.

    ``gap = welfare_global - welfare_local``, where both are the *global* welfare achieved by agents
    trained on the global reward and on their local rewards respectively; ``relative = gap /
    |welfare_global|`` (``None`` when ``welfare_global`` is 0). A positive gap means local
    incentives are misaligned with the global good.
    """
    gap = float(welfare_global - welfare_local)
    return {"gap": gap, "relative": gap / abs(welfare_global) if welfare_global else None}


def gini(x: Sequence[float]) -> float | None:
    """Gini coefficient ``sum_i sum_j |x_i - x_j| / (2 N sum_i x_i)``; 0 when all are equal,
    ``None`` when undefined (non-positive total with unequal values). O(N log N) via sorting."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    if n == 0 or np.all(x == x[0]):
        return 0.0
    total = x.sum()
    if total <= 0:
        return None
    # sum_{i,j} |x_i - x_j| = 2 sum_k (2k - n + 1) x_(k) for ascending x, k = 0..n-1
    pair_sum = 2.0 * np.sum((2 * np.arange(n) - n + 1) * x)
    return float(pair_sum / (2 * n * total))


def social_outcomes(rewards, tagged: Sequence[int] | np.ndarray | None = None) -> dict:
    """Perolat et al. (2017) efficiency, equality, sustainability and peace of one episode.

    ``tagged`` is either per-agent counts of steps spent tagged (length N) or a boolean ``(T, N)``
    array; ``None`` leaves peace out. Sustainability averages ``t^i`` over the agents that were
    ever rewarded (``None`` if none was).
    """
    r = reward_matrix(rewards)
    T, N = r.shape
    R = r.sum(axis=0)
    g = gini(R)
    steps = np.arange(1, T + 1, dtype=float)
    t_i = [float(steps[r[:, i] > 0].mean()) for i in range(N) if np.any(r[:, i] > 0)]
    out = {
        "returns": R.tolist(),
        "efficiency": float(R.sum() / T) if T else None,
        "equality": 1.0 - g if g is not None else None,
        "sustainability": float(np.mean(t_i)) if t_i else None,
        "peace": None,
        "peace_fraction": None,
    }
    if tagged is not None and T and N:
        tg = np.asarray(tagged)
        n_tagged = float(tg.sum())
        out["peace"] = (N * T - n_tagged) / T
        out["peace_fraction"] = out["peace"] / N
    return out


def summarize(rewards, tagged=None, how: str = "sum") -> dict:
    """Returns, welfare and the social outcome measures of one episode's rewards."""
    out = social_outcomes(rewards, tagged)
    out["welfare"] = welfare(out["returns"], how)
    return out
