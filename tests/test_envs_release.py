"""A finished episode's world is freed by reference counting when the next one starts.

The simulator's parts point at each other; ``Episode.release`` (called by ``reset`` and ``close``)
cuts those links so that old episodes do not pile up for the cyclic garbage collector (full
collections over dead traces were a sixth of an environment step's time).
"""

import gc
import importlib
import weakref

import pytest

import envs
from envs import register

MODULES = list(envs.ENVIRONMENTS.values())


def _play(env, seed):
    env.reset(seed=seed)
    for _agent in env.agent_iter():
        _obs, _r, term, trunc, _i = env.last()
        env.step(None if term or trunc else 1)


@pytest.mark.parametrize("finish", [True, False])
def test_reset_frees_the_previous_world_without_the_cyclic_gc(finish):
    env = register.env(nodes=3, duration_ms=400, faults=True)
    if finish:
        _play(env, 1)
    else:
        env.reset(seed=1)
    old = env.episode
    sim = weakref.ref(old.sim)
    ops = len(old.sim.history)
    measures = old.global_measures()
    del old
    gc.disable()
    try:
        env.reset(seed=2)
        assert sim() is None
    finally:
        gc.enable()
    assert env.episode.sim.history is not None and ops >= 0 and isinstance(measures, dict)


@pytest.mark.parametrize("module", MODULES)
def test_every_game_frees_its_world(module):
    """Games that schedule observer ticks (Election, Commons) must not tie the world into cycles."""
    env = importlib.import_module(module).env(nodes=3, duration_ms=300, faults=True)
    env.reset(seed=1)
    sim = weakref.ref(env.episode.sim)
    gc.disable()
    try:
        env.close()
        assert sim() is None
    finally:
        gc.enable()


def test_released_episode_keeps_its_record():
    env = register.env(nodes=3, duration_ms=400, faults=True)
    _play(env, 3)
    old = env.episode
    before = (len(old.sim.history), len(old.sim.trace), old.global_measures())
    env.reset(seed=4)
    assert (len(old.sim.history), len(old.sim.trace), old.global_measures()) == before
    assert old.sim.history and old.global_measures()["ops"] == before[0]


@pytest.mark.parametrize("module", MODULES)
def test_every_game_frees_its_links_latency_streams(module):
    """Each directed link's latency stream (up to n^2 of them, eight objects each) is freed with
    its world: at 300 nodes they were 1.5M objects left for a 4 s cyclic-GC pass, because each
    node's stream table pointed back at the network."""
    env = importlib.import_module(module).env(nodes=4, duration_ms=300, faults=True)
    env.reset(seed=1)
    net = env.episode.sim.net
    links, network = weakref.ref(net.streams[0]), weakref.ref(net)
    del net
    gc.disable()
    try:
        env.close()
        assert links() is None and network() is None
    finally:
        gc.enable()
