"""``capgym run``: the results folder, interruption, wandb offline, the quick start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from envs.world.records import history_from_jsonl
from envs.world.trace import load_jsonl
from envs.world.tracefile import TraceFile
from experiments.cli import main

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

TINY = {
    "experiment": "tiny",
    "seed": 4,
    "protocol": {"name": "echo"},
    "world": {"nodes": 3, "duration_ms": 600},
    "nemesis": {"random": {"kinds": ["partition"], "interval_ms": 200, "duration_ms": 100}},
    "workload": {"clients": 3, "think_ms": 10},
    "wandb": {"mode": "disabled"},
}


def write(tmp: Path, data: dict, name: str = "c.yaml") -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(data))
    return p


def run_dirs(root: Path, experiment: str) -> list[Path]:
    return sorted(p for p in (root / experiment).iterdir() if p.is_dir())


def test_run_leaves_a_complete_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(write(tmp_path, TINY)), "seed=5"]) == 0
    out = capsys.readouterr().out
    (d,) = run_dirs(tmp_path / "results", "tiny")
    assert str(d.relative_to(tmp_path)) in out and "availability" in out
    for f in ("config.yaml", "status.json", "summary.json", "metrics.csv", "history.jsonl", "trace.parquet",
              "trace.shiviz", "plots/timeline.png", "plots/latency.png", "plots/spacetime-echo.png"):
        assert (d / f).is_file(), f
    assert not list(d.rglob(".*.tmp-*")), "a temporary file was left behind"
    assert not (d / "wandb").exists()  # wandb.mode: disabled
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["seed"] == 5 and cfg["world"]["network"]["loss"] == 0.0  # resolved: overrides and defaults
    assert json.loads((d / "status.json").read_text())["status"] == "complete"
    history = history_from_jsonl((d / "history.jsonl").read_text())
    events = list(TraceFile(d / "trace.parquet"))
    assert not (d / "trace.jsonl.gz").exists()  # output.trace_jsonl is off by default
    s = json.loads((d / "summary.json").read_text())["runs"]["echo"]
    assert s["ops"] == len(history) > 0
    assert s["messages"] == sum(e.kind == "send" for e in events) > 0
    assert s["availability"] == sum(op.status == "ok" for op in history) / len(history)
    assert s["partitions"] == sum(e.kind == "partition" for e in events) > 0
    assert s["interrupted"] is False and s["sim_ms"] == 600
    rows = (d / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("protocol,t_start_ms,t_end_ms,ops,ok")
    assert sum(int(r.split(",")[3]) for r in rows[1:]) == len(history)
    assert (d / "trace.shiviz").read_text().startswith("(?<event>.*)")


def test_same_seed_same_summary_and_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = write(tmp_path, TINY)
    assert main(["run", str(p), "-q"]) == 0
    assert main(["run", str(p), "-q"]) == 0
    a, b = run_dirs(tmp_path / "results", "tiny")
    assert a != b
    assert (a / "history.jsonl").read_bytes() == (b / "history.jsonl").read_bytes()
    assert (a / "trace.parquet").read_bytes() == (b / "trace.parquet").read_bytes()
    assert (a / "summary.json").read_text() == (b / "summary.json").read_text()


def test_two_runs_never_share_a_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from experiments.results import new_run_dir

    with ThreadPoolExecutor(8) as pool:  # all within the same second: the random id tells them apart
        dirs = list(pool.map(lambda _: new_run_dir(tmp_path, "x"), range(200)))
    assert len(set(dirs)) == 200 and all(d.is_dir() for d in dirs)
    assert len(list((tmp_path / "x").iterdir())) == 200


def test_compare_runs_each_protocol_under_the_same_scenario(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = {**{k: v for k, v in TINY.items() if k != "protocol"},
           "compare": [{"name": "echo"}, {"name": "gossip", "params": {"fanout": 1}}]}
    assert main(["run", str(write(tmp_path, cfg))]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("protocol"))
    assert header.split() == ["protocol", "availability", "linearizable", "stale-read", "rate", "lost", "writes",
                              "messages/op"]
    assert any(line.startswith("echo ") for line in out.splitlines())
    assert any(line.startswith("gossip ") for line in out.splitlines())
    (d,) = run_dirs(tmp_path / "results", "tiny")
    for label in ("echo", "gossip"):
        assert (d / label / "history.jsonl").is_file() and (d / label / "trace.parquet").is_file()
    assert (d / "plots" / "compare.png").is_file()
    s = json.loads((d / "summary.json").read_text())
    assert [r["protocol"] for r in s["table"]] == ["echo", "gossip"]
    assert s["runs"]["gossip"]["params"] == {"interval_ms": 50.0, "fanout": 1}
    # the same scenario: the same partitions at the same true times for both
    parts = [[(e.t, e.fields["cuts"]) for e in TraceFile(d / lb / "trace.parquet") if e.kind == "partition"]
             for lb in ("echo", "gossip")]
    assert parts[0] == parts[1] and parts[0]
    # gossip reads return sets: no register model applies, so there is no verdict, and the
    # table says n/a (not applicable), not unknown (which means the search ran out of time)
    assert s["runs"]["gossip"]["linearizable"] is None
    assert s["runs"]["gossip"]["linearizability_verdict"] == "not_applicable"
    assert "reads return collections" in s["runs"]["gossip"]["linearizability"]["why"]
    assert next(line for line in out.splitlines() if line.startswith("gossip ")).split()[2] == "n/a"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_a_valid_folder_marked_interrupted(sig, tmp_path):
    long = {**TINY, "experiment": "long",
            "world": {"nodes": 5, "duration_ms": 3_600_000}, "workload": {"clients": 10, "think_ms": 5}}
    p = write(tmp_path, long)
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(p)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "results").glob("long/*/status.json"))
            if found:
                status = found[0]
                break
            time.sleep(0.05)
        assert status is not None, proc.communicate(timeout=5)
        time.sleep(0.8)  # let the simulation get going
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    d = status.parent
    assert json.loads(status.read_text())["status"] == "interrupted"
    assert not list(d.rglob(".*.tmp-*"))
    history = history_from_jsonl((d / "history.jsonl").read_text())
    events = list(TraceFile(d / "trace.parquet"))
    assert history and events
    summary = json.loads((d / "summary.json").read_text())
    run = summary["runs"]["echo"]
    assert run["interrupted"] is True and 0 < run["sim_ms"] < 3_600_000
    assert run["ops"] == len(history)
    assert summary["completed"] == []
    # the saved records rebuild the same summary
    before = (d / "summary.json").read_text()
    assert main(["report", str(d), "--no-plots"]) == 0
    assert (d / "summary.json").read_text() == before


def test_wandb_offline_run_folder_holds_the_summary(tmp_path, monkeypatch):
    from experiments.tracking import offline_summary

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = {**TINY, "wandb": {"mode": "offline", "project": "capgym-test", "tags": ["test"]}}
    assert main(["run", str(write(tmp_path, cfg)), "-q"]) == 0
    (d,) = run_dirs(tmp_path / "results", "tiny")
    (wrun,) = list((d / "wandb").glob("offline-run-*"))
    assert json.loads((d / "status.json").read_text())["wandb"] == str(wrun.relative_to(d))
    s = json.loads((d / "summary.json").read_text())["runs"]["echo"]
    w = offline_summary(wrun)
    for k in ("availability", "ops", "messages_per_op", "stale_read_rate", "partitions"):
        assert w[f"echo/{k}"] == pytest.approx(s[k]), k
    assert w["echo/linearizable"] == s["linearizable"]
    assert any(k.startswith("plots/timeline") for k in w)  # the plots were logged as images
    assert w["_step"] == 49  # one step per time bucket of the series


def test_wandb_offline_runs_from_two_folders_of_one_process(tmp_path, monkeypatch):
    """wandb's service outlives a run and keeps the working directory it started in: a second run
    from another folder, given a relative ``dir``, had its transaction log written under the first
    folder (its own folder held no ``run-*.wandb``, and the summary read back was empty)."""
    from experiments.tracking import offline_summary

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = {**TINY, "wandb": {"mode": "offline", "project": "capgym-test"}, "output": {"plots": False}}
    for name in ("first", "second"):
        here = tmp_path / name
        here.mkdir()
        monkeypatch.chdir(here)
        assert main(["run", str(write(here, cfg)), "-q"]) == 0
    (d,) = run_dirs(tmp_path / "second" / "results", "tiny")
    (wrun,) = list((d / "wandb").glob("offline-run-*"))
    assert list(wrun.glob("run-*.wandb")), "the transaction log is not in the run's own folder"
    s = json.loads((d / "summary.json").read_text())["runs"]["echo"]
    assert offline_summary(wrun)["echo/ops"] == s["ops"]


def _have(*names):
    from agents import protocols

    return all(n in protocols.available() for n in names)


QS_MISSING = "configs/quickstart.yaml needs the abd, eventual and raft protocols, not all present yet"


@pytest.mark.skipif(not _have("abd", "eventual", "raft"), reason=QS_MISSING)
def test_quickstart_short(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(ROOT / "configs" / "quickstart.yaml"), "world.duration_ms=2500", "wandb.mode=disabled",
               "output.plots=false"])
    assert rc == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in ("abd", "eventual", "raft")}
    assert set(rows) == {"abd", "eventual", "raft"}
    (d,) = run_dirs(tmp_path / "results", "quickstart")
    table = {r["protocol"]: r for r in json.loads((d / "summary.json").read_text())["table"]}
    assert table["abd"]["linearizable"] is not False and table["raft"]["linearizable"] is not False
    assert table["eventual"]["availability"] >= max(table["abd"]["availability"], table["raft"]["availability"])


@pytest.mark.slow
@pytest.mark.skipif(not _have("abd", "eventual", "raft"), reason=QS_MISSING)
def test_quickstart_full_through_the_real_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(ROOT / "configs" / "quickstart.yaml")],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "protocol  availability  linearizable  stale-read rate  lost writes  messages/op" in r.stdout
    (d,) = run_dirs(tmp_path / "results", "quickstart")
    for f in ("config.yaml", "status.json", "summary.json", "metrics.csv", "plots/timeline.png",
              "plots/latency.png", "plots/compare.png"):
        assert (d / f).is_file(), f
    for p in ("abd", "eventual", "raft"):
        for f in ("history.jsonl", "trace.parquet", "trace.shiviz"):
            assert (d / p / f).is_file(), (p, f)
    assert list((d / "wandb").glob("offline-run-*"))
    table = {r["protocol"]: r for r in json.loads((d / "summary.json").read_text())["table"]}
    assert table["abd"]["linearizable"] is True and table["raft"]["linearizable"] is True
    assert table["eventual"]["linearizable"] is False and table["eventual"]["availability"] == 1.0


def test_linearizability_verdicts_are_distinct():
    """Four verdicts, each with its reason: n/a (nothing could be checked) is not unknown (issue 16)."""
    from envs.world.records import Op
    from experiments import runner

    def op(i, f, inv, comp, value=None, output=None):
        return Op(id=i, process=i, f=f, value=value, key=None, invoke=inv, complete=comp, status="ok", output=output)

    good = [op(0, "write", 0, 10, 1), op(1, "read", 11, 12, output=1)]
    bad = [op(0, "write", 0, 10, 1), op(1, "read", 11, 12, output=2)]
    # a value written twice: the search decides it, and a zero budget leaves it unknown (the
    # zone test, for distinct values, runs whatever the budget)
    twice = [op(0, "write", 0, 10, 1), op(1, "write", 11, 12, 1), op(2, "read", 13, 14, output=1)]
    got = {name: runner.linearizability(h, budget_s=b, protocol=p) for name, h, b, p in (
        ("ok", good, 5.0, "abd"), ("bad", bad, 5.0, "abd"), ("slow", twice, 0.0, "abd"),
        ("empty", [], 5.0, "abd"), ("consensus", good, 5.0, "paxos"))}
    assert {k: (v["verdict"], v["linearizable"]) for k, v in got.items()} == {
        "ok": ("linearizable", True), "bad": ("not_linearizable", False), "slow": ("unknown", None),
        "empty": ("not_applicable", None), "consensus": ("not_applicable", None)}
    assert "budget" in got["slow"]["why"] and got["empty"]["why"] == "no client operations"
    assert "REGISTER_READS" in got["consensus"]["why"]
    rows = [{"protocol": k, "availability": None, "linearizable": v["linearizable"],
             "linearizability_verdict": v["verdict"], "stale_read_rate": None, "messages_per_op": None}
            for k, v in got.items()]
    cells = [line.split()[2] for line in runner.format_table(rows).splitlines()[2:]]
    assert cells == ["true", "false", "unknown", "n/a", "n/a"]


def test_consensus_run_without_clients_prints_n_a(tmp_path, monkeypatch, capsys):
    """Issue 16: a Paxos run without clients printed ``linearizable unknown``."""
    monkeypatch.chdir(tmp_path)
    cfg = {**TINY, "protocol": {"name": "paxos"}, "workload": {"clients": 0}, "nemesis": {}}
    assert main(["run", str(write(tmp_path, cfg))]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("paxos "))
    assert row.split()[2] == "n/a"
    (d,) = run_dirs(tmp_path / "results", "tiny")
    s = json.loads((d / "summary.json").read_text())["runs"]["paxos"]
    assert s["linearizable"] is None and s["linearizability_verdict"] == "not_applicable"


def test_evaluation_rows_keep_the_verdicts_apart():
    """An unknown episode (budget ran out) is not counted as not linearizable; no check is n/a."""
    from experiments import runner
    from experiments.evaluate_cmd import aggregate, table_row

    def ep(v):
        return {"returns": {"a": 1.0}, "global": {"linearizable": v}}

    agg = aggregate([ep(True), ep("unknown"), ep(True)])
    assert agg["linearizable_fraction"] == 1.0 and table_row("x", agg)["linearizability_verdict"] == "linearizable"
    rows = [table_row("none", aggregate([ep(None)])), table_row("half", aggregate([ep(True), ep(False)]))]
    assert [line.split()[2] for line in runner.format_table(rows).splitlines()[2:]] == ["n/a", "0.50"]


def test_trace_exports_are_options_and_stop_above_their_size(tmp_path, monkeypatch, capsys):
    """JSON Lines on request (vector clocks included, the same events as the Parquet file);
    ShiViz and JSONL skipped, with a line saying so, above output.max_export_events."""
    monkeypatch.chdir(tmp_path)
    p = write(tmp_path, TINY)
    assert main(["run", str(p), "output.trace_jsonl=true", "output.plots=false", "-q"]) == 0
    (d,) = run_dirs(tmp_path / "results", "tiny")
    tf = TraceFile(d / "trace.parquet")
    assert load_jsonl(str(d / "trace.jsonl.gz")) == list(tf.events(vc=True))
    assert main(["run", str(p), "output.trace_jsonl=true", "output.max_export_events=10",
                 "output.plots=false"]) == 0
    out = capsys.readouterr().out
    d2 = [x for x in run_dirs(tmp_path / "results", "tiny") if x != d][0]
    assert (d2 / "trace.parquet").is_file()
    assert not (d2 / "trace.shiviz").exists() and not (d2 / "trace.jsonl.gz").exists()
    assert "trace.shiviz skipped" in out and "trace.jsonl.gz skipped" in out


@pytest.mark.slow
def test_sigterm_stops_a_large_run_and_keeps_its_streamed_trace(tmp_path):
    """A 100-node ABD run, interrupted once its trace has streamed a few megabytes: it stops at
    the next chunk of events, keeps a readable trace.parquet of everything so far and a summary
    marked interrupted (the linearizability search is left to ``capgym report``)."""
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(ROOT / "configs" / "abd.yaml"),
                             "world.nodes=100", "workload.clients=100", "world.duration_ms=600000",
                             "output.plots=false", "wandb.mode=disabled", "output.progress=false"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = list((tmp_path / "results").glob("abd/*/.trace.parquet.tmp-*"))
            if tmp and tmp[0].stat().st_size > 4_000_000:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)  # a hang guard, not a speed claim
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    (d,) = run_dirs(tmp_path / "results", "abd")
    assert json.loads((d / "status.json").read_text())["status"] == "interrupted"
    assert not list(d.rglob(".*.tmp-*"))
    tf = TraceFile(d / "trace.parquet")
    kinds = tf.counts()["kinds"]
    assert kinds["send"] > 100_000 and kinds["recv"] > 0
    run = json.loads((d / "summary.json").read_text())["runs"]["abd"]
    assert run["interrupted"] is True and 0 < run["sim_ms"] < 600_000
    assert run["linearizability_verdict"] == "unknown" and "interrupted" in run["linearizability"]["why"]
    assert run["messages"] == kinds["send"]
    assert not (d / "trace.shiviz").exists()


@pytest.mark.parametrize("address, words", [("127.0.0.1:1", "nothing answers at 127.0.0.1:1"),
                                            ("headnode", "is not host:port")])
def test_an_unreachable_ray_address_is_one_line_and_leaves_no_folder(tmp_path, capsys, address, words):
    """A live run against a dead address waited for minutes in Ray's retries, its folder 'running'."""
    rc = main(["run", str(ROOT / "configs" / "echo.yaml"), "runtime=live", f"ray.address={address}",
               f"output.root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not any(tmp_path.iterdir())
