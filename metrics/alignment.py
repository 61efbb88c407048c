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

:func:`game_class` names the social dilemma of a Schelling diagram (Leibo et al. 2017).
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


def game_class(cooperator: Sequence[float], defector: Sequence[float]) -> dict:
    """Is an N-player Schelling diagram a social dilemma, and of which class?

    ``cooperator[k]`` / ``defector[k]``: the payoff of a cooperator / defector when ``k`` of the
    *other* ``N - 1`` agents cooperate (``N = len(cooperator)``).

    * **dilemma**, the N-player conditions on a Schelling diagram of Hughes et al., "Inequity
      aversion improves cooperation in intertemporal social dilemmas" (NeurIPS 2018), Sec. 2:
      mutual cooperation is preferred to mutual defection (``cooperator[N-1] > defector[0]``) and to
      being exploited (``cooperator[N-1] > cooperator[0]``), and there is **fear** (defecting pays
      when few others cooperate: ``defector[0] > cooperator[0]``) or **greed** (defecting pays when
      many cooperate: ``defector[N-1] > cooperator[N-1]``), or both;
    * **class**, on the 2-player scale of Leibo et al., "Multi-agent Reinforcement Learning in
      Sequential Social Dilemmas" (AAMAS 2017), Sec. 2, read off the diagram's ends (the mapping to
      N agents): ``R = cooperator[N-1]`` (all cooperate), ``P = defector[0]`` (all defect),
      ``T = defector[N-1]`` (defect alone), ``S = cooperator[0]`` (cooperate alone); Prisoner's
      Dilemma ``T > R > P > S``, Chicken ``T > R > S > P``, Stag Hunt ``R > T > P > S``; ``None``
      when not a dilemma or none of these;
    * ``greed_everywhere``: defecting pays more at every ``k``; ``cooperation_is_best``: the group's
      total, ``m C(m-1) + (N-m) D(m)`` for ``m`` cooperators, is largest when all cooperate.

    Returns ``{"R", "P", "T", "S", "dilemma", "class", "fear", "greed", "greed_everywhere",
    "cooperation_is_best", "totals"}``. Raises ``ValueError`` on curves of different lengths or < 2.
    """
    n = len(cooperator)
    if n != len(defector) or n < 2:
        raise ValueError(f"a Schelling diagram needs two curves of one length >= 2, got {n} and {len(defector)}")
    R, P, T, S = cooperator[-1], defector[0], defector[-1], cooperator[0]
    fear, greed = P > S, T > R
    dilemma = R > P and R > S and (fear or greed)
    if T > R > P > S:
        cls = "Prisoner's Dilemma"
    elif T > R > S > P:
        cls = "Chicken"
    elif R > T > P > S:
        cls = "Stag Hunt"
    else:
        cls = None
    totals = [(m * cooperator[m - 1] if m else 0.0) + ((n - m) * defector[m] if m < n else 0.0) for m in range(n + 1)]
    return {"R": R, "P": P, "T": T, "S": S, "dilemma": dilemma, "class": cls if dilemma else None, "fear": fear,
            "greed": greed, "greed_everywhere": all(d > c for c, d in zip(cooperator, defector)),
            "cooperation_is_best": totals[-1] >= max(totals), "totals": totals}
