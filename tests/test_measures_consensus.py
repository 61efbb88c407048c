"""Consensus and leader-election measures on hand-made traces."""

import pytest

from envs.world.records import Event
from metrics.consensus import consensus
from metrics.election import election


def ev(kind, node=None, t=0.0, vc=(), **fields):
    return Event(kind, node, t, None, 0, tuple(vc), fields)


def three(*events):
    """A 3-node trace: every node starts at t=0 (so the node set is 0..2), then ``events``."""
    return [ev("start", n, 0.0, restart=False) for n in range(3)] + list(events)


def test_consensus_all_good():
    tr = three(ev("propose", 0, 1, value="a"), ev("propose", 1, 2, value="b"), ev("propose", 2, 2, value="a"),
               ev("decide", 0, 5, value="a", round=1), ev("decide", 1, 6, value="a", round=2),
               ev("decide", 2, 9, value="a", round=1))
    m = consensus(tr)
    assert m["agreement"] and m["validity"] and m["integrity"]
    assert m["termination"] == 1.0
    assert m["time_to_decide"] == 8.0
    assert m["rounds_to_decide"] == 2
    assert m["instances"] == 1


def test_consensus_violations():
    tr = three(ev("propose", 0, 1, value="a"), ev("propose", 1, 1, value="b"),
               ev("decide", 0, 2, value="a"), ev("decide", 1, 3, value="b"),
               ev("decide", 2, 4, value="z"), ev("decide", 0, 5, value="b"))
    m = consensus(tr)
    assert not m["agreement"]
    assert m["agreement_violations"] == [{"instance": None, "values": ["a", "b", "z"]}]
    assert not m["validity"] and m["validity_violations"] == [{"instance": None, "value": "z"}]
    assert not m["integrity"]
    assert m["integrity_violations"][0]["node"] == 0
    assert m["rounds_to_decide"] is None


def test_consensus_crash_termination_and_instances():
    tr = three(ev("propose", 0, 0, value=1, instance=0), ev("propose", 0, 0, value=[1, 2], instance=1),
               ev("decide", 0, 3, value=1, instance=0), ev("crash", 2, 4),
               ev("decide", 1, 5, value=[1, 2], instance=1), ev("decide", 1, 5, value=[1, 2], instance=1))
    m = consensus(tr)
    assert m["live_nodes"] == 2  # node 2 crashed
    assert m["instances"] == 2
    assert m["termination"] == pytest.approx(2 / 4)  # (0 in inst 0) and (1 in inst 1) out of 2 x 2
    assert m["repeated_decides"] == 1 and m["integrity"]
    assert m["validity"] and m["agreement"]
    assert [p["termination"] for p in m["per_instance"]] == [0.5, 0.5]


def test_consensus_empty_and_no_proposals():
    m = consensus([])
    assert m["instances"] == 0 and m["termination"] is None and m["agreement"] and m["validity"] is None
    m = consensus([ev("decide", 0, 1, value=7)])  # one node, nothing proposed: validity not checkable
    assert m["validity"] is None and m["termination"] == 1.0 and m["time_to_decide"] == 0.0


def test_election_one_leader_per_term_and_gaps():
    tr = three(ev("candidate", 0, 10, term=1), ev("leader", 0, 20, term=1),
               ev("crash", 0, 50), ev("candidate", 1, 60, term=2), ev("candidate", 2, 61, term=2),
               ev("candidate", 1, 80, term=3), ev("leader", 1, 90, term=3), ev("timer", 2, 100, name="x"))
    m = election(tr)
    assert m["safety"]
    assert m["elections"] == 3 and m["split_votes"] == 1 and m["split_vote_terms"] == [2]
    # leaderless: [0, 20) and [50, 90)
    assert m["time_without_leader"] == pytest.approx(60.0)
    assert m["longest_without_leader"] == pytest.approx(40.0)
    assert m["fraction_without_leader"] == pytest.approx(0.6)


def test_election_two_leaders_and_deposition():
    tr = three(ev("leader", 0, 0, term=1), ev("leader", 1, 10, term=1), ev("follower", 0, 20, term=1),
               ev("follower", 1, 30, term=1), ev("leader", 2, 40, term=2), ev("leader", 0, 50, term=1),
               ev("leader", 1, 60, term=3), ev("follower", 1, 70, term=3), ev("timer", 0, 80, name="x"))
    m = election(tr)
    assert not m["safety"]
    assert m["safety_violations"] == [{"term": 1, "nodes": [0, 1]}]
    # leaderless [30, 40) and [70, 80): node 2 (term 2) and stale node 0 (term 1) are deposed by term 3 at 60
    assert m["time_without_leader"] == pytest.approx(20.0)
    assert m["split_votes"] == 0 and m["elections"] == 0


def test_election_empty_and_single_node():
    m = election([])
    assert m["safety"] and m["time_without_leader"] == 0 and m["fraction_without_leader"] is None
    m = election([ev("start", 0, 0), ev("leader", 0, 5, term=1), ev("timer", 0, 10, name="t")])
    assert m["time_without_leader"] == 5.0 and m["terms_with_leader"] == 1


def test_election_tells_lonely_minority_and_split_elections_apart():
    """A lone candidate nobody voted for is a lonely election, not a split vote (issue 16)."""
    tr = three(ev("candidate", 2, 10, term=1), ev("vote", 2, 10, term=1, candidate=2),  # own vote: not counted
               ev("candidate", 0, 20, term=2), ev("vote", 1, 21, term=2, candidate=0),  # got 1's vote: minority
               ev("candidate", 0, 30, term=3), ev("candidate", 1, 31, term=3),  # two candidates: split
               ev("vote", 2, 32, term=3, candidate=1),
               ev("candidate", 1, 40, term=4), ev("vote", 2, 41, term=4, candidate=1), ev("leader", 1, 42, term=4))
    m = election(tr)
    assert m["elections"] == 4 and m["elections_without_leader"] == 3 and m["terms_with_leader"] == 1
    assert m["split_vote_terms"] == [3] and m["split_votes"] == 1
    assert m["lonely_election_terms"] == [1] and m["lonely_elections"] == 1
    assert m["minority_election_terms"] == [2] and m["minority_elections"] == 1
    # without any vote record the two single-candidate kinds cannot be told apart: None, not 0
    m = election([e for e in tr if e.kind != "vote"])
    assert m["split_votes"] == 1 and m["lonely_elections"] is None and m["minority_elections"] is None


def test_election_terms_sorted_as_numbers():
    """Terms 2..12 come out 2, 3, ..., 12, not in string order 10, 11, 12, 2, ... (issue 16)."""
    tr = three(*[ev("candidate", 0, float(t), term=t) for t in range(2, 13)],
               *[ev("leader", n, 100.0 + t, term=t) for t in (12, 9) for n in (1, 2)])
    m = election(tr)
    assert m["lonely_election_terms"] is None and m["split_votes"] == 0
    m = election(tr + [ev("vote", 1, 200, term=99, candidate=2)])
    assert m["lonely_election_terms"] == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert [v["term"] for v in m["safety_violations"]] == [9, 12]


def test_consensus_instances_sorted_as_numbers():
    tr = three(*[ev("decide", 0, float(s), value=s, instance=s) for s in (10, 2, 1)],
               ev("decide", 1, 20, value="b", instance=10), ev("decide", 2, 21, value=3, instance=10))
    m = consensus(tr)
    assert [p["instance"] for p in m["per_instance"]] == [1, 2, 10]
    assert m["agreement_violations"] == [{"instance": 10, "values": [3, 10, "b"]}]
