"""Raft: how often an election term ends in a split vote, with fixed network latency.

Reproduces the fixed-latency analysis of D. Ongaro, *Consensus: Bridging Theory and Practice*,
PhD thesis, Stanford 2014, Sec. 9.2 ("How common are split votes?", "Split vote rate with fixed
latency"; the LaTeX source is leaderelection/splitrate.tex of github.com/ongardie/dissertation).

The thesis's model
------------------
``s`` of a cluster's ``n`` servers are available; each draws its election timeout uniformly from
a range, all timers starting at the same moment (the last heartbeat of a crashed leader reached
every server at once); every message takes the same one-way latency ``l``, written as a fraction
of the range. The first server to time out gets the votes of every server that does not time out
within ``l`` of it, and none from those that do (they vote for themselves). So the term splits
when ``c = s - floor(n/2) + 1`` or more servers time out within ``l`` of the first, with
probability (the thesis's closed form, derived there)::

    Pr(D_{c,s} <= l) = sum_{k=c-1}^{s} C(s, k) l^k (1 - l)^(s - k)

The thesis's numbers: n = 5, s = 4 (c = 3): 0.06%, 5.2% and 18.1% at l = 0.01, 0.1 and 0.2
(its example: a 100 ms range with 1, 10 and 20 ms latency); n = 9 at l = 0.2: "about 15%" after
two failures (s = 7) and "nearly 70%" after four (s = 5), which the closed form gives as 14.8%
and 67.2% (the issue's figures, also read off the thesis's Fig. 9.4).

How it is done here
-------------------
Each trial is one real Raft election in the sim (``agents/protocols/raft.py``, unchanged): ``n``
nodes start together at time 0, so their election timers start at the same moment (the thesis's
starting condition); ``n - s`` of them crash at once; every link's latency is the constant
``l x range_ms``; clocks have no offset, drift or jitter, handlers take no time (the model's
instant servers). Timeouts are drawn by Raft's own rule from ``[lo_ms, lo_ms + range_ms]``
(default 100-200 ms: the thesis's 100 ms range). The trial stops once term 1 is decided: a leader
exists, or some node has moved on to term 2 (which it can only do at least ``lo_ms`` after term
1 began, long after term 1's votes are in, since ``lo_ms > 3 l``). Term 1 is a split vote when
it elected nobody; ``metrics.election`` says why (split votes, lonely or minority elections: with
fixed latency every failure should be a split vote, and the table shows it is).

An independent computation of the model alone: ``model_monte_carlo`` draws ``s`` uniform
timeouts in numpy and counts how often the ``c``-th earliest is within ``l`` of the earliest.
If the sim and the closed form disagreed, this tells which of the two differs from the model.

Claims (``claims`` in results.json), per point: the closed form gives the thesis's number at its
printed precision; the sim's exact (Clopper-Pearson) interval at ``confidence`` (99%) contains
the closed form; so does the numpy Monte Carlo's. Trials: 100,000 at l = 0.01 (about 60 split
votes expected), 20,000 elsewhere, as the issue asks; ``--quick`` runs 500 per point (its
intervals are wider: the same claims at a looser tolerance, the interval of fewer trials).
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

SOURCE = "Ongaro 2014 (PhD thesis), Sec. 9.2, split vote rate with fixed latency"


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=3, description="cluster size")
    failures: int = Field(ge=0, description="crashed servers (s = n - failures available)")
    l: float = Field(gt=0, lt=1, description="one-way latency as a fraction of the timeout range")  # noqa: E741
    paper: float = Field(gt=0, lt=1, description="the thesis's split-vote probability")
    digits: int = Field(3, ge=1, description="the thesis's number as printed: decimal places of the fraction")
    trials: int = Field(ge=1, description="elections in the sim")

    @model_validator(mode="after")
    def _check(self):
        if self.n - self.failures <= self.n // 2:
            raise ValueError("a majority must be available (failures < n/2)")
        return self


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: list[Point]
    range_ms: float = Field(100.0, gt=0, description="election timeout range (the thesis's example: 100 ms)")
    lo_ms: float = Field(100.0, gt=0, description="election timeout lower bound; must exceed 3 l range_ms")
    model_trials: int = Field(1_000_000, ge=1, description="numpy Monte Carlo draws of the model per point")
    confidence: float = Field(0.99, gt=0, lt=1, description="exact binomial intervals")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if any(self.lo_ms <= 3 * p.l * self.range_ms for p in self.points):
            raise ValueError("lo_ms must exceed 3 l range_ms (term 1 must be decided before anyone's second timeout)")
        return self


def votes_to_split(n: int, s: int) -> int:
    """``c``: the split happens when this many servers time out within ``l`` of the first."""
    return s - n // 2 + 1


def closed_form(n: int, s: int, l: float) -> float:  # noqa: E741
    """The thesis's ``Pr(D_{c,s} <= l) = sum_{k=c-1}^{s} C(s,k) l^k (1-l)^(s-k)``."""
    c = votes_to_split(n, s)
    return sum(math.comb(s, k) * l**k * (1 - l) ** (s - k) for k in range(max(c - 1, 0), s + 1))


def model_monte_carlo(n: int, s: int, l: float, trials: int, seed: int) -> int:  # noqa: E741
    """The model alone, in numpy: ``s`` uniform timeouts on [0, 1] per trial; a split when the
    ``c``-th earliest is within ``l`` of the earliest. Returns the number of splits."""
    import numpy as np

    from envs.world.rng import derive_seed

    rng = np.random.default_rng(derive_seed(seed, "raft-split-vote-model", n, s, l))
    c = votes_to_split(n, s)
    splits, left = 0, trials
    while left:
        m = min(left, 200_000)
        t = np.sort(rng.random((m, s)), axis=1)
        splits += int(np.count_nonzero(t[:, c - 1] - t[:, 0] < l))
        left -= m
    return splits


def sim_trial(n: int, s: int, latency_ms: float, lo_ms: float, hi_ms: float, seed: int) -> str | None:
    """One election in the sim under the thesis's model: ``None`` if term 1 elected a leader,
    else why it failed (``"split"``, ``"lonely"`` or ``"minority"``, from ``metrics.election``)."""
    from agents.protocols import raft
    from envs.world.build import build_sim
    from metrics.election import election

    sim = build_sim(_scenario(n, latency_ms).model_copy(update={"seed": seed}), raft.NODE,
                    _params(lo_ms, hi_ms), nemesis=False, workload=False, full_trace=False)
    sim.run(until=1e-9)  # every node has started: all timers run from time 0
    for i in range(n - s):
        sim.crash(i)
    live = [sim.node(i) for i in range(n - s, n)]
    sim.run(until=10 * hi_ms, stop=lambda: any(x.state == raft.LEADER or x.currentTerm >= 2 for x in live))
    if any(x.state == raft.LEADER and x.currentTerm == 1 for x in live):
        return None
    m = election([e for e in sim.trace.events({"candidate", "leader", "vote"}) if e.fields.get("term") == 1])
    for why, terms in (("split", "split_vote_terms"), ("lonely", "lonely_election_terms"),
                       ("minority", "minority_election_terms")):
        if 1 in (m.get(terms) or []):
            return why
    return "unknown"


_SCN: dict = {}


def _scenario(n: int, latency_ms: float):
    from envs.world.config import ScenarioConfig

    key = (n, latency_ms)
    if key not in _SCN:
        _SCN[key] = ScenarioConfig.model_validate(dict(seed=0, world=dict(
            nodes=n, duration_ms=1e12, processing_ms=0.0, clocks=dict(max_offset_ms=0.0, max_drift=0.0, jitter_ms=0.0),
            network=dict(latency=dict(dist="constant", ms=latency_ms))), workload=dict(clients=0)))
    return _SCN[key]


def _params(lo_ms: float, hi_ms: float):
    from agents.protocols import raft

    return raft.Params(election_timeout_ms=(lo_ms, hi_ms), heartbeat_ms=lo_ms / 2)


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure
    from experiments.reproductions.claims import binomial_interval

    rows = []
    for j, pt in enumerate(p.points):
        s = pt.n - pt.failures
        why: dict[str, int] = {}
        done = 0
        for k in range(pt.trials):
            if stop():
                break
            r = sim_trial(pt.n, s, pt.l * p.range_ms, p.lo_ms, p.lo_ms + p.range_ms,
                          p.seed * 1_000_003 + j * 10_000_019 + k)
            done += 1
            if r:
                why[r] = why.get(r, 0) + 1
        if not done:
            break
        splits = sum(why.values())
        lo, hi = binomial_interval(splits, done, p.confidence)
        mc = model_monte_carlo(pt.n, s, pt.l, p.model_trials, p.seed)
        mlo, mhi = binomial_interval(mc, p.model_trials, p.confidence)
        rows.append({"point": f"n={pt.n} s={s} l={pt.l:g}", "n": pt.n, "s": s, "c": votes_to_split(pt.n, s),
                     "l": pt.l, "latency_ms": pt.l * p.range_ms, "paper": pt.paper, "digits": pt.digits,
                     "closed_form": closed_form(pt.n, s, pt.l), "trials": done, "sim_splits": splits,
                     "sim_rate": splits / done, "sim_lo": lo, "sim_hi": hi,
                     "why_split": why.get("split", 0), "why_lonely": why.get("lonely", 0),
                     "why_minority": why.get("minority", 0), "why_unknown": why.get("unknown", 0),
                     "model_trials": p.model_trials, "model_rate": mc / p.model_trials, "model_lo": mlo,
                     "model_hi": mhi})

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    ls = [i / 100 for i in range(1, 41)]
    for n, s in sorted({(r["n"], r["s"]) for r in rows}):
        ax.plot(ls, [closed_form(n, s, x) for x in ls], lw=1.2, label=f"closed form, n={n}, s={s}")
    for r in rows:
        ax.errorbar([r["l"]], [r["sim_rate"]], yerr=[[r["sim_rate"] - r["sim_lo"]], [r["sim_hi"] - r["sim_rate"]]],
                    fmt="o", color="k", ms=4, capsize=3)
        ax.plot([r["l"]], [r["paper"]], "x", color="tab:red", ms=8)
    ax.plot([], [], "o", color="k", label=f"sim, {p.confidence:.0%} interval")
    ax.plot([], [], "x", color="tab:red", label="thesis")
    ax.set_xlabel("one-way latency l / election timeout range")
    ax.set_ylabel("split votes per election term")
    ax.set_yscale("log")
    ax.set_title("Raft split votes with fixed latency (cf. Ongaro 2014, Sec. 9.2, Fig. 9.4)", fontsize=10, loc="left")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    png = save_figure(fig, out / "raft-split-vote.png")

    lines = [f"{'point':>18} {'thesis':>7} {'formula':>8} {'sim (trials)':>20} {'99% interval':>18} "
             f"{'numpy model':>11}"]
    lines += [f"{r['point']:>18} {r['paper']:>7.2%} {r['closed_form']:>8.3%} {r['sim_rate']:>9.3%} "
              f"({r['trials']:>7}) [{r['sim_lo']:.3%}, {r['sim_hi']:.3%}] {r['model_rate']:>10.3%}" for r in rows]
    summary = ("Split-vote rate of one Raft election term, fixed latency, all timers starting together:\n"
               + "\n".join(lines))
    findings = {"points": [r["point"] for r in rows], "sim_rate": [r["sim_rate"] for r in rows],
                "closed_form": [r["closed_form"] for r in rows],
                "failures_not_split": sum(r["sim_splits"] - r["why_split"] for r in rows)}
    return {"table": rows, "summary": summary, "findings": findings, "plots": [png], "claims": claims_of(p, rows)}


def claims_of(p: Params, rows: list[dict]) -> list[dict]:
    """Per point: the closed form gives the thesis's number; the sim and the numpy model agree with it."""
    from experiments.reproductions.claims import claim

    out = []
    for r in rows:
        where = f"n={r['n']}, {r['n'] - r['s']} failed (s={r['s']}), l={r['l']:g}"
        half = 0.5 * 10 ** -r["digits"]
        cf = r["closed_form"]
        out.append(claim(f"{where}: the closed form gives the thesis's split-vote rate", r["paper"], SOURCE, cf,
                         abs(cf - r["paper"]) <= half + 1e-12, f"|formula - thesis| <= {half:g}",
                         "the thesis's printed precision (rounding)", evidence="computed"))
        basis = (f"exact binomial interval at {p.confidence:.0%}" +
                 ("" if r["trials"] >= 20_000 else f"; {r['trials']} trials (quick): a wider interval"))
        out.append(claim(f"{where}: the sim's split-vote rate matches the closed form", r["paper"], SOURCE,
                         f"{r['sim_rate']:.4%} ({r['sim_splits']}/{r['trials']}), {p.confidence:.0%} CI "
                         f"[{r['sim_lo']:.4%}, {r['sim_hi']:.4%}]", r["sim_lo"] <= cf <= r["sim_hi"],
                         f"the interval contains the closed form {cf:.4%}", basis))
        out.append(claim(f"{where}: a numpy Monte Carlo of the model alone matches the closed form", r["paper"],
                         SOURCE, f"{r['model_rate']:.4%} of {r['model_trials']}, CI [{r['model_lo']:.4%}, "
                         f"{r['model_hi']:.4%}]", r["model_lo"] <= cf <= r["model_hi"],
                         f"the interval contains the closed form {cf:.4%}",
                         f"exact binomial interval at {p.confidence:.0%}", evidence="computed"))
    return out
