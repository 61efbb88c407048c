"""ABD (agents/protocols/abd.py): linearizable under every fault over 200 seeds; live under loss;
the serve choice works (local answers are caught by the checker, refusals fail); the config runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from agents.protocols import get
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.linearizability import check
from metrics.models import REGISTER, partition_by_key

ABD = get("abd")
KINDS = ["partition", "crash", "pause", "slow", "clock", "loss"]
REGISTERS = dataclasses.replace(REGISTER, partition=partition_by_key)  # one register per key
ROOT = Path(__file__).resolve().parent.parent


def scenario(seed, nodes=None, kinds=KINDS, duration=1500.0, keys=None, loss=0.0):
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes or 3 + seed % 3, "duration_ms": duration,
                  "network": {"latency": {"dist": "exponential", "mean": 5}, "loss": loss}},
        "nemesis": {"random": {"kinds": kinds, "interval_ms": 200, "duration_ms": 150}} if kinds else {},
        "workload": {"clients": 4, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 10, "timeout_ms": 300,
                     "keys": (seed % 2) * 2 if keys is None else keys},
    })


def run(scn, params=None, agents=None):
    sim = build_sim(scn, ABD, params or ABD.Params(), agents=agents)
    sim.run(until=scn.world.duration_ms)
    return sim


@pytest.mark.parametrize("chunk", range(4))
def test_linearizable_under_random_faults(chunk):
    """200 seeds, 3-5 nodes, one register or two keys, every nemesis kind: every history linearizable."""
    for seed in range(chunk * 50, chunk * 50 + 50):
        sim = run(scenario(seed))
        oks = sum(op.status == "ok" for op in sim.history)
        assert oks > 20, f"seed {seed}: only {oks} operations completed ok"
        r = check(sim.history, REGISTERS, timeout=10)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"


def test_retransmission_survives_message_loss():
    """30% loss, no other faults: nearly every operation still completes ok (retry_ms retransmits)."""
    total = ok = 0
    for seed in range(10):
        sim = run(scenario(seed, kinds=None, loss=0.3))
        total += len(sim.history)
        ok += sum(op.status == "ok" for op in sim.history)
        assert check(sim.history, REGISTERS).ok is True
    assert ok >= 0.95 * total, f"only {ok} of {total} operations ok under 30% loss"


def test_serve_local_is_caught_by_the_checker():
    """Answering from local state (action 0) under partitions: the checker finds stale reads."""
    found = 0
    for seed in range(10):
        sim = run(scenario(seed, nodes=3, kinds=["partition"], keys=0), agents={i: lambda a: 0 for i in range(3)})
        found += check(sim.history, REGISTER).ok is False
    assert found >= 5, f"only {found}/10 seeds of local serving were caught"


def test_serve_refuse_fails_everything_and_obs_is_local():
    asks = []

    def refuse(ask):
        asks.append(ask)
        return 2

    sim = run(scenario(1, nodes=3, kinds=None), agents={i: refuse for i in range(3)})
    assert sim.history and all(op.status == "fail" for op in sim.history)
    assert {a.point[0] for a in asks} == {"serve"} and all(a.default == 1 for a in asks)
    for a in asks:
        assert len(a.obs) == 4 and all(isinstance(x, float) and 0.0 <= x <= 1.0 for x in a.obs)
    late = [a for a in asks if a.t > 500]
    assert late and all(a.obs[1] == 1.0 and a.obs[2] == 1.0 for a in late)  # heartbeats: all peers heard


def test_cas_is_refused():
    scn = ScenarioConfig.model_validate({"seed": 0, "world": {"nodes": 3, "duration_ms": 300},
                                         "workload": {"clients": 2, "ops": {"cas": 1.0}}})
    sim = run(scn)
    assert sim.history and all(op.status == "fail" for op in sim.history)


def test_config_validates_and_runs():
    raw = yaml.safe_load((ROOT / "configs/abd.yaml").read_text())
    assert raw["protocol"]["name"] == "abd"
    params = ABD.Params(**raw["protocol"]["params"])
    scn = ScenarioConfig.model_validate({k: v for k, v in raw.items() if k not in ("experiment", "protocol")})
    scn.world.duration_ms = 1000.0
    sim = run(scn, params)
    assert any(op.status == "ok" for op in sim.history)
    assert check(sim.history, REGISTERS).ok is True


def test_same_seed_same_history():
    a, b = run(scenario(11)), run(scenario(11))
    assert [op.to_dict() for op in a.history] == [op.to_dict() for op in b.history]


@pytest.mark.parametrize("chunk", range(2))
def test_replica_group_linearizable_under_random_faults(chunk):
    """``replicas: r`` < nodes (the other nodes only coordinate, as ABD's readers and writers):
    60 seeds, 4-9 nodes, r from 1 to nodes-1, every nemesis kind: every history linearizable, and
    operations coordinated by client-only nodes complete."""
    by_client = 0
    for seed in range(chunk * 30, chunk * 30 + 30):
        n = 4 + seed % 6
        r = 1 + seed % (n - 1)
        scn = scenario(seed, nodes=n)
        scn.workload.clients = n  # a client per node: every coordinator is used
        sim = run(scn, ABD.Params(replicas=r))
        oks = [op for op in sim.history if op.status == "ok"]
        assert len(oks) > 20, f"seed {seed}: only {len(oks)} operations completed ok"
        by_client += sum(op.node >= r for op in oks)
        res = check(sim.history, REGISTERS, timeout=10)
        assert res.ok is True, f"seed {seed} (n={n}, r={r}): not linearizable at {res.failing_op}"
    assert by_client > 300, f"only {by_client} operations were coordinated by client-only nodes"


def test_replica_group_costs_grow_with_replicas_not_nodes():
    """At 30 nodes with 3 replicas, only replicas ping and a quorum operation costs about 4 * 2
    messages (majority of 3); with every node a replica it costs about 4 * 15 plus 30^2 pings."""
    def per_op(r):
        scn = scenario(3, nodes=30, kinds=None, keys=0)
        scn.workload.clients = 30
        sim = run(scn, ABD.Params(replicas=r))
        oks = sum(op.status == "ok" for op in sim.history)
        return sim.sent_counts(), sum(sim.sent_counts()) / oks, oks

    counts, small, oks = per_op(3)
    assert oks > 100
    assert small < 16, small  # query + store to 3 replicas (or fewer retried), 2 acks each
    assert all(c > 0 for c in counts[:3])
    _, full, _ = per_op(0)
    assert full > 5 * small, (full, small)


def test_every_node_a_replica_is_the_default():
    """``replicas`` 0 and ``replicas`` = nodes give the same history (the default's seeds are kept)."""
    a = run(scenario(7, nodes=5), ABD.Params(replicas=0))
    b = run(scenario(7, nodes=5), ABD.Params(replicas=5))
    assert [op.to_dict() for op in a.history] == [op.to_dict() for op in b.history]


def test_replicas_beyond_the_nodes_are_refused():
    from envs.register import parallel_env
    from experiments.config import UserError, load_config

    with pytest.raises(ValueError, match="protocol_params: replicas=7 but only 5 nodes"):
        parallel_env(nodes=5, protocol_params={"replicas": 7})
    with pytest.raises(UserError, match="replicas=9 but only 5 nodes"):
        load_config(ROOT / "configs/abd.yaml", ["protocol.params.replicas=9"])
    with pytest.raises(ValueError, match="^protocol_params.replicas: Input should be a valid integer"):
        parallel_env(nodes=5, protocol_params={"replicas": True})  # not read as 1
    with pytest.raises(ValueError, match="^protocol_params.replicas: unknown key"):
        parallel_env(nodes=5, protocol="eventual", protocol_params={"replicas": 3})


@pytest.mark.slow
def test_replica_group_linearizable_over_600_seeds():
    for seed in range(60, 660):
        n = 4 + seed % 8
        scn = scenario(seed, nodes=n)
        scn.workload.clients = n
        sim = run(scn, ABD.Params(replicas=1 + seed % (n - 1)))
        r = check(sim.history, REGISTERS, timeout=30)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"


@pytest.mark.slow
def test_linearizable_over_2000_seeds():
    for seed in range(200, 2200):
        sim = run(scenario(seed))
        r = check(sim.history, REGISTERS, timeout=30)
        assert r.ok is True, f"seed {seed}: not linearizable at {r.failing_op}"
