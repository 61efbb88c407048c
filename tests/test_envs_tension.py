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


WORKLOADS = [
    {},
    {"protocol": "eventual"},
    {"workload": {"clients": 5, "keys": 3, "ops": {"read": 0.5, "write": 0.5}}},
    {"protocol": "eventual", "workload": {"clients": 5, "keys": 2, "ops": {"get": 0.4, "put": 0.3, "append": 0.3}}},
]


@pytest.mark.parametrize("extra", WORKLOADS, ids=["abd", "eventual", "abd-keys", "eventual-append"])
def test_register_online_stale_reads_match_the_final_measure(extra):
    """The observer charges a stale read the moment it completes: over whole faulty episodes its
    online count equals metrics.staleness on the finished history, and the global reward pays
    exactly that penalty (the welfare is what all earned, less stale_penalty per stale read)."""
    from agents.scripted import make_random
    from metrics.staleness import staleness

    stale_total = 0
    for seed in range(6):
        e = register_env(nodes=5, duration_ms=800, faults=True, check_linearizability=False,
                         reward_mode="global", stale_penalty=3.0, **extra)
        policy = make_random(seed) if seed % 2 else always_local
        out = run_episode(e, policy, seed=seed)
        ep = e.episode
        final = staleness(list(ep.sim.history))["stale_reads"]
        assert ep.stale.count == final == out["global"]["stale_reads"]
        stale_total += final
        earned = sum(ep.earned)
        assert sum(out["returns"].values()) == pytest.approx(earned - 3.0 * final, abs=1e-6)
    assert stale_total > 0


def test_register_global_reward_charges_stale_reads_when_they_happen():
    """Under a partition, always-local agents see their global reward drop during the episode
    (not only at its end): most of the stale-read penalty is paid before the last step."""
    from envs.register import parallel_env

    env = parallel_env(nodes=5, duration_ms=1200, nemesis=PARTITION, reward_mode="global", stale_penalty=4.0,
                       check_linearizability=False)
    obs, _ = env.reset(seed=1)
    per_step = []
    while env.agents:
        acts = {a: 0 if obs[a]["action_mask"][0] else 3 for a in env.agents}
        obs, rew, *_ = env.step(acts)
        per_step.append(rew["node_0"])
    assert len(set(round(r, 9) for r in per_step)) > 3
    negative = [r for r in per_step[:-1] if r < 0]
    assert len(negative) > 5 and sum(negative) < -4.0
    assert env.global_measures()["stale_reads"] > 5
