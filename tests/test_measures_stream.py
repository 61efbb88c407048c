"""The measures stream over a trace file: chunk by chunk they give what they give all at once, and
they hold no event past its chunk.

``runner.summarize`` of a trace file feeds the measures (``metrics.*`` folds) one pass over the
file's events, made a chunk at a time. Here a file written in row groups of a few dozen rows and
read a few events at a time must give the same summary as the file read in one row group, and as
the measures of the file's events held in one list (what ``capgym run`` measured before it
streamed), on configs that exercise every measure of the trace: consensus, election, convergence
(register and set replicas), the replicated log, crashes, partitions, Byzantine nodes left out.
"""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from envs.world import tracefile
from envs.world.tracefile import TraceFile
from experiments import plots, report, runner
from experiments.config import load_config

ROOT = Path(__file__).resolve().parent.parent

#: (config, overrides): small runs, each exercising some measures of the trace
CASES = [
    ("raft", ["world.duration_ms=1500", "seed=2"]),  # election, commit log, partitions
    ("multipaxos", ["world.duration_ms=1000", "seed=1"]),  # consensus instances, commit log
    ("benor", ["world.duration_ms=2000", "seed=3"]),  # consensus with rounds
    ("eventual", ["world.duration_ms=1500", "seed=4"]),  # register replicas (apply), a crash
    ("gossip", ["world.nodes=9", "world.duration_ms=1000", "seed=5"]),  # set replicas (apply)
    ("byzantine_raft", ["world.duration_ms=1500", "seed=6"]),  # a Byzantine node left out
]
#: the summary's fields read from the messages (a list without them counts none)
MESSAGE_FIELDS = ("messages_per_op", "messages", "messages_dropped", "messages_dropped_by_why", "messages_by_type")


def _run(cfg_name: str, overrides: list[str], path: Path, monkeypatch, batch: int):
    cfg = load_config(str(ROOT / "configs" / f"{cfg_name}.yaml"), [*overrides, "wandb.mode=disabled"])
    (entry, *_) = cfg.entries()
    monkeypatch.setattr(tracefile, "BATCH", batch)  # row groups of `batch` rows
    d = runner.simulate(cfg, entry, progress=False, trace_path=path)
    monkeypatch.setattr(tracefile, "BATCH", 65536)
    return d


def _json(s: dict) -> str:
    return json.dumps(s, sort_keys=True, default=repr)


@pytest.mark.parametrize("cfg_name,overrides", CASES, ids=[c for c, _ in CASES])
def test_chunk_by_chunk_equals_all_at_once(cfg_name, overrides, tmp_path, monkeypatch):
    small = _run(cfg_name, overrides, tmp_path / "small.parquet", monkeypatch, batch=37)
    table = pq.read_table(tmp_path / "small.parquet")  # the same rows in one row group
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=len(table) + 1, compression="zstd")
    big = dataclasses.replace(small, events=TraceFile(tmp_path / "big.parquet"))
    assert small.events._pf.num_row_groups > 3 and big.events._pf.num_row_groups == 1
    monkeypatch.setattr(tracefile, "CHUNK", 5)  # events made 5 at a time
    streamed = runner.summarize(small.history, small.events, small.sim_ms, small.entry, check=False)
    monkeypatch.setattr(tracefile, "CHUNK", 8192)
    whole = runner.summarize(big.history, big.events, big.sim_ms, big.entry, check=False)
    assert _json(streamed) == _json(whole)
    # all at once: the file's events other than messages, held in one list, measured as a list
    held = list(big.events.events(exclude=runner.MESSAGE_KINDS))
    listed = runner.summarize(big.history, held, big.sim_ms, big.entry, check=False)
    for k in MESSAGE_FIELDS:
        del streamed[k], listed[k]
    if listed["byzantine"]:
        streamed["byzantine"].pop("messages_sent"), listed["byzantine"].pop("messages_sent")
    assert _json(streamed) == _json(listed)
    # the measures this case is there for did run
    kinds = set(big.events.counts()["kinds"])
    assert (streamed["consensus"] is not None) == bool(kinds & {"decide", "propose"})
    assert (streamed["election"] is not None) == bool(kinds & {"leader", "candidate"})
    assert (streamed["convergence"] is not None) == ("apply" in kinds)
    assert runner.series(small.history, small.events, small.sim_ms) == runner.series(big.history, big.events,
                                                                                     big.sim_ms)


def test_span_and_node_filter_match_a_list(tmp_path, monkeypatch):
    d = _run("byzantine_raft", ["world.duration_ms=1500", "seed=6"], tmp_path / "t.parquet", monkeypatch, batch=50)
    tf = d.events
    every = list(tf)
    (bad,) = {e.node for e in every if e.kind == "byzantine"}
    kept = [e for e in every if e.kind not in runner.MESSAGE_KINDS
            and (e.node is None or e.node != bad or e.kind == "byzantine")]
    monkeypatch.setattr(tracefile, "CHUNK", 3)
    assert list(tf.events(exclude=runner.MESSAGE_KINDS, exclude_nodes={bad})) == kept
    sp = tf.span(exclude=runner.MESSAGE_KINDS, exclude_nodes={bad})
    assert sp == {"events": len(kept), "first_t": kept[0].t, "last_t": kept[-1].t,
                  "nodes": sorted({e.node for e in kept if e.node is not None})}
    assert list(tf.events(kinds={"nothing"})) == [] and tf.span(exclude={e.kind for e in every})["events"] == 0


def test_measures_hold_no_event_past_its_chunk(tmp_path, monkeypatch):
    """The measures' peak (Python allocations, tracemalloc) over a trace file is far below what
    the same events take held in a list, as the measures held them before they streamed."""
    d = _run("eventual", ["world.duration_ms=12000", "seed=1"], tmp_path / "t.parquet", monkeypatch, batch=4096)
    tf = d.events
    kinds = tf.counts()["kinds"]
    others = sum(c for k, c in kinds.items() if k not in runner.MESSAGE_KINDS)
    assert others > 12000 and kinds["apply"] > 3000  # enough events for the bound to mean something
    monkeypatch.setattr(tracefile, "CHUNK", 256)
    tf.counts(), tf.span(exclude=runner.MESSAGE_KINDS)  # (columnar, kept: not what is measured here)
    runner.summarize(d.history, tf, d.sim_ms, d.entry, check=False)  # warm: imports, caches
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        runner.summarize(d.history, tf, d.sim_ms, d.entry, check=False)
        streamed = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        held = list(tf.events(exclude=runner.MESSAGE_KINDS))
        listed = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert listed > others * 200  # a held event costs hundreds of bytes (an Event and its fields)
    # what the stream holds: a chunk of events, the measures' own state (the replicas' registers, the
    # convergence series: 32 bytes a change) and what the history's measures make (about 13 times less
    # here; gossip's set replicas, one entry per value a node holds, would take more: tens of bytes an
    # apply, still not an event)
    assert streamed < listed / 6, (streamed, listed, len(held))


def test_spacetime_reads_only_what_it_draws(tmp_path, monkeypatch):
    d = _run("echo", ["world.nodes=3", "world.duration_ms=400", "seed=2"], tmp_path / "t.parquet", monkeypatch,
             batch=16)
    drawn, last = report._drawn(d.events)
    every = list(d.events)
    assert {e.kind for e in drawn} <= plots.SPACETIME_KINDS and len(drawn) < len(every)
    assert drawn == [e for e in every if e.kind in plots.SPACETIME_KINDS] and last == every[-1].t
    a = plots.spacetime(tmp_path / "a.png", every, 3, "echo")
    b = plots.spacetime(tmp_path / "b.png", drawn, 3, "echo", end=last)
    assert a.read_bytes() == b.read_bytes()  # the same picture


def test_a_jsonl_trace_is_still_measured(tmp_path, monkeypatch):
    """A small run's ``trace.jsonl.gz`` alone (no Parquet file) is read as a list and measured:
    ``capgym report`` rebuilds the summary the run wrote from its streamed file."""
    from experiments.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = {"experiment": "tiny", "seed": 4, "protocol": {"name": "echo"},
           "world": {"nodes": 3, "duration_ms": 600},
           "nemesis": {"random": {"kinds": ["partition", "crash"], "interval_ms": 200, "duration_ms": 100}},
           "workload": {"clients": 3, "think_ms": 10}, "wandb": {"mode": "disabled"}}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    assert main(["run", "c.yaml", "output.trace_jsonl=true", "output.plots=false", "output.report=none", "-q"]) == 0
    (d,) = (tmp_path / "results" / "tiny").iterdir()
    written = (d / "summary.json").read_text()
    (d / "trace.parquet").unlink()
    assert main(["report", str(d), "--no-html", "--no-plots"]) == 0
    assert (d / "summary.json").read_text() == written


def test_report_window_late_in_a_trace_file_is_the_same(tmp_path, monkeypatch):
    """``report.html``'s space-time window, which lets a send's clock go at its receive and (a trace
    file's) at its drop, equals the window of the same events held in a list, with duplicated and
    lost messages (a copy dropped, another received later) and a window that starts late."""
    from experiments import html_report

    d = _run("raft", ["world.duration_ms=1500", "seed=3", "world.network.duplicate=0.2",
                    "world.network.loss=0.2"], tmp_path / "t.parquet",
             monkeypatch, batch=500)
    tf, every = d.events, list(d.events)
    again = tf.repeated_mids()
    fates = Counter(e.fields["mid"] for e in every if e.kind in ("recv", "drop"))
    assert again and again == {m for m, c in fates.items() if c > 1}
    for start in (0.0, 700.0):
        assert html_report.window_events(tf, tf.n, 200, start) == html_report.window_events(every, tf.n, 200, start)


def test_report_window_keeps_a_clock_for_a_copy_received_after_a_drop(tmp_path):
    """A duplicated message whose first copy is dropped (a cut that came up in flight) and whose
    second is received: its send's clock must outlive the drop, or the receive misses the merge."""
    from envs.world.records import Event
    from experiments import html_report

    evs = [Event("start", 0, 1.0, 1.0, 1, (), {"restart": False}),
           Event("start", 1, 1.0, 1.0, 1, (), {"restart": False}),
           Event("send", 0, 2.0, 2.0, 2, (), {"dst": 1, "mid": 7, "msg": "m"}),
           Event("drop", None, 3.0, None, 0, (), {"src": 0, "dst": 1, "mid": 7, "why": "partition"}),
           Event("recv", 1, 4.0, 4.0, 3, (), {"src": 0, "mid": 7, "msg": "m"})]
    tf = TraceFile(tracefile.write_events(tmp_path / "t.parquet", evs, 2))
    assert tf.repeated_mids() == {7}
    w = html_report.window_events(tf, 2, 10)
    assert w == html_report.window_events(list(tf), 2, 10)
    assert w["events"][-1]["vc"] == "[2, 2]"  # the receive merged the send's clock
