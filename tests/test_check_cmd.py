"""``capgym check``: verdict lines, --json, and the exit statuses 0/1/2/3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs.world.records import OK, UNKNOWN, Op, history_to_jsonl
from experiments.cli import main

DATA = Path("/work/shared/data/porcupine")
ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(not DATA.exists(), reason="porcupine data not found")


def write(tmp_path, name, ops):
    path = tmp_path / name
    path.write_text(history_to_jsonl(ops))
    return str(path)


@pytest.fixture
def good(tmp_path):
    return write(tmp_path, "good.jsonl", [Op(0, 0, "write", 1, invoke=0, complete=1, status=OK),
                                          Op(1, 1, "read", invoke=2, complete=3, status=OK, output=1)])


@pytest.fixture
def bad(tmp_path):
    return write(tmp_path, "bad.jsonl", [Op(0, 0, "write", 1, invoke=0, complete=1, status=OK),
                                         Op(1, 1, "read", invoke=2, complete=3, status=OK, output=2)])


def test_linearizable_exit_0(good, capsys):
    assert main(["check", good, "--model", "register"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: linearizable") and out.count("\n") == 1


def test_not_linearizable_exit_1_names_the_op(good, bad, capsys):
    assert main(["check", good, bad]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "linearizable" in lines[0]
    assert lines[1].startswith(f"{bad}: NOT linearizable") and "op 1 " in lines[1] and "read" in lines[1]


def test_json_output_one_object_per_file(good, bad, capsys):
    assert main(["check", good, bad, "--json", "--model", "cas-register"]) == 1
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["file"] for o in objs] == [good, bad]
    assert [o["linearizable"] for o in objs] == [True, False]
    assert objs[1]["failing_op"]["id"] == 1 and objs[1]["prefix_len"] == 1
    assert objs[1]["model"] == "cas-register" and objs[1]["partitions"][0]["ops"] == 2


@needs_data
def test_unknown_exit_3_when_the_budget_runs_out(capsys):
    ok_small, big = str(DATA / "kv" / "c01-ok.txt"), str(DATA / "kv" / "c50-ok.txt")
    assert main(["check", ok_small, big, "--model", "kv", "--timeout", "0"]) == 3
    assert ": unknown" in capsys.readouterr().out.splitlines()[1]


def test_a_false_verdict_wins_over_an_unknown_one(good, bad, monkeypatch, capsys):
    import metrics.linearizability as lin

    real = lin.check
    fake = lambda ops, model, timeout=None, **kw: lin.CheckResult("unknown", model.name, len(ops))
    monkeypatch.setattr(lin, "check", fake)
    assert main(["check", good, "--timeout", "1"]) == 3
    assert capsys.readouterr().out.startswith(f"{good}: unknown")
    is_bad = lambda ops: any(op.output == 2 for op in ops)
    monkeypatch.setattr(lin, "check", lambda ops, model, timeout=None, **kw: (real if is_bad(ops) else fake)(ops, model))  # noqa: E501
    assert main(["check", good, bad]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{good}: unknown") and out[1].startswith(f"{bad}: NOT linearizable")


@needs_data
def test_reference_files_with_detected_format(capsys):
    files = [str(DATA / "jepsen-etcd" / f) for f in ("etcd_000.log", "etcd_031.log")]
    assert main(["check", *files, "--model", "cas-register", "--json"]) == 1
    assert [json.loads(x)["linearizable"] for x in capsys.readouterr().out.splitlines()] == [False, True]
    assert main(["check", str(DATA / "kv" / "c10-ok.txt"), "--format", "jepsen-edn"]) == 0


def test_bad_input_exit_2_one_line(tmp_path, good, capsys):
    assert main(["check", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jsonl" in err and "cannot read" in err

    junk = tmp_path / "junk.txt"
    junk.write_text("what is this\n")
    assert main(["check", str(junk)]) == 2
    assert "cannot tell the history format" in capsys.readouterr().err

    malformed = tmp_path / "m.jsonl"
    malformed.write_text(Path(good).read_text() + '{"id": 7, "f": \n')
    assert main(["check", good, str(malformed)]) == 2
    captured = capsys.readouterr()
    assert f"{malformed}:3:" in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""  # nothing checked when some input is bad

    assert main(["check", good, "--model", "kv"]) == 2
    assert "no operation 'write'" in capsys.readouterr().err


def test_unknown_ops_only(tmp_path, capsys):
    path = write(tmp_path, "u.jsonl", [Op(0, 0, "cas", [1, 2], invoke=0, status=UNKNOWN)])
    assert main(["check", path]) == 0


def test_as_a_module_bad_line_is_one_line_no_traceback(tmp_path):
    bad_log = tmp_path / "bad.log"
    bad_log.write_text("INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "experiments.cli", "check", str(bad_log), "--model", "cas-register"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and f"{bad_log}:1:" in p.stderr and "Traceback" not in p.stderr
