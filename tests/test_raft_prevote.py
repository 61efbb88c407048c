"""Raft's PreVote (thesis §9.6) and CheckQuorum (thesis §6.2), over seeds, in the two schedules of
issue 16: a follower cut off and rejoining, and a leader whose incoming links are all cut (it can
send but hears nothing). Figures are per seed; every seed is deterministic.
"""

from __future__ import annotations

import statistics

import pytest
from test_raft import check_safety, run, scenario, stable_leader

from agents.protocols.raft import LEADER, NODE
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from metrics.election import election

CUT, HEAL, END = 2000.0, 4000.0, 6000.0


def world(seed, clients, end=END):
    return ScenarioConfig.model_validate(dict(seed=seed, world=dict(nodes=5, duration_ms=end),
                                              workload=dict(clients=clients)))


def the_leader(sim):
    leaders = [i for i in range(sim.n) if sim.node(i) is not None and sim.node(i).state == LEADER]
    assert len(leaders) == 1, leaders
    return leaders[0]


def rejoin(seed, prevote):
    """A follower is cut off from 2 s to 4 s, then rejoins. Returns (leader elections after the
    heal, did the leader at the heal step down, the cut-off node's term at the heal, the sim).
    Odd seeds run without clients, so the rejoining node's log is as up to date as anyone's."""
    sim = build_sim(world(seed, clients=5 * (seed % 2 == 0)), NODE, NODE.Params(prevote=prevote))
    sim.run(until=CUT)
    leader = the_leader(sim)
    lone = max(i for i in range(sim.n) if i != leader)
    sim.set_cuts({(lone, p) for p in range(sim.n) if p != lone} | {(p, lone) for p in range(sim.n) if p != lone})
    sim.run(until=HEAL)
    lone_term = sim.node(lone).currentTerm
    sim.heal()
    sim.run(until=END)
    after = [e for e in sim.trace.events() if e.t >= HEAL and e.kind in ("leader", "follower")]
    elected = sum(e.kind == "leader" for e in after)
    deposed = any(e.kind == "follower" and e.node == leader for e in after)
    return elected, deposed, lone_term, sim


def one_way(seed, prevote, check_quorum, cut=(CUT, HEAL + 1000.0), end=END - 500.0):
    """Every link into the leader is cut one way from 2 s to 5 s. Returns (fraction of the cut with
    no leader among the other nodes, terms with a leader among them during the cut, the sim)."""
    params = NODE.Params(prevote=prevote, check_quorum=check_quorum)
    sim = build_sim(world(seed, clients=5, end=end), NODE, params)
    sim.run(until=cut[0])
    old = the_leader(sim)
    sim.set_cuts({(p, old) for p in range(sim.n) if p != old}, "one-way")
    sim.run(until=cut[1])
    sim.heal()
    sim.run(until=end)
    others = [e for e in sim.trace.events() if e.node != old]
    m = election(others, start=cut[0], end=cut[1])
    terms = {e.fields["term"] for e in others if e.kind == "leader" and cut[0] <= e.t < cut[1]}
    return m["fraction_without_leader"], len(terms), sim


def check_rejoin(seeds):
    for seed in seeds:
        elected, deposed, lone_term, sim = rejoin(seed, prevote=False)
        assert deposed and elected >= 1 and lone_term > 2, f"seed {seed}: {elected, deposed, lone_term}"
        assert election(sim.trace.events())["safety"]
        elected, deposed, lone_term, sim = rejoin(seed, prevote=True)
        # the rejoining node never raised its term, and the leader a majority follows kept leading
        assert (elected, deposed, lone_term) == (0, False, 1), f"seed {seed}: {elected, deposed, lone_term}"
        assert stable_leader(sim), f"seed {seed}"


def test_prevote_rejoining_node_does_not_depose_the_leader():
    """Without PreVote the rejoining node's higher term deposes the leader in every seed, and a new
    one is elected; with PreVote the leader keeps leading in every seed (logs behind or not)."""
    check_rejoin(range(8))


def deaf_to_leader(seed, prevote):
    """Only the link from the leader to one follower is cut, from 2 s to 4 s: that follower hears
    the others but not the leader. Returns (leader elections during the cut, was the leader deposed)."""
    sim = build_sim(world(seed, clients=5 * (seed % 2 == 0), end=HEAL), NODE, NODE.Params(prevote=prevote))
    sim.run(until=CUT)
    leader = the_leader(sim)
    sim.set_cuts({(leader, max(i for i in range(sim.n) if i != leader))}, "one-way")
    sim.run(until=HEAL)
    during = [e for e in sim.trace.events() if e.t >= CUT and e.kind in ("leader", "follower")]
    assert election(sim.trace.events())["safety"], f"seed {seed}"
    return sum(e.kind == "leader" for e in during), any(e.node == leader for e in during)


def test_prevote_refused_while_a_leader_is_heard():
    """A follower that cannot hear the leader (but hears the others) and whose log is up to date:
    without PreVote it deposes the leader again and again; with PreVote the others, who still hear
    the leader, refuse its pre-votes (a rule on the log alone would grant them), so no one is deposed."""
    for seed in range(4):
        elected, deposed = deaf_to_leader(seed, prevote=False)
        assert deposed and elected >= 1, f"seed {seed}"
        assert deaf_to_leader(seed, prevote=True) == (0, False), f"seed {seed}"


def check_one_way(seeds):
    got = {}
    for pv, cq in ((False, False), (True, False), (False, True), (True, True)):
        rows = [one_way(seed, pv, cq) for seed in seeds]
        for seed, (_, _, sim) in zip(seeds, rows):
            assert election(sim.trace.events())["safety"], f"seed {seed}"
        got[pv, cq] = [r[:2] for r in rows]
    # without CheckQuorum the deaf leader keeps leading: the majority side never elects
    assert all(r == (1.0, 0) for r in got[False, False] + got[True, False])
    # CheckQuorum and PreVote: one new leader on the majority side, for most of the cut
    assert all(f < 0.3 and n == 1 for f, n in got[True, True]), got[True, True]
    # CheckQuorum alone: the deposed leader's rising terms keep deposing the majority's leaders
    assert all(n >= 3 for _, n in got[False, True]), got[False, True]
    alone = statistics.mean(f for f, _ in got[False, True])
    both = statistics.mean(f for f, _ in got[True, True])
    assert alone > 2 * both, (alone, both)


def test_check_quorum_deaf_leader_steps_down_and_prevote_keeps_it_out():
    check_one_way(range(3))


def test_check_quorum_keeps_a_healthy_leader():
    """No faults: CheckQuorum never deposes a leader that hears its followers (one leader term)."""
    for seed in range(4):
        sim = run(world(seed, clients=5), NODE.Params(prevote=True, check_quorum=True))
        leaders = [e for e in sim.trace.events() if e.kind == "leader"]
        assert len(leaders) == 1 and stable_leader(sim), f"seed {seed}: {leaders}"


def test_safety_and_liveness_with_prevote_and_check_quorum():
    """Figure 3's properties and linearizable histories under every random fault kind, with both
    options on; and a stable leader within 4 x the upper election timeout of the last heal (one
    more timeout than the plain Raft test allows: a PreVote round comes before each election)."""
    params = NODE.Params(prevote=True, check_quorum=True)
    for seed in range(20):
        check_safety(seed, run(scenario(seed), params))
    bound = 4 * params.election_timeout_ms[1]
    for seed in range(20):
        stop = 1000.0 + 10 * (seed % 7)
        scn = scenario(seed, duration=4000, stop_ms=stop)
        healed = stop + scn.nemesis.random.duration_ms
        sim = build_sim(scn, NODE, params)
        sim.run(until=healed)
        assert sim.run(until=healed + bound, stop=lambda s=sim: stable_leader(s)) == "stop", f"seed {seed}"


@pytest.mark.slow
def test_prevote_and_check_quorum_many_seeds():
    check_rejoin(range(8, 100))
    check_one_way(range(3, 50))
    for seed in range(4, 50):
        assert deaf_to_leader(seed, prevote=True) == (0, False), f"seed {seed}"


def test_compare_config_shows_the_deposed_leader():
    """configs/raft_prevote.yaml: the paper's Raft elects a second leader after the heal (node 4's
    elections while cut off are lonely); with PreVote the first leader leads throughout."""
    from pathlib import Path

    from experiments.config import load_config
    from experiments.runner import simulate
    cfg = load_config(Path(__file__).parent.parent / "configs" / "raft_prevote.yaml")
    got = {}
    for entry in cfg.entries():
        m = election(simulate(cfg, entry, progress=False).events)
        got[entry.tag] = (m["terms_with_leader"], m["lonely_elections"], m["safety"])
    assert got["raft"][0] == 2 and got["raft"][1] >= 7 and got["raft"][2]
    assert got["raft-prevote"] == got["raft-prevote-checkquorum"] == (1, 0, True)
