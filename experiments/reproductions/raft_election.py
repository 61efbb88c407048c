"""Raft: time to elect a new leader after the leader crashes, for several election-timeout ranges.

Reproduces Figure 16 (top) of D. Ongaro and J. Ousterhout, "In Search of an Understandable
Consensus Algorithm", USENIX ATC 2014: the CDF of the time to detect and replace a crashed leader
on a five-server cluster, one line per election-timeout range (150-150, 150-151, 150-155, 150-175,
150-200, 150-300 ms). The paper's claim: with no randomization, split votes make elections take
very long (its 150-150 line has a tail beyond 10 s); a few milliseconds of randomization help a
lot, and 150-300 ms gives few split votes and a short tail.

How it is done here (``agents/protocols/raft.py``, the sim): 5 nodes, one-way latency uniform in
``latency_ms`` (default 5-10 ms, so a broadcast round trip is about the paper's 15 ms),
``heartbeat_ms`` half the minimum timeout as in the paper. Each trial (one seed) elects a first
leader with 150-300 ms timeouts (a cold start with *equal* timeouts can take a minute, the nodes'
clock drift alone breaking the tie), then switches every node to the range under test (each draws
its timeout afresh), lets heartbeats run for ``settle_ms``, and crashes the leader at a uniformly
random moment within a heartbeat interval, as in the paper. The time to elect is from the crash to
the first ``leader`` event of a new term, measured by ``metrics.election`` (time without leader
over [crash, new leader]), which also counts the split votes (terms with a candidate and no
leader). A trial without a leader after ``cap_ms`` is censored (counted at infinity in the CDF).

Claims checked (``claims`` in results.json; Sec. 9.3 of the paper, the text beside Fig. 16):

* 150-150 ms: "in the absence of randomness, leader election consistently took longer than 10
  seconds" -- ours: the median time, which must be >= 10 s (with a cap below 10 s, as in
  ``--quick``, only >= the cap can be seen: the quick claim is that weaker one);
* 150-155 ms: "a median downtime of 287 ms" -- ours within ``rel_tol`` (25%; quick 50%);
* 150-200 ms: "the worst-case completion time (over 1000 trials) was 513 ms" -- the worst of 1000
  is about the 99.9th percentile: ours is its percentile-bootstrap interval (``confidence``), which
  must meet the band ``rel_tol`` around 513 ms (one maximum of fewer trials would not compare);
* randomization removes split votes: fewer split votes per crash at the widest range than at the
  narrowest.

A claim is made only for the ranges that were run. Known failing (not tuned here): the 150-155 ms
median is 5.8x the paper's; the issue on Raft faults models what the paper's servers had and the
sim lacks (variable processing time, fsync before a vote, timer granularity) and will measure it.

Differences from the paper: a simulated network with no OS or processing jitter (so equal
timeouts split far more often than on real machines, where the paper's 150-150 line still
finished most elections within seconds); fewer trials by default (``trials``); only the top graph.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ranges: list[tuple[float, float]] = Field(
        default_factory=lambda: [(150, 150), (150, 151), (150, 155), (150, 175), (150, 200), (150, 300)],
        description="election-timeout ranges [lo, hi] in ms, one CDF each")
    trials: int = Field(200, ge=1, description="crashes per range (one seed each)")
    nodes: int = Field(5, ge=3)
    latency_ms: tuple[float, float] = Field((5.0, 10.0), description="one-way latency, uniform [low, high]")
    heartbeat_ms: float | None = Field(None, gt=0, description="default: half the smallest lo")
    settle_ms: float = Field(500.0, ge=0, description="heartbeats after the switch, before the crash")
    cap_ms: float = Field(10_000.0, gt=0, description="give up on a trial after this long without a leader")
    rel_tol: float = Field(0.25, gt=0, description="claims: relative band around the paper's numbers")
    confidence: float = Field(0.95, gt=0, lt=1, description="claims: bootstrap interval level")
    seed: int = 0


def trial(p: Params, lo: float, hi: float, seed: int) -> dict:
    """One crash of a stable leader: the time to elect a new one (``inf`` if none within cap_ms)."""
    from agents.protocols import raft
    from envs.world.build import build_sim
    from envs.world.config import ScenarioConfig
    from envs.world.rng import derive_rng
    from metrics.election import election

    hb = p.heartbeat_ms or min(r[0] for r in p.ranges) / 2
    scn = ScenarioConfig.model_validate(dict(seed=seed, world=dict(nodes=p.nodes, duration_ms=1e12, network=dict(
        latency=dict(dist="uniform", low=p.latency_ms[0], high=p.latency_ms[1]))), workload=dict(clients=0)))
    params = raft.Params(election_timeout_ms=(150.0, 300.0), heartbeat_ms=hb)
    sim = build_sim(scn, raft.NODE, params, nemesis=False, workload=False)

    def leaders():
        return [i for i in range(p.nodes) if sim.is_up(i) and sim.node(i).state == raft.LEADER]

    sim.run(until=60_000, stop=lambda: bool(leaders()))  # a first leader, with the usual timeouts
    params.election_timeout_ms = (float(lo), float(hi))  # every node now uses the range under test
    rng = derive_rng(seed, "raft-election")
    for i in range(p.nodes):
        sim.node(i).timeout_ms = rng.uniform(lo, hi)
    sim.run(until=sim.now + p.settle_ms)
    (old,) = leaders()
    t_crash = sim.now + rng.uniform(0, hb)  # uniformly within a heartbeat interval
    sim.run(until=t_crash)
    sim.crash(old)
    sim.run(until=t_crash + p.cap_ms, stop=lambda: bool(leaders()))
    events = [e for e in sim.trace.events({"leader", "candidate", "follower", "crash", "start"}) if e.t >= t_crash]
    m = election(events, start=t_crash, end=sim.now)
    elected = bool(leaders())
    return {"time_ms": m["time_without_leader"] if elected else math.inf, "split_votes": m["split_votes"],
            "elections": m["elections"]}


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure
    from experiments.reproductions import cdf, percentile

    rows, times = [], {}
    for lo, hi in p.ranges:
        name = f"{lo:g}-{hi:g}ms"
        ts, splits = [], []
        for k in range(p.trials):
            if stop():
                break
            r = trial(p, lo, hi, p.seed * 1_000_003 + k)
            ts.append(r["time_ms"])
            splits.append(r["split_votes"])
        if not ts:
            break
        times[name] = ts
        done = [t for t in ts if math.isfinite(t)]
        rows.append({"range": name, "lo_ms": lo, "hi_ms": hi, "trials": len(ts), "elected": len(done),
                     "median_ms": percentile(ts, 50), "p90_ms": percentile(ts, 90), "p99_ms": percentile(ts, 99),
                     "max_ms": max(ts), "mean_split_votes": sum(splits) / len(splits),
                     "trials_with_split_vote": sum(s > 0 for s in splits) / len(splits)})

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for name, ts in times.items():
        xs, ys = cdf([t for t in ts if math.isfinite(t)])
        ys = [y * sum(math.isfinite(t) for t in ts) / len(ts) for y in ys]  # censored trials never arrive
        ax.step(xs, ys, where="post", lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("time without leader after the leader's crash (true ms)")
    ax.set_ylabel("cumulative fraction of trials")
    ax.set_title(f"Raft, {p.nodes} nodes: time to elect a new leader (cf. Ongaro & Ousterhout 2014, Fig. 16)",
                 fontsize=10, loc="left")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="election timeout", title_fontsize=8)
    png = save_figure(fig, out / "raft-election.png")

    fmt = lambda v: "inf" if v is None or not math.isfinite(v) else f"{v:.0f}"  # noqa: E731
    lines = [f"{'range':>12} {'trials':>6} {'elected':>7} {'median':>7} {'p90':>7} {'p99':>7} {'split votes':>11}"]
    lines += [f"{r['range']:>12} {r['trials']:>6} {r['elected']:>7} {fmt(r['median_ms']):>7} {fmt(r['p90_ms']):>7} "
              f"{fmt(r['p99_ms']):>7} {r['mean_split_votes']:>11.2f}" for r in rows]
    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    findings = {
        "ranges": [r["range"] for r in rows],
        "mean_split_votes": [r["mean_split_votes"] for r in rows],
        "p90_ms": [r["p90_ms"] for r in rows],
        "elected_fraction": [r["elected"] / r["trials"] for r in rows],
        "randomization_helps": bool(rows) and last["mean_split_votes"] < first["mean_split_votes"]
        and last["p90_ms"] < first["p90_ms"],
    }
    summary = ("Time to elect a new Raft leader after a crash (ms; inf = no leader within "
               f"{p.cap_ms:g} ms), split votes per crash:\n" + "\n".join(lines))
    return {"table": rows, "summary": summary, "findings": findings, "plots": [png],
            "claims": claims_of(p, times, rows)}


SOURCE = "Ongaro & Ousterhout 2014, Sec. 9.3, Fig. 16 (top)"


def claims_of(p: Params, times: dict[str, list[float]], rows: list[dict]) -> list[dict]:
    """The paper's numbers beside ours, for the ranges that were run (module docstring)."""
    from experiments.reproductions import percentile
    from experiments.reproductions.claims import bootstrap_interval, claim, relative

    out = []
    if "150-150ms" in times:
        med = percentile(times["150-150ms"], 50)
        floor = min(10_000.0, p.cap_ms)
        out.append(claim("150-150 ms: elections without randomness take longer than 10 s", ">10000 ms", SOURCE,
                         med, med >= floor, f"median >= {floor:g} ms",
                         "the paper's bound" if floor == 10_000 else
                         f"quick: trials censored at cap_ms = {p.cap_ms:g} ms, so only >= the cap is seen"))
    if "150-155ms" in times:
        med = percentile(times["150-155ms"], 50)
        ok, tol = relative(med, 287.0, p.rel_tol, " ms")
        out.append(claim("150-155 ms: median time to elect", 287.0, SOURCE, med, ok, tol,
                         f"relative band of {p.rel_tol:.0%} (the issue's target)"))
    if "150-200ms" in times:
        ts = times["150-200ms"]
        lo, hi = bootstrap_interval(ts, lambda xs: percentile(xs, 99.9), p.confidence, seed=p.seed)
        band_lo, band_hi = 513.0 * (1 - p.rel_tol), 513.0 * (1 + p.rel_tol)
        out.append(claim("150-200 ms: worst case over 1000 trials (~ the 99.9th percentile)", 513.0, SOURCE,
                         f"p99.9 {percentile(ts, 99.9):.0f} ms, {p.confidence:.0%} CI [{lo:.0f}, {hi:.0f}] "
                         f"({len(ts)} trials)", lo <= band_hi and hi >= band_lo,
                         f"CI meets [{band_lo:.0f}, {band_hi:.0f}] ms",
                         f"percentile-bootstrap interval vs a {p.rel_tol:.0%} band"))
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        out.append(claim(f"randomization removes split votes ({last['range']} vs {first['range']})",
                         "fewer split votes", SOURCE,
                         f"{last['mean_split_votes']:.2f} vs {first['mean_split_votes']:.2f} per crash",
                         last["mean_split_votes"] < first["mean_split_votes"], "strictly fewer",
                         "the paper's qualitative claim"))
    return out
