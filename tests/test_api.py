"""``import capgym``: the public API, in a fresh interpreter and in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import capgym
from envs.world.records import OK, Op

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "histories"


def test_fresh_interpreter_import_registers_the_games():
    code = ("import capgym, pettingzoo, json; "
            "print(json.dumps([list(capgym.ENVIRONMENTS), "
            "[e in pettingzoo.parallel_registry for e in capgym.ENVIRONMENTS], "
            "type(capgym.make('Register-v0', api='aec', nodes=3)).__mro__[1].__name__]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    envs, registered, base = json.loads(p.stdout.splitlines()[-1])
    assert envs == ["capgym/Register-v0", "capgym/Election-v0", "capgym/Consensus-v0", "capgym/Commons-v0",
                    "capgym/Byzantine-v0"]
    assert all(registered) and base == "CapAEC"


def test_make_both_apis_and_bad_input():
    env = capgym.make("capgym/Election-v0", api="parallel", nodes=3)
    obs, infos = env.reset(seed=1)
    assert set(obs) == set(env.possible_agents) and len(env.possible_agents) == 3
    with pytest.raises(capgym.CapgymError, match="unknown environment 'Nope-v0'"):
        capgym.make("Nope-v0")
    with pytest.raises(capgym.CapgymError, match="api must be"):
        capgym.make("Register-v0", api="gym")
    with pytest.raises(capgym.CapgymError, match="capgym/Register-v0: .*no_such_option"):
        capgym.make("Register-v0", no_such_option=1)


def test_check_files_and_ops():
    assert capgym.check(CORPUS / "history.edn").ok is True
    r = capgym.check(str(CORPUS / "independent.edn"), independent=True)
    assert r.ok is False and r.failing_key == 2
    ops = [Op(0, 0, "write", 1, invoke=0, complete=1, status=OK),
           Op(1, 1, "read", invoke=2, complete=3, status=OK, output=2)]
    assert capgym.check(ops, model="register").ok is False
    assert capgym.check([o.to_dict() for o in ops[:1]]).ok is True
    with pytest.raises(capgym.CapgymError, match="unknown model"):
        capgym.check(ops, model="queue")
    with pytest.raises(capgym.CapgymError, match="cannot read"):
        capgym.check(CORPUS / "missing.edn")


def test_run_with_overrides(tmp_path):
    run = capgym.run(ROOT / "configs" / "quickstart.yaml",
                     {"world.duration_ms": 600, "output.root": str(tmp_path), "output.plots": False,
                      "wandb.mode": "disabled"})
    assert run.status == 0 and run.dir.parent.parent == tmp_path
    assert (run.dir / "summary.json").exists() and set(run.summary["runs"]) == {"abd", "eventual", "raft"}
    assert [row["protocol"] for row in run.summary["table"]] == ["abd", "eventual", "raft"]
    with pytest.raises(capgym.CapgymError, match="world.nodez"):
        capgym.run(ROOT / "configs" / "quickstart.yaml", ["world.nodez=3"])


def test_load_policy_missing():
    with pytest.raises(capgym.CapgymError, match="no such checkpoint"):
        capgym.load_policy("/nonexistent/final.pt")


def test_check_jepsen_entries_as_dicts():
    entries = [{"process": 0, "type": "invoke", "f": "write", "value": 1},
               {"process": 0, "type": "ok", "f": "write", "value": 1},
               {"process": 1, "type": "invoke", "f": "read", "value": None},
               {"process": 1, "type": "ok", "f": "read", "value": 2}]
    r = capgym.check(entries)
    assert r.ok is False and r.failing_op.f == "read"
    with pytest.raises(capgym.CapgymError, match="entry 2: :ok of process 3 without an :invoke"):
        capgym.check([entries[0], {**entries[1], "process": 3}])


def test_run_refuses_params_that_do_not_fit_the_world(tmp_path):
    with pytest.raises(capgym.CapgymError, match="protocol.params: N=9 replicas per key but world.nodes=5"):
        capgym.run(ROOT / "configs" / "dynamo.yaml", {"protocol.params.N": 9, "output.root": str(tmp_path)})
    assert not any(tmp_path.iterdir())  # nothing written
