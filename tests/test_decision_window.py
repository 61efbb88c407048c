"""The Parallel API's decision window: a step answers every decision due within
``decision_window_ms`` of the first; 0 (the default) is one moment at a time."""

import random

import pytest

from envs.register import parallel_env


def play(window: float, seed: int = 3, nodes: int = 8) -> tuple[int, int, list]:
    """Steps, decisions and the final history of one episode with random legal actions."""
    env = parallel_env(nodes=nodes, faults=True, duration_ms=1500, decision_window_ms=window)
    rng = random.Random(seed)
    obs, _ = env.reset(seed=seed)
    steps = decisions = 0
    while env.agents:
        owed = [a for a in env.agents if obs[a]["observation"][-1] == 1.0]
        decisions += len(owed)
        if env.episode.sim.pending:  # every decision owed came due within the window of this step
            ts = [a.t for a in env.episode.first_asks().values()]
            assert env.episode.sim.now - max(ts) <= window + 1e-9
        actions = {a: rng.choice([i for i, m in enumerate(obs[a]["action_mask"].tolist()) if m]) for a in env.agents}
        obs, *_ = env.step(actions)
        steps += 1
    return steps, decisions, [(op.f, op.status, op.output) for op in env.episode.sim.history]


def test_a_window_batches_decisions_into_fewer_steps():
    s0, d0, _ = play(0.0)
    s50, d50, _ = play(50.0)
    assert d0 > 20 and d50 > 20
    assert s50 < s0
    assert d50 / s50 > d0 / s0  # more decisions answered per step


def test_window_zero_is_the_default_and_a_window_is_deterministic():
    assert play(0.0) == play(0.0)
    env = parallel_env(nodes=4)
    assert env.cfg.decision_window_ms == 0.0
    assert play(20.0, seed=5) == play(20.0, seed=5)


def test_a_negative_window_is_one_clear_error():
    with pytest.raises(ValueError) as e:
        parallel_env(nodes=4, decision_window_ms=-1)
    assert "decision_window_ms" in str(e.value) and "\n" not in str(e.value)
