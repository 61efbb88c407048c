"""PBFT (agents/protocols/pbft.py): over many seeds and every crash-fault kind of the nemesis, correct
replicas never execute different requests at the same sequence number and the history is
linearizable; requests complete after the faults stop; a crashed primary is replaced by a view
change; checkpoints bound the log; same seed, same trace; the config runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agents.protocols import get
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.linearizability import check
from metrics.models import CAS_REGISTER, partition_by_key

PBFT = get("pbft")
KINDS = ["partition", "crash", "pause", "slow", "clock", "loss"]
REGISTERS = dataclasses.replace(CAS_REGISTER, partition=partition_by_key)
PARAMS = PBFT.Params(checkpoint_period=8, view_change_timeout_ms=100, retry_ms=50, give_up_ms=400)
ROOT = Path(__file__).resolve().parent.parent


def scenario(seed, nodes=None, kinds=KINDS, duration=1500.0, schedule=(), loss=0.0):
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes or (4 if seed % 3 else 7), "duration_ms": duration,
                  "network": {"latency": {"dist": "exponential", "mean": 5}, "loss": loss}},
        "nemesis": {"schedule": list(schedule),
                    **({"random": {"kinds": kinds, "interval_ms": 200, "duration_ms": 150,
                                   "stop_ms": 0.6 * duration}} if kinds else {})},
        "workload": {"clients": 4, "ops": {"read": 0.4, "write": 0.4, "cas": 0.2}, "think_ms": 10,
                     "timeout_ms": 500, "keys": (seed % 2) * 2},
    })


def run(scn, params=PARAMS):
    sim = build_sim(scn, PBFT, params)
    sim.run(until=scn.world.duration_ms)
    return sim


def executions(sim, exclude=()):
    """seq -> {request executed there} over the replicas not in ``exclude``."""
    out: dict = {}
    for e in sim.trace.events():
        if e.kind == "execute" and e.node not in exclude:
            out.setdefault(e.fields["seq"], set()).add(e.fields["op"])
    return out


def completed(op):
    """Answered from an execution: ok, or a cas whose comparison failed."""
    return op.status == "ok" or (op.f == "cas" and op.status == "fail")


@pytest.mark.parametrize("chunk", range(2))
def test_safe_and_live_under_random_faults(chunk):
    """40 seeds, 4 or 7 replicas, every crash-fault kind until 60% of the run: one request per
    sequence number across replicas, linearizable, and requests complete after the faults stop."""
    late = late_done = 0
    for seed in range(chunk * 20, chunk * 20 + 20):
        scn = scenario(seed)
        sim = run(scn)
        ex = executions(sim)
        assert ex, f"seed {seed}: nothing executed"
        split = {n: s for n, s in ex.items() if len(s) > 1}
        assert not split, f"seed {seed}: different requests executed at {split}"
        r = check(sim.history, REGISTERS, timeout=10)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"
        after = [op for op in sim.history if 0.75 * scn.world.duration_ms < op.invoke < 0.9 * scn.world.duration_ms]
        late += len(after)
        late_done += sum(map(completed, after))
    assert late > 80 and late_done >= 0.95 * late, f"only {late_done} of {late} requests after the heal completed"


@pytest.mark.slow
def test_safe_under_random_faults_200_seeds():
    """The long sweep: 200 more seeds, with 20% extra loss on odd seeds."""
    for seed in range(40, 240):
        sim = run(scenario(seed, loss=0.2 * (seed % 2)))
        split = {n: s for n, s in executions(sim).items() if len(s) > 1}
        assert not split, f"seed {seed}: different requests executed at {split}"
        r = check(sim.history, REGISTERS, timeout=30)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"


def test_crashed_primary_is_replaced_by_a_view_change():
    """The primary of view 0 crashes for good: the others move to a later view and keep executing."""
    for seed in range(5):
        scn = scenario(seed, nodes=4, kinds=None, duration=2000.0,
                       schedule=[{"at_ms": 300, "fault": "crash", "node": 0}])
        sim = run(scn)
        views = {e.fields["view"] for e in sim.trace.events() if e.kind == "view"}
        assert views and min(views) >= 1, f"seed {seed}: no view change after the primary crashed"
        after = [op for op in sim.history if 1000 < op.invoke < 1800 and op.node != 0]
        assert after and all(map(completed, after)), f"seed {seed}: requests stalled after the view change"
        assert check(sim.history, REGISTERS).ok is True


def test_checkpoints_collect_garbage():
    """Stable checkpoints move the low water mark: the log never holds more than the window L."""
    sim = run(scenario(1, nodes=4, kinds=None, duration=2000.0))
    L = PARAMS.checkpoint_period * PARAMS.log_factor
    for i in range(4):
        node = sim.node(i)
        assert node.h >= 100, f"replica {i}: low water mark only {node.h}"
        assert all(node.h < n <= node.h + L for (_, n) in node.preprepared)
        assert len(node.checkpoints) <= 2 * (L // PARAMS.checkpoint_period) + 1


def test_lagging_replica_catches_up_by_state_transfer():
    """A replica cut off for a while, then healed, fetches a stable checkpoint's state."""
    scn = scenario(2, nodes=4, kinds=None, duration=2500.0,
                   schedule=[{"at_ms": 200, "fault": "partition", "groups": [[3], [0, 1, 2]]},
                             {"at_ms": 1200, "fault": "heal"}])
    sim = run(scn)
    kinds = [e.kind for e in sim.trace.events() if e.node == 3]
    assert "state_transfer" in kinds
    assert sim.node(3).last_exec == max(sim.node(i).last_exec for i in range(4)) or sim.node(3).last_exec > 100
    assert check(sim.history, REGISTERS).ok is True


def test_same_seed_same_trace():
    a, b = run(scenario(5)), run(scenario(5))
    assert [tuple(e) for e in a.trace.raw] == [tuple(e) for e in b.trace.raw]


def test_message_loss_only_delays():
    """20% loss throughout: retransmission and view changes keep it going, and it stays safe."""
    done = total = 0
    for seed in range(5):
        sim = run(scenario(seed, nodes=4, kinds=None, loss=0.2))
        assert check(sim.history, REGISTERS).ok is True
        total += len(sim.history)
        done += sum(map(completed, sim.history))
    assert done >= 0.8 * total, f"{done} of {total}"


def test_config_runs(tmp_path):
    from experiments.config import load_config
    from experiments.runner import run_entry

    cfg = load_config(ROOT / "configs" / "pbft.yaml", ["world.duration_ms=2000"])
    data = run_entry(cfg, cfg.entries()[0], progress=False)
    assert sum(op.status == "ok" for op in data.history) > 50
