"""Primary-backup (agents/protocols/primary_backup.py): linearizable over 200 seeds while the primary
never fails (backups crash, restart and pause; partitions, loss, slow nodes and clock faults hit
everyone); updates block while a backup is down (CP); backups converge to the primary's log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from agents.protocols import get
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.linearizability import check
from metrics.models import CAS_REGISTER, KV

PB = get("primary_backup")
ROOT = Path(__file__).resolve().parent.parent
DURATION = 1500.0


def backup_faults(seed, nodes):
    """Crash/restart and pause/resume of backups only (node 0, the primary, never fails)."""
    rng = random.Random(seed)
    faults = []
    for _ in range(4):
        at, node = rng.uniform(0, 0.8 * DURATION), rng.randrange(1, nodes)
        kind = rng.choice([("crash", "restart"), ("pause", "resume")])
        faults += [{"at_ms": at, "fault": kind[0], "node": node},
                   {"at_ms": at + rng.uniform(50, 200), "fault": kind[1], "node": node}]
    return faults


def scenario(seed, ops=None, schedule=None, random_kinds=("partition", "slow", "clock", "loss"), keys=0):
    nodes = 3 + seed % 3
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes, "duration_ms": DURATION, "network": {"latency": {"dist": "exponential", "mean": 5}}},
        "nemesis": {"schedule": backup_faults(seed, nodes) if schedule is None else schedule,
                    "random": {"kinds": list(random_kinds), "interval_ms": 200, "duration_ms": 150}}
        if random_kinds else {"schedule": schedule or []},
        "workload": {"clients": 4, "ops": ops or {"read": 0.4, "write": 0.4, "cas": 0.2}, "think_ms": 10,
                     "timeout_ms": 300, "keys": keys},
    })


def run(scn, params=None, agents=None, until=None):
    sim = build_sim(scn, PB, params or PB.Params(), agents=agents)
    sim.run(until=until or scn.world.duration_ms)
    return sim


@pytest.mark.parametrize("chunk", range(4))
def test_linearizable_without_primary_failure(chunk):
    """200 seeds, cas-register workload, every fault but a failing primary: linearizable."""
    for seed in range(chunk * 50, chunk * 50 + 50):
        sim = run(scenario(seed))
        assert sum(op.status == "ok" for op in sim.history) > 20, f"seed {seed}: too few ok operations"
        r = check(sim.history, CAS_REGISTER, timeout=10)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"


def test_kv_linearizable_and_backups_converge():
    """get/append on 3 keys: linearizable; after the quiet tail every backup's log is the primary's."""
    for seed in range(30):
        sim = run(scenario(seed, ops={"get": 0.5, "append": 0.5}, keys=3), until=DURATION + 500)
        r = check(sim.history, KV, timeout=10)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"
        logs = [sim.node(i).log for i in range(sim.n)]
        assert all(log == logs[0] for log in logs), f"seed {seed}: backups differ from the primary"


def test_updates_block_while_a_backup_is_down():
    """CP: with backup 2 crashed from 200 to 800 ms, no update invoked in that window completes ok
    before the backup returns; reads at the primary still do."""
    sched = [{"at_ms": 200, "fault": "crash", "node": 2}, {"at_ms": 800, "fault": "restart", "node": 2}]
    scn = ScenarioConfig.model_validate({
        "seed": 3, "world": {"nodes": 3, "duration_ms": 1200}, "nemesis": {"schedule": sched},
        "workload": {"clients": 6, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 10, "timeout_ms": 2000}})
    sim = run(scn)
    window = [op for op in sim.history if 210 < op.invoke < 700 and op.node != 2]
    writes = [op for op in window if op.f == "write"]
    assert writes and all(op.status != "ok" or op.complete >= 800 for op in writes)
    assert any(op.status == "ok" for op in writes), "blocked writes should finish once the backup is back"
    assert any(op.f == "read" and op.status == "ok" and op.complete < 800 for op in window)
    assert check(sim.history, CAS_REGISTER).ok is True


def test_local_reads_at_backups_are_caught_by_the_checker():
    """serve action 0 (read a backup's own copy) under partitions: stale reads found."""
    found = 0
    for seed in range(10):
        scn = scenario(seed, ops={"read": 0.5, "write": 0.5}, schedule=[], random_kinds=["partition"])
        sim = run(scn, agents={i: (lambda a: 0 if a.mask[0] else 1) for i in range(scn.world.nodes)})
        found += check(sim.history, CAS_REGISTER).ok is False
    assert found >= 3, f"only {found}/10 seeds of local reads were caught"


def test_unknown_primary_is_one_clear_error():
    scn = ScenarioConfig.model_validate({"seed": 0, "world": {"nodes": 3, "duration_ms": 100}})
    with pytest.raises(ValueError, match="protocol.params.primary: node 5 does not exist"):
        run(scn, PB.Params(primary=5))


def test_config_validates_and_runs():
    raw = yaml.safe_load((ROOT / "configs/primary_backup.yaml").read_text())
    assert raw["protocol"]["name"] == "primary_backup"
    params = PB.Params(**raw["protocol"]["params"])
    scn = ScenarioConfig.model_validate({k: v for k, v in raw.items() if k not in ("experiment", "protocol")})
    scn.world.duration_ms = 1000.0
    sim = run(scn, params)
    assert any(op.status == "ok" for op in sim.history)
    assert check(sim.history, CAS_REGISTER).ok is True
