"""The observer's global measures see one-way faults (issue 14, item 5).

For each game, the fault is the one a new user tries first: every link *into* one node is cut
(it can send but hears nothing), with the textbook policy, 5 nodes, the game's default horizon
(5 s). Each game names the global measure such a fault must lower when it stops progress:

* Election-v0, cut into the leader from 1 s to 4 s: it keeps sending heartbeats, so its followers
  follow it, but no reply reaches it and it commits nothing. ``effective_leader_fraction`` (and
  the welfare) must drop; the followers' local rewards rightly do not (the alignment gap).
* Register-v0, cut into node 0 from 1 s to 4 s: its quorum operations cannot complete.
  ``availability`` and the welfare must drop.
* Consensus-v0, cut into node 0 for the whole episode (Ben-Or decides within tens of ms, so a
  fault from 1 s would find nothing left to stop): node 0 never hears a decision.
  ``termination`` and the welfare must drop.
* Commons-v0: harvesting needs no message (a node reads the resource at each of its own harvests;
  gossip only refreshes what it knows between them), so a one-way fault stops no progress and no
  measure must drop; the observer must not count the cut-off node as tagged (``peace`` unchanged).
"""

import pytest

import envs.commons as commons
import envs.consensus as consensus
import envs.election as election
import envs.register as register
from agents.scripted import run_episode, textbook

N = 5


def into(node: int) -> list[list[int]]:
    """Every directed link into ``node`` (``[src, dst]`` pairs, the schedule's ``cuts``)."""
    return [[j, node] for j in range(N) if j != node]


def cut_into(node: int, at_ms: float, heal_ms: float | None) -> dict:
    sched = [{"at_ms": at_ms, "fault": "partition", "cuts": into(node)}]
    if heal_ms is not None:
        sched.append({"at_ms": heal_ms, "fault": "heal"})
    return {"schedule": sched}


def play(module, seed: int, **kw) -> tuple[dict, float, dict]:
    """(global measures, the observer's welfare per agent, local returns) of a textbook episode
    (Election-v0 without its own leader crashes: the cut is the only fault)."""
    if module is election:
        kw.setdefault("leader_crash_ms", 0)
    env = module.parallel_env(nodes=N, **kw)
    out = run_episode(env, textbook, seed=seed)
    return out["global"], env.episode.welfare, out["returns"]


def leader_at(seed: int, t_ms: float) -> int:
    """The node that leads at ``t_ms`` in the fault-free textbook episode of ``seed``."""
    env = election.parallel_env(nodes=N, leader_crash_ms=0)
    env.reset(seed=seed)
    while env.episode.sim.now < t_ms and env.agents:
        env.step({})
    leaders = [s.id for s in env.episode.sim.states if s.up and s.obj.state == "leader"]
    assert len(leaders) == 1
    return leaders[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_election_a_leader_nobody_can_reach_is_not_effective(seed):
    base, w_base, r_base = play(election, seed)
    leader = leader_at(seed, 1000.0)
    cut, w_cut, r_cut = play(election, seed, nemesis=cut_into(leader, 1000.0, 4000.0))
    assert base["effective_leader_fraction"] > 0.9
    # 3 s of the 5 s without progress, less the election timeout it takes the observer to tell
    assert cut["effective_leader_fraction"] < base["effective_leader_fraction"] - 0.4
    assert w_cut < w_base - 2.0  # the welfare charges miss_cost (1/s) for ~2.7 s without progress
    # the followers still believe in their leader: their local rewards do not see the fault
    assert cut["elections"] == base["elections"] == 1
    assert r_cut == pytest.approx(r_base, abs=1e-6)


def test_election_effective_leadership_needs_a_majority_of_replies():
    """Cut into the leader *and* one follower: the leader still hears 2 of 4 peers (a majority with
    itself), so it stays effective; the fraction does not drop."""
    seed = 0
    base, *_ = play(election, seed)
    leader = leader_at(seed, 1000.0)
    other = (leader + 1) % N
    sched = [{"at_ms": 1000.0, "fault": "partition", "cuts": [[other, leader], [(leader + 2) % N, leader]]},
             {"at_ms": 4000.0, "fault": "heal"}]
    cut, *_ = play(election, seed, nemesis={"schedule": sched})
    assert cut["effective_leader_fraction"] == pytest.approx(base["effective_leader_fraction"], abs=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_register_availability_sees_a_node_that_cannot_hear(seed):
    base, w_base, _ = play(register, seed)
    cut, w_cut, _ = play(register, seed, nemesis=cut_into(0, 1000.0, 4000.0))
    assert base["availability"] == 1.0
    assert cut["availability"] < base["availability"]
    assert cut["availability_partitioned"] is not None and cut["availability_partitioned"] < 1.0
    assert w_cut < w_base - 5.0


@pytest.mark.parametrize("seed", [0, 1])
def test_consensus_termination_sees_a_node_that_cannot_hear(seed):
    base, w_base, _ = play(consensus, seed)
    cut, w_cut, _ = play(consensus, seed, nemesis=cut_into(0, 0.0, None))
    assert base["termination"] == 1.0
    assert cut["termination"] == pytest.approx(0.8)
    assert w_cut < w_base - 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_commons_a_node_that_cannot_hear_is_not_tagged(seed):
    base, w_base, _ = play(commons, seed)
    cut, w_cut, _ = play(commons, seed, nemesis=cut_into(0, 1000.0, 4000.0))
    assert cut["peace"] == base["peace"] == N
    assert cut["efficiency"] == pytest.approx(base["efficiency"], rel=0.02)
    assert w_cut == pytest.approx(w_base, rel=0.02)
