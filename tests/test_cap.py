"""The CAP trade-off, measured (Brewer 2000; Gilbert and Lynch 2002).

Five nodes, split into a majority {0, 1, 2} and a minority {3, 4} from CUT to HEAL, with clients
at every node. Under the same partition:

* the eventually consistent store (AP) stays available on both sides, and its histories are not
  linearizable: the checker finds a violation in most seeds;
* ABD (CP) stays linearizable; the majority side stays available, while no operation invoked at a
  minority node completes ok until the partition heals.
"""

from __future__ import annotations

from agents.protocols import get
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.linearizability import check
from metrics.models import REGISTER

CUT, HEAL, END = 300.0, 1300.0, 1600.0
MAJORITY, MINORITY = {0, 1, 2}, {3, 4}
SEEDS = range(10)


def run(protocol, seed):
    node = get(protocol)
    scn = ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": 5, "duration_ms": END, "network": {"latency": {"dist": "exponential", "mean": 5}}},
        "nemesis": {"schedule": [{"at_ms": CUT, "fault": "partition", "groups": [sorted(MAJORITY), sorted(MINORITY)]},
                                 {"at_ms": HEAL, "fault": "heal"}]},
        "workload": {"clients": 5, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 10, "timeout_ms": 300},
    })
    sim = build_sim(scn, node, node.Params())
    sim.run(until=END)
    return sim.history


def during(history, side):
    """Operations invoked at nodes of ``side`` after the cut, early enough to time out before the heal."""
    return [op for op in history if op.node in side and CUT < op.invoke < HEAL - 300]


def test_eventual_store_is_available_but_not_linearizable_under_partition():
    violations = 0
    for seed in SEEDS:
        history = run("eventual", seed)
        for side in (MAJORITY, MINORITY):
            ops = during(history, side)
            assert ops and all(op.status == "ok" for op in ops), f"seed {seed}: unavailable at {sorted(side)}"
        violations += check(history, REGISTER, timeout=10).ok is False
    assert violations >= len(SEEDS) // 2, f"the checker found a violation in only {violations}/{len(SEEDS)} seeds"


def test_abd_is_linearizable_and_unavailable_in_the_minority():
    for seed in SEEDS:
        history = run("abd", seed)
        minority, majority = during(history, MINORITY), during(history, MAJORITY)
        assert minority, f"seed {seed}: no operations at the minority"
        ok_minority = [op for op in minority if op.status == "ok"]
        assert not ok_minority, f"seed {seed}: minority answered ok while partitioned: {ok_minority[0]}"
        ok_majority = sum(op.status == "ok" for op in majority)
        assert ok_majority >= 0.9 * len(majority), f"seed {seed}: majority side ok {ok_majority}/{len(majority)}"
        r = check(history, REGISTER, timeout=10)
        assert r.ok is True, f"seed {seed}: ABD not linearizable at {r.failing_op}"
