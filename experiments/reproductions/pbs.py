"""PBS: t-visibility of an eventually consistent store under different latency distributions.

Reproduces the t-visibility curves of P. Bailis, S. Venkataraman, M. J. Franklin, J. M. Hellerstein
and I. Stoica, "Probabilistically Bounded Staleness for Practical Partial Quorums", VLDB 2012
(Figure 5 style: the probability that a read started t ms after a write completed returns that
write or a newer one, for N = 3, R = W = 1, one curve per latency distribution). The paper's
claim: partial quorums are often consistent within tens of milliseconds, and how fast depends on
the tail of the write-propagation latency.

Here the curves are *measured*, not predicted with the paper's WARS Monte-Carlo model: the
eventually consistent store (``agents/protocols/eventual.py``: a write is applied at the
client's replica and acknowledged at once, W = 1; it is broadcast to the other replicas, and
anti-entropy gossip repairs what is missed; a read answers from the local replica, R = 1) runs on
``nodes`` replicas with one client each, without faults, and ``metrics.staleness`` computes
t-visibility from the recorded history in true time (all pairs of an ok write and a later ok read,
binned by the lag). Clocks are exact (no offset or drift) so that last-writer-wins orders writes
as they happened and only propagation latency makes reads stale, as in the paper's model. The
latency distributions are the sim's, chosen to resemble the paper's shapes (a fast LAN, slower
exponential, a lognormal, and a heavy-tailed Pareto "WAN"), not its measured LinkedIn/Yammer
traces; the one-way message latency plays the role of the paper's W (write propagation).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from envs.world.config import Latency


def _default_latencies() -> dict[str, Latency]:
    return {"exponential 1ms": Latency(dist="exponential", mean=1.0),
            "exponential 10ms": Latency(dist="exponential", mean=10.0),
            "lognormal 5ms": Latency(dist="lognormal", median=5.0, sigma=1.0),
            "pareto 10ms a=1.5": Latency(dist="pareto", scale=10.0, alpha=1.5)}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latencies: dict[str, Latency] = Field(default_factory=_default_latencies,
                                          description="name -> one-way latency distribution")
    edges_ms: list[float] = Field(default_factory=lambda: [0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150,
                                                           200, 300, 500],
                                  description="t-visibility bins [edges[i], edges[i+1])")
    nodes: int = Field(3, ge=2, description="replicas (N)")
    duration_ms: float = Field(20_000.0, gt=0)
    think_ms: float = Field(10.0, ge=0)
    gossip_ms: float = Field(100.0, gt=0, description="anti-entropy period")
    trials: int = Field(2, ge=1, description="seeds per distribution (pairs are pooled)")
    tens_of_ms: float = Field(100.0, gt=0, description="claims: what 'within tens of ms' allows")
    seed: int = 0


def measure(p: Params, latency: Latency, seed: int) -> dict:
    """One run: ``metrics.staleness`` of the store's history under ``latency``."""
    from agents.protocols import eventual
    from envs.world.build import build_sim
    from envs.world.config import ScenarioConfig
    from metrics.staleness import staleness

    scn = ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=p.nodes, duration_ms=p.duration_ms, network=dict(latency=latency.model_dump()),
                              clocks=dict(max_offset_ms=0, max_drift=0)),
        workload=dict(clients=p.nodes, ops={"read": 0.5, "write": 0.5}, think_ms=p.think_ms, timeout_ms=1000)))
    sim = build_sim(scn, eventual.NODE, eventual.Params(gossip_ms=p.gossip_ms, broadcast_writes=True),
                    full_trace=False)
    sim.run(until=p.duration_ms)
    return staleness(sim.history, edges=p.edges_ms)


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure

    nb = len(p.edges_ms) - 1
    curves: dict[str, list] = {}
    rows = []
    for name, lat in p.latencies.items():
        seen, pairs, stale, reads = [0.0] * nb, [0] * nb, 0, 0
        for k in range(p.trials):
            if stop():
                break
            st = measure(p, lat, p.seed * 1000 + k)
            tv = st["t_visibility"]
            for i in range(nb):
                if tv["p"][i] is not None:
                    seen[i] += tv["p"][i] * tv["pairs"][i]
                    pairs[i] += tv["pairs"][i]
            stale += st["stale_reads"]
            reads += st["reads"]
        if not reads:
            break
        probs = [s / n if n else None for s, n in zip(seen, pairs)]
        curves[name] = probs
        for i in range(nb):
            rows.append({"latency": name, "t_lo_ms": p.edges_ms[i], "t_hi_ms": p.edges_ms[i + 1],
                         "p_visible": probs[i], "pairs": pairs[i]})
        rows.append({"latency": name, "t_lo_ms": "all", "t_hi_ms": "all",
                     "p_visible": 1 - stale / reads, "pairs": reads})

    def t_for(probs, target):
        """The smallest bin start from which every bin's probability is >= target."""
        for i in range(nb):
            if all(q is None or q >= target for q in probs[i:]):
                return p.edges_ms[i]
        return None

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for name, probs in curves.items():
        pts = [((p.edges_ms[i] + p.edges_ms[i + 1]) / 2, q) for i, q in enumerate(probs) if q is not None]
        ax.plot([x for x, _ in pts], [q for _, q in pts], marker="o", ms=3, lw=1.4, label=name)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("t: ms after the write completed that the read starts (bin middle)")
    ax.set_ylabel("P(read returns the write or newer)")
    ax.set_title(f"PBS t-visibility, eventual store, N={p.nodes}, R=W=1 (cf. Bailis et al. 2012)",
                 fontsize=10, loc="left")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="one-way latency", title_fontsize=8)
    png = save_figure(fig, out / "pbs.png")

    findings = {name: {"p_first_bin": probs[0], "p_last_bin": next((q for q in reversed(probs) if q is not None), None),
                       "t_99_ms": t_for(probs, 0.99), "curve": probs} for name, probs in curves.items()}
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'latency':>20} {'P(t<1ms)':>9} {'P(5-7ms)':>9} {'P(50-75ms)':>10} {'t(99%)':>7}"]
    i5, i50 = p.edges_ms.index(5) if 5 in p.edges_ms else 0, p.edges_ms.index(50) if 50 in p.edges_ms else 0
    for name, probs in curves.items():
        t99 = findings[name]["t_99_ms"]
        lines.append(f"{name:>20} {fmt(probs[0]):>9} {fmt(probs[i5]):>9} {fmt(probs[i50]):>10} "
                     f"{'-' if t99 is None else f'{t99:g}ms':>7}")
    summary = ("PBS t-visibility of the eventual store (probability that a read started t ms after a write "
               "completed sees it or newer):\n" + "\n".join(lines))
    return {"table": rows, "summary": summary, "findings": findings, "plots": [png],
            "claims": claims_of(p, findings)}


def claims_of(p: Params, findings: dict) -> list[dict]:
    """The paper's qualitative t-visibility claims beside the eventual store's curves."""
    from experiments.reproductions.claims import claim

    src = "Bailis et al. 2012, abstract and Sec. 6"
    out = []
    t99 = {name: f["t_99_ms"] for name, f in findings.items()}
    if t99:
        worst = max((t for t in t99.values() if t is not None), default=None)
        ok = worst is not None and all(t is not None for t in t99.values()) and worst <= p.tens_of_ms
        out.append(claim("partial quorums are often consistent within tens of ms", "tens of ms", src,
                         ", ".join(f"{k}: {'-' if t is None else f'{t:g}'} ms" for k, t in t99.items()), ok,
                         f"t for 99% visibility <= {p.tens_of_ms:g} ms for every distribution",
                         "'tens of ms' read as at most 100 ms"))
    fast = [(name, f["t_99_ms"]) for name, f in findings.items()]
    if len(fast) >= 2:
        (a, ta), (b, tb) = fast[0], fast[1]
        out.append(claim(f"slower write propagation makes staleness last longer ({b} vs {a})", "longer", src,
                         f"t99 {tb} vs {ta} ms", ta is not None and tb is not None and tb > ta, "strictly longer",
                         "the paper's qualitative claim"))
    return out
