"""The measures ``capgym evaluate --runtime live`` computes from a run's history and trace
(``experiments.evaluate_live``) are the environment's: on simulated episodes (the trace kept in
full), Register-v0's and Consensus-v0's measures, local returns and welfare, and Byzantine-v0's
measures and welfare, equal what the environment reports. No Ray needed."""

from __future__ import annotations

import pytest

import envs.base
from agents import population
from envs.world.build import build_sim
from experiments import evaluate_live
from experiments.cli import UserError
from experiments.evaluate_cmd import make_eval_env, play


@pytest.fixture
def full_trace(monkeypatch):
    """Environments keep every send in their trace (they drop them by default; live traces have them)."""
    monkeypatch.setattr(envs.base, "build_sim", lambda *a, **k: build_sim(*a, **{**k, "full_trace": True}))


@pytest.mark.parametrize("env_id, mode", [("capgym/Register-v0", "local"), ("capgym/Register-v0", "global"),
                                          ("capgym/Register-v0", "mixed"), ("capgym/Consensus-v0", "local")])
def test_measures_from_history_and_trace_equal_the_environments(full_trace, env_id, mode):
    spec = {"id": env_id, "params": {"nodes": 5, "duration_ms": 1000, "faults": True, "reward_mode": mode,
                                     "mixed_weight": 0.3}}
    env = make_eval_env(spec)
    compared = 0
    for name in ("textbook", "random"):
        seat = population.scripted_seat(name, env_id)
        pop = population.Population(spec, 5, [], seat, seat)
        for seed in (1, 2):
            got = play(env, pop.act, seed)
            ep = env.episode
            m = evaluate_live.MEASURES[ep.game.name](ep.game, ep.scn, list(ep.sim.history),
                                                     list(ep.sim.trace.events()), {"true_time_ms": ep.sim.now}, seed)
            assert m.pop("welfare") == pytest.approx(ep.welfare, abs=1e-6)
            assert m["returns"] == pytest.approx(ep.returns(), abs=1e-6)
            # what the rewards summed to in the env's mode (local, the welfare, or their mix)
            paid = evaluate_live.paid(ep.game.cfg, m["returns"], ep.welfare, 5)
            assert paid == pytest.approx(list(got["returns"].values()), abs=1e-6)
            assert (paid == m["returns"]) == (mode == "local")
            assert m["decisions"] > 0
            for k, v in m.items():
                assert got["global"][k] == v, k
                compared += 1
    assert compared > 20


def test_what_cannot_run_live_says_so_in_one_line():
    with pytest.raises(UserError, match="Commons-v0 cannot run live") as e:
        evaluate_live.check_live("capgym/Commons-v0")
    assert "\n" not in str(e.value)
    evaluate_live.check_live("capgym/Register-v0")
    evaluate_live.check_live("capgym/Byzantine-v0")
    assert evaluate_live.SIM_ONLY["capgym/Byzantine-v0"] == ["returns"]
    assert "effective_leader_fraction" in evaluate_live.SIM_ONLY["capgym/Election-v0"]


def test_commons_live_evaluation_is_refused_before_anything_is_written(tmp_path, capsys):
    from agents.learn import checkpoint
    from agents.learn.config import TrainConfig
    from agents.learn.ppo import train
    from experiments.cli import main

    cfg = TrainConfig.model_validate({"env": {"id": "capgym/Commons-v0", "params": {"nodes": 3, "duration_ms": 500}},
                                      "ppo": {"total_steps": 128, "num_envs": 2, "num_steps": 64}})
    ck = checkpoint.save(tmp_path / "ck", train(cfg))
    out = tmp_path / "res"
    for flag in (["--runtime", "live"], ["--compare-runtimes"]):
        assert main(["evaluate", str(ck), *flag, "--output-root", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Commons-v0 cannot run live" in err, err
    assert not out.exists()


@pytest.mark.parametrize("params", [{"faults": True}, {"honest_learners": True, "faults": ["crash", "partition"]},
                                    {"nodes": 4, "adversaries": 2, "collude": True}])
def test_byzantine_measures_from_history_and_trace_equal_the_environments(full_trace, params):
    """Byzantine-v0: every measure the environment reports (requests ok and failed, throughput,
    view changes, the safety verdict, the choices made) and the welfare (the adversaries' team
    reward) come out the same from the history and the trace; the local returns are sim-only."""
    spec = {"id": "capgym/Byzantine-v0", "params": {"nodes": 7, "duration_ms": 1500, "reward_mode": "global",
                                                    **params}}
    env = make_eval_env(spec)
    n = env.unwrapped.game.cfg.nodes if hasattr(env, "unwrapped") else env.game.cfg.nodes
    violations = failed = views = 0
    for name in ("random", "textbook"):
        seat = population.scripted_seat(name, spec["id"])
        pop = population.Population(spec, n, [], seat, seat)
        for seed in (1, 2, 3):
            got = play(env, pop.act, seed)
            ep = env.episode
            m = evaluate_live.MEASURES[ep.game.name](ep.game, ep.scn, list(ep.sim.history),
                                                     list(ep.sim.trace.events()), {"true_time_ms": ep.sim.now}, seed)
            assert m.pop("returns") is None
            assert m.pop("welfare") == pytest.approx(ep.welfare, abs=1e-6)
            assert evaluate_live.paid(ep.game.cfg, None, ep.welfare, n, ep.side) == pytest.approx(
                list(got["returns"].values()), abs=1e-6)
            want = {k: v for k, v in got["global"].items() if k != "returns"}
            assert m == want, {k: (m.get(k), want.get(k)) for k in want if m.get(k) != want.get(k)}
            violations += m["safety_violation"]
            failed += m["ops_failed"]
            views += m["view_changes"]
    assert failed > 0 and views > 0  # the adversaries made a difference the measures saw
    if "adversaries" not in params:
        assert violations == 0  # none within PBFT's bound


def test_byzantine_ask_policy_sees_the_nodes_state_without_an_episode():
    """What a live actor does at ``ctx.ask``, here in a bare simulator (no environment, no episode):
    Byzantine-v0's ``AskPolicy`` builds the environment's observation from the ask alone, the
    node's own PBFT state included (it moves: views, pending requests), with the game's length."""
    spec = {"id": "capgym/Byzantine-v0", "params": {"nodes": 4, "duration_ms": 1500, "honest_learners": True}}
    game = population.game_of(spec)
    seen = []

    def record(obs, mask):
        seen.append(list(obs))
        return 1 if obs[-1] and mask[1] and obs[1] else 0  # the primary drops its pre-prepares: views change

    seat = population.Seat("scripted", record, "record")
    agents = {k: population.AskPolicy(spec, seat, k) for k in range(4)}
    scn = game.scenario(5)
    cls, params = game.node_program()
    sim = build_sim(scn, cls, params, agents=agents)
    for i, (strategy, opts) in game.adversaries().items():
        sim.byzantine(i, strategy, **opts)
    sim.run(until=scn.world.duration_ms)
    assert len(seen) > 50 and all(len(o) == game.n_features + 2 for o in seen)
    phases = [o for o in seen if o[13] == 0.0]
    assert len(phases) > 20 and len({tuple(o[9:13]) for o in phases}) > 3, phases[:5]
    assert any(o[13] == 1.0 for o in seen)  # the correct replicas' view-change-timeout asks
    assert any(e.kind == "view" and e.fields["view"] > 0 for e in sim.trace.events())
