"""Staleness, availability and cost on hand-made histories."""

import pytest

from envs.world.records import Event, Op
from metrics.availability import availability
from metrics.cost import cost
from metrics.staleness import staleness

_ids = iter(range(10**6))


def op(f, inv, comp, value=None, output=None, status="ok", key=None):
    return Op(id=next(_ids), process=0, f=f, value=value, key=key, invoke=inv,
              complete=None if status == "unknown" else comp, status=status, output=output)


def ev(kind, node=None, t=0.0, **fields):
    return Event(kind, node, t, None, 0, (), fields)


def test_fresh_register_has_no_stale_reads():
    h = [op("write", 0, 10, 1), op("read", 5, 8, output=None), op("read", 12, 14, output=1),
         op("write", 20, 30, 2), op("read", 25, 26, output=1), op("read", 25, 27, output=2)]
    m = staleness(h)
    assert m["reads"] == 4 and m["stale_reads"] == 0 and m["k_max"] == 0


def test_stale_register_reads_and_k():
    h = [op("write", 0, 10, 1), op("write", 11, 20, 2), op("write", 21, 30, 3),
         op("read", 31, 32, output=1),     # misses 2 and 3: k = 2
         op("read", 31, 32, output=None),  # initial value, misses all three: k = 3
         op("read", 31, 32, output=3),     # fresh
         op("read", 25, 26, output=2)]     # write 3 not complete yet: fresh
    m = staleness(h)
    assert m["reads"] == 4 and m["stale_reads"] == 2
    assert m["k_max"] == 3 and m["k_counts"] == [[0, 2], [2, 1], [3, 1]]
    assert m["stale_fraction"] == 0.5


def test_concurrent_writes_are_not_ordered():
    # writes 1 and 2 overlap: reading 1 after both completed is not stale
    h = [op("write", 0, 10, 1), op("write", 5, 15, 2), op("read", 20, 21, output=1)]
    assert staleness(h)["stale_reads"] == 0


def test_unknown_and_failed_writes():
    h = [op("write", 0, None, 1, status="unknown"), op("write", 1, 2, 9, status="fail"),
         op("read", 50, 51, output=1), op("read", 50, 51, output=9), op("read", 50, 51, output=None)]
    m = staleness(h)
    # an unknown write may take effect any time; a failed one never: reading 9 is unexplained
    assert m["reads"] == 2 and m["stale_reads"] == 0 and m["unexplained_reads"] == 1


def test_kv_per_key_and_initial_empty_string():
    h = [op("put", 0, 1, "a", key="x"), op("get", 5, 6, output="", key="y"), op("get", 5, 6, output="", key="x")]
    m = staleness(h)
    assert m["stale_reads"] == 1 and m["k_max"] == 1


def test_set_reads_gossip_and_append():
    h = [op("write", 0, 1, 1), op("write", 0, 2, 2), op("write", 10, 11, 3),
         op("read", 5, 6, output=[1]), op("read", 20, 21, output=[1, 2, 3]), op("read", 20, 21, output=[3])]
    m = staleness(h)
    assert m["stale_reads"] == 2 and m["k_counts"] == [[0, 1], [1, 1], [2, 1]]
    h = [op("append", 0, 1, "x1 ", key=0), op("append", 2, 3, "x2 ", key=0), op("get", 4, 5, output="x1 ", key=0)]
    assert staleness(h)["k_max"] == 1


def test_t_visibility_curve():
    # one write completes at 10; reads at lags 0.5 (misses it), 1.5 and 3 (see it)
    h = [op("write", 0, 10, 1), op("read", 10.5, 11, output=None), op("read", 11.5, 12, output=1),
         op("read", 13, 14, output=1)]
    tv = staleness(h, edges=(0, 1, 2, 5))["t_visibility"]
    assert tv["t"] == [0, 1, 2]
    assert tv["pairs"] == [1, 1, 1]
    assert tv["p"] == [0.0, 1.0, 1.0]
    # set reads go through the same bins
    h = [op("write", 0, 10, 1), op("read", 10.5, 11, output=[]), op("read", 13, 14, output=[1])]
    tv = staleness(h, edges=(0, 1, 2, 5))["t_visibility"]
    assert tv["p"] == [0.0, None, 1.0]


def test_t_visibility_newer_write_counts():
    # reading write 2 counts as seeing write 1 (2 was invoked after 1 completed)
    h = [op("write", 0, 1, 1), op("write", 2, 3, 2), op("read", 4, 5, output=2)]
    tv = staleness(h, edges=(0, 10))["t_visibility"]
    assert tv["pairs"] == [2] and tv["p"] == [1.0]


def test_staleness_empty_and_all_unknown():
    m = staleness([])
    assert m["reads"] == 0 and m["stale_fraction"] is None and m["k_max"] is None
    assert all(p is None for p in m["t_visibility"]["p"])
    h = [op("write", 0, None, 1, status="unknown"), op("read", 1, None, status="unknown")]
    assert staleness(h)["reads"] == 0


def test_availability_partitions_and_latency():
    tr = [ev("partition", None, 100, cuts=[[0, 1]], shape="x"), ev("partition", None, 150, cuts=[[1, 0]]),
          ev("heal", None, 200)]
    h = [op("write", 10, 20, 1), op("write", 110, 130, 2, status="fail"), op("read", 120, None, status="unknown"),
         op("read", 199, 239, output=1), op("read", 200, 210, output=1)]
    m = availability(h, tr)
    assert m["counts"] == {"ok": 3, "fail": 1, "unknown": 1}
    assert m["ok_fraction"] == pytest.approx(0.6)
    assert m["ops_partitioned"] == 3 and m["ok_fraction_partitioned"] == pytest.approx(1 / 3)
    assert m["ok_fraction_connected"] == 1.0
    assert m["latency"]["max"] == 40 and m["latency"]["p50"] == 10


def test_availability_open_partition_and_edge_cases():
    tr = [ev("partition", None, 100, cuts=[[0, 1]])]
    m = availability([op("read", 500, 501, output=None)], tr)
    assert m["ok_fraction_partitioned"] == 1.0 and m["ok_fraction_connected"] is None
    m = availability([], [])
    assert m["ok_fraction"] is None and m["latency"]["p99"] is None
    m = availability([op("read", 1, None, status="unknown")] * 3, None)
    assert m["ok_fraction"] == 0.0 and m["counts"]["unknown"] == 3 and m["latency"]["max"] is None


def test_cost():
    tr = [ev("send", 0, 1, dst=1, mid=1, msg="a", bytes=10), ev("send", 1, 2, dst=0, mid=2, msg="b", bytes=5),
          ev("drop", None, 3, src=1, dst=0, mid=2, why="loss"), ev("send", 0, 4, dst=1, mid=3, msg="a")]
    h = [op("write", 0, 1, 1), op("read", 0, None, status="unknown")]
    m = cost(h, tr)
    assert m["messages"] == 3 and m["bytes"] == 15 and m["dropped"] == 1
    assert m["messages_per_op"] == 1.5 and m["messages_per_ok_op"] == 3 and m["bytes_per_op"] == 7.5
    assert m["by_type"] == {"a": 2, "b": 1}
    m = cost([], [ev("send", 0, 1, dst=1, mid=1, msg="a")])
    assert m["bytes"] is None and m["messages_per_op"] is None


def test_cost_splits_drops_by_why():
    tr = [ev("drop", None, 1, why="loss"), ev("drop", None, 2, why="partition"), ev("drop", None, 3, why="partition")]
    m = cost([], tr)
    assert m["dropped"] == 3 and m["dropped_by_why"] == {"loss": 1, "partition": 2}
