"""Termination of consensus: duelling Paxos proposers, the FLP adversary, Ben-Or's rounds vs n.

Three claims about when consensus terminates, each measured on real sim runs:

1. **Duelling proposers** -- L. Lamport, "Paxos Made Simple", 2001, Section 2.4: two proposers that
   keep issuing higher-numbered prepares can each cut the other's phase 2 forever, so progress
   needs a distinguished proposer or randomized waiting. ``agents/protocols/paxos.py`` with two
   proposers, ``retry_ms: 0`` and no backoff vs the same worlds with random exponential backoff:
   the fraction of seeds that decide within ``horizon_ms``, the time to the first decision and
   the ballots started.
2. **FLP** -- M. Fischer, N. Lynch, M. Paterson, "Impossibility of Distributed Consensus with One
   Faulty Process", JACM 1985: a deterministic 1-crash-tolerant protocol has an admissible run
   (no crash, every message eventually delivered) that never decides. ``agents/protocols/flp.py``:
   its scheduler (``run_adversary``) delays one sender per node and keeps the protocol undecided
   for ``flp_rounds`` rounds; when it lets go, and under a fair schedule (random latencies), the
   same protocol decides within a few rounds. Faithfulness: the module's adversary is a plan for
   this protocol, not FLP's general bivalence construction.
3. **Ben-Or** -- M. Ben-Or, "Another Advantage of Free Choice", PODC 1983: randomization (local
   coins) makes termination happen with probability 1; the expected number of rounds grows with n
   for split inputs (exponentially in the worst case with local coins). ``agents/protocols/benor.py``
   with inputs ``i % 2`` on n = ``benor_nodes`` under a fair schedule: rounds to decide
   (``metrics.consensus``: the largest round of a decide) over ``trials`` seeds.

Claims checked (``claims`` in results.json): without backoff the duel keeps most seeds from
deciding, with random backoff every seed decides; the FLP scheduler keeps the protocol undecided
for every round asked, while a fair schedule decides every seed; Ben-Or decides every seed at every
n, and its mean rounds at the largest n exceed those at the smallest (a percentile-bootstrap
interval of the difference at level ``confidence``, 95%; quick 50%, a looser stated check on 4
seeds).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trials: int = Field(20, ge=1, description="seeds per configuration")
    horizon_ms: float = Field(2000.0, gt=0, description="how long a Paxos duel may run")
    flp_cases: list[list[int]] = Field(default_factory=lambda: [[0, 1, 0], [0, 0, 1, 1, 1]],
                                       description="binary inputs of the FLP runs (n = len)")
    flp_rounds: int = Field(50, ge=1, description="rounds the adversary must keep the protocol undecided")
    benor_nodes: list[int] = Field(default_factory=lambda: [3, 5, 7, 9])
    benor_horizon_ms: float = Field(20_000.0, gt=0)
    confidence: float = Field(0.95, gt=0, lt=1, description="claims: bootstrap level of Ben-Or's growth with n")
    seed: int = 0


def scenario(seed: int, n: int, duration: float, latency: dict | None = None):
    from envs.world.config import ScenarioConfig

    return ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=n, duration_ms=duration,
                              network=dict(latency=latency or dict(dist="exponential", mean=5, min=1))),
        workload=dict(clients=0)))


def duel(p: Params, seed: int, backoff: bool) -> dict:
    """Two Paxos proposers retrying at once: time to the first decision (None: none) and ballots."""
    from agents.protocols import paxos
    from envs.world.build import build_sim

    scn = scenario(seed, 5, p.horizon_ms, dict(dist="uniform", low=4, high=6))
    sim = build_sim(scn, paxos.NODE, paxos.Params(proposers=[0, 1], retry_ms=0, backoff=backoff))
    sim.run(until=p.horizon_ms, stop=lambda: any(sim.node(i).chosen is not None for i in range(5)))
    first = min((r[2] for r in sim.trace.records({"decide"})), default=None)
    return {"decided_ms": first, "ballots": sum(1 for _ in sim.trace.records({"candidate"}))}


def flp_case(p: Params, inputs: list[int], seed: int) -> dict:
    """The adversary's rounds without a decision, then the rounds to decide once it lets go."""
    from agents.protocols import flp
    from envs.world.build import build_sim

    n = len(inputs)
    sim = build_sim(scenario(seed, n, 1e12), flp.NODE, flp.Params(inputs=inputs), nemesis=False, workload=False)
    reached = flp.run_adversary(sim, p.flp_rounds)
    undecided = not flp.decided(sim)
    sim.heal()
    sim.run(until=sim.now + 5000, stop=lambda: all(sim.node(i).s["decided"] for i in range(n)))
    rounds = [r[5]["round"] for r in sim.trace.records({"decide"})]
    return {"adversary_rounds": reached, "undecided_under_adversary": undecided,
            "decide_round_after_heal": max(rounds) if rounds else None}


def fair_rounds(protocol: str, inputs: list[int] | None, n: int, seed: int, horizon: float) -> int | None:
    """Rounds to decide (``metrics.consensus``) under a fair schedule; None: undecided at the horizon."""
    from agents.protocols import get
    from envs.world.build import build_sim
    from metrics.consensus import consensus

    node = get(protocol)
    sim = build_sim(scenario(seed, n, horizon), node, node.Params(inputs=inputs), nemesis=False, workload=False)
    sim.run(until=horizon, stop=lambda: all(sim.node(i).s["decided"] for i in range(n)))
    if not all(sim.node(i).s["decided"] for i in range(n)):
        return None
    return consensus(sim.trace.events({"propose", "decide"}))["rounds_to_decide"]


def _stats(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.mean(xs), statistics.pstdev(xs), max(xs)) if xs else (None, None, None)


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure

    rows, findings = [], {}
    # 1. duelling proposers
    duels = {}
    for backoff in (False, True):
        rs = [duel(p, p.seed * 1000 + k, backoff) for k in range(p.trials) if not stop()]
        duels[backoff] = rs
        times = [r["decided_ms"] for r in rs if r["decided_ms"] is not None]
        row = {"part": "paxos", "case": "random backoff" if backoff else "no backoff", "trials": len(rs),
               "decided_fraction": len(times) / len(rs) if rs else None,
               "median_decide_ms": statistics.median(times) if times else None,
               "mean_ballots": statistics.mean(r["ballots"] for r in rs) if rs else None}
        rows.append(row)
        findings["paxos_backoff" if backoff else "paxos_no_backoff"] = row
    # 2. FLP: the adversary vs a fair schedule
    findings["flp"] = []
    for inputs in p.flp_cases:
        if stop():
            break
        adv = [flp_case(p, inputs, p.seed * 1000 + k) for k in range(min(p.trials, 3))]
        fair = [fair_rounds("flp", inputs, len(inputs), p.seed * 1000 + k, 5000) for k in range(p.trials)]
        mean_fair, _, max_fair = _stats(fair)
        row = {"part": "flp", "case": f"inputs {inputs}", "trials": len(fair),
               "adversary_rounds_undecided": min(a["adversary_rounds"] for a in adv),
               "undecided_under_adversary": all(a["undecided_under_adversary"] for a in adv),
               "decide_round_after_heal": max(a["decide_round_after_heal"] or 0 for a in adv),
               "fair_decided_fraction": sum(r is not None for r in fair) / len(fair),
               "fair_mean_rounds": mean_fair, "fair_max_rounds": max_fair}
        rows.append(row)
        findings["flp"].append(row)
    # 3. Ben-Or: rounds to decide vs n
    findings["benor"] = []
    benor_rounds: dict[int, list] = {}
    for n in p.benor_nodes:
        if stop():
            break
        rs = [fair_rounds("benor", None, n, p.seed * 1000 + k, p.benor_horizon_ms) for k in range(p.trials)]
        benor_rounds[n] = rs
        mean, sd, mx = _stats(rs)
        row = {"part": "benor", "case": f"n={n}", "n": n, "trials": len(rs),
               "decided_fraction": sum(r is not None for r in rs) / len(rs),
               "mean_rounds": mean, "std_rounds": sd, "max_rounds": mx}
        rows.append(row)
        findings["benor"].append(row)

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    ax = axes[0]
    for backoff, rs in duels.items():
        xs = sorted(r["decided_ms"] for r in rs if r["decided_ms"] is not None)
        label = f"{'random backoff' if backoff else 'no backoff'} ({len(xs)}/{len(rs)} decided)"
        ax.step([0] + xs + [p.horizon_ms], [0] + [(i + 1) / len(rs) for i in range(len(xs))] + [len(xs) / len(rs)],
                where="post", label=label)
    ax.set_xlabel("time to the first decision (ms)")
    ax.set_ylabel("fraction of seeds decided")
    ax.set_title("Paxos, two duelling proposers", fontsize=10, loc="left")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax = axes[1]
    flps = findings["flp"]
    xs = range(len(flps))
    ax.bar([x - 0.2 for x in xs], [r["adversary_rounds_undecided"] for r in flps], 0.4,
           label="rounds undecided under the FLP scheduler")
    ax.bar([x + 0.2 for x in xs], [r["fair_max_rounds"] or 0 for r in flps], 0.4,
           label="max rounds to decide, fair schedule")
    ax.set_xticks(list(xs), [r["case"] for r in flps], fontsize=8)
    ax.set_ylabel("rounds")
    ax.set_title("FLP: a deterministic protocol", fontsize=10, loc="left")
    ax.legend(fontsize=8)
    ax = axes[2]
    bs = [r for r in findings["benor"] if r["mean_rounds"] is not None]
    ax.errorbar([r["n"] for r in bs], [r["mean_rounds"] for r in bs], yerr=[r["std_rounds"] for r in bs],
                marker="o", capsize=3, label="mean ± std")
    ax.plot([r["n"] for r in bs], [r["max_rounds"] for r in bs], "x--", label="max")
    ax.set_xlabel("n (inputs i % 2, t = (n-1)//2)")
    ax.set_ylabel("rounds to decide")
    ax.set_title("Ben-Or, local coins, fair schedule", fontsize=10, loc="left")
    ax.legend(fontsize=8)
    for a in axes:
        a.grid(alpha=0.3)
    png = save_figure(fig, out / "flp.png")

    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["Paxos duelling proposers (2 proposers, retry at once):"]
    lines += [f"  {r['case']:>15}: decided {fmt(r['decided_fraction'])} of {r['trials']} seeds, median "
              f"{fmt(r['median_decide_ms'])} ms, {fmt(r['mean_ballots'])} ballots"
              for r in rows if r["part"] == "paxos"]
    lines.append(f"FLP (deterministic protocol, {p.flp_rounds} rounds asked of the scheduler):")
    lines += [f"  {r['case']:>18}: undecided for {r['adversary_rounds_undecided']} rounds under the scheduler, "
              f"decided in round {r['decide_round_after_heal']} after it let go; fair schedule: decided "
              f"{fmt(r['fair_decided_fraction'])}, mean {fmt(r['fair_mean_rounds'])} / max "
              f"{fmt(r['fair_max_rounds'])} rounds" for r in flps]
    lines.append("Ben-Or (local coins, inputs i % 2), rounds to decide:")
    lines += [f"  {r['case']:>5}: decided {fmt(r['decided_fraction'])}, mean {fmt(r['mean_rounds'])} ± "
              f"{fmt(r['std_rounds'])}, max {fmt(r['max_rounds'])}" for r in findings["benor"]]
    return {"table": rows, "summary": "\n".join(lines), "findings": findings, "plots": [png],
            "claims": claims_of(p, findings, benor_rounds)}


def claims_of(p: Params, f: dict, benor_rounds: dict[int, list]) -> list[dict]:
    """The three papers' claims beside ours (module docstring)."""
    from experiments.reproductions.claims import bootstrap_difference, claim

    out = []
    lamport = "Lamport 2001, Paxos Made Simple, Sec. 2.4"
    if "paxos_no_backoff" in f:
        r = f["paxos_no_backoff"]
        out.append(claim("duelling proposers without backoff need not progress", "no progress", lamport,
                         f"{r['decided_fraction']:.2f} of seeds decided, {r['mean_ballots']:.0f} ballots",
                         r["decided_fraction"] <= 0.5, "at most half the seeds decide within horizon_ms",
                         "most seeds livelock (the paper: it can happen)"))
    if "paxos_backoff" in f:
        r = f["paxos_backoff"]
        out.append(claim("randomized waiting restores progress", "progress", lamport,
                         f"{r['decided_fraction']:.2f} of seeds decided", r["decided_fraction"] == 1.0,
                         "every seed decides", "exact"))
    flp = "Fischer, Lynch & Paterson 1985, Theorem 1"
    if f.get("flp"):
        low = min(r["adversary_rounds_undecided"] for r in f["flp"])
        out.append(claim("a deterministic protocol has an admissible run that never decides",
                         "undecided forever", flp, f"undecided for {low} of {p.flp_rounds} rounds (min over cases)",
                         low >= p.flp_rounds and all(r["undecided_under_adversary"] for r in f["flp"]),
                         f"undecided for all {p.flp_rounds} rounds asked, every case", "exact"))
        fair = min(r["fair_decided_fraction"] for r in f["flp"])
        out.append(claim("the same protocol decides under a fair schedule", "decides", flp,
                         f"{fair:.2f} of seeds decided (min over cases)", fair == 1.0, "every seed decides",
                         "exact"))
    benor = "Ben-Or 1983, Sec. 3"
    if f.get("benor"):
        low = min(r["decided_fraction"] for r in f["benor"])
        out.append(claim("Ben-Or terminates with probability 1", "terminates", benor,
                         f"{low:.2f} of seeds decided (min over n)", low == 1.0, "every seed decides at every n",
                         "exact"))
    ns = sorted(benor_rounds)
    if len(ns) >= 2:
        a = [x for x in benor_rounds[ns[0]] if x is not None]
        b = [x for x in benor_rounds[ns[-1]] if x is not None]
        if a and b:
            lo, hi = bootstrap_difference(a, b, p.confidence, seed=p.seed)
            d = sum(b) / len(b) - sum(a) / len(a)
            out.append(claim(f"with local coins the rounds grow with n (n={ns[-1]} vs n={ns[0]})", "grow", benor,
                             f"mean difference {d:.2f} rounds, {p.confidence:.0%} CI [{lo:.2f}, {hi:.2f}]",
                             lo > 0, "interval above 0",
                             f"percentile bootstrap at {p.confidence:.0%}, resampling seeds"))
    return out
