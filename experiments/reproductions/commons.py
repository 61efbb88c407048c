"""Social dilemmas on Commons-v0: Schelling diagrams and local- vs global-reward learners.

Two papers' results, measured on Commons-v0's ``dilemma`` variant (``envs/commons.py``: 5
harvesters, 20 s, harvest levels ``[0, 0.25, 0.5, 1, 2]``, logistic regrowth):

1. **Schelling diagrams** -- J. Z. Leibo, V. Zambaldi, M. Lanctot, J. Marecki, T. Graepel,
   "Multi-agent Reinforcement Learning in Sequential Social Dilemmas", AAMAS 2017, Sec. 2 (the
   classes), and the N-player diagrams of E. Hughes et al., "Inequity aversion improves cooperation
   in intertemporal social dilemmas", NeurIPS 2018, Sec. 2 (the dilemma conditions): the payoff of
   a restrained (``agents.scripted.make_restrained``) and of a greedy (``agents.scripted.greedy``)
   agent against the number of restrained others, for each resource regrowth rate in ``growths``,
   over ``schelling_seeds`` episodes; and the game's class at each rate
   (:func:`metrics.alignment.game_class`: Leibo's 2-player classes read off the diagram's ends,
   R = C(N-1), P = D(0), T = D(N-1), S = C(0)). With learned policies too: the diagram whose
   cooperator is the global-reward learner and whose defector is the local-reward learner of the
   same training seed, seat by seat.
2. **Local vs global rewards** -- J. Perolat, J. Z. Leibo, V. Zambaldi, C. Beattie, K. Tuyls,
   T. Graepel, "A multi-agent reinforcement learning model of common-pool resource appropriation",
   NeurIPS 2017 (arXiv 1707.06600), Sec. 3 (the social outcome metrics) and Sec. 4: independent PPO
   learners (one network per agent, ``learner.share: false``) trained ``total_steps`` environment
   steps with local rewards (each its own harvest) and with global rewards (the observer's welfare:
   the mean harvest, minus ``collapse_penalty`` at the step the resource collapses), ``train_seeds``
   seeds each, at regrowth ``train_growth`` (scarce). Efficiency, equality, sustainability and
   peace (``metrics.alignment.social_outcomes``) over training, and on ``eval_episodes`` held-out
   episodes per trained population (greedy actions).

Claims checked (``claims`` in results.json), each an inequality with an interval over seeds:

* at every regrowth rate, greedy pays more than restrained at every count of restrained others
  (a paired percentile-bootstrap interval of D(k) - C(k) over seeds, above 0 at every k);
* at every rate, all restrained pays each agent more than all greedy (R > P, the same kind of
  interval), and the diagram is a social dilemma of a named class;
* where the resource is scarce, local-reward learners deplete the commons more than global-reward
  learners: the held-out sustainability (Perolat's mean time of a harvest; a collapse ends the
  harvests early) of global-reward learners exceeds the local-reward learners' (bootstrap interval
  of the difference over training seeds). Checked only with at least two training seeds; the
  ``--quick`` variant trains one seed for seconds, reports the learned numbers and checks the
  scripted claims only.

What is not reproduced: the papers' gridworlds (Gathering, Harvest, Commons) and their tagging
beam; here the world's crashes and pauses play the beam's part in *peace*, and the resource is one
stock with logistic regrowth known to each agent only through gossip.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MEASURES = ("efficiency", "equality", "sustainability", "peace")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    growths: list[float] = Field(default_factory=lambda: [0.25, 0.5], min_length=1,
                                 description="logistic regrowth rates (per s) of the scripted Schelling diagrams")
    schelling_seeds: int = Field(8, ge=2, description="episodes per mix of the scripted diagrams")
    train_growth: float = Field(0.25, gt=0, description="regrowth rate (per s) the learners train at")
    train_seeds: int = Field(5, ge=1, description="training seeds per reward mode")
    total_steps: int = Field(150_000, ge=1, description="environment steps per training")
    num_envs: int = Field(8, ge=1)
    num_steps: int = Field(128, ge=1)
    lr: float = Field(0.001, gt=0)
    eval_episodes: int = Field(4, ge=1, description="held-out episodes per trained population")
    learned_schelling: bool = Field(True, description="also the Schelling diagram of the learned policies "
                                                      "(6 mixes x eval_episodes episodes)")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap intervals")
    seed: int = 0


def env_params(growth: float, mode: str = "local") -> dict:
    return {"variant": "dilemma", "reward_mode": mode, "protocol_params": {"growth": growth}}


def make_env(growth: float):
    from envs.commons import parallel_raw_env

    return parallel_raw_env(**env_params(growth))


def scripted_diagram(p: Params, growth: float) -> dict:
    """The scripted Schelling diagram at ``growth`` (``agents.scripted.schelling``)."""
    from agents.scripted import greedy, make_restrained, schelling

    seeds = [p.seed * 1000 + k for k in range(p.schelling_seeds)]
    return schelling(lambda: make_env(growth), make_restrained(), greedy, 5, seeds)


def train_population(p: Params, mode: str, seed: int):
    """One population of independent PPO learners (``agents.learn.ppo.train``)."""
    from agents.learn.config import TrainConfig
    from agents.learn.ppo import train

    cfg = TrainConfig.model_validate({
        "seed": seed, "env": {"id": "capgym/Commons-v0", "params": env_params(p.train_growth, mode)},
        "ppo": {"total_steps": p.total_steps, "num_envs": p.num_envs, "num_steps": p.num_steps, "lr": p.lr},
        "learner": {"backend": "local", "share": False, "device": "cpu"}})
    return train(cfg)


def policy_of(trained):
    from agents.learn.checkpoint import Policy

    meta = {"dims": trained.dims, "hidden": trained.cfg.ppo.hidden, "agents": trained.agents,
            "groups": trained.groups, "share": trained.cfg.learner.share, "critic": trained.cfg.learner.critic,
            "env": trained.cfg.env.model_dump(mode="json")}
    return Policy(meta, trained.weights)


def seat_policy(policy, agent: str):
    """``policy`` as the scripted ``(obs, mask) -> action`` of one seat."""
    return lambda obs, mask: policy.act(agent, obs, mask)


def evaluate(p: Params, seats: dict, seeds: list[int]) -> list[dict]:
    """Held-out episodes with ``seats`` (agent -> scripted-style policy): returns and measures."""
    from agents.scripted import run_episode

    out = []
    for s in seeds:
        res = run_episode(make_env(p.train_growth), seats, seed=s)
        g = res["global"]
        out.append({"return": statistics.mean(res["returns"].values()), "collapsed": float(g["collapsed"]),
                    **{k: g[k] for k in MEASURES}})
    return out


def learned_diagram(p: Params, coop, defect, seeds: list[int]) -> dict:
    """The Schelling diagram with learned seats: agents ``0..m-1`` play ``coop``'s network of their
    seat, the rest ``defect``'s (``agents.scripted.schelling``, seat by seat)."""
    from agents.scripted import schelling

    agents = [f"node_{i}" for i in range(5)]
    return schelling(lambda: make_env(p.train_growth), {a: seat_policy(coop, a) for a in agents},
                     {a: seat_policy(defect, a) for a in agents}, 5, seeds)


def curve(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        if key in r:
            xs.append(r["env_steps"])
            ys.append(r[key])
    return xs, ys


def run(p: Params, out: Path, stop=lambda: False) -> dict:
    from experiments.plots import pyplot, save_figure
    from metrics.alignment import game_class

    rows, findings = [], {"scripted": {}, "learned": {}}
    diagrams = {}
    for g in p.growths:
        if stop():
            break
        d = scripted_diagram(p, g)
        cls = game_class(d["cooperator"], d["defector"])
        diagrams[g] = d
        findings["scripted"][g] = {"cooperator": d["cooperator"], "defector": d["defector"], "total": d["total"],
                                   "class": cls["class"], "dilemma": cls["dilemma"],
                                   "greed_everywhere": cls["greed_everywhere"],
                                   "cooperation_is_best": cls["cooperation_is_best"]}
        rows.append({"part": "schelling", "case": f"scripted, growth {g}", "growth": g,
                     "C": [round(x, 3) for x in d["cooperator"]], "D": [round(x, 3) for x in d["defector"]],
                     "class": cls["class"]})

    trained: dict[str, list] = {"local": [], "global": []}
    evals: dict[str, list] = {"local": [], "global": []}
    eval_seeds = [10_000 + p.seed * 1000 + k for k in range(p.eval_episodes)]
    for k in range(p.train_seeds):
        for mode in ("local", "global"):
            if stop():
                break
            t = train_population(p, mode, p.seed * 1000 + k)
            pol = policy_of(t)
            ev = evaluate(p, {a: seat_policy(pol, a) for a in t.agents}, eval_seeds)
            trained[mode].append((t, pol))
            evals[mode].append({m: statistics.mean(e[m] for e in ev) for m in ("return", "collapsed", *MEASURES)})
    for mode in ("local", "global"):
        if evals[mode]:
            agg = {m: statistics.mean(e[m] for e in evals[mode]) for m in ("return", "collapsed", *MEASURES)}
            findings["learned"][mode] = {"per_seed": evals[mode], "mean": agg,
                                         "seconds": sum(t.seconds for t, _ in trained[mode]),
                                         "env_steps": sum(t.env_steps for t, _ in trained[mode])}
            rows.append({"part": "learned", "case": f"PPO {mode} reward, growth {p.train_growth}",
                         "seeds": len(evals[mode]), **{m: round(v, 4) for m, v in agg.items()}})
    learned = None
    pairs = list(zip(trained["global"], trained["local"]))
    if pairs and p.learned_schelling and not stop():
        (_, coop), (_, defect) = pairs[0]
        learned = learned_diagram(p, coop, defect, eval_seeds)
        cls = game_class(learned["cooperator"], learned["defector"])
        findings["learned_schelling"] = {"cooperator": learned["cooperator"], "defector": learned["defector"],
                                         "total": learned["total"], "class": cls["class"], "dilemma": cls["dilemma"],
                                         "greed_everywhere": cls["greed_everywhere"]}
        rows.append({"part": "schelling", "case": f"learned (global vs local), growth {p.train_growth}",
                     "growth": p.train_growth, "C": [round(x, 3) for x in learned["cooperator"]],
                     "D": [round(x, 3) for x in learned["defector"]], "class": cls["class"]})

    plots = [plot_schelling(p, diagrams, learned, out, pyplot, save_figure)]
    if any(trained.values()):
        plots.append(plot_training(trained, out, pyplot, save_figure))
    return {"table": rows, "summary": summary(p, findings), "findings": findings, "plots": plots,
            "claims": claims_of(p, findings, diagrams, evals)}


def plot_schelling(p, diagrams, learned, out, pyplot, save_figure) -> Path:
    plt = pyplot()
    panels = list(diagrams.items()) + ([("learned", learned)] if learned else [])
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6),
                             layout="constrained", squeeze=False)
    for ax, (g, d) in zip(axes[0], panels):
        ks = range(len(d["cooperator"]))
        ax.plot(ks, d["cooperator"], "o-", label="restrained (C)" if g != "learned" else "global-reward PPO (C)")
        ax.plot(ks, d["defector"], "s--", label="greedy (D)" if g != "learned" else "local-reward PPO (D)")
        title = f"scripted, growth {g}" if g != "learned" else f"learned, growth {p.train_growth}"
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("number of other restrained agents")
        ax.set_ylabel("return per agent (20 s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out / "commons.png")


def plot_training(trained, out, pyplot, save_figure) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(15, 3.4), layout="constrained")
    for ax, m in zip(axes, MEASURES):
        for mode, runs in trained.items():
            for i, (t, _) in enumerate(runs):
                xs, ys = curve(t.rows, f"global/{m}")
                ax.plot(xs, ys, color="C0" if mode == "local" else "C1", alpha=0.7,
                        label=f"{mode} reward" if i == 0 else None)
        ax.set_title(m, fontsize=10, loc="left")
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, out / "training.png")


def summary(p: Params, f: dict) -> str:
    lines = ["Schelling diagrams (C(k) restrained / D(k) greedy return, k = other restrained agents):"]
    for g, d in f["scripted"].items():
        lines.append(f"  growth {g}: C {', '.join(f'{x:.2f}' for x in d['cooperator'])}; "
                     f"D {', '.join(f'{x:.2f}' for x in d['defector'])}; class {d['class']}")
    if "learned_schelling" in f:
        d = f["learned_schelling"]
        lines.append(f"  learned, growth {p.train_growth} (C global-reward PPO, D local-reward PPO): "
                     f"C {', '.join(f'{x:.2f}' for x in d['cooperator'])}; "
                     f"D {', '.join(f'{x:.2f}' for x in d['defector'])}; class {d['class']}")
    if f["learned"]:
        lines.append(f"Independent PPO at growth {p.train_growth}, held-out episodes (mean over training seeds):")
        for mode, r in f["learned"].items():
            a = r["mean"]
            lines.append(f"  {mode:>6} reward ({len(r['per_seed'])} seeds, {r['env_steps']} steps, "
                         f"{r['seconds']:.0f} s): return {a['return']:.2f}, collapsed {a['collapsed']:.2f}, "
                         + ", ".join(f"{m} {a[m]:.3f}" for m in MEASURES))
    return "\n".join(lines)


def paired(d: dict, n: int = 5) -> tuple[list[list[float]], list[float]]:
    """Per seed: D(k) - C(k) for each k, and C(n-1) - D(0) (all restrained minus all greedy)."""
    ps = d["per_seed"]
    seeds = range(len(ps[0]))
    gaps = [[ps[k][s][1] - ps[k + 1][s][0] for s in seeds] for k in range(n)]
    rp = [ps[n][s][0] - ps[0][s][1] for s in seeds]
    return gaps, rp


def claims_of(p: Params, f: dict, diagrams: dict, evals: dict) -> list[dict]:
    from experiments.reproductions.claims import bootstrap_difference, bootstrap_interval, claim, interval

    out = []
    leibo = "Leibo et al. 2017, Sec. 2; Hughes et al. 2018, Sec. 2 (N-player Schelling diagrams)"
    basis = f"paired percentile bootstrap over {p.schelling_seeds} seeds at {p.confidence:.0%}"
    for g, d in diagrams.items():
        gaps, rp = paired(d)
        ints = [bootstrap_interval(x, statistics.mean, p.confidence, seed=p.seed + k) for k, x in enumerate(gaps)]
        low = min(lo for lo, _ in ints)
        out.append(claim(f"growth {g}: greedy pays more than restrained at every count of restrained others",
                         "D(k) > C(k) for every k", leibo,
                         "D-C lower bounds " + ", ".join(f"{lo:.2f}" for lo, _ in ints),
                         low > 0, "every interval above 0", basis))
        lo, hi = bootstrap_interval(rp, statistics.mean, p.confidence, seed=p.seed)
        out.append(claim(f"growth {g}: all restrained pays each agent more than all greedy (R > P)", "R > P", leibo,
                         f"R - P = {statistics.mean(rp):.2f}, {interval(lo, hi)}", lo > 0, "interval above 0",
                         basis))
        cls = f["scripted"][g]["class"]
        out.append(claim(f"growth {g}: the game is a social dilemma of a named class", "PD, Chicken or Stag Hunt",
                         leibo, cls or "not a dilemma", cls is not None,
                         "Hughes's dilemma conditions and one of Leibo's classes, on the mean diagram",
                         "exact (the classes are orderings of the mean payoffs)"))
    loc = [e["sustainability"] for e in evals["local"]]
    glo = [e["sustainability"] for e in evals["global"]]
    if len(loc) >= 2 and len(glo) >= 2:
        lo, hi = bootstrap_difference(loc, glo, p.confidence, seed=p.seed)
        d = statistics.mean(glo) - statistics.mean(loc)
        out.append(claim(f"growth {p.train_growth} (scarce): local-reward learners deplete the commons more than "
                         "global-reward learners (sustainability, global minus local)", "global > local",
                         "Perolat et al. 2017, Sec. 3-4", f"{d:.2f}, {interval(lo, hi)}", lo > 0,
                         "interval above 0",
                         f"percentile bootstrap over {len(loc)} training seeds at {p.confidence:.0%}"))
    return out
