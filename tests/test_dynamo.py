"""The Dynamo-style partial-quorum store (agents/protocols/dynamo.py): over many seeds, parameters
and fault schedules it never returns a value that was never written; with R + W > N its reads are
never stale, whatever the clock skew (and, as measured here, under crashes, partitions, pauses and
loss too); with R + W <= N they are, as PBS says; non-expanding quorums send only to R / W
replicas; read repair and anti-entropy make replicas converge; same seed, same history."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.protocols import available, get
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.staleness import staleness

DYNAMO = get("dynamo")
KINDS = ["partition", "crash", "pause", "slow", "clock", "loss"]
ROOT = Path(__file__).resolve().parent.parent


def scenario(seed, nodes=5, kinds=KINDS, keys=2, clocks=None, duration=1500.0, duplicate=0.05, clients=4, loss=0.0):
    world = {"nodes": nodes, "duration_ms": duration,
             "network": {"latency": {"dist": "exponential", "mean": 5}, "duplicate": duplicate, "loss": loss}}
    if clocks:
        world["clocks"] = clocks
    return ScenarioConfig.model_validate({
        "seed": seed, "world": world,
        "nemesis": {"random": {"kinds": kinds, "interval_ms": 200, "duration_ms": 150}} if kinds else {},
        "workload": {"clients": clients, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 10, "timeout_ms": 300,
                     "keys": keys}})


def run(scn, **params):
    sim = build_sim(scn, DYNAMO, DYNAMO.Params(**params))
    sim.run(until=scn.world.duration_ms)
    return sim


def params_for(seed: int, n: int, intersect: bool = False) -> dict:
    """A spread of (N, R, W, modes) drawn from the seed; ``intersect``: W in N+1-R..N, so R + W > N."""
    N = 1 + seed % n
    R = 1 + (seed // 3) % N
    W = N + 1 - R + (seed // 7) % R if intersect else 1 + (seed // 5) % N
    return {"N": N, "R": R, "W": W, "expanding": seed % 3 != 0, "read_repair": seed % 4 == 0,
            "anti_entropy_ms": 50.0 if seed % 5 == 0 else 0.0}


@pytest.mark.parametrize("chunk", range(2))
def test_never_returns_a_value_never_written(chunk):
    """100 seeds, 3-6 nodes, every N, R, W and mode, every fault kind plus duplication: every read
    returns the initial value or a written one."""
    oks = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        n = 3 + seed % 4
        p = params_for(seed, n)
        sim = run(scenario(seed, nodes=n, keys=seed % 3), **p)
        written = {op.value for op in sim.history if op.f == "write"}
        for op in sim.history:
            if op.f == "read" and op.status == "ok":
                assert op.output is None or op.output in written, f"seed {seed} {p}: read {op.output!r} never written"
        oks += sum(op.status == "ok" for op in sim.history)
    assert oks > 50 * 50  # the runs did work


@pytest.mark.parametrize("expanding", [True, False])
def test_intersecting_quorums_never_stale_whatever_the_clock_skew(expanding):
    """R + W > N, no network faults, clocks up to 1 s apart drifting 1% and bumped / strobed by the
    nemesis: no stale read over 50 seeds (versions never read a clock)."""
    reads = 0
    for seed in range(50):
        n = 3 + seed % 4
        p = params_for(seed, n, intersect=True) | {"expanding": expanding}
        assert p["R"] + p["W"] > p["N"]
        sim = run(scenario(seed, nodes=n, kinds=["clock"], keys=seed % 3, duplicate=0.0,
                           clocks={"max_offset_ms": 1000, "max_drift": 0.01, "jitter_ms": 1.0}), **p)
        s = staleness(sim.history, visibility=False)
        assert s["stale_reads"] == 0, f"seed {seed} {p}: {s['stale_reads']} stale reads"
        reads += s["reads"]
    assert reads > 5000


def test_intersecting_quorums_never_stale_under_faults():
    """Stronger than the issue asks: R + W > N under crashes, partitions, pauses, slow nodes, loss
    and duplication (replicas keep their versions on disk) -- still no stale read, 40 seeds."""
    reads = 0
    for seed in range(40):
        n = 3 + seed % 4
        p = params_for(seed, n, intersect=True)
        s = staleness(run(scenario(seed, nodes=n, keys=seed % 3), **p).history, visibility=False)
        assert s["stale_reads"] == 0, f"seed {seed} {p}"
        reads += s["reads"]
    assert reads > 3000


def test_partial_quorums_are_stale():
    """R + W <= N: stale reads happen (the measure can fail), more for non-expanding quorums, which
    never spread a write beyond its W replicas."""
    stale = {True: 0, False: 0}
    for seed in range(10):
        for expanding in (True, False):
            sim = run(scenario(seed, nodes=5, kinds=None, keys=0), N=5, R=1, W=2, expanding=expanding)
            stale[expanding] += staleness(sim.history, visibility=False)["stale_reads"]
    assert stale[True] > 0 and stale[False] > stale[True]


def test_non_expanding_sends_only_to_the_quorum():
    """N = 5, R = W = 1, one client at a node that replicates nothing of key 1 (nodes 1..5 do):
    non-expanding, each read is 1 get + 1 reply and each write 2 round trips to single replicas."""
    scn = scenario(0, nodes=6, kinds=None, keys=0, duplicate=0.0, clients=1)
    per_op = {}
    for expanding in (True, False):
        sim = build_sim(scn, DYNAMO, DYNAMO.Params(N=5, R=1, W=1, expanding=expanding), workload=False)
        from envs.world.records import Op

        for i in range(20):
            sim.call_at(10.0 * i, sim.submit, Op(i, 0, "write" if i % 2 == 0 else "read", i, 1, 0))
        sim.run(until=1000)
        assert all(op.status == "ok" for op in sim.history) and len(sim.history) == 20
        per_op[expanding] = sum(sim.sent_counts()) / 20
    assert per_op[False] == pytest.approx(3.0)  # (2 + 4) / 2: get+reply, then get+reply+put+ack
    assert per_op[True] == pytest.approx(15.0)  # the same to all 5 replicas


@pytest.mark.parametrize("repair", ["read_repair", "anti_entropy_ms"])
def test_repair_makes_replicas_converge(repair):
    """R = W = 1 on N = 3 with 20% message loss leaves replicas apart (a put is not retransmitted
    once W acks came). Then the loss stops and one read per key is made: with read repair (or with
    anti-entropy, and no reads needed) every key's replicas end equal; without either (the
    default) they stay apart."""
    from envs.world.records import Op

    def apart(sim, keys):
        nodes = [sim.node(i) for i in range(sim.n)]
        return sum(len({nodes[r].local(k)[0] for r in nodes[0].preference_list(k)}) > 1 for k in range(keys))

    on = {"read_repair": True} if repair == "read_repair" else {"anti_entropy_ms": 20.0}
    diverged = {False: 0, True: 0}
    for seed in range(6):
        scn = scenario(seed, nodes=4, kinds=None, keys=3, duration=1000, loss=0.2)
        for flag in (False, True):
            sim = run(scn, N=3, R=1, W=1, **(on if flag else {}))
            sim.set_loss(0.0)
            sim.run(until=1200)  # the workload has stopped and its operations ended
            for k in range(3):
                sim.submit(Op(10**6 + k, 0, "read", None, k, k))
            sim.run(until=2500)
            diverged[flag] += apart(sim, 3)
    assert diverged[False] >= 3
    assert diverged[True] == 0


def test_same_seed_same_history_and_params_validated():
    a = run(scenario(3), N=3, R=1, W=2, expanding=False)
    b = run(scenario(3), N=3, R=1, W=2, expanding=False)
    assert [(o.id, o.status, o.output, o.complete) for o in a.history] == \
        [(o.id, o.status, o.output, o.complete) for o in b.history]
    with pytest.raises(ValueError, match="at most N"):
        DYNAMO.Params(N=3, R=4)
    with pytest.raises(ValueError, match="only 5 nodes"):
        run(scenario(0), N=7, R=1, W=1)


def test_listed_and_config_runs(tmp_path, monkeypatch):
    from experiments.cli import main

    assert "dynamo" in available()
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(ROOT / "configs" / "dynamo.yaml"), "world.duration_ms=1000", "wandb.mode=disabled",
                 "output.plots=false"]) == 0


def test_the_quorum_choice_is_an_agents():
    """``("quorum", op)``: an agent that waits for all N replies on an R = W = 1 store removes its
    stale reads; the default (R or W) keeps them."""
    scn = scenario(2, nodes=5, kinds=None, keys=0)
    stale = {}
    for who, agents in (("default", None), ("all N", {i: (lambda ask: 4) for i in range(5)})):
        sim = build_sim(scn, DYNAMO, DYNAMO.Params(N=5, R=1, W=1), agents=agents)
        sim.run(until=scn.world.duration_ms)
        stale[who] = staleness(sim.history, visibility=False)["stale_reads"]
    assert stale["default"] > 0 and stale["all N"] == 0
