"""The fast paths of the environment loop compute exactly what the plain versions did.

* the workload's operation mix: one ``random()`` and a bisect over precomputed cumulative weights
  picks, draw for draw, what ``random.choices(ops, weights)`` picks from the same stream;
* ABD's observation (the suspicion ages without ``min``/``max``) equals the textbook formula,
  edge cases included (never heard, heard "in the future" after a clock bump, exactly
  ``suspect_ms`` ago);
* the rewards of every mode still add up: local returns are the sum of local rewards, and global
  rewards are the same for every agent.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from agents.protocols.abd import ABD, Params
from envs.register import env as register_env
from envs.world.config import WorkloadConfig
from envs.world.rng import derive_rng
from envs.world.workload import Workload


@pytest.mark.parametrize("ops", [{"get": 0.2, "put": 0.5, "append": 0.3}, {"read": 1.0, "write": 3.0},
                                 {"get": 0.0, "put": 1.0, "append": 2.0}])
@pytest.mark.parametrize("seed", range(5))
def test_operation_mix_is_random_choices_draw_for_draw(ops, seed):
    # get/put/append and read/write with unique values draw nothing but the operation itself
    wl = Workload(WorkloadConfig(clients=3, ops=ops), seed, 1000.0)
    wl.sim = SimpleNamespace(n=3)
    ref = derive_rng(seed, "workload")
    fs = [f for f, w in ops.items() if w > 0]
    want = [ref.choices(fs, [ops[f] for f in fs])[0] if len(fs) > 1 else fs[0] for _ in range(500)]
    got = [wl._op(i % 3).f for i in range(500)]
    assert got == want
    assert set(got) == set(fs)  # every operation with a positive weight comes up, no other


def textbook_obs(heard, now, s, majority, is_write, replica=True):
    ages = [1.0 if t is None else min(1.0, max(0.0, now - t) / s) for t in heard.values()]
    up = sum(a < 1.0 for a in ages)
    peers = max(1, len(ages))
    quorum = up + (1 if replica else 0) >= majority
    return [float(is_write), up / peers, 1.0 if quorum else 0.0, sum(ages) / peers if ages else 0.0]


@pytest.mark.parametrize("seed", range(20))
def test_abd_observation_is_the_textbook_formula(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 9)
    s = rng.choice([300.0, 50.0, 0.5])
    now = rng.uniform(0, 2000)
    node = ABD(Params(suspect_ms=s))
    node.majority = n // 2 + 1
    choices = [None, now, now - s, now + 3.0, now - s / 2, now - 2 * s, now - rng.uniform(0, 2 * s)]
    node.heard = {p: rng.choice(choices) for p in range(1, n)}
    ctx = SimpleNamespace(now=lambda: now)
    for replica in (True, False):  # a client-only node (``replicas`` < n) counts for no majority
        node.replica = replica
        for f in ("read", "write"):
            got = node.observe(ctx, SimpleNamespace(f=f))
            assert got == textbook_obs(node.heard, now, s, node.majority, f == "write", replica)


@pytest.mark.parametrize("mode", ["local", "global", "mixed"])
def test_rewards_add_up(mode):
    e = register_env(nodes=4, faults=True, reward_mode=mode, mixed_weight=0.25, duration_ms=1500.0)
    rng = random.Random(3)
    e.reset(seed=7)
    total = dict.fromkeys(e.possible_agents, 0.0)
    for _agent in e.agent_iter():
        obs, _r, term, trunc, _info = e.last()
        legal = [i for i, m in enumerate(obs["action_mask"].tolist()) if m]
        e.step(None if term or trunc else rng.choice(legal))
        if e.agents and not (term or trunc):
            for a, r in e.rewards.items():
                total[a] += r
            if mode == "global":
                assert len(set(e.rewards.values())) == 1
    if mode == "local":
        assert [round(total[a], 6) for a in e.possible_agents] == e.episode.returns()
    assert any(total.values())  # something was earned or charged
