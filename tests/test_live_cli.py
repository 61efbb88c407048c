"""``capgym run ... runtime=live`` end to end: a short compare of ABD and the eventual store, each
protocol's nodes as Ray actors in one Ray session, leaves the same results folder as a sim run, and
``capgym report`` rebuilds it. Shares the Ray instance of ``test_live.py`` when both run in one
process (the "ray" xdist group)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from envs.world.tracefile import TraceFile  # noqa: E402
from experiments.cli import main  # noqa: E402

#: 5 nodes, node 0 cut off from 300 to 1300 ms, both protocols under the same faults and clients
CONFIG = {
    "defaults": ["base", "world/small", "workload/register"],
    "experiment": "live_cli",
    "seed": 3,
    "runtime": "live",
    "world": {"duration_ms": 1800},
    "nemesis": {"schedule": [{"at_ms": 300, "fault": "partition", "groups": [[0], [1, 2, 3, 4]]},
                             {"at_ms": 1300, "fault": "heal"}]},
    "workload": {"timeout_ms": 1000, "think_ms": 10},
    "compare": [{"name": "abd"}, {"name": "eventual"}],
    "wandb": {"mode": "disabled"},
    "output": {"progress": False},
}


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False)
    yield


def test_capgym_run_live_compare_and_report(tmp_path: Path, ray_session, capsys):
    cfg = dict(CONFIG, output=dict(CONFIG["output"], root=str(tmp_path / "results")))
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "-q"]) == 0
    (run,) = list((tmp_path / "results" / "live_cli").iterdir())

    summary = json.loads((run / "summary.json").read_text())
    assert summary["runtime"] == "live" and summary["completed"] == ["abd", "eventual"]
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    for name in ("abd", "eventual"):
        r = summary["runs"][name]
        assert r["ops"] > 10 and r["partitions"] == 1, r
        history = [json.loads(line) for line in (run / name / "history.jsonl").read_text().splitlines()]
        assert len(history) == r["ops"]
        kinds = set(TraceFile(run / name / "trace.parquet").counts()["kinds"])
        assert {"partition", "heal", "send", "recv", "client", "reply"} <= kinds
    # ABD answers only what is linearizable, and answers in the majority
    assert summary["runs"]["abd"]["linearizable"] is True
    assert summary["runs"]["abd"]["counts"]["ok"] > 0
    assert summary["runs"]["eventual"]["availability"] == 1.0

    table = summary["table"]
    (run / "summary.json").unlink()
    capsys.readouterr()
    assert main(["report", str(run), "--no-plots"]) == 0
    rebuilt = json.loads((run / "summary.json").read_text())
    assert rebuilt["completed"] == ["abd", "eventual"] and rebuilt["table"] == table
    assert "abd" in capsys.readouterr().out
