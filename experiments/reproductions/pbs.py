"""PBS: the staleness of partial quorums, measured on the Dynamo-style store beside the paper's model.

P. Bailis, S. Venkataraman, M. J. Franklin, J. M. Hellerstein and I. Stoica, "Probabilistically
Bounded Staleness for Practical Partial Quorums", VLDB 2012 (PBS). The store is
``agents/protocols/dynamo.py`` (N replicas per key, a write acknowledged by W, a read answered by
the newest of R replies). Three parts, each a claim of the paper checked on real sim runs:

1. **p_s, the probability of a stale read** with non-expanding quorums (a write reaches W random
   replicas, a read asks R random replicas): ``p_s = C(N-W, R) / C(N, R)`` (Sec. 3, the closed form
   of versioned staleness). Measured for N = 3, R = W = 1 (2/3) as the stale-read rate of an
   alternating write/read client (``ps_reads`` reads), with its exact binomial interval
   (Clopper-Pearson, ``confidence``) that must contain 2/3. For N = 100, R = W = 30 the paper
   gives 1.88e-6: checked as the formula, and measured on a 100-node store (``big_reads`` reads)
   whose interval must contain the formula -- with the reads the sim can afford, its upper end is
   only an upper confidence bound.
2. **k-staleness** (Sec. 3): the probability that a read returns one of the last k versions is
   ``1 - p_s^k`` when each write goes to an independent random quorum: for N = 3, R = W = 1 the
   paper gives 0.556 (k = 2), 0.703 (k = 3), above 0.868 (k = 5) and above 0.98 (k = 10). Measured
   on the same runs as part 1 (``metrics.staleness``'s k: the writes a read missed): the interval
   must contain the paper's value (widened by its rounding, +-0.0005), or for an "above" value
   reach above it.
3. **t-visibility against the WARS model** (Sec. 5): the probability that a read started t ms
   after a write committed returns it, for expanding quorums (Dynamo's: every message to all N,
   the first W acks / R replies taken), N = 3, R = W = 1. The paper predicts it by Monte Carlo over
   the latencies of the write (W), its ack (A), the read request (R) and the response (S); we
   run that model (``wars``, ``wars_trials`` draws) and measure the store with the same
   distributions: exponential, A = R = S with mean 1 ms and W with mean ``w_mean_ms`` (the paper's
   synthetic exponential setup: W varied, ARS fixed). The writes are coordinated by node 0 and the
   reads by node N + 1, neither a replica, so that the links 0 -> replica carry only W (per-link
   latency) and every other link A, R or S. Client latency is 0 so the client's completion is
   the commit. Each ``t`` gets ``trials_per_t`` write/read cycles; the model's value must lie in
   the measured binomial interval at every t (Bonferroni over all the points: family-wise level
   ``confidence``).

Versions are the store's (a counter fetched from R replicas, never a clock); every run is seeded.
What is not reproduced: the paper's production latency traces (LinkedIn, Yammer) and its latency
vs consistency trade-off figures.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SOURCE = "Bailis et al. VLDB 2012"
GAP = 0.001  # ms between one operation's completion and the next one's start
#: k -> (the paper's value, "=" or ">"), N = 3, R = W = 1 (Sec. 3)
K_PAPER = {2: (0.556, "="), 3: (0.703, "="), 5: (0.868, ">"), 10: (0.98, ">")}


class WarsCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    w_mean_ms: float = Field(gt=0, description="mean of the exponential write latency (W)")
    ars_mean_ms: float = Field(1.0, gt=0, description="mean of the exponential A, R and S latencies")


def _default_cases() -> dict[str, WarsCase]:
    return {"W=1ms ARS=1ms": WarsCase(w_mean_ms=1.0), "W=10ms ARS=1ms": WarsCase(w_mean_ms=10.0)}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ps_reads: int = Field(20_000, ge=10, description="reads on N=3, R=W=1 (parts 1 and 2)")
    big_reads: int = Field(20_000, ge=10, description="reads on N=100, R=W=30 (part 1)")
    big_nodes: int = Field(100, ge=2, description="N of the big closed-form check")
    big_quorum: int = Field(30, ge=1, description="R = W of the big closed-form check")
    cases: dict[str, WarsCase] = Field(default_factory=_default_cases, description="part 3's latency cases")
    t_ms: list[float] = Field(default_factory=lambda: [0, 0.5, 1, 2, 4, 8, 16, 32],
                              description="part 3: ms after the commit that the read starts")
    trials_per_t: int = Field(1000, ge=10, description="part 3: write/read cycles per t")
    wars_trials: int = Field(200_000, ge=1000, description="part 3: Monte Carlo draws of the WARS model")
    confidence: float = Field(0.99, gt=0, lt=1, description="claims: binomial interval level")
    seed: int = 0


def p_stale(n: int, r: int, w: int) -> float:
    """PBS Sec. 3: the probability that a non-expanding read quorum misses the last write's quorum."""
    return math.comb(n - w, r) / math.comb(n, r)


def wars(n: int, r: int, w: int, w_mean: float, ars_mean: float, ts, trials: int, seed: int) -> list[float]:
    """PBS Sec. 5, the WARS model by Monte Carlo: for each t, the probability that a read sent t ms
    after the write's commit (its ``w``-th ack) returns it, with exponential latencies (means in
    ms): W to each replica, A back; R to each replica, S back; the read takes the first ``r``
    responses, and replica i has the write when ``W_i <= commit + t + R_i``."""
    rng = np.random.default_rng(seed)
    W = rng.exponential(w_mean, (trials, n))
    A = rng.exponential(ars_mean, (trials, n))
    R = rng.exponential(ars_mean, (trials, n))
    S = rng.exponential(ars_mean, (trials, n))
    commit = np.sort(W + A, axis=1)[:, w - 1]
    first = np.argsort(R + S, axis=1)[:, :r]  # the replicas whose responses come first
    out = []
    for t in ts:
        has = W <= commit[:, None] + t + R
        out.append(float(np.take_along_axis(has, first, axis=1).any(axis=1).mean()))
    return out


def _drive(sim, steps, key) -> list:
    """Run ``steps`` -- ``(f, wait_ms, node)`` -- one client operation at a time, each ``wait_ms``
    after the previous completed; the history."""
    from envs.world.records import Op

    it, ids, done = iter(steps), itertools.count(), []

    def next_op(_op=None):
        step = next(it, None)
        if step is None:
            done.append(True)
            return
        f, wait, node = step
        oid = next(ids)
        sim.call_at(sim.now + wait, sim.submit, Op(oid, 0, f, oid if f == "write" else None, key, node))

    sim.on_complete.append(next_op)
    next_op()
    sim.run(until=1e15, stop=lambda: bool(done))
    return sim.history


def closed_form_run(n: int, q: int, reads: int, seed: int, latency_ms: float = 1.0) -> dict:
    """Non-expanding N = n, R = W = q: alternate write and read from one client at node 0;
    ``metrics.staleness`` of the history (stale reads, k counts)."""
    from agents.protocols import dynamo
    from envs.world.build import build_sim
    from envs.world.config import ScenarioConfig
    from metrics.staleness import staleness

    latency = dict(dist="exponential", mean=latency_ms)
    scn = ScenarioConfig.model_validate(dict(seed=seed, world=dict(
        nodes=n, duration_ms=1e15, client_latency_ms=0, network=dict(latency=latency)), workload=dict(clients=0)))
    sim = build_sim(scn, dynamo.NODE, dynamo.Params(N=n, R=q, W=q, expanding=False), nemesis=False, workload=False,
                    full_trace=False)
    # the read starts just after the write completed (the observer orders operations strictly)
    hist = _drive(sim, (step for _ in range(reads) for step in (("write", GAP, 0), ("read", GAP, 0))), None)
    assert all(op.status == "ok" for op in hist), "an operation did not complete (no faults were injected)"
    return staleness(hist, visibility=False)


def wars_run(p: Params, case: WarsCase, seed: int, n: int = 3, r: int = 1, w: int = 1) -> list[tuple[float, bool]]:
    """Expanding N = n: writes via node 0 (links 0 -> replica: W), reads via node n + 1, replicas
    1..n; for each t of ``t_ms`` (interleaved) ``trials_per_t`` cycles of write, wait t, read:
    ``(t, read returned the write)`` per cycle."""
    from agents.protocols import dynamo
    from envs.world.build import build_sim
    from envs.world.config import ScenarioConfig

    exp = lambda mean: dict(dist="exponential", mean=mean)  # noqa: E731
    scn = ScenarioConfig.model_validate(dict(seed=seed, world=dict(
        nodes=n + 2, duration_ms=1e15, client_latency_ms=0,
        network=dict(latency=exp(case.ars_mean_ms),
                     links=[dict(src=0, dst=i, latency=exp(case.w_mean_ms)) for i in range(1, n + 1)])),
        workload=dict(clients=0)))
    sim = build_sim(scn, dynamo.NODE, dynamo.Params(N=n, R=r, W=w, expanding=True, give_up_ms=1e9),
                    nemesis=False, workload=False, full_trace=False)
    assert dynamo.position(1) % (n + 2) == 1  # key 1's replicas are nodes 1..n
    plan = [t for _ in range(p.trials_per_t) for t in p.t_ms]
    hist = _drive(sim, (step for t in plan for step in (("write", 0.0, 0), ("read", t, n + 1))), 1)
    out = []
    for t, (wr, rd) in zip(plan, zip(hist[0::2], hist[1::2])):
        assert wr.f == "write" and rd.f == "read" and wr.status == rd.status == "ok"
        assert abs(rd.invoke - wr.complete - t) < 1e-6
        out.append((t, rd.output == wr.value))
    return out


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure
    from experiments.reproductions.claims import binomial_interval, claim

    conf = p.confidence
    rows, claims, findings = [], [], {}
    # 1 and 2: N = 3, R = W = 1 -- p_s and k-staleness
    st = closed_form_run(3, 1, p.ps_reads, p.seed)
    reads, stale = st["reads"], st["stale_reads"]
    lo, hi = binomial_interval(stale, reads, conf)
    ps3 = p_stale(3, 1, 1)
    findings["ps_n3"] = {"reads": reads, "stale": stale, "p": stale / reads, "ci": [lo, hi], "formula": ps3}
    rows.append({"part": "p_s", "case": "N=3 R=W=1 non-expanding", "reads": reads, "stale": stale,
                 "ours": stale / reads, "ci_lo": lo, "ci_hi": hi, "paper": 2 / 3})
    claims.append(claim("p_s, N=3, R=W=1 (non-expanding), measured", "2/3", f"{SOURCE}, Sec. 3 (closed form)",
                        f"{stale / reads:.4f} ({stale}/{reads}), {conf:.0%} CI [{lo:.4f}, {hi:.4f}]",
                        lo <= 2 / 3 <= hi, "the interval contains 2/3", f"exact binomial interval at {conf:.0%}"))
    missed = dict((k, c) for k, c in st["k_counts"])
    findings["k_staleness"] = {}
    for k, (paper, kind) in K_PAPER.items():
        within = reads - sum(c for kk, c in missed.items() if kk >= k)  # returned one of the last k versions
        klo, khi = binomial_interval(within, reads, conf)
        formula = 1 - ps3 ** k
        ok = (klo <= paper + 0.0005 and khi >= paper - 0.0005) if kind == "=" else khi > paper
        findings["k_staleness"][k] = {"p": within / reads, "ci": [klo, khi], "formula": formula}
        rows.append({"part": "k-staleness", "case": f"k={k}", "reads": reads, "ours": within / reads,
                     "ci_lo": klo, "ci_hi": khi, "paper": paper, "formula": formula})
        claims.append(claim(f"k-staleness, N=3, R=W=1: a read returns one of the last {k} versions",
                            paper if kind == "=" else f"> {paper}", f"{SOURCE}, Sec. 3",
                            f"{within / reads:.4f}, {conf:.0%} CI [{klo:.4f}, {khi:.4f}] (1-p_s^k = {formula:.4f})",
                            ok, "the interval contains the paper's value +-0.0005 (its rounding)" if kind == "="
                            else "the interval reaches above the paper's bound",
                            f"exact binomial interval at {conf:.0%}"))
    # 1: N = 100, R = W = 30 -- the formula, and what the sim can afford to measure
    n, q = p.big_nodes, p.big_quorum
    ps_big = p_stale(n, q, q)
    if n == 100 and q == 30:
        rel = abs(ps_big - 1.88e-6) / 1.88e-6
        claims.append(claim("p_s, N=100, R=W=30: the closed form", 1.88e-6, f"{SOURCE}, Sec. 3", f"{ps_big:.4g}",
                            rel <= 0.005, "equal at the paper's 3 significant digits (0.5%)", "rounding",
                            evidence="computed"))
    if not stop():
        st = closed_form_run(n, q, p.big_reads, p.seed + 1)
        b_lo, b_hi = binomial_interval(st["stale_reads"], st["reads"], conf)
        findings["ps_big"] = {"reads": st["reads"], "stale": st["stale_reads"], "ci": [b_lo, b_hi], "formula": ps_big}
        rows.append({"part": "p_s", "case": f"N={n} R=W={q} non-expanding", "reads": st["reads"],
                     "stale": st["stale_reads"], "ours": st["stale_reads"] / st["reads"], "ci_lo": b_lo,
                     "ci_hi": b_hi, "paper": ps_big})
        claims.append(claim(f"p_s, N={n}, R=W={q} (non-expanding), measured", f"{ps_big:.3g}",
                            f"{SOURCE}, Sec. 3 (closed form)",
                            f"{st['stale_reads']}/{st['reads']} stale, {conf:.0%} upper bound {b_hi:.2g}",
                            b_lo <= ps_big <= b_hi, "the interval [lo, upper bound] contains the formula",
                            f"exact binomial interval at {conf:.0%}; {st['reads']} reads bound p_s from above only",
                            evidence="one-sided"))
    # 3: t-visibility vs WARS
    curves = {}
    points = len(p.cases) * len(p.t_ms)
    point_conf = 1 - (1 - conf) / points  # Bonferroni: every point's interval at once
    for name, case in p.cases.items():
        if stop():
            break
        pairs = wars_run(p, case, p.seed + 2)
        model = wars(3, 1, 1, case.w_mean_ms, case.ars_mean_ms, p.t_ms, p.wars_trials, p.seed)
        meas, worst = [], []
        for t, pred in zip(p.t_ms, model):
            got = [ok for tt, ok in pairs if tt == t]
            k = sum(got)
            t_lo, t_hi = binomial_interval(k, len(got), point_conf)
            meas.append(k / len(got))
            rows.append({"part": "t-visibility", "case": name, "t_ms": t, "reads": len(got), "ours": k / len(got),
                         "ci_lo": t_lo, "ci_hi": t_hi, "wars": pred})
            worst.append((t_lo <= pred <= t_hi, t, k / len(got), pred))
        curves[name] = (meas, model)
        inside = sum(w[0] for w in worst)
        far = max(worst, key=lambda w: abs(w[2] - w[3]))
        claims.append(claim(f"t-visibility, N=3, R=W=1 (expanding), {name}: the store matches the WARS model",
                            "WARS prediction", f"{SOURCE}, Sec. 5 (WARS)",
                            f"{inside}/{len(worst)} t inside; largest gap at t={far[1]:g} ms: {far[2]:.3f} vs "
                            f"WARS {far[3]:.3f}", inside == len(worst),
                            "the model's value inside the measured interval at every t",
                            f"exact binomial intervals, Bonferroni over {points} points at {conf:.0%} family-wise"))
        findings.setdefault("t_visibility", {})[name] = {"t_ms": p.t_ms, "measured": meas, "wars": model}

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax = axes[0]
    for name, (meas, model) in curves.items():
        line = ax.plot(p.t_ms, model, lw=1.2, label=f"WARS model, {name}")[0]
        ax.plot(p.t_ms, meas, "o", color=line.get_color(), ms=4, label=f"store, {name}")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("t: ms after the write committed that the read starts")
    ax.set_ylabel("P(read returns the write)")
    ax.set_title("t-visibility, N=3, R=W=1, expanding", fontsize=10, loc="left")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax = axes[1]
    ks = sorted(findings["k_staleness"])
    ax.plot(ks, [1 - ps3 ** k for k in ks], lw=1.2, label="1 - p_s^k (closed form)")
    ax.errorbar(ks, [findings["k_staleness"][k]["p"] for k in ks],
                yerr=[[findings["k_staleness"][k]["p"] - findings["k_staleness"][k]["ci"][0] for k in ks],
                      [findings["k_staleness"][k]["ci"][1] - findings["k_staleness"][k]["p"] for k in ks]],
                fmt="o", capsize=3, label=f"store ({conf:.0%} CI)")
    ax.set_xlabel("k")
    ax.set_ylabel("P(read returns one of the last k versions)")
    ax.set_title(f"k-staleness, N=3, R=W=1, non-expanding (p_s = {findings['ps_n3']['p']:.3f})", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png = save_figure(fig, out / "pbs.png")

    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = ["p_s (non-expanding), formula C(N-W,R)/C(N,R):"]
    lines += [f"  {r['case']:>28}: {r['stale']}/{r['reads']} stale = {fmt(r['ours'])}, CI [{fmt(r['ci_lo'])}, "
              f"{fmt(r['ci_hi'])}], formula {fmt(r['paper'])}" for r in rows if r["part"] == "p_s"]
    lines.append("k-staleness, N=3, R=W=1: P(one of the last k versions)")
    lines += [f"  {r['case']:>5}: {fmt(r['ours'])} CI [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}], 1-p_s^k "
              f"{fmt(r['formula'])}, paper {r['paper']}" for r in rows if r["part"] == "k-staleness"]
    lines.append("t-visibility, N=3, R=W=1, expanding: measured (CI) vs WARS")
    lines += [f"  {r['case']:>15} t={r['t_ms']:>4g} ms: {r['ours']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}] "
              f"vs {r['wars']:.3f}" for r in rows if r["part"] == "t-visibility"]
    return {"table": rows, "summary": "\n".join(lines), "findings": findings, "plots": [png], "claims": claims}
