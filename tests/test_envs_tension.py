"""The intended tension: local incentives against global outcomes."""

import pytest

from agents.scripted import always_local, always_quorum, greedy, make_restrained, run_episode
from envs.commons import env as commons_env
from envs.register import env as register_env

PARTITION = {"schedule": [{"at_ms": 100, "fault": "partition", "shape": "majority"}]}


@pytest.mark.parametrize("seed", range(4))
def test_register_local_earns_more_and_is_less_consistent_under_partition(seed):
    def play(policy):
        return run_episode(register_env(nodes=5, duration_ms=1200, nemesis=PARTITION), policy, seed=seed)

    local, quorum = play(always_local), play(always_quorum)
    assert sum(local["returns"].values()) > sum(quorum["returns"].values())
    gl, gq = local["global"], quorum["global"]
    assert gq["linearizable"] is True and gq["stale_reads"] == 0
    assert gl["linearizable"] is False and gl["stale_reads"] > 0
    assert gl["availability"] > gq["availability"]


@pytest.mark.parametrize("seed", range(3))
def test_commons_greedy_collapses_restrained_does_not(seed):
    def play(policy):
        return run_episode(commons_env(nodes=5, duration_ms=4000, faults=True), policy, seed=seed)["global"]

    g, r = play(greedy), play(make_restrained())
    assert g["collapsed"] and g["final_level"] == 0.0
    assert not r["collapsed"] and r["min_level"] > 0.3 * 100
