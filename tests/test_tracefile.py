"""The streamed, columnar trace (``envs/world/tracefile.py``): what is written while a run goes is
what the in-memory trace holds, event for event and vector clock for vector clock; memory is
bounded by the buffer; the file is the same bytes whichever core wrote it."""

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from agents import protocols
from envs.world import tracefile
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.records import Event
from envs.world.trace import FIELDS, _jsonable
from envs.world.tracefile import TraceFile, TraceWriter

ROOT = Path(__file__).resolve().parent.parent


def scenario(seed: int, nodes: int = 4, duplicate: float = 0.05) -> ScenarioConfig:
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes, "duration_ms": 800, "network": {"loss": 0.05, "duplicate": duplicate}},
        "nemesis": {"random": {"kinds": ["partition", "crash", "pause", "clock", "loss"], "interval_ms": 150,
                               "duration_ms": 100}},
        "workload": {"clients": 3, "ops": {"read": 0.5, "write": 0.5}, "timeout_ms": 200},
    })


def build(seed: int, name: str = "abd", **kw):
    cls = protocols.get(name)
    scn = scenario(seed, **kw)
    return build_sim(scn, cls, cls.Params()), scn.world.duration_ms


def as_json(e: Event) -> Event:
    return Event.from_dict(json.loads(json.dumps(_jsonable(e.to_dict()))))


def streamed(path: Path, seed: int, buffer: int = 300, chunk: int = 50, **kw):
    """Run a sim streaming its trace into ``path``; returns the sim and the most events it held."""
    sim, end = build(seed, **kw)
    w = TraceWriter(path, sim.n, FIELDS)
    sim.trace.stream(w.write, buffer)
    most = 0
    while sim.run(until=end, max_events=chunk) == "max_events":
        most = max(most, len(sim.trace) - sim.trace.drained)
        sim.trace.maybe_drain()
    sim.trace.drain()
    w.close()
    return sim, most


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_file_holds_the_in_memory_trace_with_its_vector_clocks(tmp_path, seed):
    sim, _ = streamed(tmp_path / "t.parquet", seed)
    ref, _ = build(seed)
    ref.run(until=800)
    want = [as_json(e) for e in ref.trace.events()]  # what JSON Lines would give back
    tf = TraceFile(tmp_path / "t.parquet")
    got = list(tf.events(vc=True))
    assert len(tf) == len(want) == len(sim.trace) > 1000
    assert any(e.kind == "recv" and e.vc != () for e in got)
    assert got == want
    assert list(tf.events()) == [e._replace(vc=()) for e in want]
    assert list(tf.events(kinds={"crash", "start"})) == [e._replace(vc=()) for e in want
                                                          if e.kind in ("crash", "start")]


def test_memory_is_bounded_by_the_buffer(tmp_path):
    sim, most = streamed(tmp_path / "t.parquet", 4, buffer=100, chunk=20)
    assert len(sim.trace) > 10 * 100
    assert most < 100 + 20 * 10  # a chunk of 20 events records a few events each
    assert sim.trace._raw == [] and sim.trace.vcs == []


def test_ctx_vclock_keeps_working_across_drains(tmp_path):
    sim, end = build(5)
    ref, _ = build(5)
    w = TraceWriter(tmp_path / "t.parquet", sim.n, FIELDS)
    sim.trace.stream(w.write, 100)
    while sim.run(until=end, max_events=40) == "max_events":
        ref.run(until=end, max_events=40)
        assert [sim.trace.vclock(i) for i in range(sim.n)] == [ref.trace.vclock(i) for i in range(ref.n)]
        sim.trace.maybe_drain()
    w.close()


def test_counts_match_the_events(tmp_path):
    streamed(tmp_path / "t.parquet", 6)
    tf = TraceFile(tmp_path / "t.parquet")
    events = list(tf)
    c = tf.counts()
    assert c["kinds"] == dict(Counter(e.kind for e in events))
    assert c["sends_by_msg"] == dict(Counter(str(e.fields["msg"]) for e in events if e.kind == "send"))
    assert c["drops_by_why"] == dict(Counter(e.fields["why"] for e in events if e.kind == "drop"))
    assert c["drops_by_why"]


def test_row_groups_are_the_writer_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(tracefile, "BATCH", 128)
    streamed(tmp_path / "t.parquet", 7, buffer=1000)
    tf = TraceFile(tmp_path / "t.parquet")
    assert tf._pf.num_row_groups >= len(tf) // 128


def test_a_file_that_is_not_a_trace_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="not a Parquet trace"):
        TraceFile(bad)


def test_an_aborted_writer_leaves_nothing(tmp_path):
    w = TraceWriter(tmp_path / "t.parquet", 3, FIELDS)
    w.write([("start", 0, 0.0, 0.0, 1, (False,))])
    w.abort()
    assert list(tmp_path.iterdir()) == []


SCRIPT = r"""
import hashlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_tracefile import streamed
from envs.world import sim as simmod
print("compiled" if simmod.COMPILED else "pure")
p = Path(sys.argv[1])
streamed(p, 9, buffer=500, chunk=64, nodes=5)
print(hashlib.sha256(p.read_bytes()).hexdigest())
"""


def test_both_cores_write_the_same_bytes(tmp_path):
    from envs.world import sim as simmod

    if not simmod.COMPILED and not os.environ.get("CAPGYM_REQUIRE_CORE"):
        pytest.skip("the compiled core is not built")
    outs = []
    for pure in (False, True):
        env = {k: v for k, v in os.environ.items() if k != "CAPGYM_PURE"}
        env["PYTHONPATH"] = str(ROOT)
        if pure:
            env["CAPGYM_PURE"] = "1"
        path = tmp_path / f"{pure}.parquet"
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(ROOT)], capture_output=True,
                             text=True, cwd=ROOT, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        outs.append(out.stdout.split())
    assert [o[0] for o in outs] == ["compiled", "pure"]
    assert outs[0][1] == outs[1][1] == hashlib.sha256((tmp_path / "True.parquet").read_bytes()).hexdigest()
