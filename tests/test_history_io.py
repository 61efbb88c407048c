"""History readers: Jepsen register logs, Jepsen EDN kv histories, capgym JSON Lines."""

from __future__ import annotations

import pytest

from envs.world.records import FAIL, OK, UNKNOWN, Op, history_to_jsonl
from metrics.history_io import (
    HistoryError,
    Keyword,
    detect_format,
    parse_edn_map,
    parse_edn_value,
    read_history,
    read_jepsen_edn,
    read_jepsen_log,
)

LOG = """\
2015-05-10 some other log line that is ignored
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:invoke\t:write\t4
INFO  jepsen.util - 3\t:ok\t:read\tnil
INFO  jepsen.util - 2\t:ok\t:write\t4
INFO  jepsen.util - 1\t:invoke\t:cas\t[3 0]
INFO  jepsen.util - 1\t:fail\t:cas\t[3 0]
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:fail\t:read\t:timed-out
INFO  jepsen.util - 4   :invoke :cas    [4 1]
INFO  jepsen.util - 4   :info   :cas    :timed-out
INFO  jepsen.util - 5\t:invoke\t:write\t2
"""


def test_jepsen_log_semantics():
    ops = read_jepsen_log(LOG)
    by = {(o.process, o.f): o for o in ops}
    assert len(ops) == 6
    read = by[(3, "read")]
    assert (read.status, read.output, read.invoke < read.complete) == (OK, None, True)
    assert by[(2, "write")].value == 4 and by[(2, "write")].status == OK
    assert by[(1, "cas")].status == FAIL and by[(1, "cas")].value == [3, 0]
    assert by[(0, "read")].status == UNKNOWN and by[(0, "read")].complete is None  # timed out
    assert by[(4, "cas")].status == UNKNOWN and by[(4, "cas")].complete is None  # :info, spaces
    assert by[(5, "write")].status == UNKNOWN and by[(5, "write")].complete is None  # never completed
    # real-time order: write 4 completes after read 3 completes
    assert by[(3, "read")].complete < by[(2, "write")].complete
    assert detect_format(LOG) == "jepsen-log"


def test_jepsen_log_errors_name_the_line():
    bad = "INFO  jepsen.util - 1\t:ok\t:read\t3\n"
    with pytest.raises(HistoryError, match=r"h\.log:1: .*without an :invoke"):
        read_jepsen_log(bad, "h.log")
    bad = "INFO  jepsen.util - 1\t:invoke\t:cas\t[3\n"
    with pytest.raises(HistoryError, match=r"h\.log:1: "):
        read_jepsen_log(bad, "h.log")
    bad = "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:done\t:read\t1\n"
    with pytest.raises(HistoryError, match=r"h\.log:2: unknown event type"):
        read_jepsen_log(bad, "h.log")


EDN = """\
{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}
{:process 3, :type :invoke, :f :get, :key "4", :value nil}
{:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}
{:process 3, :type :ok, :f :get, :key "4", :value "x 0 1 y"}
{:process 1, :type :invoke, :f :put, :key "5", :value "a \\"q\\""}
{:process 1, :type :info, :f :put, :key "5", :value "a \\"q\\""}
"""


def test_jepsen_edn_semantics():
    ops = read_jepsen_edn(EDN)
    assert [(o.f, o.key, o.status) for o in ops] == [("append", "4", OK), ("get", "4", OK), ("put", "5", UNKNOWN)]
    assert ops[0].value == "x 0 1 y" and ops[1].output == "x 0 1 y"
    assert ops[2].value == 'a "q"' and ops[2].complete is None
    assert detect_format(EDN) == "jepsen-edn"


def test_edn_values():
    assert parse_edn_value("nil") is None
    assert parse_edn_value("[3 0]") == [3, 0]
    assert parse_edn_value("[1 [2 :x] \"s\"]") == [1, [2, Keyword(":x")], "s"]
    assert parse_edn_value(":x") != ":x" and parse_edn_value('":x"') == ":x"  # a keyword is not a string
    assert parse_edn_map('{:a 1, :b "x y", :c [1 2]}') == {"a": 1, "b": "x y", "c": [1, 2]}
    with pytest.raises(ValueError):
        parse_edn_value("[1 2")


def test_jepsen_edn_malformed_line_names_file_and_line():
    text = EDN.splitlines()
    text[2] = "{:process 0, :type :ok, :f :append, :key"
    with pytest.raises(HistoryError, match=r"kv\.txt:3: malformed"):
        read_jepsen_edn("\n".join(text), "kv.txt")


def test_jsonl_round_trip_and_errors(tmp_path):
    ops = [Op(0, 1, "write", 3, invoke=0.5, complete=1.5, status=OK),
           Op(1, 2, "read", invoke=1.0, complete=2.0, status=OK, output=3),
           Op(2, 1, "cas", [3, 4], invoke=2.0, status=UNKNOWN)]
    path = tmp_path / "h.jsonl"
    path.write_text(history_to_jsonl(ops))
    assert read_history(path) == ops
    assert read_history(path, "jsonl") == ops
    lines = history_to_jsonl(ops).splitlines()
    for bad in ['{"id": 1, "process"', '{"id": 1, "nope": 2}', '[1, 2]',
                lines[0].replace('"ok"', '"maybe"'), lines[0].replace('"invoke":0.5', '"invoke":"soon"'),
                lines[0].replace('"complete":1.5', '"complete":null')]:
        path.write_text("\n".join([lines[0], bad, lines[1]]))
        with pytest.raises(HistoryError, match=r"h\.jsonl:2: "):
            read_history(path)


def test_read_history_errors(tmp_path):
    with pytest.raises(HistoryError, match="cannot read"):
        read_history(tmp_path / "missing.log")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    with pytest.raises(HistoryError, match="junk.txt: cannot tell the history format"):
        read_history(junk)
    with pytest.raises(HistoryError, match="unknown history format"):
        read_history(junk, "csv")


def test_event_indices_keep_real_time_order():
    ops = read_jepsen_log(LOG)
    times = sorted([o.invoke for o in ops] + [o.complete for o in ops if o.complete is not None])
    assert len(set(times)) == len(times)  # one distinct index per event
