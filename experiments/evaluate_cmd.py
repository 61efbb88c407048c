"""``capgym evaluate CHECKPOINT_DIR_OR_RUN [--seeds ...] [key.sub=value ...]``: run trained agents on
held-out seeds (and, with overrides, other fault schedules) and write a summary like ``capgym run``'s.

Seeds default to ``EVAL_SEED_BASE + i`` (never used in training, whose episodes draw seeds from
``seed * 1_000_003``). Overrides apply to the training config's environment, e.g.
``env.params.faults=true`` (random nemesis) or ``env.params.nemesis.schedule.0.shape=halves``.
The observer checks linearizability on every evaluation episode (Register-v0).

The folder ``results/<experiment>/<time>-<id>/`` gets ``config.yaml``, ``status.json``,
``summary.json`` (``runs``: measures per policy; ``table``: one row per policy), ``metrics.csv``
(one row per episode) and ``plots/compare.png``; ``--baselines`` adds scripted policies under the same
seeds: random and textbook for every game, Register-v0's always-local and always-quorum,
Election-v0's eager (shortest timeout, always stand) and shirker (longest, never stand), and
Commons-v0's greedy and restrained (``agents.scripted.SCRIPTED``).

``--focal K --background POLICY`` (or ``--focal-nodes 0,3``) evaluates focal agents among
background agents, as Melting Pot does: see ``FOCAL_HELP`` below and ``agents/population.py``.
``--runtime live`` plays the same seats as live Ray actors on the same scenarios and fault
schedules, ``--compare-runtimes`` both, side by side (``experiments/evaluate_live.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.cli import UserError

EVAL_SEED_BASE = 900_000_000

EXAMPLES = """examples:
  capgym evaluate results/train-register/<run>/
  capgym evaluate results/train-register/<run>/ --focal 1 --background textbook
  capgym evaluate results/train-register/<run>/ --focal-nodes 0,3 --background results/train-register/<other>/
  capgym evaluate results/train-register/<run>/checkpoint --seeds 1 2 3 --baselines
  capgym evaluate results/train-register/<run>/ env.params.faults=true --episodes 20
  capgym evaluate results/train-register/<run>/ --runtime live
  capgym evaluate results/train-register/<run>/ --compare-runtimes --baselines
"""


def env_spec(meta_env: dict, overrides=()) -> dict:
    """The training environment with evaluation overrides (``env.params.x=v`` or ``params.x=v``)."""
    from experiments.config import apply_override, parse_override

    data = {"env": {"id": meta_env["id"], "params": dict(meta_env.get("params", {}))}}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] != "env":
            parts = ["env", *parts]
        apply_override(data, parts, value)
    return data["env"]


def make_eval_env(spec: dict, check: bool = True):
    from pydantic import ValidationError

    from agents.learn.config import EnvSpec, make_env

    try:
        es = EnvSpec(**spec)
        env = make_env(es)
        if check and "check_linearizability" in type(env.cfg).model_fields:
            env = make_env(es, check_linearizability=True)
        return env
    except (ValueError, TypeError, KeyError, ValidationError) as e:
        raise UserError(f"env: {str(e).splitlines()[0]}") from None


def play(env, choose, seed: int) -> dict:
    """One episode of the Parallel ``env`` with ``choose(agent, obs, mask) -> action``."""
    obs, _ = env.reset(seed=seed)
    owner = getattr(choose, "__self__", None)
    if hasattr(owner, "reset"):  # a recurrent policy (agents.learn.checkpoint.Policy) starts afresh
        owner.reset()
    returns = dict.fromkeys(env.possible_agents, 0.0)
    steps = 0
    while env.agents:
        acts = {a: choose(a, obs[a]["observation"], obs[a]["action_mask"]) for a in env.agents}
        obs, rew, _t, _tr, _i = env.step(acts)
        for a, r in rew.items():
            returns[a] += r
        steps += 1
    return {"seed": seed, "returns": returns, "steps": steps, "global": env.global_measures()}


def aggregate(episodes: list[dict]) -> dict:
    """Mean figures over episodes: returns per agent, mean return, the observer's measures."""
    from agents.learn.runner import numeric_measures

    agents = list(episodes[0]["returns"])
    if any(r is None for e in episodes for r in e["returns"].values()):  # not measured (a live run's sim-only)
        out: dict = {"episodes": len(episodes), "return_mean": None, "returns": dict.fromkeys(agents)}
    else:
        R = np.array([[e["returns"][a] for a in agents] for e in episodes])
        out = {"episodes": len(episodes), "return_mean": float(R.mean()),
               "returns": {a: float(R[:, i].mean()) for i, a in enumerate(agents)}}
    ms = [numeric_measures(e["global"]) for e in episodes]
    for k in sorted({k for m in ms for k in m}):
        out[k] = float(np.mean([m[k] for m in ms if k in m]))
    # over the episodes with a verdict: an unknown one (the checker's budget ran out) is neither
    lin = [v for e in episodes if isinstance(v := e["global"].get("linearizable"), bool)]
    out["linearizable_fraction"] = float(np.mean(lin)) if lin else None
    ws = [e.get("welfare", np.nan) for e in episodes]
    out["welfare"] = None if any(w is None for w in ws) else float(np.mean(ws))
    return out


def global_welfare(env, ep: dict) -> float:
    """The observer's welfare of a finished episode (the env's ``global`` reward, summed): computed
    from the episode object kept by the environment."""
    e = env.episode
    return float(e.welfare) if e is not None else float("nan")


def evaluate(policies: dict, spec: dict, seeds: list[int]) -> dict[str, list[dict]]:
    """Every policy (label -> ``choose``) on every seed of the environment ``spec``."""
    env = make_eval_env(spec)
    out: dict[str, list[dict]] = {}
    for label, choose in policies.items():
        eps = []
        for s in seeds:
            ep = play(env, choose, s)
            ep["welfare"] = global_welfare(env, ep)
            eps.append(ep)
        out[label] = eps
    return out


def baselines(env_id: str, seed: int = 0) -> dict:
    """The scripted policies played beside a trained one: ``random`` and ``textbook`` (the
    protocol's own choice) for every game, and each game's scripted policies
    (``agents.scripted.SCRIPTED``; all but ``always_refuse``, which answers nothing)."""
    from agents import scripted

    def choose(policy):
        return lambda a, o, m: policy(o, m)

    return {name: choose(scripted.make_scripted(name, env_id, seed))
            for name in scripted.scripted_names(env_id) if name != "always_refuse"}


def table_row(label: str, agg: dict) -> dict:
    """A row in ``capgym run``'s table shape (``experiments.plots.compare`` draws it)."""
    ops = agg.get("ops") or 0
    lf = agg.get("linearizable_fraction")
    return {"protocol": label, "return_mean": agg["return_mean"], "welfare": agg.get("welfare"),
            "availability": agg.get("availability"), "stale_read_rate": agg.get("stale_fraction"),
            "messages_per_op": (agg.get("messages", 0) / ops) if ops else None,
            "linearizable": None if lf is None else (True if lf == 1.0 else False if lf == 0.0 else None),
            "linearizability_verdict": ("not_applicable" if lf is None else "linearizable" if lf == 1.0
                                        else "not_linearizable" if lf == 0.0 else None),
            "linearizable_fraction": lf}


def write_evaluation(run_dir: Path, results_by: dict[str, list[dict]], extra: dict, plots: bool = True) -> dict:
    from experiments import plots as P
    from experiments import results

    runs = {label: aggregate(eps) for label, eps in results_by.items()}
    summary = {**extra, "runs": runs, "table": [table_row(k, v) for k, v in runs.items()]}
    results.write_json(run_dir / "summary.json", summary)
    rows = []
    for label, eps in results_by.items():
        for e in eps:
            from agents.learn.runner import numeric_measures

            rows.append({"policy": label, "seed": e["seed"], "steps": e["steps"], "welfare": e["welfare"],
                         **{f"return/{a}": r for a, r in e["returns"].items()},
                         **{f"global/{k}": v for k, v in numeric_measures(e["global"]).items()},
                         "linearizable": e["global"].get("linearizable")})
    from experiments.train_cmd import table_rows

    results.write_csv(run_dir / "metrics.csv", table_rows(rows))
    if plots and "availability" in next(iter(runs.values())):
        (run_dir / "plots").mkdir(exist_ok=True)
        P.compare(run_dir / "plots" / "compare.png", summary["table"])
    return summary


def format_table(rows: list[dict]) -> str:
    cols = ["protocol", "return_mean", "welfare", "availability", "stale_read_rate", "linearizable_fraction"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["  ".join(f"{c:>14}" for c in cols)]
    lines += ["  ".join(f"{fmt(r.get(c)):>14}" for c in cols) for r in rows]
    return "\n".join(lines)


def focal_seats(args: argparse.Namespace, n: int) -> list[int] | None:
    """The focal seats (node indices) from ``--focal K`` (the first K) or ``--focal-nodes 0,3``;
    ``None`` when neither is given."""
    if args.focal is None and args.focal_nodes is None:
        if args.background is not None:
            raise UserError("--background: needs --focal K or --focal-nodes LIST")
        return None
    if args.focal is not None and args.focal_nodes is not None:
        raise UserError("--focal-nodes: give --focal K or --focal-nodes LIST, not both")
    if args.focal is not None:
        if not 1 <= args.focal <= n:
            raise UserError(f"--focal: must be between 1 and the game's {n} agents, not {args.focal}")
        return list(range(args.focal))
    try:
        seats = [int(x) for x in args.focal_nodes.split(",")]
    except ValueError:
        raise UserError(f"--focal-nodes: comma-separated node indices like 0,3, not {args.focal_nodes!r}") from None
    bad = [k for k in seats if not 0 <= k < n]
    if bad:
        raise UserError(f"--focal-nodes: node {bad[0]} does not exist (the game has nodes 0..{n - 1})")
    if len(set(seats)) != len(seats):
        raise UserError(f"--focal-nodes: a node is named twice in {args.focal_nodes!r}")
    return sorted(seats)


def background_seat(text: str, meta: dict, greedy: bool):
    """``--background``: a scripted policy by name (``agents.scripted.SCRIPTED``) or, when ``text``
    is an existing path, another run's checkpoint trained on the same game with the same agents."""
    from agents import population
    from agents.learn import checkpoint

    env_id = meta["env"]["id"]
    if Path(text).exists():
        try:
            bmeta, bweights = checkpoint.load(text)
        except FileNotFoundError as e:
            raise UserError(f"--background: {e}") from None
        if bmeta["env"]["id"] != env_id or bmeta["agents"] != meta["agents"]:
            raise UserError(f"--background: {text} was trained on {bmeta['env']['id']} with agents "
                            f"{','.join(bmeta['agents'])}, not {env_id} with {','.join(meta['agents'])}")
        return population.Seat("checkpoint", checkpoint.Policy(bmeta, bweights, greedy=greedy, seed=1),
                               str(checkpoint.find(text)))
    try:
        return population.scripted_seat(text, env_id)
    except ValueError as e:
        raise UserError(f"--background: {e}, or a run folder with a checkpoint") from None


def local_returns(ep: dict) -> list | None:
    """Each agent's *local* return in an episode (what its own node earned: the game's ``returns``
    measure), whatever reward mode the environment pays; ``None`` when not measured."""
    r = ep["global"].get("returns", list(ep["returns"].values()))
    return None if r is None or any(x is None for x in r) else list(r)


def focal_summary(results_by: dict[str, list[dict]], focal: list[int], background: str) -> dict:
    """Focal per-capita return (mean over episodes of the focal agents' mean *local* return: what
    their own nodes earned, whatever reward they were trained on), background per-capita return
    (``None`` when every seat is focal), the observer's welfare and measures of the mixed
    population, and its welfare minus the all-background population's."""
    eps = results_by["focal"]
    n = len(eps[0]["returns"])
    bg = [k for k in range(n) if k not in focal]
    rs = [local_returns(e) for e in eps]

    def per(seats):
        if not seats or any(r is None for r in rs):
            return None
        return float(np.mean([np.mean([r[k] for k in seats]) for r in rs]))

    mixed, alone = aggregate(eps), aggregate(results_by["all_background"])
    measures = {k: v for k, v in mixed.items() if k not in ("returns", "episodes")}
    change = None if mixed["welfare"] is None or alone["welfare"] is None else mixed["welfare"] - alone["welfare"]
    return {"nodes": focal, "background": background, "focal_per_capita_return": per(focal),
            "background_per_capita_return": per(bg), "welfare": mixed["welfare"],
            "welfare_all_background": alone["welfare"], "welfare_change": change,
            "measures": measures}


def populations(args: argparse.Namespace, meta: dict, weights: list, spec: dict
                ) -> tuple[dict, list | None, str | None]:
    """``(label -> agents.population.Population, focal seats or None, background name)``: the
    trained agents in every seat (``trained``), or focal among background (``focal``, with the
    ``all_background`` reference), and with ``--baselines`` each scripted policy in every seat."""
    from agents import population, scripted
    from agents.learn import checkpoint

    n = len(meta["agents"])
    pol = checkpoint.Policy(meta, weights, greedy=not args.sample, seed=0)
    mine = population.Seat("checkpoint", pol, str(checkpoint.find(args.path)))
    focal = focal_seats(args, n)
    bg = None
    if focal is None:
        pops = {"trained": population.Population(spec, n, range(n), mine, mine)}
    else:
        bg = background_seat(args.background or "textbook", meta, greedy=not args.sample)
        pops = {"focal": population.Population(spec, n, focal, mine, bg),
                "all_background": population.Population(spec, n, [], mine, bg)}
    if args.baselines:
        for name in scripted.scripted_names(spec["id"]):
            if name != "always_refuse":  # as baselines(): it answers nothing
                seat = population.scripted_seat(name, spec["id"])
                pops[name] = population.Population(spec, n, [], seat, seat)
    return pops, focal, None if bg is None else bg.name


def evaluate_live(pops: dict, spec: dict, seeds: list[int], address: str | None = None) -> dict[str, list[dict]]:
    """Every population on every seed as live Ray actors (``experiments.evaluate_live``); one Ray
    instance for all the runs (started here unless one is up or ``address`` names a cluster)."""
    import ray

    from experiments import evaluate_live
    from experiments.live import _POOL, ensure_ray

    env = make_eval_env(spec)
    started = ensure_ray(address)
    try:
        return {label: [evaluate_live.play_live(env, pop, s) for s in seeds] for label, pop in pops.items()}
    finally:
        if started:
            ray.shutdown()
            _POOL.clear()


#: shown first by --compare-runtimes (then every other numeric measure both runtimes have)
FIRST = ("return_mean", "welfare", "availability", "availability_partitioned", "stale_fraction", "stale_reads",
         "ops", "messages", "decisions", "linearizable_fraction")


def compare_runtimes(sim: dict[str, dict], live: dict[str, dict]) -> dict:
    """Per policy, per measure both runtimes have a number for (aggregates of :func:`aggregate`):
    ``{"sim", "live", "difference"}`` (live minus sim)."""
    out: dict = {}
    num = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    for label, s in sim.items():
        lv = live[label]
        keys = [k for k in FIRST if k in s] + sorted(k for k in s if k not in FIRST and k != "episodes")
        out[label] = {k: {"sim": float(s[k]), "live": float(lv[k]), "difference": float(lv[k]) - float(s[k])}
                      for k in keys if num(s.get(k)) and num(lv.get(k))}
    return out


def format_compare(cmp: dict) -> str:
    lines = [f"{'policy':>16}  {'measure':>24}  {'sim':>10}  {'live':>10}  {'live - sim':>10}"]
    for label, row in cmp.items():
        for k, v in row.items():
            lines.append(f"{label:>16}  {k:>24}  {v['sim']:>10.3f}  {v['live']:>10.3f}  {v['difference']:>10.3f}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.learn import checkpoint
    from experiments import results

    try:
        meta, weights = checkpoint.load(args.path)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if args.episodes < 1:
        raise UserError(f"--episodes: must be >= 1, not {args.episodes}")
    seeds = args.seeds if args.seeds else [EVAL_SEED_BASE + i for i in range(args.episodes)]
    spec = env_spec(meta["env"], args.overrides)
    env = make_eval_env(spec)  # validate before anything is written
    if list(env.possible_agents) != list(meta["agents"]):
        raise UserError(f"env.params.nodes: the checkpoint's agents are {', '.join(meta['agents'])}; the evaluation "
                        f"environment's are {', '.join(env.possible_agents)}")
    env.close()
    runtimes = ["sim", "live"] if args.compare_runtimes else [args.runtime]
    if "live" in runtimes:
        from experiments.evaluate_live import SIM_ONLY, check_live

        check_live(spec["id"])
    pops, focal, bg = populations(args, meta, weights, spec)
    ckpt = str(checkpoint.find(args.path))
    run_dir = results.new_run_dir(args.output_root, args.experiment)
    results.write_yaml(run_dir / "config.yaml", {"checkpoint": ckpt, "env": spec, "seeds": seeds,
                                                 "greedy": not args.sample, "runtime": "+".join(runtimes),
                                                 **({} if focal is None else {"focal": focal, "background": bg})})
    results.write_status(run_dir, results.STATUS_RUNNING)
    extra: dict = {"experiment": args.experiment, "env": spec["id"], "seeds": seeds, "checkpoint": ckpt,
                   "runtime": "+".join(runtimes)}
    by: dict[str, list[dict]] = {}
    per_runtime: dict[str, dict] = {}
    for rt in runtimes:
        try:
            got = (evaluate({k: p.act for k, p in pops.items()}, spec, seeds) if rt == "sim"
                   else evaluate_live(pops, spec, seeds, args.address))
        except KeyboardInterrupt:
            results.write_status(run_dir, results.STATUS_INTERRUPTED)
            raise
        except UserError as e:  # e.g. Ray could not start or reach the cluster: the folder says so
            results.write_status(run_dir, results.STATUS_FAILED, error=str(e))
            raise
        per_runtime[rt] = got
        suffix = "" if rt == runtimes[0] else f"@{rt}"
        by.update({label + suffix: eps for label, eps in got.items()})
        if focal is not None:
            extra["focal" + suffix.replace("@", "_")] = focal_summary(got, focal, bg)
    if "live" in runtimes:
        extra["sim_only"] = SIM_ONLY[spec["id"]]
        extra["live_stats"] = {label: [e["live"] for e in eps] for label, eps in per_runtime["live"].items()}
    if args.compare_runtimes:
        extra["compare"] = compare_runtimes({k: aggregate(v) for k, v in per_runtime["sim"].items()},
                                            {k: aggregate(v) for k, v in per_runtime["live"].items()})
    summary = write_evaluation(run_dir, by, extra)
    results.write_status(run_dir, results.STATUS_COMPLETE)
    from experiments import html_report

    mode = html_report.default_mode()
    if mode != "none":
        html_report.write(run_dir, "evaluate", light=mode == "light")  # report.html
    if not args.quiet:
        print(format_table(summary["table"]))
        for key in ("focal", "focal_live"):
            if key in summary:
                print(("live: " if key.endswith("live") else "") + format_focal(summary[key]))
        if "compare" in summary:
            print(format_compare(summary["compare"]))
        if summary.get("sim_only"):
            print(f"sim-only (not measured live): {', '.join(summary['sim_only'])}")
        print(f"results: {run_dir}")
    return 0


def format_focal(f: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    return (f"focal nodes {','.join(map(str, f['nodes']))} among {f['background']}: focal per-capita local return "
            f"{fmt(f['focal_per_capita_return'])}, background's "
            f"{fmt(f['background_per_capita_return'])}, welfare {fmt(f['welfare'])} "
            f"(all background {fmt(f['welfare_all_background'])}, change {fmt(f['welfare_change'])})")


FOCAL_HELP = """focal/background (Melting Pot's evaluation): --focal K seats the checkpoint's agents in
the first K nodes (or --focal-nodes 0,3 in those), every other node played by --background: a
scripted policy by name (default textbook) or another run's checkpoint folder. A checkpoint plays
seat k with its agent node_k: with per-agent checkpoints (learner.share false) the network trained
in seat k plays in seat k; with a shared one, the shared network with seat k's id. The summary's
"focal" block gives focal and background per-capita local return (what their own nodes earned,
whatever reward they were trained on), the observer's welfare and measures,
and the welfare change against every seat played by the background ("all_background" run)."""


def register(subparsers) -> None:
    from agents import scripted

    names = "; ".join(f"{n} ({', '.join(g.removeprefix('capgym/') for g in games) if games else 'every game'})"
                      for n, (_f, games, _d) in scripted.SCRIPTED.items())
    p = subparsers.add_parser("evaluate", help="run trained agents on held-out seeds and faults",
                              description=__doc__.split("\n\n")[0] + "\n\n" + FOCAL_HELP, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="CHECKPOINT_DIR_OR_RUN", help="a checkpoint folder or a training run folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override the environment, e.g. env.params.faults=true")
    p.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (default: held-out seeds)")
    p.add_argument("--episodes", type=int, default=5, help="episodes when --seeds is not given (default 5)")
    p.add_argument("--sample", action="store_true", help="sample actions instead of taking the most likely")
    p.add_argument("--baselines", action="store_true", help="also evaluate scripted policies on the same seeds")
    p.add_argument("--focal", type=int, metavar="K",
                   help="the checkpoint plays the first K nodes (seat k: its network of node_k), --background the rest")
    p.add_argument("--focal-nodes", metavar="LIST", help="the checkpoint plays these nodes, e.g. 0,3")
    p.add_argument("--background", metavar="POLICY_OR_RUN",
                   help=f"who plays the other nodes (default textbook): a scripted policy ({names}) "
                        "or another run's folder (its network of node_k plays seat k)")
    p.add_argument("--runtime", choices=("sim", "live"), default="sim",
                   help="sim (default) or live: every node a Ray actor playing its seat's policy, same scenarios "
                        "and fault schedules; measures read from sim node state are listed as sim-only")
    p.add_argument("--compare-runtimes", action="store_true",
                   help="run sim and live and report, per measure, sim, live and the difference")
    p.add_argument("--address", help="the Ray cluster for --runtime live (default: a local Ray instance)")
    p.add_argument("--experiment", default="evaluate", help="results/<experiment>/ (default: evaluate)")
    p.add_argument("--output-root", default="results", help="results root folder (default: results)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)
