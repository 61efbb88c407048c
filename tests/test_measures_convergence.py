"""Convergence, causality and alignment measures on hand-made traces and rewards."""

import numpy as np
import pytest

from envs.world.records import Event
from metrics.alignment import alignment_gap, gini, returns, social_outcomes, summarize, welfare
from metrics.causality import causal_order, concurrent, happens_before, vc_compare
from metrics.convergence import convergence


def ev(kind, node=None, t=0.0, vc=(), **fields):
    return Event(kind, node, t, None, 0, tuple(vc), fields)


def start(n):
    return [ev("start", i, 0.0, vc=(0,) * n, restart=False) for i in range(n)]


# --- convergence -------------------------------------------------------------------------------

def test_divergence_then_convergence_after_heal():
    tr = start(3) + [
        ev("partition", None, 5, cuts=[[0, 1], [1, 0]]),
        ev("apply", 0, 10, key="k", value=1),
        ev("apply", 1, 20, key="k", value=2),
        ev("heal", None, 30),
        ev("apply", 1, 40, key="k", value=1),
        ev("apply", 2, 50, key="k", value=1),
        ev("timer", 0, 60, name="t"),
    ]
    m = convergence(tr)
    s = m["series"]
    assert s["t"] == [0, 10, 20, 40, 50]
    assert s["distinct_max"] == [1, 2, 3, 2, 1]
    assert s["pairs_differ"] == pytest.approx([0, 2 / 3, 1, 2 / 3, 0])
    assert m["last_heal"] == 30 and m["time_to_converge"] == 20
    assert m["converged_at_end"] and m["max_distinct"] == 3
    # time-weighted: 2/3 over [10,20), 1 over [20,40), 2/3 over [40,50), over 60 ms
    assert m["mean_pairs_differ"] == pytest.approx((20 / 3 + 20 + 20 / 3) / 60)


def test_pairs_differ_counts_any_key():
    tr = start(2) + [ev("apply", 0, 1, key="a", value=1), ev("apply", 1, 2, key="b", value=1)]
    s = convergence(tr)["series"]
    assert s["keys_diverged"][-1] == 2 and s["pairs_differ"][-1] == 1.0
    assert s["distinct_max"][-1] == 2


def test_crashed_replica_does_not_count_and_rejoins():
    tr = start(3) + [
        ev("apply", 0, 1, key="k", value=1), ev("apply", 1, 1, key="k", value=1),
        ev("crash", 2, 2),                       # the only laggard crashes: live replicas agree
        ev("heal", None, 3),
        ev("start", 2, 4, restart=True),         # it comes back without the value
        ev("apply", 2, 6, key="k", value=1),
    ]
    m = convergence(tr)
    assert m["series"]["t"] == [0, 1, 2, 4, 6]
    assert m["series"]["distinct_max"] == [1, 2, 1, 2, 1]
    assert m["time_to_converge"] == 0  # agreed (among the live) at the heal
    assert m["converged_at_end"]


def test_never_converges_and_no_heal():
    tr = start(2) + [ev("heal", None, 1), ev("apply", 0, 2, key=None, value=1)]
    m = convergence(tr)
    assert m["time_to_converge"] == 0  # agreed at the heal itself (t=1), before the apply
    tr = start(2) + [ev("apply", 0, 2, key=None, value=1), ev("heal", None, 3)]
    m = convergence(tr)
    assert m["time_to_converge"] is None and not m["converged_at_end"]
    m = convergence(start(2) + [ev("apply", 0, 2, key=None, value=1)])
    assert m["last_heal"] is None and m["time_to_converge"] is None


def test_set_semantics_gossip():
    tr = start(2) + [ev("apply", 0, 1, key=None, value=1), ev("apply", 0, 2, key=None, value=2),
                     ev("apply", 1, 3, key=None, value=2), ev("apply", 1, 4, key=None, value=1),
                     ev("apply", 1, 5, key=None, value=1)]
    assert convergence(tr, "set")["series"]["pairs_differ"] == [0, 1, 0]
    # read as registers, node 0 ends with 2 and node 1 with 1
    assert not convergence(tr, "register")["converged_at_end"]
    with pytest.raises(ValueError):
        convergence(tr, "bag")


def test_convergence_edge_cases():
    m = convergence([])
    assert m["series"]["t"] == [0.0] and m["converged_at_end"] and m["mean_pairs_differ"] is None
    m = convergence([ev("start", 0, 0, vc=(0,)), ev("apply", 0, 1, key=1, value=1)])  # one node
    assert m["converged_at_end"] and m["max_distinct"] == 1


# --- causality -------------------------------------------------------------------------------

def test_vc_compare():
    assert vc_compare((1, 0), (1, 1)) == "before" and happens_before((1, 0), (1, 1))
    assert vc_compare((2, 1), (1, 1)) == "after"
    assert vc_compare((1, 0), (1,)) == "equal"
    assert vc_compare((1, 0), (0, 1)) == "concurrent" and concurrent((1, 0), (0, 1))
    assert not happens_before((1, 1), (1, 1))


def test_causal_delivery_violation():
    # n0 sends m1 to n2, then m2 to n1; n1 forwards m3 to n2 (send(m1) -> send(m3)); n2 gets m3 first.
    tr = [
        ev("send", 0, 1, vc=(1, 0, 0), dst=2, mid=1), ev("send", 0, 2, vc=(2, 0, 0), dst=1, mid=2),
        ev("recv", 1, 3, vc=(2, 1, 0), src=0, mid=2), ev("send", 1, 4, vc=(2, 2, 0), dst=2, mid=3),
        ev("recv", 2, 5, vc=(2, 2, 1), src=1, mid=3), ev("recv", 2, 6, vc=(2, 2, 2), src=0, mid=1),
        ev("recv", 2, 7, vc=(2, 2, 3), src=0, mid=1),  # a duplicate: not counted again
    ]
    m = causal_order(tr)
    assert m["messages_checked"] == 3 and m["messages_out_of_order"] == 1
    assert m["message_examples"] == [{"node": 2, "t": 6, "mid": 1, "src": 0}]
    assert not m["causal"]
    # delivered in order: no violation
    ok = tr[:4] + [ev("recv", 2, 5, vc=(1, 0, 1), src=0, mid=1), ev("recv", 2, 6, vc=(2, 2, 2), src=1, mid=3)]
    assert causal_order(ok)["messages_out_of_order"] == 0


def test_concurrent_messages_any_order():
    tr = [ev("send", 0, 1, vc=(1, 0, 0), dst=2, mid=1), ev("send", 1, 1, vc=(0, 1, 0), dst=2, mid=2),
          ev("recv", 2, 2, vc=(0, 1, 1), src=1, mid=2), ev("recv", 2, 3, vc=(1, 1, 2), src=0, mid=1)]
    assert causal_order(tr)["causal"]


def test_apply_out_of_causal_order():
    u1, u2, u3 = (1, 0, 0), (1, 1, 0), (0, 0, 1)  # u1 -> u2; u3 concurrent with both
    tr = [
        ev("apply", 0, 1, key="x", value=1, origin_vc=list(u1)),
        ev("apply", 0, 2, key="x", value=2, origin_vc=list(u2)),
        ev("apply", 2, 3, key="x", value=2, origin_vc=list(u2)),
        ev("apply", 2, 4, key="x", value=3, origin_vc=list(u3)),
        ev("apply", 2, 5, key="x", value=1, origin_vc=list(u1)),  # late: u2 already applied
        ev("apply", 2, 6, key="x", value=1, origin_vc=list(u1)),  # re-apply: not checked again
        ev("apply", 1, 7, key="x", value=9),                      # no origin_vc: ignored
    ]
    m = causal_order(tr)
    assert m["applies_checked"] == 5 and m["applies_out_of_order"] == 1
    assert m["apply_examples"] == [{"node": 2, "t": 5, "origin_vc": [1, 0, 0]}]


def test_join_is_not_a_false_positive():
    # n2 applied two concurrent updates whose join covers a third concurrent one? Impossible for real
    # event clocks; but u = (1,1,0) after applying (1,0,0) and (0,1,0) in order is fine.
    tr = [ev("apply", 2, 1, origin_vc=[1, 0, 0]), ev("apply", 2, 2, origin_vc=[0, 1, 0]),
          ev("apply", 2, 3, origin_vc=[1, 2, 0])]
    assert causal_order(tr)["causal"]
    assert causal_order([])["causal"] and causal_order([])["applies_checked"] == 0


# --- alignment -------------------------------------------------------------------------------

def test_returns_welfare_gap():
    r = {"b": [1, 1, 0], "a": [0, 2, 2]}
    assert returns(r) == [4.0, 2.0]
    assert welfare([4, 2]) == 6 and welfare([4, 2], "mean") == 3
    assert welfare([], "mean") is None
    g = alignment_gap(welfare_global=10.0, welfare_local=7.5)
    assert g == {"gap": 2.5, "relative": 0.25}
    assert alignment_gap(0.0, -1.0)["relative"] is None


def test_gini_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.random(rng.integers(1, 9)) * 10
        want = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum())
        assert gini(x) == pytest.approx(want)
    assert gini([0, 0, 0]) == 0 and gini([0, 0, 1]) == pytest.approx(2 / 3) and gini([]) == 0.0
    assert gini([1, -1]) is None


def test_perolat_social_outcomes():
    # T = 4, N = 2; agent 0 rewarded at steps 1 and 3, agent 1 at step 4
    r = np.array([[1, 0], [0, 0], [1, 0], [0, 2]])
    m = social_outcomes(r, tagged=[1, 0])
    assert m["returns"] == [2.0, 2.0]
    assert m["efficiency"] == 1.0 and m["equality"] == 1.0
    assert m["sustainability"] == pytest.approx((2 + 4) / 2)
    assert m["peace"] == pytest.approx((8 - 1) / 4) and m["peace_fraction"] == pytest.approx(7 / 8)
    tagged = np.zeros((4, 2), dtype=bool)
    tagged[:, 1] = True
    assert social_outcomes(r, tagged)["peace_fraction"] == 0.5
    m = summarize([[0, 3], [0, 0]])
    assert m["equality"] == 0.5 and m["sustainability"] == 1.0 and m["peace"] is None and m["welfare"] == 3


def test_alignment_edge_cases():
    m = social_outcomes(np.zeros((0, 3)))
    assert m["efficiency"] is None and m["sustainability"] is None
    m = social_outcomes([[5.0]])  # one agent
    assert m["equality"] == 1.0 and m["efficiency"] == 5.0
    with pytest.raises(ValueError):
        returns({"a": [1], "b": [1, 2]})
