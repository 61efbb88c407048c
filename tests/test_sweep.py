"""``capgym sweep`` on Ray Tune: grid expansion for run, training and align bases, validation before
anything runs (exit 2, nothing written), bootstrap intervals, and real Tune trials on one shared local
Ray instance: a tiny run sweep whose sweep.csv and aggregate agree with the runs' own summaries and
give the same aggregate whatever ``--jobs``, a tiny training sweep reporting each iteration to Tune,
a tiny align sweep, and (slow) a sweep stopped by SIGTERM after its second trial and resumed."""

from __future__ import annotations

import csv
import hashlib
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
from experiments.sweep import bootstrap_ci, combinations, load_sweep, mean_std

ROOT = Path(__file__).resolve().parent.parent


def sweep_file(tmp_path, name="tiny", **over) -> Path:
    """A tiny sweep of the echo config: 2 node counts x 2 seeds, 300 ms runs, no wandb."""
    spec = {
        "name": name,
        "base": "configs/echo.yaml",
        "set": {"world.duration_ms": 300, "wandb.mode": "disabled", "output.root": str(tmp_path / "results"),
                "output.shiviz": False, "output.plots": False},
        "grid": {"world.nodes": [3, 5]},
        "seeds": 2,
    }
    spec.update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


TRAIN_SET = {"ppo.total_steps": 1024, "ppo.num_envs": 4, "ppo.num_steps": 64, "env.params.duration_ms": 400,
             "env.params.nemesis.schedule": [{"at_ms": 100, "fault": "partition", "shape": "majority"},
                                             {"at_ms": 300, "fault": "heal"}],
             "wandb.mode": "disabled", "output.plots": False}


def train_sweep_file(tmp_path, **over) -> Path:
    spec = {"name": "tl", "base": "configs/train/register.yaml",
            "set": {**TRAIN_SET, "output.root": str(tmp_path / "results")},
            "grid": {"ppo.lr": [0.001]}, "seeds": 2}
    spec.update(over)
    path = tmp_path / "tl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# --- without Ray ------------------------------------------------------------------------------------
def test_expansion_every_combination_times_seed(tmp_path):
    grid = {"world.nodes": [3, 5, 7], "nemesis.random.interval_ms": [700, 1000]}
    assert combinations(grid)[:3] == [{"world.nodes": 3, "nemesis.random.interval_ms": 700},
                                      {"world.nodes": 3, "nemesis.random.interval_ms": 1000},
                                      {"world.nodes": 5, "nemesis.random.interval_ms": 700}]
    sw = load_sweep(sweep_file(tmp_path, grid=grid, seeds=[4, 9]))
    assert sw.kind == "run" and sw.measure == "availability" and len(sw.points) == 12
    assert [(p.values["world.nodes"], p.seed) for p in sw.points[:4]] == [(3, 4), (3, 9), (3, 4), (3, 9)]
    for p in sw.points:  # every config is the base with its grid values and seed applied
        assert p.cfg.world.nodes == p.values["world.nodes"] and p.cfg.seed == p.seed
        assert p.cfg.nemesis.random.interval_ms == p.values["nemesis.random.interval_ms"]
        assert p.cfg.world.duration_ms == 300 and p.cfg.protocol.name == "echo"
    # overrides: sweep keys go to the sweep, run-config keys to every run, grid.<key> replaces one axis
    sw = load_sweep(sweep_file(tmp_path), ["seeds=3", "world.duration_ms=200", "grid.world.nodes=[3, 4, 5]"])
    assert sw.seeds == [0, 1, 2] and {p.cfg.world.duration_ms for p in sw.points} == {200}
    assert sw.grid == {"world.nodes": [3, 4, 5]} and len(sw.points) == 9


def test_training_and_align_bases(tmp_path):
    sw = load_sweep(train_sweep_file(tmp_path, grid={"ppo.lr": [0.001, 0.003], "learner.share": [False, True]}))
    assert sw.kind == "train" and sw.measure == "return_mean" and len(sw.points) == 8
    assert [(p.cfg.ppo.lr, p.cfg.learner.share, p.cfg.seed) for p in sw.points[:3]] == [
        (0.001, False, 0), (0.001, False, 1), (0.001, True, 0)]
    # an align base: one trial per (grid point, reward mode and weight, seed)
    sw = load_sweep(ROOT / "configs" / "sweeps" / "align-register.yaml", ["seeds=2"])
    assert sw.kind == "align" and sw.measure == "welfare" and sw.entity == "policy"
    labels = list(dict.fromkeys(p.policy[0] for p in sw.points))
    assert labels == ["ppo_local", "ppo_global", "ppo_mixed_0.5", "ppo_mixed_0.9"]
    assert len(sw.points) == 2 * 4 * 2
    p = sw.points[5]  # majority; ppo_local x 2 seeds, ppo_global x 2, then ppo_mixed_0.5 seed 0, seed 1
    assert p.policy == ("ppo_mixed_0.5", "mixed", 0.5) and p.seed == 1
    assert p.cfg.env.params["reward_mode"] == "mixed" and p.cfg.env.params["mixed_weight"] == 0.5
    assert p.cfg.env.params["nemesis"]["schedule"][0]["shape"] == "majority"


@pytest.mark.parametrize("make,over,words", [
    (sweep_file, {"grid": {"world.nodes": [3, -1]}}, ["world.nodes=-1", "world.nodes"]),
    (sweep_file, {"grid": {"world.network.loss": [0.1, 2]}}, ["world.network.loss=2", "less than or equal to 1"]),
    (sweep_file, {"grid": {"world.nodez": [3]}}, ["world.nodez", "unknown key"]),
    (sweep_file, {"grid": {"protocol.params.interval_ms": [100, "fast"]}}, ["'fast'", "interval_ms"]),
    (sweep_file, {"grid": {"world.nodes": []}}, ["grid.world.nodes", "non-empty"]),
    (sweep_file, {"grid": {}}, ["grid:"]),
    (sweep_file, {"grid": {"seed": [1, 2]}}, ["grid.seed", "seeds"]),
    (sweep_file, {"grid": {"ppo.lr": [0.1]}}, ["grid.ppo.lr", "unknown key", "run config"]),
    (sweep_file, {"seeds": 0}, ["seeds", ">= 1"]),
    (sweep_file, {"seeds": "many"}, ["seeds"]),
    (sweep_file, {"measure": "happiness"}, ["measure", "happiness"]),
    (sweep_file, {"base": "configs/nope.yaml"}, ["base", "nope.yaml"]),
    (sweep_file, {"colour": "red"}, ["colour", "unknown key"]),
    (sweep_file, {"set": {"world.duration_ms": 300, "runtime": "live", "ray.address": "10.0.0.1:6379"}},
     ["ray.address", "the sweep"]),
    (sweep_file, {"resources": {"cpu": 0}}, ["resources.cpu", "> 0"]),
    (sweep_file, {"resources": {"tpu": 1}}, ["resources:"]),
    (sweep_file, {"ray": {"adress": "x"}}, ["ray:"]),
    (train_sweep_file, {"grid": {"world.nodes": [3]}}, ["grid.world.nodes", "unknown key", "train config"]),
    (train_sweep_file, {"grid": {"ppo.lr": [0.001, -1]}}, ["ppo.lr=-1", "ppo.lr"]),
    (train_sweep_file, {"grid": {"ppo.lrr": [0.1]}}, ["ppo.lrr", "unknown key"]),
    (train_sweep_file, {"grid": {"learner.backend": ["ray"]}, "set": {**TRAIN_SET, "ray.address": "10.0.0.1:6379"}},
     ["ray.address", "the sweep"]),
    (train_sweep_file, {"measure": "availability_connected"}, ["measure", "train sweep"]),
    (train_sweep_file, {"scheduler": "hyperband"}, ["scheduler", "hyperband"]),
    (sweep_file, {"scheduler": "asha"}, ["scheduler", "run config"]),
    (sweep_file, {"wandb": {"mode": "loud"}}, ["wandb.mode"]),
    (sweep_file, {"wandb": {"projekt": "x"}}, ["wandb.projekt", "unknown key"]),
])
def test_bad_sweep_is_one_line_exit_2_nothing_written(tmp_path, capsys, make, over, words):
    path = make(tmp_path, **over)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("capgym sweep: error:"), err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "results").exists()


def test_bad_override_and_resume_exit_2(tmp_path, capsys):
    assert main(["sweep", str(sweep_file(tmp_path)), "wrld.nodes=3"]) == 2
    assert "wrld" in capsys.readouterr().err
    assert main(["sweep", str(sweep_file(tmp_path)), "--jobs", "0"]) == 2
    assert main(["sweep", str(train_sweep_file(tmp_path)), "world.nodes=3"]) == 2
    assert "train-config key" in capsys.readouterr().err
    (tmp_path / "notasweep").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for folder in (tmp_path / "notasweep", tmp_path / "missing", ROOT / "configs"):
        assert main(["sweep", "--resume", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--resume" in err, err
    assert not any((tmp_path / "notasweep").iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "results").exists()


def test_overrides_and_options_in_any_order(tmp_path, capsys):
    path = str(sweep_file(tmp_path))
    for argv in (["sweep", path, "--dry-run", "seeds=3"], ["sweep", path, "seeds=3", "--dry-run"],
                 ["sweep", "--dry-run", path, "seeds=1", "-q", "seeds=3"]):
        assert main(argv) == 0
        assert capsys.readouterr().out.strip().endswith("6 trials (run configs)"), argv
    assert main(["run", "configs/echo.yaml", "--print-config", "world.nodes=7", "seed=3"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["world"]["nodes"] == 7 and out["seed"] == 3
    with pytest.raises(SystemExit) as e:  # a stray word that is no override is still an error
        main(["sweep", path, "--dry-run", "oops"])
    assert e.value.code == 2


def test_bootstrap_ci_is_seeded_and_sane():
    import numpy as np
    from scipy.stats import bootstrap

    xs = [0.2, 0.5, 0.4, 0.9, 0.3]
    lo, hi = bootstrap_ci(xs, [7, 0, 0])
    assert (lo, hi) == bootstrap_ci(xs, [7, 0, 0])  # the same seed: the same interval
    assert lo < sum(xs) / len(xs) < hi and min(xs) <= lo and hi <= max(xs)
    ref = bootstrap((np.array(xs),), np.mean, n_resamples=2000, method="percentile",
                    rng=np.random.default_rng([7, 0, 0])).confidence_interval
    assert (lo, hi) == (ref.low, ref.high)
    assert bootstrap_ci(xs, [8, 0, 0]) != (lo, hi)
    assert bootstrap_ci([0.5], 0) == (None, None) and bootstrap_ci([], 0) == (None, None)
    assert bootstrap_ci([2.0, 2.0, None], 0) == (2.0, 2.0)
    assert mean_std([1, 3]) == (2.0, pytest.approx(2 ** 0.5))


def test_shipped_sweeps_validate(capsys):
    """Every sweep in configs/sweeps composes and every trial validates (``--dry-run``: nothing runs)."""
    paths = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
    assert {"align-register.yaml", "train-lr.yaml", "cap.yaml"} <= {p.name for p in paths}
    for path in paths:
        sw = load_sweep(path)
        assert len(sw.points) == len(combinations(sw.grid)) * len(sw.seeds) * max(
            1, len({p.policy for p in sw.points})) > 1, path
        assert main(["sweep", str(path), "--dry-run"]) == 0, path
        assert capsys.readouterr().out.splitlines()[-1].startswith(f"{len(sw.points)} trials"), path
    al = load_sweep(ROOT / "configs" / "sweeps" / "align-register.yaml")  # reward mode x mixed weight x 5 seeds
    assert al.kind == "align" and al.seeds == [0, 1, 2, 3, 4]
    assert sorted({p.policy for p in al.points}) == sorted([("ppo_local", "local", 0.5), ("ppo_global", "global", 0.5),
                                                           ("ppo_mixed_0.5", "mixed", 0.5),
                                                           ("ppo_mixed_0.9", "mixed", 0.9)])
    lr = load_sweep(ROOT / "configs" / "sweeps" / "train-lr.yaml")
    assert lr.kind == "train" and list(lr.grid) == ["ppo.lr"]


# --- real Tune trials on one local Ray instance ----------------------------------------------------
@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance for the sweep tests (and the live tests, which use it if it is up)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield


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
    assert len(list((folder / "runs").iterdir())) == 4 and len(list((folder / "tune").glob("trial-*"))) == 4
    agg = read_csv(folder / "aggregate.csv")
    assert [(a["world.nodes"], a["n"]) for a in agg] == [("3", "2"), ("5", "2")]
    for a in agg:
        mine = [float(r["ops"]) for r in rows if r["world.nodes"] == a["world.nodes"]]
        m, sd = mean_std(mine)
        assert float(a["ops_mean"]) == pytest.approx(m) and float(a["ops_std"]) == pytest.approx(sd)
        lo, hi = float(a["stale_read_rate_ci_low"]), float(a["stale_read_rate_ci_high"])
        assert lo <= float(a["stale_read_rate_mean"]) <= hi
    table = (folder / "aggregate.txt").read_text()
    assert "[" in table and "world.nodes" in table
    assert (folder / "plots" / "availability.png").stat().st_size > 1000
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    return rows


@pytest.mark.ray
def test_tiny_sweep_on_tune_same_aggregate_whatever_jobs(tmp_path, capsys, ray_session):
    assert main(["sweep", str(sweep_file(tmp_path)), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "results" / "tiny").iterdir()
    rows = check_tiny(folder)
    assert "[4/4]" in out and "on Ray Tune" in out
    assert main(["sweep", str(sweep_file(tmp_path)), "--jobs", "2", "-q"]) == 0
    (other,) = set((tmp_path / "results" / "tiny").iterdir()) - {folder}
    again = check_tiny(other)
    key = lambda r: (r["world.nodes"], r["seed"])  # noqa: E731
    strip = lambda r: {k: v for k, v in r.items() if k not in ("run_dir",)}  # noqa: E731
    assert [strip(r) for r in sorted(rows, key=key)] == [strip(r) for r in sorted(again, key=key)]
    assert (folder / "aggregate.csv").read_bytes() == (other / "aggregate.csv").read_bytes()


@pytest.mark.ray
def test_training_sweep_reports_iterations_to_tune(tmp_path, ray_session):
    assert main(["sweep", str(train_sweep_file(tmp_path)), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "tl").iterdir()
    rows = read_csv(folder / "sweep.csv")
    assert [(r["ppo.lr"], r["seed"], r["status"]) for r in rows] == [("0.001", "0", "complete"),
                                                                      ("0.001", "1", "complete")]
    for r in rows:
        s = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert float(r["return_mean"]) == pytest.approx(s["last"]["return_mean"])
        assert int(r["env_steps"]) == s["env_steps"] == 1024
        assert (Path(r["run_dir"]) / "checkpoint").is_dir()
    # Tune saw every iteration (4 of 256 env steps), then the trial's end
    results = [json.loads(line) for line in (folder / "tune" / "trial-0000" / "result.json").read_text().splitlines()]
    assert [r.get("env_steps") for r in results[:4]] == [256, 512, 768, 1024] and results[-1]["trial_done"] == 1
    (agg,) = read_csv(folder / "aggregate.csv")
    assert agg["n"] == "2" and float(agg["return_mean_mean"]) == pytest.approx(
        sum(float(r["return_mean"]) for r in rows) / 2)
    assert (folder / "plots" / "return_mean.png").is_file()


@pytest.mark.ray
def test_align_sweep_one_trial_per_policy_and_seed(tmp_path, ray_session):
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump({
        "name": "al", "base": "configs/train/register_align.yaml",
        "set": {**TRAIN_SET, "output.root": str(tmp_path / "results"), "align.modes": ["local", "global"],
                "align.episodes": 1},
        "grid": {"env.params.stale_penalty": [4.0]}, "seeds": 1}))
    assert main(["sweep", str(path), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "al").iterdir()
    rows = read_csv(folder / "sweep.csv")
    assert [r["policy"] for r in rows] == ["ppo_local", "ppo_global"]
    for r in rows:
        ev = json.loads((Path(r["run_dir"]) / "evaluation.json").read_text())
        assert ev["policy"] == r["policy"] and float(r["welfare"]) == pytest.approx(ev["measures"]["welfare"])
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["env"]["params"]["reward_mode"] == r["policy"].removeprefix("ppo_")
    assert [a["policy"] for a in read_csv(folder / "aggregate.csv")] == ["ppo_local", "ppo_global"]


@pytest.mark.ray
def test_wandb_section_writes_an_offline_run_per_trial(tmp_path, ray_session, monkeypatch):
    """``wandb: {mode: offline}`` in the sweep file: Tune's WandbLoggerCallback writes one offline
    wandb run per trial (in the sweep folder's ``wandb/``), holding what the trial reported to Tune."""
    from experiments.tracking import offline_summary

    monkeypatch.delenv("WANDB_MODE", raising=False)
    path = sweep_file(tmp_path, name="wb", grid={"world.nodes": [3]}, wandb={"mode": "offline", "tags": ["t"]})
    assert main(["sweep", str(path), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "wb").iterdir()
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    for run in runs:
        assert list(run.glob("run-*.wandb"))
        s = offline_summary(run)
        assert s["rc"] == 0 and s["trial_done"] == 1 and s["training_iteration"] == 1, s
    assert yaml.safe_load((folder / "sweep.yaml").read_text())["wandb"]["mode"] == "offline"


@pytest.mark.ray
def test_ray_learner_trials_reserve_a_placement_group_each(tmp_path, ray_session):
    """Trials with ``learner.backend: ray`` (one shared learner actor of 0.25 CPU each) on the shared
    2-CPU Ray instance, two at a time, each trial itself holding 1.75 CPUs: without a placement
    group per trial, the first trial's learner would wait for a CPU the second trial holds (or, on
    an instance this small, forever); with one, Tune starts a trial only when its own CPUs and its
    learner's fit together, the learner runs inside that group, and both finish. A trial that could
    never fit is refused in one line before anything is written."""
    import ray

    before = set(ray.util.placement_group_table())
    path = train_sweep_file(tmp_path, grid={"learner.share": [True]}, seeds=2, resources={"cpu": 1.75},
                            set={**TRAIN_SET, "output.root": str(tmp_path / "results"), "learner.backend": "ray",
                                 "ppo.total_steps": 256, "env.params.nodes": 3})
    assert main(["sweep", str(path), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "tl").iterdir()
    rows = read_csv(folder / "sweep.csv")
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "complete"), ("1", "complete")]
    points = json.loads((folder / "points.json").read_text())
    assert [p["bundles"] for p in points] == [[{"CPU": 0.25}]] * 2
    for r in rows:
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["learner"]["backend"] == "ray" and (Path(r["run_dir"]) / "checkpoint").is_dir()
    groups = [g for k, g in ray.util.placement_group_table().items() if k not in before]
    assert sorted(str(g["bundles"]) for g in groups) == [str({0: {"CPU": 1.75}, 1: {"CPU": 0.25}})] * 2

    big = train_sweep_file(tmp_path, grid={"learner.share": [False]}, seeds=1,
                           set={**TRAIN_SET, "output.root": str(tmp_path / "big"), "learner.backend": "ray",
                                "ray.num_cpus_per_learner": 2})
    assert main(["sweep", str(big), "-q"]) == 2
    assert not (tmp_path / "big").exists()


@pytest.mark.slow  # ~70 s: live runs keep real time, and each trial starts its node actors (fresh workers)
@pytest.mark.ray
def test_live_trials_reserve_their_node_actors(tmp_path, ray_session):
    """``runtime: live`` trials, two at a time: each trial's placement group holds its own CPU and one
    bundle per node actor (3 nodes, a spare, a replacement), and the runs complete."""
    path = sweep_file(tmp_path, name="lv", grid={"world.nodes": [3]},
                      set={"world.duration_ms": 300, "wandb.mode": "disabled", "output.root": str(tmp_path / "results"),
                           "output.shiviz": False, "output.plots": False, "runtime": "live"})
    assert main(["sweep", str(path), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "lv").iterdir()
    rows = read_csv(folder / "sweep.csv")
    assert [r["status"] for r in rows] == ["complete", "complete"] and all(float(r["ops"]) > 0 for r in rows)
    assert [len(p["bundles"]) for p in json.loads((folder / "points.json").read_text())] == [5, 5]


@pytest.mark.slow  # ~1 min: without actor reuse every trial starts its own worker
@pytest.mark.ray
def test_asha_stops_poor_trials_and_the_aggregate_leaves_them_out(tmp_path, ray_session):
    """``scheduler: asha`` on a training sweep, one trial at a time (so which trials it stops does not
    depend on timing): a learning rate that learns poorly is stopped at a rung; its record says
    ``stopped`` with the return it had; the aggregate counts only complete trials."""
    path = train_sweep_file(tmp_path, grid={"ppo.lr": [0.001, 0.003, 0.3, 1.0]}, seeds=1, scheduler="asha",
                            set={**TRAIN_SET, "ppo.total_steps": 2048, "output.root": str(tmp_path / "results")})
    assert main(["sweep", str(path), "-q", "--jobs", "1"]) == 0
    (folder,) = (tmp_path / "results" / "tl").iterdir()
    rows = read_csv(folder / "sweep.csv")
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and len(stopped) < len(rows), rows
    for r in stopped:
        rec = json.loads((folder / "trials" / f"{int(r['run']):04d}.json").read_text())
        # (how far it got past the rung where it was stopped depends on timing; its record has where it was)
        assert rec["stopped_early"] and rec["measures"]["env_steps"] <= 2048 and Path(rec["run_dir"]).is_dir()
        assert float(r["return_mean"]) == rec["measures"]["return_mean"]
    agg = read_csv(folder / "aggregate.csv")
    assert sorted(a["ppo.lr"] for a in agg) == sorted(r["ppo.lr"] for r in rows if r["status"] == "complete")


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.ray
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, ray_session):
    """SIGTERM after the second trial: exit 130, status interrupted; --resume runs only the rest,
    leaves the finished trials' folders byte for byte, and ends with the uninterrupted aggregate."""
    path = sweep_file(tmp_path, name="rs", grid={"world.nodes": [3, 5]},
                      set={"world.duration_ms": 3000, "wandb.mode": "disabled", "output.shiviz": False,
                           "output.plots": False, "output.root": str(tmp_path / "results")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "sweep", str(path), "--jobs", "1"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(list((tmp_path / "results").glob("rs/*/trials/*.json"))) < 2 and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (folder,) = (tmp_path / "results" / "rs").iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "interrupted"
    records = {p.name: json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")}
    assert 2 <= len(records) < 4, records
    finished = {r["run_dir"]: _checksums(Path(r["run_dir"])) for r in records.values()}

    assert main(["sweep", "--resume", str(folder), "-q"]) == 0
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    for run_dir, sums in finished.items():  # finished trials: never run again, not a byte changed
        assert _checksums(Path(run_dir)) == sums
    rows = read_csv(folder / "sweep.csv")
    assert all(r["status"] == "complete" for r in rows) and len(rows) == 4
    assert {r["run_dir"] for r in rows} >= set(finished)

    assert main(["sweep", str(path), "-q"]) == 0  # the same sweep, uninterrupted
    (plain,) = set((tmp_path / "results" / "rs").iterdir()) - {folder}
    assert (folder / "aggregate.csv").read_bytes() == (plain / "aggregate.csv").read_bytes()


@pytest.mark.ray
def test_idle_live_actors_do_not_starve_a_sweeps_placement_groups(tmp_path, ray_session):
    """A live run leaves its healthy node actors in a pool for the next run, each holding its CPU
    share; a sweep whose placement group needs the whole instance (the test above) would then wait
    forever -- it hung the Ray suite when the live tests ran before it. The sweep releases them."""
    import ray

    from agents.protocols import abd
    from envs.world.config import ScenarioConfig
    from experiments.live import run_live
    from experiments.live.driver import _POOL, release_pool

    scn = ScenarioConfig.model_validate({"seed": 0, "world": {"nodes": 3, "duration_ms": 300},
                                         "workload": {"clients": 1, "ops": {"read": 0.5, "write": 0.5}}})
    run_live(scn, abd.NODE, abd.NODE.Params())
    assert len(_POOL) >= 3  # the nodes (and a spare)
    total = ray.cluster_resources()["CPU"]
    assert ray.available_resources().get("CPU", 0.0) < total - 0.25  # the idle actors hold their share
    path = train_sweep_file(tmp_path, grid={"learner.share": [True]}, seeds=1, resources={"cpu": 1.75},
                            set={**TRAIN_SET, "output.root": str(tmp_path / "results"), "learner.backend": "ray",
                                 "ppo.total_steps": 256, "env.params.nodes": 3})
    assert main(["sweep", str(path), "-q"]) == 0  # (before: waited forever for its placement group)
    assert not _POOL and release_pool() == 0
