"""``capgym evaluate RUN --compare-runtimes``: a tiny trained Register-v0 policy plays as live Ray
actors, one per node, on the same scenario and partition schedule as in sim, and its availability
and stale-read rate land near the simulated ones.

Tolerance (stated, wide): live runs keep real time on a loaded 2-core machine, where a hop costs a
Ray call and a batch interval on top of the drawn latency (``docs/live.md``), so fewer operations
complete and the interleavings differ. We ask the means over 3 seeds to be within 0.25 in
availability and 0.30 in stale-read rate; what tells the two runtimes' agents apart is much larger
(a policy that answers by quorum reads nothing stale; one that answers locally reads about half of
its reads stale)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from agents.learn import checkpoint  # noqa: E402
from agents.learn.config import TrainConfig  # noqa: E402
from agents.learn.ppo import train  # noqa: E402
from experiments.cli import main  # noqa: E402

SCHEDULE = {"schedule": [{"at_ms": 300, "fault": "partition", "shape": "majority"}, {"at_ms": 800, "fault": "heal"}]}


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False)
    yield


def test_trained_register_policy_live_matches_sim(tmp_path, ray_session):
    cfg = TrainConfig.model_validate({
        "seed": 0, "env": {"params": {"nodes": 3, "duration_ms": 1000, "nemesis": SCHEDULE,
                                      "check_linearizability": False}},
        "ppo": {"total_steps": 2048, "num_envs": 4, "num_steps": 64, "lr": 0.001}})
    ck = checkpoint.save(tmp_path / "ck", train(cfg))
    root = tmp_path / "res"
    assert main(["evaluate", str(ck), "--compare-runtimes", "--seeds", "1", "2", "3",
                 "--output-root", str(root), "-q"]) == 0
    (run,) = (root / "evaluate").iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert s["runtime"] == "sim+live" and set(s["runs"]) == {"trained", "trained@live"}
    live = s["runs"]["trained@live"]
    assert live["ops"] > 10 and live["decisions"] > 10  # the nodes asked, the policy answered
    assert all(not st["errors"] and not st["actor_deaths"] for st in s["live_stats"]["trained"])
    c = s["compare"]["trained"]
    print({k: c[k] for k in ("availability", "stale_fraction", "ops")})
    assert abs(c["availability"]["difference"]) <= 0.25, c["availability"]
    assert abs(c["stale_fraction"]["difference"]) <= 0.30, c["stale_fraction"]
    # the trained agents answer many operations locally, in sim and live alike (the protocol's own
    # choice, quorum, would read nothing stale)
    assert c["stale_fraction"]["sim"] > 0.2 and c["stale_fraction"]["live"] > 0.1, c["stale_fraction"]
    assert s["sim_only"] == []


def test_trained_byzantine_adversary_plays_live(tmp_path, ray_session, capsys):
    """Byzantine-v0 live: a tiny trained adversary (node 0, the primary of view 0, in a 4-replica
    PBFT) plays inside its node's actor, asked per protocol phase with its own PBFT state in the
    ask; the correct replicas execute requests, stay in agreement, and the correct clients'
    history is linearizable (f = 1 adversary: no violation is possible); the measures come from the
    live history and trace, and the local returns are listed as sim-only."""
    cfg = TrainConfig.model_validate({
        "seed": 0, "env": {"id": "capgym/Byzantine-v0",
                           "params": {"nodes": 4, "adversaries": 1, "duration_ms": 1000, "reward_mode": "global",
                                      "check_linearizability": False}},
        "ppo": {"total_steps": 256, "num_envs": 2, "num_steps": 64, "lr": 0.001}})
    ck = checkpoint.save(tmp_path / "ck", train(cfg))
    root = tmp_path / "res"
    assert main(["evaluate", str(ck), "--compare-runtimes", "--seeds", "1", "2", "--output-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "sim-only (not measured live): returns" in out, out
    (run,) = (root / "evaluate").iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert s["sim_only"] == ["returns"] and set(s["runs"]) == {"trained", "trained@live"}
    assert all(not st["errors"] and not st["actor_deaths"] for st in s["live_stats"]["trained"])
    live, sim = s["runs"]["trained@live"], s["runs"]["trained"]
    print({k: (sim.get(k), live.get(k)) for k in ("ops_ok", "ops_failed", "view_changes", "decisions", "welfare")})
    assert live["decisions"] > 5  # the adversary's node asked its policy, phase by phase
    assert live["ops_ok"] > 0 and live["completed_per_s"] > 0  # requests completed
    assert live["safety_violation"] == 0 and live["linearizable_fraction"] == 1.0  # within PBFT's bound
    # the team reward (global mode: every agent is paid the welfare) is measured live
    assert live["welfare"] is not None and live["return_mean"] == pytest.approx(live["welfare"])
    assert "ops_ok" in s["compare"]["trained"] and "view_changes" in s["compare"]["trained"]


def test_live_colluding_byzantine_adversaries_break_safety_only_past_f(ray_session):
    """The live observer can fail: f + 1 adversaries (the primary among them) that collude at every
    phase, through one shared state across their actors, make correct replicas execute different
    requests at one sequence number; f that do the same break nothing and requests complete."""
    from agents import population, scripted
    from experiments import evaluate_live
    from experiments.evaluate_cmd import make_eval_env

    seat = population.Seat("scripted", scripted.byzantine_phase(5), "collude")  # 5: collude
    for adversaries in (2, 1):
        spec = {"id": "capgym/Byzantine-v0",
                "params": {"nodes": 4, "adversaries": adversaries, "collude": True, "duration_ms": 1500}}
        ep = evaluate_live.play_live(make_eval_env(spec), population.Population(spec, 4, [], seat, seat), 0)
        g = ep["global"]
        assert not ep["live"]["errors"] and g["actions"]["collude"] == g["decisions"] > 20, g
        if adversaries == 2:
            assert g["safety_violation"] and g["log_agreement"]["conflicts"] > 0, g["log_agreement"]
        else:
            assert not g["safety_violation"] and g["linearizable"] is True and g["ops_ok"] > 10, g
