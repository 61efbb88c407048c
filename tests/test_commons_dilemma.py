"""Commons-v0 as a social dilemma: at the default parameters the scripted Schelling diagram is not
one (all greedy earns more than all restrained); the ``dilemma`` variant is a Prisoner's Dilemma
at several regrowth rates -- greedy pays more than restrained at every count, all restrained pays
more than all greedy -- in every seed, not only on average; ``game_class`` names the classes."""

from __future__ import annotations

import pytest

from agents.scripted import greedy, make_restrained, schelling
from envs.commons import parallel_raw_env
from metrics.alignment import game_class

SEEDS = range(3)


def diagram(seeds=SEEDS, **kw):
    return schelling(lambda: parallel_raw_env(**kw), make_restrained(), greedy, 5, seeds)


def per_seed_curves(d, n=5):
    """The Schelling curves of each seed on its own."""
    out = []
    for s in range(len(d["per_seed"][0])):
        coop = [d["per_seed"][k + 1][s][0] for k in range(n)]
        defect = [d["per_seed"][k][s][1] for k in range(n)]
        out.append((coop, defect))
    return out


def test_default_parameters_are_not_a_dilemma():
    """The issue's finding, measured: at Commons-v0's defaults all greedy (total ~60) beats all
    restrained (~25), so restraint does not pay the group; the best total is a mix."""
    d = diagram(seeds=range(2))
    g = game_class(d["cooperator"], d["defector"])
    assert d["total"][0] > 2 * d["total"][5]
    assert not g["dilemma"] and g["class"] is None and not g["cooperation_is_best"]


@pytest.mark.parametrize("growth", [0.25, 0.5])
def test_dilemma_variant_is_a_prisoners_dilemma(growth):
    """Two regrowth rates: in every seed, greedy pays more than restrained at every number of
    restrained others, all restrained pays each agent more than all greedy, all restrained is the
    group's best outcome, and the ends order as T > R > P > S."""
    d = diagram(variant="dilemma", protocol_params={"growth": growth})
    for coop, defect in per_seed_curves(d) + [(d["cooperator"], d["defector"])]:
        g = game_class(coop, defect)
        assert g["dilemma"] and g["class"] == "Prisoner's Dilemma", g
        assert g["greed_everywhere"] and g["cooperation_is_best"], g
        assert g["R"] > 2 * g["P"]  # restraint pays by a wide margin, not by noise
    assert d["total"][5] == max(d["total"])


def test_variant_preset_yields_to_explicit_keys():
    env = parallel_raw_env(variant="dilemma", duration_ms=1000, protocol_params={"growth": 0.3})
    cfg = env.game.cfg
    assert cfg.duration_ms == 1000 and cfg.protocol_params == {"harvest_levels": [0.0, 0.25, 0.5, 1.0, 2.0],
                                                               "growth": 0.3}
    assert parallel_raw_env().game.cfg.duration_ms == 5000  # the default variant changes nothing
    with pytest.raises(ValueError, match="variant"):
        parallel_raw_env(variant="nosuch")


@pytest.mark.parametrize("coop,defect,cls", [
    ([0, 1, 2, 3], [1, 2, 3, 4], "Prisoner's Dilemma"),  # T=4 > R=3 > P=1 > S=0
    ([1, 2, 3, 3], [0.5, 3, 4, 4], "Chicken"),  # T=4 > R=3 > S=1 > P=0.5
    ([0, 1, 2, 5], [1, 2, 3, 4], "Stag Hunt"),  # R=5 > T=4 > P=1 > S=0
    ([0, 1, 2, 1], [2, 3, 4, 5], None),  # R=1 < P=2: all defecting is better, no dilemma
])
def test_game_class(coop, defect, cls):
    g = game_class(coop, defect)
    assert g["class"] == cls and g["dilemma"] == (cls is not None)
    assert len(g["totals"]) == 5 and g["totals"][0] == 4 * defect[0] and g["totals"][4] == 4 * coop[3]


def test_game_class_rejects_bad_curves():
    with pytest.raises(ValueError):
        game_class([1, 2], [1, 2, 3])


@pytest.mark.parametrize("variant", ["default", "dilemma"])
def test_global_reward_charges_the_collapse_when_it_happens(variant):
    """The observer's collapse penalty reaches global-reward agents at the step the resource
    collapses, not at the episode's end (1,000 steps later in the dilemma variant, where a
    discounted return would barely see it); the episode's total welfare is the same either way."""
    env = parallel_raw_env(variant=variant, reward_mode="global", collapse_penalty=10.0)
    obs, _ = env.reset(seed=0)
    step = collapse_step = 0
    total = 0.0
    penalised = None
    while env.agents:
        actions = {a: int(o["action_mask"][:-1].nonzero()[0].max()) if o["action_mask"][:-1].any()
                   else len(o["action_mask"]) - 1 for a, o in obs.items()}  # greedy: the largest harvest
        obs, rew, *_ = env.step(actions)
        step += 1
        r = next(iter(rew.values()))
        total += r
        if penalised is None and r < -5:
            penalised = step
        if not collapse_step and env.episode.collapsed_at is not None:
            collapse_step = step
    assert collapse_step and step > collapse_step + 10, "all greedy collapses the commons early"
    assert penalised == collapse_step
    m = env.global_measures()
    assert m["collapsed"]
    harvest = sum(m["returns"]) / 5
    assert total == pytest.approx(harvest - 10.0, abs=1e-6)


def test_schelling_takes_one_policy_per_seat():
    """Seat-by-seat policies (trained networks in the commons reproduction) give the diagram that
    the same policy in every seat gives."""
    agents = [f"node_{i}" for i in range(5)]
    coop, defect = make_restrained(), greedy
    plain = diagram(seeds=[0], variant="dilemma")
    seated = schelling(lambda: parallel_raw_env(variant="dilemma"), dict.fromkeys(agents, coop),
                       dict.fromkeys(agents, defect), 5, [0])
    assert seated["cooperator"] == plain["cooperator"] and seated["defector"] == plain["defector"]
