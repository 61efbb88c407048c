"""``capgym sweep``: grid expansion, validation before anything runs (exit 2, nothing written), a tiny
real sweep (2 grid points x 2 seeds) whose sweep.csv and aggregate agree with the runs' own
summaries, parallel workers giving the same figures, and a clean interrupt."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments.cli import main
from experiments.sweep import combinations, load_sweep, mean_std

ROOT = Path(__file__).resolve().parent.parent


def sweep_file(tmp_path, **over) -> Path:
    """A tiny sweep of the echo config: 2 node counts x 2 seeds, 300 ms runs, no wandb."""
    spec = {
        "name": "tiny",
        "base": "configs/echo.yaml",
        "set": {"world.duration_ms": 300, "wandb.mode": "disabled", "output.root": str(tmp_path / "results"),
                "output.shiviz": False, "output.plots": False},
        "grid": {"world.nodes": [3, 5]},
        "seeds": 2,
    }
    spec.update(over)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_expansion_every_combination_times_seed(tmp_path):
    grid = {"world.nodes": [3, 5, 7], "nemesis.random.interval_ms": [700, 1000]}
    assert combinations(grid)[:3] == [{"world.nodes": 3, "nemesis.random.interval_ms": 700},
                                      {"world.nodes": 3, "nemesis.random.interval_ms": 1000},
                                      {"world.nodes": 5, "nemesis.random.interval_ms": 700}]
    sw = load_sweep(sweep_file(tmp_path, grid=grid, seeds=[4, 9]))
    assert len(sw.points) == 12
    assert [(p.values["world.nodes"], p.seed) for p in sw.points[:4]] == [(3, 4), (3, 9), (3, 4), (3, 9)]
    for p in sw.points:  # every config is the base with its grid values and seed applied
        assert p.cfg.world.nodes == p.values["world.nodes"] and p.cfg.seed == p.seed
        assert p.cfg.nemesis.random.interval_ms == p.values["nemesis.random.interval_ms"]
        assert p.cfg.world.duration_ms == 300 and p.cfg.protocol.name == "echo"
    # overrides: sweep keys go to the sweep, run-config keys to every run
    sw = load_sweep(sweep_file(tmp_path), ["seeds=3", "world.duration_ms=200"])
    assert sw.seeds == [0, 1, 2] and {p.cfg.world.duration_ms for p in sw.points} == {200}


@pytest.mark.parametrize("over,words", [
    ({"grid": {"world.nodes": [3, -1]}}, ["world.nodes=-1", "world.nodes"]),
    ({"grid": {"world.network.loss": [0.1, 2]}}, ["world.network.loss=2", "less than or equal to 1"]),
    ({"grid": {"world.nodez": [3]}}, ["world.nodez", "unknown key"]),
    ({"grid": {"protocol.params.interval_ms": [100, "fast"]}}, ["'fast'", "interval_ms"]),
    ({"grid": {"world.nodes": []}}, ["grid.world.nodes", "non-empty"]),
    ({"grid": {"seed": [1, 2]}}, ["grid.seed", "seeds"]),
    ({"seeds": 0}, ["seeds", ">= 1"]),
    ({"seeds": "many"}, ["seeds"]),
    ({"measure": "happiness"}, ["measure", "happiness"]),
    ({"base": "configs/nope.yaml"}, ["base", "nope.yaml"]),
    ({"colour": "red"}, ["colour", "unknown key"]),
])
def test_bad_sweep_is_one_line_exit_2_nothing_written(tmp_path, capsys, over, words):
    path = sweep_file(tmp_path, **over)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("capgym sweep: error:"), err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "results").exists()


def test_bad_override_exit_2(tmp_path, capsys):
    assert main(["sweep", str(sweep_file(tmp_path)), "wrld.nodes=3"]) == 2
    assert "wrld" in capsys.readouterr().err
    assert main(["sweep", str(sweep_file(tmp_path)), "--jobs", "0"]) == 2
    assert not (tmp_path / "results").exists()


def check_tiny(folder: Path) -> list[dict]:
    rows = read_csv(folder / "sweep.csv")
    assert len(rows) == 4
    assert {(r["world.nodes"], r["seed"]) for r in rows} == {("3", "0"), ("3", "1"), ("5", "0"), ("5", "1")}
    for r in rows:  # each row is its run's own summary
        assert r["status"] == "complete" and r["protocol"] == "echo"
        s = json.loads((Path(r["run_dir"]) / "summary.json").read_text())["runs"]["echo"]
        assert Path(r["run_dir"]).parent == folder / "runs"
        assert float(r["availability"]) == pytest.approx(s["availability"]) and int(r["ops"]) == s["ops"]
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["world"]["nodes"] == int(r["world.nodes"]) and cfg["seed"] == int(r["seed"])
    agg = read_csv(folder / "aggregate.csv")
    assert [(a["world.nodes"], a["n"]) for a in agg] == [("3", "2"), ("5", "2")]
    for a in agg:
        mine = [float(r["ops"]) for r in rows if r["world.nodes"] == a["world.nodes"]]
        m, sd = mean_std(mine)
        assert float(a["ops_mean"]) == pytest.approx(m) and float(a["ops_std"]) == pytest.approx(sd)
    assert mean_std([1, 3]) == (2.0, pytest.approx(2 ** 0.5))
    table = (folder / "aggregate.txt").read_text()
    assert "±" in table and "world.nodes" in table
    assert (folder / "plots" / "availability.png").stat().st_size > 1000
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    return rows


def test_tiny_sweep_runs_and_aggregates(tmp_path, capsys):
    assert main(["sweep", str(sweep_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "results" / "tiny").iterdir()
    rows = check_tiny(folder)
    assert "±" in out and "[4/4]" in out
    # the same sweep in two worker processes: the same figures (same seeds, same runs)
    assert main(["sweep", str(sweep_file(tmp_path)), "--jobs", "2", "-q"]) == 0
    (other,) = set((tmp_path / "results" / "tiny").iterdir()) - {folder}
    again = check_tiny(other)
    key = lambda r: (r["world.nodes"], r["seed"])  # noqa: E731
    strip = lambda r: {k: v for k, v in r.items() if k not in ("run_dir", "run")}  # noqa: E731
    assert [strip(r) for r in sorted(rows, key=key)] == [strip(r) for r in sorted(again, key=key)]


def test_interrupt_stops_cleanly(tmp_path):
    """SIGINT while runs are going: exit 130, status interrupted, finished runs aggregated."""
    path = sweep_file(tmp_path, grid={"world.nodes": [5, 7]}, seeds=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "sweep", str(path), "world.duration_ms=60000",
                             "--jobs", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 30
    while not list((tmp_path / "results").glob("tiny/*/runs/*/status.json")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a Ctrl-C reaches the whole process group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (folder,) = (tmp_path / "results" / "tiny").iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "interrupted"
    assert (folder / "sweep.csv").exists() and (folder / "aggregate.txt").exists()
    runs = list((folder / "runs").iterdir())
    assert 1 <= len(runs) <= 2  # the runs that had started; none started after the stop
    assert all(json.loads((r / "status.json").read_text())["status"] == "interrupted" for r in runs)


def test_shipped_sweeps_validate():
    for path in sorted((ROOT / "configs" / "sweeps").glob("*.yaml")):
        sw = load_sweep(path)
        assert len(sw.points) == len(combinations(sw.grid)) * len(sw.seeds) > 1, path
