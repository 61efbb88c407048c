"""Election-v0 as a game that can be learned (issue 14): the world crashes leaders, so an episode
holds many elections, and each agent pays for the time it hears no leader.

Before the redesign an episode held one election and a node earned for *believing* in a leader:
textbook 4.82 a node, random 4.79 -- a return that cannot move in training."""

import statistics

import pytest

import envs.election as election
from agents.scripted import make_random, run_episode, textbook

SEEDS = range(5)


def mean_return(policy, seed: int, **kw) -> float:
    out = run_episode(election.parallel_env(**kw), policy, seed=seed)
    return statistics.mean(out["returns"].values())


def test_textbook_beats_random_by_a_margin_a_learner_can_see():
    tb = [mean_return(textbook, s) for s in SEEDS]
    rnd = [mean_return(make_random(s), s) for s in SEEDS]
    assert statistics.mean(tb) - statistics.mean(rnd) > 0.1, (tb, rnd)
    assert sum(t > r for t, r in zip(tb, rnd)) >= 4


def test_leaders_crash_so_episodes_hold_many_elections():
    env = election.parallel_env()
    out = run_episode(env, textbook, seed=0)
    g = out["global"]
    assert g["elections"] >= 6
    assert g["safety"] == 1.0 or g["safety"] is True
    calm = run_episode(election.parallel_env(leader_crash_ms=0), textbook, seed=0)["global"]
    assert calm["elections"] == 1
    assert calm["effective_leader_fraction"] > g["effective_leader_fraction"]


def test_a_node_pays_for_time_it_hears_no_leader():
    """Without crashes a node pays only until the first leader is heard (about 0.2 s); a node that
    never stands, among others that never stand either, pays for the whole episode."""
    calm = run_episode(election.parallel_env(leader_crash_ms=0), textbook, seed=0)
    assert all(-0.4 < r < 0 for r in calm["returns"].values())
    never = run_episode(election.parallel_env(leader_crash_ms=0), lambda o, m: 0 if m[0] and o[1] > 0 else len(m) - 1,
                        seed=0)
    assert all(r == pytest.approx(-5.0, abs=0.05) for r in never["returns"].values())


def test_welfare_charges_time_without_an_effective_leader():
    env = election.parallel_env()
    out = run_episode(env, textbook, seed=1)
    frac = out["global"]["effective_leader_fraction"]
    assert env.episode.welfare == pytest.approx(-(1 - frac) * 5.0, abs=0.02)
