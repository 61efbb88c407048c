"""``capgym evaluate --baselines``: random and textbook for every game, and each game's scripted
policies, which behave as their names say."""

from __future__ import annotations

import pytest

from agents import scripted
from envs.registry import ENVIRONMENTS
from experiments.evaluate_cmd import baselines


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_every_game_has_random_and_textbook(env_id):
    names = set(baselines(env_id))
    assert {"random", "textbook"} <= names
    extra = {"capgym/Register-v0": {"always_local", "always_quorum"},
             "capgym/Election-v0": {"eager", "shirker"}, "capgym/Commons-v0": {"greedy", "restrained"}}
    assert extra.get(env_id, set()) <= names


def test_election_scripted_policies_choose_what_they_say():
    import capgym

    env = capgym.make("Election-v0", api="aec", nodes=5, duration_ms=3000, leader_crash_ms=0)
    longest = env.action_space("node_0").n - 3  # k fixed timeouts, then the textbook draw and the no-op
    seen = {"eager": set(), "shirker": set(), "textbook": set()}
    total = {}
    for name, policy in (("eager", scripted.election_eager), ("shirker", scripted.election_shirker),
                         ("textbook", scripted.textbook)):
        def record(obs, mask, name=name, policy=policy):
            a = policy(obs, mask)
            if obs[0] > 0 or obs[1] > 0:  # a decision: (kind, action)
                seen[name].add(("timeout" if obs[0] > 0 else "stand", a))
            assert mask[a] or name == "textbook"  # (textbook's no-op asks the env for its default)
            return a

        total[name] = sum(scripted.run_episode(env, record, seed=3)["returns"].values())
    assert ("timeout", 0) in seen["eager"] and ("stand", 1) in seen["eager"]
    assert seen["shirker"] == {("timeout", longest), ("stand", 0)}
    # the textbook's random timeouts elect a leader; everyone eager splits every vote (identical
    # timeouts: Raft's 150-150 line of Fig. 16); everyone shirking, nobody ever stands. Each node
    # pays miss_cost (1) per second it hears no leader: 3 s x 5 nodes without one
    assert total["textbook"] > -1.0
    assert total["eager"] == pytest.approx(-15.0, abs=0.01) and total["shirker"] == pytest.approx(-15.0, abs=0.01)
