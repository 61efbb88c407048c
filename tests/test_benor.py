"""Ben-Or (agents/protocols/benor.py): agreement and validity over 200 faulty seeds, termination
with probability 1 (every one of 200 seeds within a generous round limit, t < n/2 crashed), the
coin as a learnable choice, crash-recovery from the disk, and the run config.

Every seed is deterministic: a failure message names the seed, and rerunning it reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from agents.protocols.benor import NODE, Params
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.consensus import consensus

KINDS = ["partition", "crash", "pause", "slow", "clock", "loss"]
SEEDS = range(200)
CHUNK = 50
ROUND_LIMIT = 40  # generous: the worst of 200 seeds needs about a third of it


def quiet(seed, n, duration):
    return ScenarioConfig.model_validate(dict(seed=seed, world=dict(nodes=n, duration_ms=duration),
                                              workload=dict(clients=0)))


def faulty(seed, duration=1500.0):
    n = 5 if seed % 2 == 0 else 3
    return ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=n, duration_ms=duration),
        nemesis=dict(random=dict(kinds=KINDS, interval_ms=150, duration_ms=120,
                                 shapes=["majority", "halves", "isolate", "bridge", "one-way"])),
        workload=dict(clients=2, ops={"read": 1.0}, timeout_ms=200, think_ms=20)))


def agreement_and_validity(sim):
    """Never two decided values; every decided value is some node's input."""
    events = list(sim.trace.events({"propose", "decide"}))
    proposed = {e.fields["value"] for e in events if e.kind == "propose"}
    decided = {e.fields["value"] for e in events if e.kind == "decide"}
    errors = []
    if len(decided) > 1:
        errors.append(f"decided {sorted(decided)}")
    if not decided <= proposed:
        errors.append(f"decided {sorted(decided)} not among inputs {sorted(proposed)}")
    return errors, bool(decided)


@pytest.mark.parametrize("first", range(SEEDS.start, SEEDS.stop, CHUNK))
def test_agreement_under_random_faults(first):
    """Partitions, crashes and restarts, pauses, slow nodes, loss and clock faults: one value."""
    deciding = 0
    for seed in range(first, first + CHUNK):
        sim = build_sim(faulty(seed), NODE, NODE.Params())
        sim.run(until=1500)
        errors, any_decided = agreement_and_validity(sim)
        assert not errors, f"seed {seed}: {errors}"
        m = consensus(sim.trace.events({"propose", "decide", "crash", "start"}))
        assert m["agreement"] and m["validity"] is not False, f"seed {seed}: {m['agreement_violations']}"
        deciding += any_decided
        values = {e.fields["value"] for e in sim.trace.events({"decide"})}
        for op in sim.history:  # a read answered ok returns the decided value
            assert op.status != "ok" or op.output in values, f"seed {seed}: {op}"
    assert deciding >= CHUNK * 0.9  # faults delay, they rarely prevent deciding in 1.5 s


def crash_scenario(seed):
    """n = 3 or 5, t = (n - 1) // 2 nodes crash, at the start or mid-run; no other faults."""
    n = 5 if seed % 2 == 0 else 3
    t = (n - 1) // 2
    victims = [(seed + k) % n for k in range(t)]
    at = [0.0 if seed % 3 == 0 else 1.0 + (seed * 7 + 13 * k) % 40 for k in range(t)]
    sched = [dict(at_ms=a, fault="crash", node=v) for a, v in zip(at, victims)]
    scn = ScenarioConfig.model_validate(dict(seed=seed, world=dict(nodes=n, duration_ms=30_000),
                                             nemesis=dict(schedule=sched), workload=dict(clients=0)))
    return scn, [i for i in range(n) if i not in victims]


@pytest.mark.parametrize("first", range(SEEDS.start, SEEDS.stop, CHUNK))
def test_decides_with_t_crashed(first):
    """Termination with probability 1: every live node decides within ROUND_LIMIT rounds, in every seed."""
    for seed in range(first, first + CHUNK):
        scn, live = crash_scenario(seed)
        sim = build_sim(scn, NODE, NODE.Params())
        disks = [sim.states[i].durable for i in live]
        sim.run(until=30_000, stop=lambda d=disks: all(x["benor"]["decided"] or x["benor"]["r"] > ROUND_LIMIT
                                                      for x in d))
        for i, disk in zip(live, disks):
            d, r = disk["benor"]["decided"], disk["benor"]["r"]
            assert d is not None and d[1] <= ROUND_LIMIT, f"seed {seed}: node {i} undecided after round {r}"
        errors, _ = agreement_and_validity(sim)
        assert not errors, f"seed {seed}: {errors}"


def test_unanimous_inputs_decide_in_round_one():
    """Validity: all inputs v -> everyone decides v in round 1 (phase 1 sees only v)."""
    for v in (0, 1):
        scn = quiet(v, 5, 500)
        sim = build_sim(scn, NODE, NODE.Params(inputs=[v] * 5))
        sim.run(until=500)
        ds = [e.fields for e in sim.trace.events() if e.kind == "decide"]
        assert len(ds) == 5 and all(d == {"value": v, "round": 1} for d in ds)


def test_coin_is_a_learnable_choice():
    """An agent that always answers 1 to ("coin", r) drives every undecided run to 1; defaults reproduce."""
    asks = []

    def ones(ask):
        asks.append(ask)
        return 1

    decided = set()
    for seed in range(10):
        scn = quiet(seed, 4, 3000)
        sim = build_sim(scn, NODE, NODE.Params(t=1, inputs=[0, 0, 1, 1]), agents={i: ones for i in range(4)})
        sim.run(until=3000)
        decided |= {e.fields["value"] for e in sim.trace.events() if e.kind == "decide"}
    assert asks and all(a.point[0] == "coin" and a.default in (0, 1) and len(a.obs) == 4 for a in asks)
    assert 1 in decided

    def key(agents):
        scn = quiet(3, 5, 2000)
        sim = build_sim(scn, NODE, NODE.Params(), agents=agents)
        sim.run(until=2000)
        return [(e.kind, e.node, e.t, e.fields) for e in sim.trace.events() if e.kind in ("decide", "ask")]

    assert key(None) == key({i: (lambda a: a.default) for i in range(5)})


def test_restart_resumes_from_disk():
    """A node crashed mid-round resumes its round and phase and still decides the common value."""
    scn = quiet(2, 5, 3000)
    sim = build_sim(scn, NODE, NODE.Params())
    sim.run(until=6)
    before = dict(sim.states[1].durable["benor"])
    sim.crash(1)
    sim.run(until=200)
    sim.restart(1)
    assert (sim.node(1).s["r"], sim.node(1).s["ph"]) == (before["r"], before["ph"])
    sim.run(until=3000)
    ds = {(e.node, e.fields["value"]) for e in sim.trace.events() if e.kind == "decide"}
    assert {n for n, _ in ds} == set(range(5)) and len({v for _, v in ds}) == 1


def test_bad_parameters():
    with pytest.raises(ValidationError):
        Params(t=-1)
    with pytest.raises(ValidationError):
        Params(bogus=1)
    scn = ScenarioConfig.model_validate(dict(world=dict(nodes=4, duration_ms=100), workload=dict(clients=0)))
    with pytest.raises(ValueError, match="n > 2t"):
        build_sim(scn, NODE, Params(t=2)).run(until=10)


def test_config_validates_and_runs():
    cfg = yaml.safe_load((Path(__file__).parent.parent / "configs" / "benor.yaml").read_text())
    assert cfg["protocol"]["name"] == "benor"
    params = Params(**cfg["protocol"].get("params", {}))
    scn = ScenarioConfig.model_validate({k: v for k, v in cfg.items() if k not in ("experiment", "protocol")})
    sim = build_sim(scn, NODE, params)
    sim.run(until=2000)
    assert {e.node for e in sim.trace.events({"decide"})} == {0, 1, 2}
