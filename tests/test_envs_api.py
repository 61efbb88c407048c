"""PettingZoo's own API tests on every capgym environment: several sizes with faults on, each game's
default parameters, and every combination of its boolean parameters (the game's and its node
program's)."""

import importlib
import itertools
import warnings
from typing import Literal

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, parallel_api_test

import envs

IDS = list(envs.ENVIRONMENTS)


def _bools(model) -> list[str]:
    """Names of ``model``'s fields that take ``True``/``False`` (``bool`` or a union with it)."""
    return sorted(k for k, f in model.model_fields.items()
                  if f.annotation is bool or bool in getattr(f.annotation, "__args__", ()))


def _bool_combos() -> list[tuple[str, dict]]:
    """``(env id, kwargs)`` for every combination of each game's boolean parameters, those of its
    config (``faults``, ...) and of its default node program (``protocol_params``: Raft's
    ``prevote`` and ``check_quorum``, ...). Derived from the schemas, so a new flag is covered."""
    out = []
    for env_id, module in envs.ENVIRONMENTS.items():
        game_cls = importlib.import_module(module).raw_env.game_cls
        game = game_cls(game_cls.Config())
        own = _bools(game_cls.Config)
        proto = _bools(type(game.node_program()[1]))
        names = own + [f"protocol_params.{k}" for k in proto]
        for values in itertools.product((False, True), repeat=len(names)):
            kw: dict = {}
            for name, v in zip(names, values):
                if name.startswith("protocol_params."):
                    kw.setdefault("protocol_params", {})[name.split(".", 1)[1]] = v
                else:
                    kw[name] = v
            out.append((env_id, kw))
    return out


BOOL_COMBOS = _bool_combos()


def _choices() -> list[tuple[str, dict]]:
    """``(env id, {name: value})`` for every value of each game's named choices (``Literal`` fields:
    Register-v0's ``protocol``, Commons-v0's ``variant``, ``reward_mode``), one at a time."""
    out = []
    for env_id, module in envs.ENVIRONMENTS.items():
        game_cls = importlib.import_module(module).raw_env.game_cls
        for name, f in sorted(game_cls.Config.model_fields.items()):
            if getattr(f.annotation, "__origin__", None) is Literal:
                out += [(env_id, {name: v}) for v in f.annotation.__args__ if v != f.default]
    return out


CHOICES = _choices()


@pytest.mark.parametrize("env_id, kwargs", CHOICES, ids=[f"{e}-{k}" for e, k in CHOICES])
def test_both_apis_at_every_named_choice(env_id, kwargs):
    api_test(pettingzoo.make("aec", env_id, duration_ms=600, **kwargs), num_cycles=20)
    parallel_api_test(pettingzoo.make("parallel", env_id, duration_ms=600, **kwargs), num_cycles=20)


@pytest.mark.parametrize("env_id", IDS)
def test_aec_api_default_parameters(env_id):
    """The game exactly as ``pettingzoo.make`` gives it (Consensus-v0's was truncated at reset)."""
    api_test(pettingzoo.make("aec", env_id), num_cycles=20)


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api_default_parameters(env_id):
    parallel_api_test(pettingzoo.make("parallel", env_id), num_cycles=20)


@pytest.mark.parametrize("env_id, kwargs", BOOL_COMBOS, ids=[f"{e}-{k}" for e, k in BOOL_COMBOS])
def test_aec_api_boolean_parameters(env_id, kwargs):
    api_test(pettingzoo.make("aec", env_id, duration_ms=600, **kwargs), num_cycles=20)


@pytest.mark.parametrize("env_id, kwargs", BOOL_COMBOS, ids=[f"{e}-{k}" for e, k in BOOL_COMBOS])
def test_parallel_api_boolean_parameters(env_id, kwargs):
    parallel_api_test(pettingzoo.make("parallel", env_id, duration_ms=600, **kwargs), num_cycles=20)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("api", ["aec", "parallel"])
def test_first_decision_comes_before_the_end(env_id, api):
    """At every default and boolean combination, an episode starts with some agent owing a decision
    at a time before the horizon (no episode ends, nor jumps to its horizon, before anyone acts)."""
    for eid, kwargs in [(env_id, {})] + [c for c in BOOL_COMBOS if c[0] == env_id]:
        env = pettingzoo.make(api, eid, **kwargs)
        env.reset(seed=0)
        ep = env.episode
        assert not ep.done and ep.sim.pending and ep.sim.now < ep.horizon, (eid, kwargs, ep.sim.now)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dict observations: PettingZoo's advisory warnings
        yield


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("env_id", IDS)
def test_aec_api(env_id, nodes):
    env = pettingzoo.make("aec", env_id, nodes=nodes, duration_ms=1000, faults=True)
    api_test(env, num_cycles=100)


@pytest.mark.parametrize("nodes", [2, 4])
@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api(env_id, nodes):
    env = pettingzoo.make("parallel", env_id, nodes=nodes, duration_ms=1000, faults=True)
    parallel_api_test(env, num_cycles=100)


@pytest.mark.parametrize("env_id", IDS)
def test_noop_is_last_and_masks_are_honest(env_id):
    """Agents with nothing to decide may only no-op; agents that owe a decision may not no-op."""
    env = pettingzoo.make("parallel", env_id, nodes=4, duration_ms=800, faults=True)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(0)
    while env.agents:
        for a, o in obs.items():
            owes = o["observation"][-1] == 1.0
            mask = o["action_mask"]
            assert mask[-1] == (0 if owes else 1), (a, mask)
            assert mask[:-1].any() == owes
        actions = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        obs, *_ = env.step(actions)


@pytest.mark.parametrize("env_id", IDS)
def test_final_infos_carry_global_measures(env_id):
    env = pettingzoo.make("parallel", env_id, nodes=3, duration_ms=600)
    obs, _ = env.reset(seed=1)
    infos = {}
    while env.agents:
        obs, _r, _t, trunc, infos = env.step({a: len(o["action_mask"]) - 1 for a, o in obs.items()})
    assert all(trunc.values())
    m = env.global_measures()
    assert m and all(i["global"] is m for i in infos.values())
    assert "returns" in m


def test_make_passes_kwargs_and_max_cycles():
    env = pettingzoo.make("aec", "capgym/Register-v0", nodes=4, max_cycles=3)
    env.reset(seed=0)
    steps = 0
    for _agent in env.agent_iter():
        _o, _r, term, trunc, _i = env.last()
        env.step(None if term or trunc else 3)
        steps += 1
    assert env.num_agents == 0 and len(env.possible_agents) == 4
    assert env.episode.decisions == 12  # max_cycles * nodes decisions, then truncation


@pytest.mark.parametrize("bad, word", [({"nodes": 1}, "nodes"), ({"reward_mode": "selfish"}, "reward_mode"),
                                       ({"bogus": 1}, "bogus"), ({"protocol_params": {"retry_ms": -1}}, "retry_ms")])
def test_config_errors_are_one_line(bad, word):
    with pytest.raises(ValueError) as e:
        pettingzoo.make("aec", "capgym/Register-v0", **bad)
    msg = str(e.value)
    assert word in msg and "\n" not in msg
