"""Jepsen's set workload and set checker (issue 16): adds of unique elements, whole-set reads, final
reads after the last heal, and the count of acknowledged adds that were lost."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents import protocols
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.records import Op
from experiments import runner
from metrics.sets import set_check


def op(i, f, inv, comp, value=None, output=None, status="ok", process=0, key=None):
    return Op(id=i, process=process, f=f, value=value, key=key, invoke=inv,
              complete=None if status == "unknown" else comp, status=status, output=output)


def test_set_check_counts_ok_lost_unexpected_recovered():
    h = [op(0, "add", 0, 1, 10), op(1, "add", 0, 1, 11), op(2, "add", 0, 1, 12, status="unknown"),
         op(3, "add", 0, 1, 13, status="unknown"), op(4, "add", 0, 1, 14, status="fail"),
         op(5, "read", 2, 3, output=[10, 11, 99], process=1),  # an early read of process 1
         op(6, "read", 5, 6, output=[10, 12, 14, 77], process=1),  # its final read
         op(7, "read", 5, 6, output=[10, 12], process=2)]  # process 2's final read
    r = set_check(h)
    assert (r["attempted"], r["acknowledged"], r["final_reads"]) == (5, 2, 2)
    assert r["ok_elements"] == [10] and r["lost_elements"] == [11] and r["recovered_elements"] == [12]
    assert r["unexpected_elements"] == [14, 77] and not r["valid"]  # a failed add that shows up, a stranger
    assert set_check([op(0, "add", 0, 1, 1)])["valid"] is None  # no read: nothing to judge


def test_set_config_and_final_reads():
    with pytest.raises(ValidationError, match="add makes a set workload"):
        ScenarioConfig.model_validate({"workload": {"ops": {"add": 1, "write": 1}}})
    scn = ScenarioConfig.model_validate(dict(seed=1, world=dict(nodes=3, duration_ms=2000),
                                             workload=dict(clients=3, keys=2, ops={"add": 0.5, "read": 0.5})))
    cls = protocols.get("raft")
    sim = build_sim(scn, cls, cls.Params())
    sim.run(until=2000)
    final = [o for o in sim.history if o.f == "read" and o.status == "ok" and o.invoke >= 1900]
    assert {(o.process, o.key) for o in final} == {(c, k) for c in range(3) for k in range(2)}
    assert all(isinstance(o.value, int) for o in sim.history if o.f == "add")
    assert len({o.value for o in sim.history if o.f == "add"}) == sum(o.f == "add" for o in sim.history)


def skewed(seed):
    """Issue 16's scenario: node 0's clock 3 s behind, clients on every node adding and reading."""
    return ScenarioConfig.model_validate(dict(
        seed=seed, world=dict(nodes=5, duration_ms=4000, clocks=dict(nodes=[dict(node=0, offset_ms=-3000)])),
        workload=dict(clients=5, ops={"add": 0.5, "read": 0.5})))


def lost_adds(name, seed, **params):
    """The set verdict, and node 0's acknowledged adds that no process's last read holds."""
    cls = protocols.get(name)
    sim = build_sim(skewed(seed), cls, cls.Params(**params))
    sim.run(until=4000)
    last: dict = {}
    for o in sim.history:
        if o.f == "read" and o.status == "ok" and (o.process not in last or o.invoke >= last[o.process].invoke):
            last[o.process] = o
    seen = {x for o in last.values() for x in o.output or ()}
    at_0 = {o.value for o in sim.history if o.f == "add" and o.status == "ok" and o.node == 0}
    return set_check(sim.history), at_0, at_0 - seen


@pytest.mark.parametrize("seed", range(3))
def test_skewed_clock_loses_acknowledged_adds_under_lww_only(seed):
    """Last-writer-wins on the whole set loses acknowledged adds -- nearly all of the lagging node's
    (its versions carry the smallest stamps) and others' that raced; a union merge and Raft lose none."""
    r, at_0, lost_at_0 = lost_adds("eventual", seed)
    assert r["lost"] >= len(lost_at_0) and not r["valid"]
    assert len(at_0) > 20 and len(lost_at_0) >= 0.9 * len(at_0), (len(lost_at_0), len(at_0))
    for name, params in (("eventual", {"set_merge": "union"}), ("raft", {})):
        r, at_0, lost_at_0 = lost_adds(name, seed, **params)
        assert r["lost"] == 0 and r["valid"] and r["acknowledged"] > 50 and at_0 and not lost_at_0, name


def test_run_summary_and_table_carry_lost_writes():
    h = [op(0, "add", 0, 1, 10), op(1, "add", 0, 1, 11), op(2, "read", 2, 3, output=[10])]
    assert runner.linearizability(h)["verdict"] == "not_applicable"
    s = runner.summarize(h, [], 10.0, runner.ProtocolEntry(name="eventual"))
    assert s["lost_writes"] == 1 and s["set"]["lost_elements"] == [11]
    row = runner.format_table(runner.table_rows({"eventual": s})).splitlines()
    assert row[0].split()[-3:] == ["lost", "writes", "messages/op"] and row[2].split()[-2] == "1"


def test_sets_config_validates():
    from pathlib import Path

    from experiments.config import load_config
    cfg = load_config(Path(__file__).parent.parent / "configs" / "sets.yaml")
    assert [e.tag for e in cfg.entries()] == ["eventual-lww", "eventual-union", "raft"]
    assert cfg.workload.ops == {"add": 0.5, "read": 0.5}


def test_nothing_acknowledged_is_no_verdict():
    """A store that refuses every add (ABD) judged nothing: not 'valid, 0 lost' (found in review)."""
    from envs.world.records import FAIL, OK, Op
    from metrics.sets import set_check

    hist = [Op(0, 0, "add", 1, key=0, invoke=0, complete=1, status=FAIL),
            Op(1, 1, "read", None, key=0, invoke=2, complete=3, status=OK, output=[])]
    r = set_check(hist)
    assert r["valid"] is None and r["acknowledged"] == 0
