"""``capgym report`` rebuilds the summary, metrics and plots a run wrote, from its saved files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from experiments.cli import main

TINY = {
    "experiment": "rep",
    "seed": 7,
    "world": {"nodes": 3, "duration_ms": 600},
    "nemesis": {"random": {"kinds": ["partition", "crash"], "interval_ms": 200, "duration_ms": 100}},
    "workload": {"clients": 3, "think_ms": 10},
    "wandb": {"mode": "disabled"},
}


def _run(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "-q"]) == 0
    (d,) = list((tmp_path / "results" / cfg["experiment"]).iterdir())
    return d


def _rebuilds_the_same(d: Path) -> None:
    summary = (d / "summary.json").read_text()
    metrics = (d / "metrics.csv").read_text()
    pngs = sorted(p.name for p in (d / "plots").glob("*.png"))
    assert pngs
    for p in (d / "plots").glob("*.png"):
        p.unlink()
    (d / "summary.json").unlink()
    (d / "metrics.csv").unlink()
    assert main(["report", str(d)]) == 0
    assert (d / "summary.json").read_text() == summary
    assert (d / "metrics.csv").read_text() == metrics
    assert sorted(p.name for p in (d / "plots").glob("*.png")) == pngs


def test_report_rebuilds_the_same_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = _run(tmp_path, {**TINY, "protocol": {"name": "echo"}})
    _rebuilds_the_same(d)
    assert json.loads((d / "summary.json").read_text())["runs"]["echo"]["crashes"] >= 0


def test_report_rebuilds_a_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = _run(tmp_path, {**TINY, "compare": [{"name": "echo"}, {"name": "gossip", "label": "gossip-fast",
                                                                "params": {"interval_ms": 10}}]})
    _rebuilds_the_same(d)
    out = capsys.readouterr().out
    assert "gossip-fast" in out and "echo" in out


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"capgym report: error: {tmp_path / 'nope'}: no such folder",
                   f"capgym report: error: {tmp_path}: not a results folder (no config.yaml, aggregate.json or "
                   "results.json)"]


def test_list_shows_protocols_nemesis_and_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("protocols:", "echo", "gossip", "nemesis:", "partition shapes", "majority", "configs:",
                 "quickstart.yaml", "environments:"):
        assert word in out, word
    assert "defaults" not in out
    assert main(["list", "protocols", "--json"]) == 0
    assert "echo" in json.loads(capsys.readouterr().out)["protocols"]
    assert main(["list", "planets"]) == 2
