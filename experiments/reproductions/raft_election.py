"""Raft: time to elect a new leader after the leader crashes, for several election-timeout ranges.

Reproduces Figure 16 (both graphs) of D. Ongaro and J. Ousterhout, "In Search of an Understandable
Consensus Algorithm" (extended version), USENIX ATC 2014, Sec. 9.3, also Fig. 9.6 of Ongaro's
thesis (Sec. 9.4): the CDF of the time to detect and replace a crashed leader on a five-server
LogCabin cluster, one line per election-timeout range: top 150-150, 150-151, 150-155, 150-175,
150-200, 150-300 ms; bottom 12-24, 25-50, 50-100, 100-200, 150-300 ms. 1,000 crashes per line
(100 for 150-150), the leader crashed at a random moment within its heartbeat interval, which was
half the minimum election timeout.

The model of the paper's cluster (each a parameter; values in ``configs/reproduce/raft-election.yaml``)
------------------------------------------------------------------------------------------------
* ``latency_ms`` = 0.1-0.2 ms one way: TCP over 1 Gbit Ethernet (the thesis's Table 9.2 setup),
  whose round trip is a fraction of a millisecond. The earlier version used 5-10 ms so that a
  round trip alone was the paper's "broadcast time (network round trip plus disk write) of roughly
  15 ms"; that put the whole broadcast time between a candidate's timeout and its RequestVote
  reaching the others, where (the thesis, Sec. 9.2) it decides split votes.
* ``fsync_ms`` = 1-5 ms, uniform: Raft's ``fsync_ms``, the thesis's ``W`` ("time to write term and
  vote durably to disk", Sec. 9.1), on the paper's SSDs (Crucial M4, ext4). Raft as written
  persists before sending RequestVote and before answering one (Figure 2), so ``W`` delays both,
  and its randomness desynchronizes the candidates. Its value is *fitted* (to the 150-155 ms
  median), not measured on the paper's hardware: the ablation shows what each value does.
* ``timer_granularity_ms`` = 0: LogCabin's timers wait on ``std::chrono`` deadlines (high
  resolution); the ablation tries a 1 ms tick.
* ``processing_ms`` = 0: handler time is folded into ``latency_ms``; the ablation tries 0.5 ms.

Each trial (one seed): elect a first leader with timeouts ``[lo, 2 lo]``, switch every node to the
range under test (each draws its timeout afresh), let heartbeats run for ``settle_ms``, and crash
the leader at a uniformly random moment within a heartbeat interval. The time to elect runs from
the crash to the first ``leader`` event of a new term (``metrics.election``, which also counts the
split votes); the paper stops when the others receive the new leader's first heartbeat, one
one-way latency (0.1-0.2 ms) later. A trial without a leader after ``cap_ms`` is censored
(``inf``). The ablation reruns 150-155 and 12-24 ms under variants of the model.

Claims checked (``claims`` in results.json; Sec. 9.3, the text beside Fig. 16):

* 150-150 ms: "in the absence of randomness, leader election consistently took longer than 10
  seconds" -- ours: the median, which must be >= 10 s (``--quick``: >= its shorter cap);
* 150-155 ms: "a median downtime of 287 ms" -- within ``rel_tol`` (25%; quick 50%);
* 150-200 ms: "the worst-case completion time (over 1000 trials) was 513 ms" and 12-24 ms: "the
  longest trial took 152 ms" -- the worst of 1,000 is about the 99.9th percentile: its
  percentile-bootstrap interval (``confidence``) must meet the band ``rel_tol`` around the paper's;
* 12-24 ms: "it takes only 35 ms on average to elect a leader" -- within ``rel_tol``;
* randomization removes split votes: fewer per crash at 150-300 than at 150-150 ms.

A failing claim carries its ``deviations`` entry (the explanation, backed by the ablation in
docs/reproductions.md) when the ablation ran. Not modelled: the paper's benchmark gave two of the
four remaining servers shorter logs (ineligible to win), and LogCabin's threads and locks.
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
    no_random_trials: int = Field(100, ge=1, description="crashes for a range with lo == hi (the paper: 100)")
    fsync_ms: tuple[float, float] = Field((0.0, 0.0), description="Raft's fsync_ms: one disk write, uniform [lo, hi]")
    timer_granularity_ms: float = Field(0.0, ge=0, description="Raft's timer_granularity_ms")
    processing_ms: float = Field(0.0, ge=0, description="world.processing_ms: true ms each handler takes")
    ablation: dict[str, dict] | None = Field(None, description=(
        "name -> overrides of latency_ms / fsync_ms / timer_granularity_ms / processing_ms, each measured on "
        "each of ablation_ranges with ablation_trials crashes"))
    ablation_ranges: list[tuple[float, float] | tuple[float, float, int]] = Field(
        default_factory=lambda: [(150.0, 155.0), (12.0, 24.0)],
        description="[lo, hi] (ablation_trials crashes) or [lo, hi, trials]")
    ablation_trials: int = Field(200, ge=1)
    deviations: dict[str, str] = Field(default_factory=dict, description=(
        "claim key (150-155-median, 12-24-mean, ...) -> the explanation of a known gap, backed by the ablation; "
        "attached to a failing claim only when the ablation ran"))
    rel_tol: float = Field(0.25, gt=0, description="claims: relative band around the paper's numbers")
    confidence: float = Field(0.95, gt=0, lt=1, description="claims: bootstrap interval level")
    seed: int = 0


SOURCE = "Ongaro & Ousterhout 2014, Sec. 9.3, Fig. 16 (top)"
SOURCE_BOTTOM = "Ongaro & Ousterhout 2014, Sec. 9.3, Fig. 16 (bottom)"
ABLATED = ("latency_ms", "fsync_ms", "timer_granularity_ms", "processing_ms")


def trial(p: Params, lo: float, hi: float, seed: int) -> dict:
    """One crash of a stable leader: the time to elect a new one (``inf`` if none within cap_ms)."""
    from agents.protocols import raft
    from envs.world.build import build_sim
    from envs.world.config import ScenarioConfig
    from envs.world.rng import derive_rng
    from metrics.election import election

    hb = p.heartbeat_ms or lo / 2  # the paper: half the minimum election timeout, for every range
    scn = ScenarioConfig.model_validate(dict(seed=seed, world=dict(
        nodes=p.nodes, duration_ms=1e12, processing_ms=p.processing_ms,
        network=dict(latency=dict(dist="uniform", low=p.latency_ms[0], high=p.latency_ms[1]))),
        workload=dict(clients=0)))
    params = raft.Params(election_timeout_ms=(lo, 2 * lo), heartbeat_ms=hb, fsync_ms=p.fsync_ms,
                         timer_granularity_ms=p.timer_granularity_ms)
    sim = build_sim(scn, raft.NODE, params, nemesis=False, workload=False, full_trace=False)

    def leaders():
        return [i for i in range(p.nodes) if sim.is_up(i) and sim.node(i).state == raft.LEADER]

    sim.run(until=60_000, stop=lambda: bool(leaders()))  # a first leader, with timeouts [lo, 2 lo]
    params.election_timeout_ms = (float(lo), float(hi))  # every node now uses the range under test
    rng = derive_rng(seed, "raft-election")
    for i in range(p.nodes):
        sim.node(i).timeout_ms = rng.uniform(lo, hi)
    sim.run(until=sim.now + p.settle_ms)
    sim.run(until=sim.now + 60_000, stop=lambda: len(leaders()) == 1)  # timeouts too short may depose it
    if len(leaders()) != 1:  # no stable leader at these timeouts: nothing to crash
        return {"time_ms": None, "split_votes": 0, "elections": 0}
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


def measure_range(p: Params, lo: float, hi: float, trials: int, stop=lambda: False) -> tuple[dict, list[float]]:
    """``trials`` crashes at timeouts [lo, hi]: the table row and the times (``inf``: no leader by cap_ms).
    Trials in which no stable leader formed before the crash (timeouts too short) are counted apart."""
    from experiments.reproductions import percentile

    ts, splits, unstable = [], [], 0
    for k in range(trials):
        if stop():
            break
        r = trial(p, lo, hi, p.seed * 1_000_003 + k)
        if r["time_ms"] is None:
            unstable += 1
            continue
        ts.append(r["time_ms"])
        splits.append(r["split_votes"])
    if not ts:
        return {}, ts
    done = [t for t in ts if math.isfinite(t)]
    row = {"range": f"{lo:g}-{hi:g}ms", "lo_ms": lo, "hi_ms": hi, "trials": len(ts), "elected": len(done),
           "no_stable_leader": unstable, "median_ms": percentile(ts, 50),
           "mean_ms": sum(ts) / len(ts) if len(done) == len(ts) else math.inf,
           "p90_ms": percentile(ts, 90), "p99_ms": percentile(ts, 99), "max_ms": max(ts),
           "mean_split_votes": sum(splits) / len(splits),
           "trials_with_split_vote": sum(s > 0 for s in splits) / len(splits)}
    return row, ts


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure
    from experiments.reproductions import cdf, percentile

    rows, times = [], {}
    for lo, hi in p.ranges:
        row, ts = measure_range(p, lo, hi, p.no_random_trials if lo == hi else p.trials, stop)
        if not row:
            break
        times[row["range"]] = ts
        rows.append(row)

    ablation = []  # the same crashes under each variant of the model (module docstring)
    for name, over in (p.ablation or {}).items():
        q = p.model_copy(update={k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
        for lo, hi, *n in p.ablation_ranges:
            if stop():
                break
            row, ts = measure_range(q, lo, hi, int(n[0]) if n else p.ablation_trials, stop)
            if row:
                row["p999_ms"] = percentile(ts, 99.9)
                ablation.append({"variant": name, **{k: over.get(k, getattr(p, k)) for k in ABLATED}, **row})

    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8, 7.5), layout="constrained")
    graphs = [("top: varying the randomness", [n for n in times if n.startswith("150-")]),
              ("bottom: scaling the minimum timeout",
               [n for n in times if not n.startswith("150-") or n == "150-300ms"])]
    for ax, (title, names) in zip(axes, graphs):
        for name in names:
            ts = times[name]
            xs, ys = cdf([t for t in ts if math.isfinite(t)])
            ys = [y * sum(math.isfinite(t) for t in ts) / len(ts) for y in ys]  # censored trials never arrive
            ax.step(xs, ys, where="post", lw=1.5, label=name)
        ax.set_xscale("log")
        ax.set_ylabel("cumulative fraction of trials")
        ax.set_title(f"Fig. 16 ({title})", fontsize=9, loc="left")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="election timeout", title_fontsize=8)
    axes[-1].set_xlabel("time without leader after the leader's crash (true ms)")
    fig.suptitle(f"Raft, {p.nodes} nodes: time to elect a new leader (cf. Ongaro & Ousterhout 2014, Fig. 16)",
                 fontsize=10)
    png = save_figure(fig, out / "raft-election.png")

    fmt = lambda v: "inf" if v is None or not math.isfinite(v) else f"{v:.0f}"  # noqa: E731
    lines = [f"{'range':>12} {'trials':>6} {'elected':>7} {'median':>7} {'mean':>7} {'p90':>7} {'p99':>7} "
             f"{'max':>7} {'split votes':>11}"]
    lines += [f"{r['range']:>12} {r['trials']:>6} {r['elected']:>7} {fmt(r['median_ms']):>7} {fmt(r['mean_ms']):>7} "
              f"{fmt(r['p90_ms']):>7} {fmt(r['p99_ms']):>7} {fmt(r['max_ms']):>7} {r['mean_split_votes']:>11.2f}"
              for r in rows]
    top = [r for r in rows if r["lo_ms"] == 150]
    first, last = (top[0], top[-1]) if top else ({}, {})
    findings = {
        "ranges": [r["range"] for r in rows],
        "mean_split_votes": [r["mean_split_votes"] for r in rows],
        "p90_ms": [r["p90_ms"] for r in rows],
        "elected_fraction": [r["elected"] / r["trials"] for r in rows],
        "randomization_helps": len(top) >= 2 and last["mean_split_votes"] < first["mean_split_votes"]
        and last["p90_ms"] < first["p90_ms"],
        "ablation": ablation,
    }
    model = (f"model: one-way latency uniform {p.latency_ms[0]:g}-{p.latency_ms[1]:g} ms, fsync "
             f"{p.fsync_ms[0]:g}-{p.fsync_ms[1]:g} ms, timer granularity {p.timer_granularity_ms:g} ms, "
             f"processing {p.processing_ms:g} ms per handler")
    summary = (f"Time to elect a new Raft leader after a crash (ms; inf = no leader within {p.cap_ms:g} ms), "
               f"split votes per crash; {model}:\n" + "\n".join(lines))
    if ablation:
        summary += ("\n\nAblation (crashes per variant and range as given):\n"
                    + f"{'variant':>34} {'range':>10} {'trials':>6} {'median':>7} {'mean':>7} {'p99':>7} {'p99.9':>7} "
                    + f"{'split votes':>11}\n"
                    + "\n".join(f"{a['variant']:>34} {a['range']:>10} {a['trials']:>6} {fmt(a['median_ms']):>7} "
                                f"{fmt(a['mean_ms']):>7} {fmt(a['p99_ms']):>7} {fmt(a['p999_ms']):>7} "
                                f"{a['mean_split_votes']:>11.2f}" for a in ablation))
    return {"table": rows, "ablation": ablation, "summary": summary, "findings": findings, "plots": [png],
            "claims": claims_of(p, times, rows, bool(ablation))}


def claims_of(p: Params, times: dict[str, list[float]], rows: list[dict], ablated: bool = False) -> list[dict]:
    """The paper's numbers beside ours, for the ranges that were run (module docstring). A claim that
    fails carries its ``deviations`` entry only when the ablation that backs it was run."""
    from experiments.reproductions import percentile
    from experiments.reproductions.claims import bootstrap_interval, claim, relative

    out = []

    def add(key, *args, **kw):
        row = claim(*args, **kw)
        if not row["holds"] and ablated and p.deviations.get(key):
            row["deviation"] = p.deviations[key]
        out.append(row)

    def worst(key, name, paper, source):
        ts = times[name]
        lo, hi = bootstrap_interval(ts, lambda xs: percentile(xs, 99.9), p.confidence, seed=p.seed)
        band_lo, band_hi = paper * (1 - p.rel_tol), paper * (1 + p.rel_tol)
        add(key, f"{name[:-2]} ms: worst case over 1000 trials (~ the 99.9th percentile)", paper, source,
            f"p99.9 {percentile(ts, 99.9):.0f} ms, {p.confidence:.0%} CI [{lo:.0f}, {hi:.0f}] ({len(ts)} trials)",
            lo <= band_hi and hi >= band_lo, f"CI meets [{band_lo:.0f}, {band_hi:.0f}] ms",
            f"percentile-bootstrap interval vs a {p.rel_tol:.0%} band; its upper end cannot exceed the "
            f"largest of the {len(ts)} trials", evidence="one-sided")

    if "150-150ms" in times:
        med = percentile(times["150-150ms"], 50)
        floor = min(10_000.0, p.cap_ms)
        add("150-150", "150-150 ms: elections without randomness take longer than 10 s", ">10000 ms", SOURCE,
            med, med >= floor, f"median >= {floor:g} ms",
            "the paper's bound" if floor == 10_000 else
            f"quick: trials censored at cap_ms = {p.cap_ms:g} ms, so only >= the cap is seen",
            evidence="one-sided")
    if "150-155ms" in times:
        med = percentile(times["150-155ms"], 50)
        ok, tol = relative(med, 287.0, p.rel_tol, " ms")
        add("150-155-median", "150-155 ms: median time to elect", 287.0, SOURCE, med, ok, tol,
            f"relative band of {p.rel_tol:.0%} (the issue's target: 25%)")
    if "150-200ms" in times:
        worst("150-200-worst", "150-200ms", 513.0, SOURCE)
    top = [r for r in rows if r["lo_ms"] == 150]
    if len(top) >= 2:
        first, last = top[0], top[-1]
        add("randomization", f"randomization removes split votes ({last['range']} vs {first['range']})",
            "fewer split votes", SOURCE, f"{last['mean_split_votes']:.2f} vs {first['mean_split_votes']:.2f} per crash",
            last["mean_split_votes"] < first["mean_split_votes"], "strictly fewer", "the paper's qualitative claim")
    if "12-24ms" in times:
        ts = times["12-24ms"]
        mean = sum(ts) / len(ts)
        lo, hi = bootstrap_interval(ts, lambda xs: sum(xs) / len(xs), p.confidence, seed=p.seed)
        ok, tol = relative(mean, 35.0, p.rel_tol, " ms")
        add("12-24-mean", "12-24 ms: mean time to elect", 35.0, SOURCE_BOTTOM,
            f"{mean:.1f} ms, {p.confidence:.0%} CI [{lo:.1f}, {hi:.1f}] ({len(ts)} trials)", ok, tol,
            f"relative band of {p.rel_tol:.0%} (the issue's target: 25%)")
        worst("12-24-worst", "12-24ms", 152.0, SOURCE_BOTTOM)
    return out
