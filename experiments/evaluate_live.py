"""``capgym evaluate RUN --runtime live``: trained agents as live Ray actors, one per node.

Each evaluation seed's scenario is the game's own (``Game.scenario(seed)``: the same nodes,
network, clocks, workload and fault schedule as the simulated episode of that seed), run by
:func:`experiments.live.run_live` with seat ``k``'s policy (``agents.population.AskPolicy``)
answering node ``k``'s decisions inside its actor. The observer's measures are then computed from
the live run's history and trace, the way the game computes them in the simulator:

* **Register-v0**: every measure (``ops``, ``decisions``, ``messages``, ``stale_reads``,
  ``stale_fraction``, ``reads``, ``availability``, ``availability_partitioned``, ``linearizable``),
  the local returns (``ok_reward`` per operation answered ok in time, ``msg_cost`` per message
  sent) and the welfare (returns less ``stale_penalty`` per stale read, per agent, less
  ``nonlinearizable_penalty``).
* **Consensus-v0**: ``metrics.consensus`` over the trace, the returns (the decide reward and own
  bias from each node's ``decide`` record, ``round_cost`` per decision) and the welfare. The
  private inputs are put on each node's disk before it starts, as the environment does.
* **Election-v0**: ``metrics.election`` over the trace (safety, time without a leader, elections,
  split votes). What the environment samples from the simulator's node state every ``tick_ms``
  (each node's local return for knowing a leader, the effective-leader fraction, hence the welfare)
  is not computed live: listed under ``sim_only`` in the summary.
* **Byzantine-v0**: the adversaries are Byzantine from the start (``run_live(byzantine=...)``), their
  ``phased`` strategy asking the seat's policy per protocol phase with the node's own PBFT state in
  the ask (the observation the environment builds). From the history and the trace: ``ops_ok``,
  ``ops_failed`` (the correct clients' operations that failed or timed out), ``completed_per_s``,
  ``view_changes`` (the highest view a correct replica entered), the safety verdict
  (``log_agreement`` over the correct replicas' ``execute`` records, ``linearizable`` for the
  correct clients' history with the Byzantine clients' writes as unknown, ``safety_violation``),
  ``actions`` and ``timeout_multiples`` (from the ``decision`` records), ``decisions``, and the
  welfare (the adversaries' team reward; the paid returns in the ``global`` mode, negated for the
  correct replicas with ``honest_learners``). The local returns are sim-only: an adversary's share
  of the failed operations is of those whose request it tampered with, a batch held inside its node
  that no trace shows (so ``return_mean`` is measured live only in the ``global`` reward mode).
* **Commons-v0** cannot be played live: the harvested resource is the environment's, outside the
  nodes (one line, exit status 2).

Live runs keep real time: the figures vary from run to run even with the same seed (see
``docs/live.md``).
"""

from __future__ import annotations

from collections import Counter

from experiments.cli import UserError

#: what a live evaluation cannot compute, per game (read from the simulator's node state)
SIM_ONLY = {
    "capgym/Register-v0": [],
    "capgym/Consensus-v0": [],
    "capgym/Election-v0": ["effective_leader_fraction", "returns", "return_mean", "welfare"],
    "capgym/Byzantine-v0": ["returns"],
}
#: live options of an evaluation: the node actors import torch and the game to unpickle the agents'
#: policies before the run's clock starts, which on a loaded 2-core machine takes more than the
#: default minute when six fresh Ray workers do it at once
OPTIONS = {"start_timeout_s": 300.0}
NOT_LIVE = {"capgym/Commons-v0": "the harvested resource is the environment's, outside the nodes"}


def check_live(env_id: str) -> None:
    """UserError (one line) when ``env_id`` cannot be played live."""
    if env_id in NOT_LIVE:
        raise UserError(f"--runtime: {env_id} cannot run live: {NOT_LIVE[env_id]}")
    if env_id not in SIM_ONLY:
        raise UserError(f"--runtime: no live evaluation for {env_id} (choose from {', '.join(SIM_ONLY)})")


def play_live(env, population, seed: int, address: str | None = None, options: dict | None = None) -> dict:
    """One live episode of the game of ``env`` (an evaluation environment, used only for its game's
    scenario, node program and parameters) with ``population``'s seats as node policies.

    Returns the episode dict of ``experiments.evaluate_cmd.play`` (``seed``, ``returns`` per agent,
    ``steps``: the decisions made, ``global``: the observer's measures, ``welfare``; ``None`` for
    what is sim-only) plus ``live``: the live runtime's stats (``experiments.live.run_live``)."""
    from experiments.live import run_live

    game = env.unwrapped.game if hasattr(env, "unwrapped") else env.game
    scn = game.scenario(seed)
    cls, params = game.node_program()
    n = game.cfg.nodes
    population.reset()  # recurrent policies start the episode with zero memory (each actor gets a copy)
    agents = {k: population.ask_policy(k) for k in range(n)}
    durable = byzantine = side = None
    if game.name == "Consensus-v0":
        durable = {i: {"input": v} for i, v in enumerate(consensus_inputs(game, seed))}
    if game.name == "Byzantine-v0":
        byzantine = game.adversaries()
        if game.cfg.honest_learners:  # the two sides of the zero-sum game (Episode.side)
            side = [1.0 if i in byzantine else -1.0 for i in range(n)]
    history, events, stats = run_live(scn, cls, params, address=address, agents=agents, options=options or OPTIONS,
                                      durable=durable, byzantine=byzantine)
    m = MEASURES[game.name](game, scn, history, events, stats, seed)
    local = m.pop("returns")
    welfare = m.pop("welfare")
    names = [f"node_{k}" for k in range(n)]
    return {"seed": seed, "steps": m["decisions"], "welfare": welfare, "live": stats,
            "returns": dict(zip(names, paid(game.cfg, local, welfare, n, side))), "global": {**m, "returns": local}}


def paid(cfg, local: list | None, welfare: float | None, n: int, side: list | None = None) -> list:
    """What each agent's rewards summed to over the episode in the environment's reward mode (as
    ``play``'s ``returns``): its local return, the welfare (global), or their mix; ``None`` each
    when not measured. (The local returns stay in the measures' ``returns``, as in the sim.)
    ``side``: per agent, the sign of the global term (a zero-sum game's two sides, ``Episode.side``)."""
    mode = cfg.reward_mode
    if (mode != "global" and local is None) or (mode != "local" and welfare is None):
        return [None] * n
    if mode == "local":
        return list(local)
    side = side or [1.0] * n
    if mode == "global":
        return [s * welfare for s in side]
    w = cfg.mixed_weight
    return [(1.0 - w) * x + w * s * welfare for x, s in zip(local, side, strict=True)]


def _sends(events, n: int) -> list[int]:
    c = Counter(e.node for e in events if e.kind == "send")
    return [c.get(i, 0) for i in range(n)]


def register_measures(game, scn, history, events, stats, seed) -> dict:
    """Register-v0's measures, local returns and welfare from a history and a trace."""
    from envs.register import StaleReads
    from envs.world.records import OK
    from metrics.availability import availability
    from metrics.staleness import staleness

    cfg, n = game.cfg, game.cfg.nodes
    hist = sorted(history, key=lambda op: (op.complete is None, op.complete or 0.0, op.id))
    st = staleness(hist, visibility=False)
    av = availability(hist, [e for e in events if e.kind in ("partition", "heal")], latency=False)
    sends = _sends(events, n)
    ok = Counter(op.node for op in hist if op.status == OK)
    returns = [round(cfg.ok_reward * ok.get(i, 0) - cfg.msg_cost * sends[i], 6) for i in range(n)]
    m = {"ops": len(hist), "decisions": sum(1 for e in events if e.kind == "decision"),
         "messages": sum(sends), "stale_reads": st["stale_reads"], "stale_fraction": st["stale_fraction"],
         "reads": st["reads"], "availability": av["ok_fraction"],
         "availability_partitioned": av["ok_fraction_partitioned"], "counts": av["counts"], "linearizable": None}
    if cfg.check_linearizability:
        from metrics.linearizability import check
        from metrics.models import KV, REGISTER

        model = KV if (scn.workload.keys or any(op.f in ("get", "put", "append") for op in hist)) else REGISTER
        m["linearizable"] = check([op for op in hist if op.f in model.ops], model,
                                  timeout=cfg.linearizability_timeout_s).ok
    # the welfare charges stale reads as the environment's online detector finds them
    ops = scn.workload.ops or {}
    online = StaleReads(appends=bool(ops.get("append")))
    stale = sum(online.complete(op) for op in hist if op.complete is not None)
    welfare = (sum(returns) - cfg.stale_penalty * stale) / n
    welfare -= cfg.nonlinearizable_penalty if m["linearizable"] is False else 0.0
    return {**m, "returns": returns, "welfare": welfare}


def consensus_inputs(game, seed: int) -> list[int]:
    """Each node's private input, drawn as the environment draws it."""
    from envs.world.rng import derive_rng

    if game.cfg.inputs is not None:
        return list(game.cfg.inputs)
    rng = derive_rng(seed, "inputs")
    return [rng.randrange(2) for _ in range(game.cfg.nodes)]


def consensus_measures(game, scn, history, events, stats, seed) -> dict:
    """Consensus-v0's measures, local returns and welfare from a trace."""
    from metrics.consensus import consensus

    cfg, n = game.cfg, game.cfg.nodes
    inputs = consensus_inputs(game, seed)
    decided: list = [None] * n
    earned = [0.0] * n
    for e in events:
        if e.kind == "decide" and decided[e.node] is None:
            v = e.fields["value"]
            decided[e.node] = v
            earned[e.node] += cfg.decide_reward + (cfg.own_bias if v == inputs[e.node] else 0.0)
        elif e.kind == "decision":
            earned[e.node] -= cfg.round_cost
    m = consensus(events, nodes=range(n))
    m.update(inputs=inputs, decided=decided, decisions=sum(1 for e in events if e.kind == "decision"))
    returns = [round(x, 6) for x in earned]
    welfare = sum(returns) / n + game.terminal_welfare(None, m)
    return {**m, "returns": returns, "welfare": welfare}


def election_measures(game, scn, history, events, stats, seed) -> dict:
    """Election-v0's trace measures; the sampled ones are sim-only (``SIM_ONLY``)."""
    from metrics.election import election

    m = election(events, start=0.0, end=stats["true_time_ms"])
    m["decisions"] = sum(1 for e in events if e.kind == "decision")
    return {**m, "returns": None, "welfare": None}


def byzantine_measures(game, scn, history, events, stats, seed) -> dict:
    """Byzantine-v0's measures and welfare (the adversaries' team reward) from a history and a
    trace; the local returns are sim-only (``SIM_ONLY``): an adversary's share of the failed
    operations is of those whose request it tampered with, a batch held in its node, in no trace."""
    from envs.byzantine_game import ACTIONS
    from envs.world.records import FAIL, OK

    byz = set(game.byz)
    end = stats["true_time_ms"]
    timeout = scn.workload.timeout_ms
    ok = miss = 0
    for op in history:  # the correct clients' operations that ended (a Byzantine node's own are not judged)
        if op.node is not None and op.node in byz:
            continue
        if op.status == OK:
            ok += 1
        elif op.status == FAIL or (op.complete is None and op.invoke + timeout <= end):  # failed, timed out
            miss += 1
    views = max((e.fields["view"] for e in events if e.kind == "view" and e.node not in byz), default=0)
    chosen: Counter = Counter()
    timeouts: Counter = Counter()
    decisions = 0
    for e in events:
        if e.kind == "decision":
            decisions += 1
            point, a = e.fields["point"], e.fields["action"]
            (chosen if point[0] == "byzantine" else timeouts)[a] += 1
    verdict = game.judge(list(history), list(events), byz)
    secs = end / 1000.0
    m = {"ops_ok": ok, "ops_failed": miss, "completed_per_s": ok / secs if secs else 0.0, "view_changes": views,
         **verdict, "actions": {name: chosen[i] for i, name in enumerate(ACTIONS[:game.n_actions])},
         "timeout_multiples": {str(x): timeouts[i] for i, x in enumerate(game.params.timeout_multiples)},
         "decisions": decisions}
    welfare = game.team_reward(views, miss, ok) + game.terminal_welfare(None, m)
    return {**m, "returns": None, "welfare": welfare}


MEASURES = {"Register-v0": register_measures, "Consensus-v0": consensus_measures,
            "Election-v0": election_measures, "Byzantine-v0": byzantine_measures}
