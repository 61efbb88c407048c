"""Paxos (agents/protocols/paxos.py, single decree) and Multi-Paxos (agents/protocols/multipaxos.py):
agreement and validity per instance over 200 faulty seeds each, linearizable Multi-Paxos histories,
the duelling-proposers livelock without backoff vs decisions with random backoff, the learnable
retry choice, and the run configs.

Every seed is deterministic: a failure message names the seed, and rerunning it reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.protocols import multipaxos, paxos
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.linearizability import check
from metrics.models import CAS_REGISTER, KV

KINDS = ["partition", "crash", "pause", "slow", "clock", "loss"]
SHAPES = ["majority", "halves", "isolate", "bridge", "one-way"]
SEEDS = range(200)
CHUNK = 25


def recorded(sim, kinds):
    """Protocol events ``(kind, node, t, fields)`` read from the raw trace (no vector clocks needed)."""
    return [(r[0], r[1], r[2], r[5]) for r in sim.trace.raw if r[0] in kinds]


def agreement_and_validity(sim):
    """Per instance: never two decided values, and every decided value was proposed in it."""
    proposed, decided, errors = {}, {}, []
    for kind, node, _t, f in recorded(sim, {"propose", "decide"}):
        inst, v = f.get("instance"), repr(f["value"])
        if kind == "propose":
            proposed.setdefault(inst, set()).add(v)
        elif decided.setdefault(inst, v) != v:
            errors.append(f"instance {inst}: node {node} decided {v}, before {decided[inst]}")
    errors += [f"instance {i}: decided {v}, never proposed" for i, v in decided.items() if v not in proposed.get(i, ())]
    return errors, decided


def faulty(seed, duration, clients, ops=None, keys=0, interval=150.0):
    return ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=5 if seed % 2 == 0 else 3, duration_ms=duration),
        nemesis=dict(random=dict(kinds=KINDS, interval_ms=interval, duration_ms=0.8 * interval, shapes=SHAPES)),
        workload=dict(clients=clients, ops=ops or {"read": 1.0}, keys=keys, timeout_ms=300, think_ms=10)))


# --- single decree ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("first", range(SEEDS.start, SEEDS.stop, 50))
def test_synod_agreement_under_random_faults(first):
    """Partitions, crashes and restarts, pauses, slow nodes, loss, clock faults: one value, proposed."""
    deciding = 0
    for seed in range(first, first + 50):
        proposers = None if seed % 3 else [0, 1]
        params = paxos.Params(proposers=proposers, start_ms=seed % 20, phase_timeout_ms=50)
        sim = build_sim(faulty(seed, 1500, 2), paxos.NODE, params)
        sim.run(until=1500)
        errors, decided = agreement_and_validity(sim)
        assert not errors, f"seed {seed}: {errors[:3]}"
        deciding += bool(decided)
        for op in sim.history:
            assert op.status != "ok" or repr(op.output) == decided.get(None), f"seed {seed}: read {op}"
    assert deciding >= 45


def duel(seed, backoff, latency=None):
    scn = ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=5, duration_ms=2000,
                              network=dict(latency=latency or dict(dist="uniform", low=4, high=6))),
        workload=dict(clients=0)))
    sim = build_sim(scn, paxos.NODE, paxos.Params(proposers=[0, 1], retry_ms=0, backoff=backoff))
    sim.run(until=2000)
    ballots = len(recorded(sim, {"candidate"}))
    first = min((t for _k, _n, t, _f in recorded(sim, {"decide"})), default=None)
    return first, ballots


def test_duelling_proposers_livelock_without_backoff():
    """Two proposers retrying at once (retry_ms 0, no backoff) preempt each other for 2 s, hundreds of
    ballots, with no decision; with the textbook random backoff the same worlds decide within ~50 ms."""
    for seed in range(10):
        first, ballots = duel(seed, backoff=False)
        assert first is None and ballots > 200, f"seed {seed}: decided at {first} after {ballots} ballots"
        first, ballots = duel(seed, backoff=True)
        assert first is not None and first < 100 and ballots < 10, f"seed {seed}: {first}, {ballots}"


def test_retry_choice_breaks_the_duel():
    """("retry", ballot) is asked on every abandoned ballot; an agent that makes node 1 wait 160 ms
    (choice 3) and node 0 retry at once (choice 0) ends the duel with no backoff configured."""
    asks = []

    def policy(ask):
        asks.append(ask)
        return 3 if ask.node == 1 else 0

    scn = ScenarioConfig.model_validate(dict(seed=0, world=dict(nodes=5, duration_ms=1000,
                                             network=dict(latency=dict(dist="uniform", low=4, high=6))),
                                             workload=dict(clients=0)))
    params = paxos.Params(proposers=[0, 1], retry_ms=0, backoff=False)
    sim = build_sim(scn, paxos.NODE, params, agents={i: policy for i in range(5)})
    sim.run(until=1000)
    assert asks and {a.point[0] for a in asks} == {"retry"}
    k = len(params.retry_choices_ms)
    assert all(a.default == k and len(a.mask) == k + 1 and len(a.obs) == 5 for a in asks)
    ds = recorded(sim, {"decide"})
    assert {n for _k, n, _t, _f in ds} == set(range(5)) and len({f["value"] for *_, f in ds}) == 1


def test_synod_restart_keeps_promises():
    scn = ScenarioConfig.model_validate(dict(seed=1, world=dict(nodes=3, duration_ms=500), workload=dict(clients=0)))
    sim = build_sim(scn, paxos.NODE, paxos.Params(proposers=[0]))
    sim.run(until=500)
    before = dict(sim.states[2].durable)
    assert before["accepted"] is not None and before["chosen"][0] == 0
    sim.crash(2)
    sim.restart(2)
    assert (sim.node(2).promised, sim.node(2).accepted, sim.node(2).chosen) == \
        (before["promised"], before["accepted"], before["chosen"])


# --- Multi-Paxos ---------------------------------------------------------------------------------------------
def multi_scenario(seed):
    kv = seed % 3 == 0
    ops = {"get": 0.5, "append": 0.5} if kv else {"read": 0.4, "write": 0.4, "cas": 0.2}
    return faulty(seed, 1000, 3, ops, keys=2 if kv else 0, interval=200), (KV if kv else CAS_REGISTER)


@pytest.mark.parametrize("first", range(SEEDS.start, SEEDS.stop, CHUNK))
def test_multipaxos_agreement_and_linearizability(first):
    """Per slot: one chosen command, proposed for that slot; applied logs agree; client histories
    (register with cas, or kv with appends) are linearizable."""
    slots = oks = 0
    for seed in range(first, first + CHUNK):
        scn, model = multi_scenario(seed)
        sim = build_sim(scn, multipaxos.NODE, multipaxos.Params())
        sim.run(until=scn.world.duration_ms)
        errors, decided = agreement_and_validity(sim)
        assert not errors, f"seed {seed}: {errors[:3]}"
        commits: dict = {}
        for _k, node, _t, f in recorded(sim, {"commit"}):
            c = commits.setdefault(f["index"], repr(f["cmd"]))
            assert c == repr(f["cmd"]), f"seed {seed}: node {node} applied a different command at {f['index']}"
        result = check(sim.history, model, timeout=20)
        assert result.ok is True, f"seed {seed}: not linearizable ({result.ok}) at {result.failing_op}"
        slots += len(decided)
        oks += sum(op.status == "ok" for op in sim.history)
    assert slots > 20 * CHUNK and oks > 20 * CHUNK  # the runs did serve clients


def test_multipaxos_leader_skips_phase_1():
    """Fault-free: node 0 wins phase 1 once and then only phase 2 is used, for every command."""
    scn = ScenarioConfig.model_validate(dict(seed=5, world=dict(nodes=5, duration_ms=2000),
                                             workload=dict(clients=4, start_ms=50)))
    sim = build_sim(scn, multipaxos.NODE, multipaxos.Params())
    sim.run(until=2000)
    assert [(n, f["term"]) for _k, n, _t, f in recorded(sim, {"leader"})] == [(0, 5)]  # round 1, node 0
    sends = [r[5] for r in sim.trace.raw if r[0] == "send"]
    assert sum(s[2] == "1a" for s in sends) == 5 and sum(s[2] == "2a" for s in sends) > 500
    assert all(op.status == "ok" for op in sim.history if op.f != "cas" and op.complete is not None)
    assert check(sim.history, CAS_REGISTER).ok is True


def test_multipaxos_new_leader_after_crash():
    """Crash the leader: node 1 takes over after leader_timeout_ms and clients are served again."""
    scn = ScenarioConfig.model_validate(dict(seed=2, world=dict(nodes=5, duration_ms=2000),
                                             nemesis=dict(schedule=[dict(at_ms=500, fault="crash", node=0)]),
                                             workload=dict(clients=5, timeout_ms=300)))
    sim = build_sim(scn, multipaxos.NODE, multipaxos.Params())
    sim.run(until=2000)
    leaders = [(n, t) for _k, n, t, _f in recorded(sim, {"leader"})]
    assert leaders[0][0] == 0 and leaders[-1][0] == 1 and 500 < leaders[-1][1] < 500 + 200
    assert any(op.status == "ok" and op.invoke > 800 for op in sim.history)
    assert check(sim.history, CAS_REGISTER).ok is True


# --- configs -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["paxos", "multipaxos"])
def test_config_validates_and_runs(name):
    cfg = yaml.safe_load((Path(__file__).parent.parent / "configs" / f"{name}.yaml").read_text())
    assert cfg["protocol"]["name"] == name
    mod = {"paxos": paxos, "multipaxos": multipaxos}[name]
    params = mod.Params(**cfg["protocol"].get("params", {}))
    scn = ScenarioConfig.model_validate({k: v for k, v in cfg.items() if k not in ("experiment", "protocol")})
    scn.world.duration_ms = 1000
    sim = build_sim(scn, mod.NODE, params)
    sim.run(until=1000)
    assert recorded(sim, {"decide"})
    assert name == "paxos" or any(op.status == "ok" for op in sim.history)


def test_multipaxos_retry_choice_is_asked_and_any_answer_stays_safe():
    """A nacked leader asks ("retry", ballot); an agent answering with any delay keeps the log safe."""
    asked = 0
    for seed in range(12):
        scn, model = multi_scenario(seed)
        picks = iter(range(10**6))
        agents = dict.fromkeys(range(scn.world.nodes), lambda ask, picks=picks: next(picks) % len(ask.mask))
        sim = build_sim(scn, multipaxos.NODE, multipaxos.Params(), agents=agents)
        sim.run(until=scn.world.duration_ms)
        asked += sum(1 for e in sim.trace.events({"ask"}) if e.fields["point"][0] == "retry")
        errors, _ = agreement_and_validity(sim)
        assert not errors, f"seed {seed}: {errors[:3]}"
        assert check(sim.history, model, timeout=20).ok is True, f"seed {seed}"
    assert asked > 0
