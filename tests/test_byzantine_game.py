"""capgym/Byzantine-v0: adversaries choose, per PBFT phase, what their Byzantine replica sends.

PettingZoo's API tests run on it through the registry (tests/test_envs_api.py). Here: PBFT's bound
as a property over seeds (with at most f adversaries, whatever they choose, no safety violation;
with f + 1 the scripted colluding strategy breaks it, so the check can fail), the rewards, the
scripted baselines and the config errors.
"""

import numpy as np
import pytest

from agents import scripted
from envs import byzantine_game as bg


def mostly(p_honest, seed):
    """A random adversary that is honest with probability ``p_honest`` and otherwise picks any of the
    other legal choices uniformly (seeded): the four lies, and collude where the game offers it;
    lying sometimes lets the protocol progress into more states."""
    rng = np.random.default_rng(seed)

    def policy(obs, mask):
        if not mask[0]:
            return len(mask) - 1
        lies = np.flatnonzero(mask[1:-1]) + 1
        return 0 if rng.random() < p_honest else int(rng.choice(lies))

    return policy


def team_reward(g):
    """The adversaries' team (global) reward of an episode, from its global measures."""
    c = bg.ByzantineConfig()
    return (c.view_change_reward * g["view_changes"] + c.miss_reward * g["ops_failed"] - c.ok_cost * g["ops_ok"]
            + (c.violation_reward if g["safety_violation"] else 0.0))


def play(policy, seed, api="parallel", **kw):
    env = (bg.parallel_env if api == "parallel" else bg.env)(**kw)
    return scripted.run_episode(env, policy, seed=seed)


def random_adversaries_stay_safe(nodes, seeds, **kw):
    f = (nodes - 1) // 3
    tampered = executed = colluded = 0
    for seed in seeds:
        g = play(mostly((0.2, 0.5, 0.8)[seed % 3], seed), seed, nodes=nodes, adversaries=f, duration_ms=3000,
                 faults=["partition", "loss", "clock"], **kw)["global"]
        executed += g["log_agreement"]["positions"]
        assert g["log_agreement"]["conflicts"] == 0, (seed, g["log_agreement"])
        assert g["linearizable"] is True, seed
        assert not g["safety_violation"]
        tampered += sum(v for k, v in g["actions"].items() if k != "honest")
        colluded += g["actions"].get("collude", 0)
        assert g["byzantine"]["nodes"] == {str(i): "phased" for i in range(f)}
    assert tampered > 100 * len(seeds) and executed > 100 * len(seeds)  # they lied, and PBFT progressed
    assert (colluded > 20 * len(seeds)) == bool(kw.get("collude"))


@pytest.mark.parametrize("nodes", [4, 7])
def test_at_most_f_random_adversaries_never_break_safety(nodes):
    """n = 3f + 1 with f adversaries acting at random (every choice, every phase), partitions, loss
    and clock faults from the nemesis: correct replicas never execute different requests at one
    sequence number, and the correct clients' history is linearizable (Castro and Liskov 1999,
    section 4.5). 24 seeds at n = 4, 8 at n = 7 (the slow suite: 200 and 50, and two-sided)."""
    random_adversaries_stay_safe(nodes, range(24) if nodes == 4 else range(8))


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [4, 7])
@pytest.mark.parametrize("two_sided", [False, True])
def test_at_most_f_random_adversaries_never_break_safety_many_seeds(nodes, two_sided):
    random_adversaries_stay_safe(nodes, range(100, 300) if nodes == 4 else range(100, 150), honest_learners=two_sided)


@pytest.mark.parametrize("nodes", [4, 7])
def test_at_most_f_adversaries_that_collude_at_random_never_break_safety(nodes):
    """The same with ``collude`` among the choices: at most f nodes acting as the colluding pbft
    strategy in the phases they pick stay within PBFT's bound. 24 seeds at n = 4 and 4 at n = 7
    (the slow suite: 200 and 50)."""
    random_adversaries_stay_safe(nodes, range(24) if nodes == 4 else range(4), collude=True)


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [4, 7])
def test_at_most_f_adversaries_that_collude_at_random_never_break_safety_many_seeds(nodes):
    random_adversaries_stay_safe(nodes, range(300, 500) if nodes == 4 else range(300, 350), collude=True)


def test_f_plus_one_adversaries_that_always_collude_break_safety():
    """Past the bound, the collude action expresses the attack the scripted ``pbft`` strategy makes:
    f + 1 adversaries (the primary among them) that collude in every phase make correct replicas
    execute different requests at one sequence number on most seeds, at n = 4 and n = 7; with one
    adversary fewer (f) the same policy never does."""
    collude = scripted.byzantine_phase(bg.Phased.COLLUDE)
    for nodes, seeds in ((4, range(8)), (7, range(3))):
        f = (nodes - 1) // 3
        broken = []
        for seed in seeds:
            g = play(collude, seed, nodes=nodes, adversaries=f + 1, collude=True)["global"]
            assert g["actions"]["collude"] == g["decisions"] > 0
            broken.append(g["safety_violation"] and g["log_agreement"]["conflicts"] > 0)
            g = play(collude, seed, nodes=nodes, adversaries=f, collude=True)["global"]
            assert not g["safety_violation"] and g["linearizable"] is True, (nodes, seed)
        assert sum(broken) >= 0.75 * len(broken), (nodes, broken)


def test_collude_is_an_option_and_its_mask_is_like_the_others():
    """Without ``collude`` the action space is the five phase choices and the no-op, as before;
    with it, six and the no-op, every one legal at a phase. In the two-sided game a
    view-change-timeout decision still has the five multiples of T (collude is masked there)."""
    from gymnasium import spaces

    assert bg.env().action_space("node_0") == spaces.Discrete(6)
    env = bg.parallel_env(adversaries=2, collude=True, honest_learners=True, duration_ms=600)
    assert env.action_space("node_0") == spaces.Discrete(7)
    obs, _ = env.reset(seed=1)
    masks = set()
    rng = np.random.default_rng(0)
    while env.agents:
        for o in obs.values():
            if o["observation"][-1] == 1.0:
                masks.add((tuple(o["action_mask"]), o["observation"][13] > 0))
        obs, *_ = env.step({a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()})
    assert masks == {((1, 1, 1, 1, 1, 1, 0), False), ((1, 1, 1, 1, 1, 0, 0), True)}
    with pytest.raises(ValueError, match="collude"):
        bg.env(collude=True, adversary_strategy="pbft")


def test_f_plus_one_colluding_liars_are_caught_breaking_safety():
    """Past the bound the same observer finds the violation: f + 1 scripted ``pbft`` liars (the
    primary among them) make correct replicas execute different requests at one sequence number."""
    for seed in range(3):
        g = play(scripted.textbook, seed, adversaries=2, adversary_strategy="pbft")["global"]
        assert g["safety_violation"] and g["log_agreement"]["conflicts"] > 0
        assert g["decisions"] == 0  # a scripted strategy owes no decisions


def test_honest_adversaries_cost_nothing_and_dropping_forces_view_changes():
    honest = play(scripted.textbook, 0)
    drop = play(scripted.always(1), 0)
    delay = play(scripted.always(2), 0)
    h, d, s = honest["global"], drop["global"], delay["global"]
    assert h["view_changes"] == 0 and h["actions"]["honest"] == h["decisions"] > 0
    assert sum(honest["returns"].values()) == 0
    # a primary that drops its pre-prepares is replaced; one that delays them (below the view-change
    # timeout) is not, and slows everything down
    assert d["view_changes"] >= 1 and drop["returns"]["node_0"] >= 5.0
    assert s["view_changes"] == 0 and s["completed_per_s"] < h["completed_per_s"] / 2
    assert h["ops_ok"] == round(h["completed_per_s"] * 2)  # duration 2 s
    for g in (h, d, s):
        assert g["linearizable"] is True and not g["safety_violation"]


def test_global_reward_is_the_adversaries_team_figure():
    for policy in (scripted.textbook, scripted.always(1)):
        r = play(policy, 1, reward_mode="global")
        assert list(r["returns"].values()) == pytest.approx([team_reward(r["global"])] * 4)


def test_only_the_byzantine_nodes_owe_decisions_and_their_masks_are_honest():
    env = bg.parallel_env(nodes=7, adversaries=2, byzantine_nodes=[1, 4], duration_ms=600)
    obs, _ = env.reset(seed=3)
    owed = set()
    rng = np.random.default_rng(0)
    while env.agents:
        for a, o in obs.items():
            assert env.observation_space(a).contains(o)
            if o["observation"][-1] == 1.0:
                owed.add(a)
                assert list(o["action_mask"]) == [1, 1, 1, 1, 1, 0]
                assert o["observation"][:8].sum() == 1.0 and o["observation"][8] >= 1  # a phase, a batch
        obs, *_ = env.step({a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()})
    assert owed == {"node_1", "node_4"}


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("api", ["aec", "parallel"])
def test_same_seed_same_episode(api, two_sided):
    runs = [play(scripted.make_random(7), 5, api=api, faults=True, duration_ms=1000, honest_learners=two_sided)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["global"]["decisions"] > 0
    assert (sum(runs[0]["global"]["timeout_multiples"].values()) > 0) == two_sided


def test_scripted_baselines_play():
    assert set(scripted.BYZANTINE_BASELINES) >= {"honest", "drop", "delay", "equivocate", "corrupt"}
    for name, policy in scripted.BYZANTINE_BASELINES.items():
        g = play(policy, 0, duration_ms=500)["global"]
        assert not g["safety_violation"], name
        if name in bg.ACTIONS:
            assert g["actions"][name] == g["decisions"], name


@pytest.mark.parametrize("bad, word", [({"adversaries": 4}, "adversaries"), ({"adversary_strategy": "nope"}, "nope"),
                                       ({"byzantine_nodes": [0, 9]}, "byzantine_nodes: 9 not among the nodes 0..3"),
                                       ({"byzantine_nodes": [7]}, "byzantine_nodes: 7 not among the nodes 0..3"),
                                       ({"byzantine_nodes": [1, 1], "adversaries": 2},
                                        "must name 2 distinct nodes (one per adversary)"),
                                       ({"protocol_params": {"timeout_multiples": [1, 2]}}, "timeout_multiples")])
def test_config_errors_are_one_line(bad, word):
    with pytest.raises(ValueError) as e:
        bg.env(**bad)
    assert word in str(e.value) and "\n" not in str(e.value)


def test_two_sided_game_zero_sum_and_the_timeout_matters():
    """honest_learners: every replica's agent picks the multiple of PBFT's view-change timeout T.
    Against a primary that drops its pre-prepares, a short T replaces it sooner (more requests
    complete) than a long one; the correct replicas' reward is the adversaries' team reward negated."""
    def policies(honest):
        return {"node_0": scripted.always(1), **{f"node_{i}": scripted.always(honest) for i in (1, 2, 3)}}

    figures = {}
    for mode in ("local", "global"):
        for honest in (0, 4):  # 0.25 T and 4 T
            r = play(policies(honest), 2, honest_learners=True, reward_mode=mode, duration_ms=3000)
            g = r["global"]
            assert g["timeout_multiples"][("0.25", "4.0")[honest // 4]] > 0
            team = team_reward(g)
            if mode == "global":
                assert r["returns"]["node_0"] == pytest.approx(team)
            for i in (1, 2, 3):
                assert r["returns"][f"node_{i}"] == pytest.approx(-team)
            figures[mode, honest] = g["completed_per_s"]
            assert not g["safety_violation"]
    assert figures["local", 0] > figures["local", 4] + 10
    assert figures["local", 0] == figures["global", 0]  # the reward mode changes rewards only


@pytest.mark.parametrize("kw", [{"honest_learners": True}, {"collude": True, "adversaries": 2},
                                {"collude": True, "honest_learners": True}])
def test_two_sided_and_colluding_games_pass_pettingzoo_api_tests(kw):
    import warnings

    from pettingzoo.test import api_test, parallel_api_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(bg.env(faults=True, duration_ms=1000, **kw), num_cycles=100)
        parallel_api_test(bg.parallel_env(faults=True, duration_ms=1000, **kw), num_cycles=100)


def test_train_config_runs_and_the_table_reads_it(tmp_path):
    """``capgym train configs/train/byzantine.yaml`` (tiny budget, f + 1 = 2 adversaries with collude
    available) on two training seeds, then the learned-against-scripted table from the checkpoints:
    the two runs form one group whose trained rows are means over the seeds with intervals; every
    scripted policy has a row, and of those only the ones that collude (the world's pbft liars and
    the scripted collude policy) break safety."""
    import json

    from experiments import byzantine_table
    from experiments.cli import main

    root = tmp_path / "res"
    for seed in (0, 1):
        code = main(["train", "configs/train/byzantine.yaml", "ppo.total_steps=256", "ppo.num_envs=2",
                     "ppo.num_steps=64", "env.params.duration_ms=800", "env.params.adversaries=2",
                     "env.params.collude=true", f"seed={seed}", f"output.root={root}", "wandb.mode=disabled", "-q"])
        assert code == 0
    runs = sorted((root / "train-byzantine").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "status.json").read_text())["status"] == "complete"
    rows = byzantine_table.table_rows([str(r) for r in runs], episodes=1)
    by = {r["policy"]: r for r in rows}
    trained = "trained (PPO, global reward, collude available), greedy"
    assert {trained, "random", "scripted slow_primary", "scripted collude", "world strategy pbft"} <= set(by)
    assert all(r["adversaries"] == 2 for r in rows)
    assert by[trained]["seeds"] == 2 and len(by[trained]["per_seed"]["completed_per_s"]) == 2
    lo, hi = by[trained]["ci"]["completed_per_s"]
    assert lo <= by[trained]["completed_per_s"] <= hi
    assert by["world strategy pbft"]["violations"] == by["scripted collude"]["violations"] == 1
    assert by["random (collude available)"]["episodes"] == 1
    assert sum(r["violations"] for r in rows if not r["policy"].startswith(("trained", "random"))) == 2
    text = byzantine_table.markdown(rows)
    assert "| 2 | world strategy pbft | - |" in text and f"| 2 | {trained} | 2 |" in text


@pytest.mark.parametrize("replies", [None, 1])
def test_local_reward_credits_the_failures_an_adversary_tampered_with(replies):
    """Two liars (f + 1) drop every phase: no request completes, no correct replica enters a new
    view, and each liar is credited miss_reward for every failed operation, since it tampered with
    each one's messages; correct replicas earn nothing. Clients that wait for f + 1 replies, and
    (replies: 1) clients of one entry replica each, whose requests the liars also carried."""
    kw = {} if replies is None else {"workload": {"clients": 4, "timeout_ms": 1000, "replies": 1}}
    r = play(scripted.BYZANTINE_BASELINES["drop"], 0, adversaries=2, **kw)
    g = r["global"]
    assert g["ops_ok"] == 0 and g["view_changes"] == 0 and g["ops_failed"] > 0
    assert r["returns"]["node_0"] == r["returns"]["node_1"] == g["ops_failed"] * bg.ByzantineConfig().miss_reward
    assert r["returns"]["node_2"] == r["returns"]["node_3"] == 0.0


def sim_features(game, ask):
    """Byzantine-v0's features as the game computed them before the phase asks carried the node's
    state (read from the simulator's node object at observation time; a live actor has no
    simulator): the reference the asks' own features must equal."""
    ep = game.ep()
    node = ep.sim.states[ask.node].obj
    pbft = getattr(node, "inner", node)
    if ask.point[0] == "view_change_timeout":
        tries, v, pending, changing = ask.obs
        return [0.0] * (len(bg.Phased.PHASES) + 2) + [float(v % ep.n == ask.node), float(changing), v / 10.0,
                                                         pending / 10.0, 1.0, tries / 4.0]
    obs = list(ask.obs)[:len(bg.Phased.PHASES) + 2]
    if pbft is None or not hasattr(pbft, "d"):
        return obs + [0.0] * 6
    v = pbft.view
    return obs + [float(v % ep.n == ask.node), float(pbft.changing), v / 10.0, len(pbft.pending) / 10.0,
                  0.0, pbft.tries / 4.0]


@pytest.mark.parametrize("api", ["aec", "parallel"])
def test_phase_features_from_the_ask_equal_the_simulators(api, monkeypatch):
    """The observation a Byzantine node's agent gets (``Phased`` puts the node's own PBFT state in
    the ask, so a live actor can build it) is, number for number, what the game read from the
    simulator's node before (``sim_features``): over seeds, one- and two-sided, with collusion,
    faults, restarts and 7 nodes, so checkpoints trained before keep their meaning."""
    features = bg.ByzantineGame.features
    seen = {"byzantine": 0, "view_change_timeout": 0}
    state_seen = set()

    def checked(self, ask):
        got = features(self, ask)
        assert got == sim_features(self, ask), (ask, got)
        assert len(got) == self.n_features
        seen[ask.point[0]] += 1
        state_seen.add(tuple(got[9:]))
        return got

    monkeypatch.setattr(bg.ByzantineGame, "features", checked)
    cases = [dict(faults=True), dict(honest_learners=True, faults=["crash", "partition"]),
             dict(adversaries=2, collude=True), dict(nodes=7, adversaries=2, faults=True)]
    for kw in cases:
        for seed in range(3):
            play(mostly(0.5, seed), seed, api=api, duration_ms=1500, **kw)
    assert seen["byzantine"] > 1000 and seen["view_change_timeout"] > 50, seen
    assert len(state_seen) > 20  # views, view changes, pending requests, timeouts: the state moved
