"""FLP (agents/protocols/flp.py): a deterministic 1-crash-tolerant protocol that a scheduler keeps
undecided for K rounds -- without crashing anyone or losing any message -- while under a fair
schedule it decides; and it never decides two values, whatever the schedule or the faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.protocols.flp import NODE, Params, adversary_plan, decided, rounds, run_adversary
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig

K = 50
CASES = [(3, [0, 1, 0]), (3, [1, 1, 0]), (5, [0, 0, 1, 1, 1]), (5, [1, 0, 1, 0, 0])]


def world(seed, n, duration=20_000.0, **extra):
    return ScenarioConfig.model_validate(dict(seed=seed, world=dict(nodes=n, duration_ms=duration, **extra),
                                              workload=dict(clients=0)))


def decides(sim):
    return list(sim.trace.events({"decide"}))


@pytest.mark.parametrize("n,inputs", CASES)
def test_adversary_keeps_it_undecided_then_fair_schedule_decides(n, inputs):
    for seed in range(3):
        sim = build_sim(world(seed, n), NODE, Params(inputs=inputs))
        reached = run_adversary(sim, K)
        assert reached >= K and not decided(sim), f"seed {seed}: decided under the adversary"
        assert not any(e.fields["why"] != "partition" for e in sim.trace.events({"drop"}))
        assert sim.dropped == 0 and sim._held  # delayed, never lost
        assert [sim.node(i).s["x"] for i in range(n)] == inputs  # the configuration never moved
        sim.heal()  # the scheduler lets go: held messages are delivered, the schedule is fair
        t = sim.now
        sim.run(until=t + 2000, stop=lambda s=sim: all(s.node(i).s["decided"] for i in range(n)))
        ds = decides(sim)
        assert {e.node for e in ds} == set(range(n)) and len({e.fields["value"] for e in ds}) == 1, f"seed {seed}"
        assert all(e.fields["round"] > K for e in ds)


@pytest.mark.parametrize("n,inputs", CASES)
def test_fair_schedule_decides(n, inputs):
    for seed in range(30):
        sim = build_sim(world(seed, n, 2000), NODE, Params(inputs=inputs))
        sim.run(until=2000)
        ds = decides(sim)
        assert {e.node for e in ds} == set(range(n)), f"seed {seed}: undecided under a fair schedule"
        assert len({e.fields["value"] for e in ds}) == 1 and max(e.fields["round"] for e in ds) < 40


def test_plan_shape():
    assert adversary_plan([0, 1, 0]) == {(2, 0), (0, 1), (0, 2)}  # the two 0s never hear each other
    assert adversary_plan([1, 1, 1]) is None  # unanimous: nothing to delay, it decides
    assert adversary_plan([0, 1, 1, 1, 1]) is None  # too lopsided for one delayed sender
    for values in ([0, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 0]):
        plan = adversary_plan(values)
        assert sorted(i for _, i in plan) == list(range(len(values)))  # one delayed sender per node


def test_agreement_under_random_faults():
    """Safety does not depend on the schedule: one value over 200 faulty seeds."""
    kinds = ["partition", "crash", "pause", "slow", "clock", "loss"]
    for seed in range(200):
        n = 5 if seed % 2 else 3
        scn = ScenarioConfig.model_validate(dict(
            seed=seed, world=dict(nodes=n, duration_ms=800),
            nemesis=dict(random=dict(kinds=kinds, interval_ms=100, duration_ms=80)), workload=dict(clients=0)))
        sim = build_sim(scn, NODE, Params())
        sim.run(until=800)
        values = {e.fields["value"] for e in decides(sim)}
        assert len(values) <= 1, f"seed {seed}: decided {values}"
        assert values <= {0, 1}


def test_rounds_helper_and_config():
    cfg = yaml.safe_load((Path(__file__).parent.parent / "configs" / "flp.yaml").read_text())
    assert cfg["protocol"]["name"] == "flp"
    params = Params(**cfg["protocol"].get("params", {}))
    scn = ScenarioConfig.model_validate({k: v for k, v in cfg.items() if k not in ("experiment", "protocol")})
    sim = build_sim(scn, NODE, params)
    sim.run(until=scn.world.duration_ms)
    assert {e.node for e in decides(sim)} == {0, 1, 2}
    assert min(rounds(sim)) >= 1
