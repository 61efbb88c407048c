"""The results folder: fresh folders, atomic writes, records that round-trip."""

from __future__ import annotations

import json
import os

import pytest

from agents.protocols.echo import Echo
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from experiments import results


def test_new_run_dir_is_new_and_named_by_time_and_id(tmp_path):
    a = results.new_run_dir(tmp_path / "res", "exp")
    b = results.new_run_dir(tmp_path / "res", "exp")
    assert a != b and a.parent == b.parent == tmp_path / "res" / "exp"
    stamp, rid = a.name.rsplit("-", 1)
    assert len(stamp) == len("20250101-120000") and len(rid) == 6 and int(rid, 16) >= 0


def test_new_run_dir_never_reuses_an_existing_folder(tmp_path, monkeypatch):
    ids = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(results.secrets, "token_hex", lambda n: next(ids))
    monkeypatch.setattr(results.time, "strftime", lambda fmt: "20250101-120000")
    a = results.new_run_dir(tmp_path, "e")
    (a / "keep.txt").write_text("mine")
    b = results.new_run_dir(tmp_path, "e")  # the clashing id is skipped, not reused
    assert a.name.endswith("aaaaaa") and b.name.endswith("bbbbbb")
    assert (a / "keep.txt").read_text() == "mine"


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    p = tmp_path / "summary.json"
    results.write_json(p, {"a": 1})
    results.write_json(p, {"b": [1, 2]})
    assert json.loads(p.read_text()) == {"b": [1, 2]}
    results.write_csv(tmp_path / "m.csv", [{"x": 1, "y": None}, {"x": 2, "y": 0.5}])
    assert (tmp_path / "m.csv").read_text() == "x,y\n1,\n2,0.5\n"
    results.write_yaml(tmp_path / "c.yaml", {"seed": 3})
    assert (tmp_path / "c.yaml").read_text() == "seed: 3\n"
    assert sorted(os.listdir(tmp_path)) == ["c.yaml", "m.csv", "summary.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "status.json"
    results.write_status(tmp_path, "running")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError):
        results.write_status(tmp_path, "complete")
    assert json.loads(p.read_text())["status"] == "running"


def test_records_round_trip(tmp_path):
    scn = ScenarioConfig.model_validate({"seed": 2, "world": {"nodes": 3, "duration_ms": 400},
                                         "nemesis": {"random": {"interval_ms": 100, "duration_ms": 50}},
                                         "workload": {"clients": 3}})
    sim = build_sim(scn, Echo, Echo.Params())
    sim.run(until=400)
    results.save_records(tmp_path, sim.history, sim.trace)
    history, tf = results.load_records(tmp_path)
    events = list(tf.events(vc=True))
    assert [op.to_dict() for op in history] == [op.to_dict() for op in sim.history]
    mem = list(sim.trace.events())
    assert len(events) == len(mem) > 0
    def key(e):
        return (e.kind, e.node, e.t, e.lamport, e.vc)

    assert [key(e) for e in events] == [key(e) for e in mem]
    assert (tmp_path / "trace.shiviz").read_text().count("\n") > len(mem)
