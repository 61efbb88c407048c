"""CAP as curves: availability and linearizability against the fraction of time partitioned.

The CAP theorem (E. Brewer, PODC 2000 keynote; S. Gilbert and N. Lynch, "Brewer's Conjecture and
the Feasibility of Consistent, Available, Partition-Tolerant Web Services", SIGACT News 2002): a
replicated register cannot be both available and linearizable (atomic) while the network is
partitioned. Gilbert and Lynch prove it; this reproduction measures the trade-off as curves for
two protocols of ``agents/protocols``:

* ``abd`` (Attiya, Bar-Noy, Dolev 1995; majority quorums) chooses C: every history is
  linearizable, and its availability (the fraction of client operations answered ``ok``) falls as
  partitions last longer, because clients on the minority side get no answer;
* ``eventual`` (last-writer-wins with gossip) chooses A: availability stays 1 however long the
  partitions, and its histories are not linearizable (stale reads).

Setup: ``nodes`` nodes, one closed-loop client per node on one register (half reads, half
writes, timeout ``timeout_ms``). Every ``period_ms`` a new random minority/majority split (the
minority holding ``nodes // 2`` random nodes) stands for ``fraction x period_ms``, then heals.
Measures come from ``experiments.runner.summarize`` (the same observer as ``capgym run``):
linearizability (Wing-Gong-Lowe search; a stale read is itself a proof of a violation) and the
stale-read rate; availability is per node (the mean over nodes of the ok fraction of the
operations sent to it; the operation-weighted ok fraction is in the table too). Averages over
``seeds``; the x axis is the partitioned fraction measured from the trace. This is a measurement,
not the papers' proof; the figure is ours (the papers have none).

Claims checked (``claims`` in results.json): the theorem itself -- no protocol is, at any
partitioned fraction whose splits outlast the client timeout (a shorter split is only a delay that
ABD waits out), both available (availability >= ``available_at``) and atomic (every
seed's history linearizable); ABD is atomic at every fraction (Attiya et al. 1995) and pays for it
in availability at the longest partitions; the eventual store stays available at every fraction.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocols: list[str] = Field(default_factory=lambda: ["abd", "eventual"])
    fractions: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                   description="fraction of each period the network is split")
    seeds: int = Field(3, ge=1)
    nodes: int = Field(5, ge=3)
    duration_ms: float = Field(4000.0, gt=0)
    period_ms: float = Field(1000.0, gt=0)
    timeout_ms: float = Field(300.0, gt=0, description="client timeout")
    available_at: float = Field(0.99, gt=0, le=1, description="claims: availability that counts as available")
    seed: int = 0


def config(p: Params, protocol: str, fraction: float, seed: int):
    """The run config (validated as ``capgym run`` validates one) of one point."""
    from envs.world.rng import derive_rng
    from experiments.config import validate

    rng = derive_rng(seed, "cap-splits")
    schedule = []
    k = 0
    while fraction > 0 and k * p.period_ms < p.duration_ms:
        minority = sorted(rng.sample(range(p.nodes), p.nodes // 2))
        majority = [i for i in range(p.nodes) if i not in minority]
        at = k * p.period_ms
        schedule.append({"at_ms": at, "fault": "partition", "groups": [majority, minority]})
        if fraction < 1:
            schedule.append({"at_ms": at + fraction * p.period_ms, "fault": "heal"})
        k += 1
    return validate({
        "experiment": "reproduce-cap", "seed": seed, "protocol": {"name": protocol},
        "world": {"nodes": p.nodes, "duration_ms": p.duration_ms,
                  "network": {"latency": {"dist": "exponential", "mean": 5, "min": 1}}},
        "nemesis": {"schedule": schedule},
        "workload": {"clients": p.nodes, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 20,
                     "timeout_ms": p.timeout_ms},
        "wandb": {"mode": "disabled"},
    })


def per_node_availability(history) -> float | None:
    """Gilbert and Lynch's availability, per node: the mean over nodes of the fraction of the client
    operations sent to that node that were answered ``ok`` (an operation-weighted ok fraction would
    hide a blocked minority: its clients, waiting out their timeouts, issue few operations)."""
    from envs.world.records import OK

    per: dict[int, list[bool]] = {}
    for op in history:
        per.setdefault(op.node, []).append(op.status == OK)
    return sum(sum(v) / len(v) for v in per.values()) / len(per) if per else None


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments import runner
    from experiments.plots import pyplot, save_figure
    from experiments.sweep import mean_std

    runs = []
    for protocol in p.protocols:
        for f in p.fractions:
            for k in range(p.seeds):
                if stop():
                    break
                cfg = config(p, protocol, f, p.seed * 1000 + k)
                d = runner.simulate(cfg, cfg.protocol, stop, progress=False)
                s = runner.summarize(d.history, d.events, d.sim_ms, cfg.protocol, d.interrupted)
                runs.append({"protocol": protocol, "fraction": f, "seed": cfg.seed,
                             "partitioned": s["partitioned_ms"] / d.sim_ms if d.sim_ms else 0.0,
                             "availability": per_node_availability(d.history),
                             "ok_fraction": s["availability"], "linearizable": s["linearizable"],
                             "stale_read_rate": s["stale_read_rate"], "ops": s["ops"]})
    rows = []
    for protocol in p.protocols:
        for f in p.fractions:
            rs = [r for r in runs if r["protocol"] == protocol and r["fraction"] == f]
            if not rs:
                continue
            known = [r["linearizable"] for r in rs if r["linearizable"] is not None]
            av, av_sd = mean_std([r["availability"] for r in rs])
            rows.append({"protocol": protocol, "fraction": f, "seeds": len(rs),
                         "partitioned": mean_std([r["partitioned"] for r in rs])[0],
                         "availability": av, "availability_std": av_sd,
                         "ok_fraction": mean_std([r["ok_fraction"] for r in rs])[0],
                         "linearizable_fraction": sum(known) / len(known) if known else None,
                         "stale_read_rate": mean_std([r["stale_read_rate"] for r in rs])[0],
                         "ops": mean_std([r["ops"] for r in rs])[0]})

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for protocol in p.protocols:
        rs = [r for r in rows if r["protocol"] == protocol]
        xs = [r["partitioned"] for r in rs]
        axes[0].errorbar(xs, [r["availability"] for r in rs], yerr=[r["availability_std"] for r in rs],
                         marker="o", capsize=3, label=protocol)
        axes[1].plot(xs, [r["linearizable_fraction"] for r in rs], marker="o", label=protocol)
    for ax, title in ((axes[0], "availability (per node ok fraction)"), (axes[1], "linearizable (fraction of runs)")):
        ax.set_xlabel("fraction of time partitioned")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("CAP: a partitioned register is either available or linearizable", fontsize=10)
    png = save_figure(fig, out / "cap.png")

    def series(protocol, key):
        return [r[key] for r in rows if r["protocol"] == protocol]

    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'protocol':>9} {'split':>6} {'partitioned':>11} {'availability':>12} {'ok fraction':>11} "
             f"{'linearizable':>12} {'stale reads':>11}"]
    lines += [f"{r['protocol']:>9} {r['fraction']:>6.2f} {fmt(r['partitioned']):>11} {fmt(r['availability']):>12} "
              f"{fmt(r['ok_fraction']):>11} {fmt(r['linearizable_fraction']):>12} {fmt(r['stale_read_rate']):>11}"
              for r in rows]
    findings = {p_: {"fraction": series(p_, "fraction"), "availability": series(p_, "availability"),
                     "linearizable_fraction": series(p_, "linearizable_fraction")} for p_ in p.protocols}
    summary = ("CAP as curves (mean over seeds; linearizable = fraction of runs whose history is "
               "linearizable):\n" + "\n".join(lines))
    return {"table": rows, "summary": summary, "findings": findings, "plots": [png], "claims": claims_of(p, rows)}


def claims_of(p: Params, rows: list[dict]) -> list[dict]:
    """Gilbert & Lynch's theorem and each protocol's side of it, as claims (module docstring)."""
    from experiments.reproductions.claims import claim

    gl = "Gilbert & Lynch 2002, Theorem 1"
    a = p.available_at
    # the theorem is about partitions that outlast the client's patience: a shorter one is a delay
    # that a consistent register can wait out (ABD answers after the heal, within the timeout)
    long = [r for r in rows if r["fraction"] * p.period_ms > p.timeout_ms]
    both = [f"{r['protocol']}@{r['fraction']:g}" for r in long
            if (r["availability"] or 0) >= a and r["linearizable_fraction"] == 1.0]
    out = [claim("no register is both available and atomic while partitioned", "impossible", gl,
                 f"{len(both)} of {len(long)} points both{': ' + ', '.join(both) if both else ''}",
                 bool(long) and not both,
                 f"no point whose splits outlast the client timeout (fraction x {p.period_ms:g} ms > "
                 f"{p.timeout_ms:g} ms) with availability >= {a:g} and every run linearizable",
                 "the theorem, exact")]
    abd = [r for r in rows if r["protocol"] == "abd"]
    if abd:
        lin = min(r["linearizable_fraction"] for r in abd)
        out.append(claim("ABD is atomic at every partitioned fraction", "atomic",
                         "Attiya, Bar-Noy & Dolev 1995 (the emulation is atomic)",
                         f"{lin:.2f} of runs linearizable (min)", lin == 1.0, "every run linearizable",
                         "exact: one violation refutes it"))
        last = abd[-1]
        out.append(claim(f"ABD (consistent) gives up availability when partitioned (fraction {last['fraction']:g})",
                         "not available", gl, last["availability"], last["availability"] < a,
                         f"availability < {a:g}", "the threshold that counts as available"))
    ev = [r for r in rows if r["protocol"] == "eventual"]
    if ev:
        low = min(r["availability"] for r in ev)
        out.append(claim("the eventual store (available) answers at every partitioned fraction", "available", gl,
                         low, low >= a, f"availability >= {a:g} at every fraction (min shown)",
                         "the threshold that counts as available (client timeouts aside)"))
    return out
