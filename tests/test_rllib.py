"""RLlib as a training backend (``learner.backend: rllib``, :mod:`agents.learn.rllib_ppo`).

Without Ray: the mask wrapper counts illegal actions (so the rollout check below can fail), RLlib's
PPO module copied into capgym's network gives the same logits and values, and settings RLlib cannot
honour are one line and exit 2. With Ray (one local instance per session): ``capgym train`` with
RLlib on Register-v0 takes no illegal action in its rollouts, and its checkpoint is one that
``capgym evaluate`` and ``load_policy`` read, equal to RLlib's own modules; ``capgym sweep`` and
``capgym align`` train with it too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray.rllib")
pytest.importorskip("tree")

from agents.learn import rllib_ppo  # noqa: E402
from agents.learn.config import EnvSpec, make_env  # noqa: E402
from experiments.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "train" / "rllib_register.yaml"
ENV = {"id": "capgym/Register-v0", "params": {"nodes": 3, "duration_ms": 500, "check_linearizability": False}}
#: a tiny training: 2 iterations of 2 x 128 env steps, 3 nodes, 0.5 s episodes
TINY = ["ppo.total_steps=512", "ppo.num_envs=2", "ppo.num_steps=128", "ppo.update_epochs=1", "ppo.num_minibatches=2",
        "env.params.nodes=3", "env.params.duration_ms=500",
        "env.params.nemesis.schedule=[{at_ms: 100, fault: partition, shape: majority}, {at_ms: 300, fault: heal}]",
        "wandb.mode=disabled", "output.plots=false", "output.progress=false"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# --- without Ray ------------------------------------------------------------------------------------
@pytest.mark.parametrize("share", [False, True])
def test_masked_obs_counts_illegal_actions(share):
    """Actions drawn ignoring the mask are counted (the count is what the rollout test asserts is 0);
    actions drawn from the mask are not. Observations carry RLlib's example module's keys."""
    env = rllib_ppo.MaskedObs(make_env(EnvSpec(**ENV)), share=share)
    rng = np.random.default_rng(0)
    for masked in (True, False):
        obs, _ = env.reset(seed=1)
        sp = env.observation_space("node_0")
        assert set(obs["node_0"]) == {"observations", "action_mask"} and sp.contains(obs["node_0"])
        assert obs["node_0"]["observations"].shape == (6 + (3 if share else 0),)
        while True:
            acts = {}
            for a, o in obs.items():
                legal = np.flatnonzero(o["action_mask"])
                acts[a] = int(rng.choice(legal)) if masked else int(rng.integers(len(o["action_mask"])))
            obs, _r, _t, _tr, infos = env.step(acts)
            if not env.env.agents:
                break
        s = infos["node_0"]["capgym"]
        assert set(s["returns"]) == {"node_0", "node_1", "node_2"} and "availability" in s["global"]
        assert (s["illegal"] == 0) if masked else (s["illegal"] > 0)


@pytest.mark.parametrize("share", [False, True])
def test_rllib_module_as_capgym_weights_same_outputs(share):
    """RLlib's PPO module (the action-masking one) copied into capgym's ActorCritic: the same
    logits, the same values, and masked actions get probability 0 in both."""
    import torch
    from ray.rllib.core.columns import Columns

    from agents.learn.config import TrainConfig
    from agents.learn.nets import ActorCritic

    cfg = TrainConfig.model_validate({"env": ENV, "learner": {"backend": "rllib", "share": share},
                                      "ppo": {"hidden": [32, 16]}})
    pc = rllib_ppo.rllib_config(cfg)
    spec = pc.get_multi_rl_module_spec(env=rllib_ppo.env_creator({**ENV, "share": share}))
    module = next(iter(spec.build().values()))
    d = 6 + (3 if share else 0)
    net = ActorCritic(d, 4, [32, 16])
    net.load_state_dict(rllib_ppo.to_capgym(module.state_dict()))
    x = torch.randn(16, d)
    mask = torch.tensor([[1, 0, 1, 1]] * 16, dtype=torch.float32)
    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: {"observations": x, "action_mask": mask}})
        values = module.compute_values({Columns.OBS: {"observations": x.clone(), "action_mask": mask}})
        logp, _ = net.dist(x, mask.bool())
    theirs = out[Columns.ACTION_DIST_INPUTS]
    assert torch.allclose(theirs[:, [0, 2, 3]], net.actor(x)[:, [0, 2, 3]], atol=1e-5)
    assert torch.allclose(torch.log_softmax(theirs, -1)[:, [0, 2, 3]], logp[:, [0, 2, 3]], atol=1e-5)
    assert torch.all(torch.softmax(theirs, -1)[:, 1] == 0) and torch.all(logp[:, 1] == -torch.inf)
    assert torch.allclose(values, net.value(x), atol=1e-5)


def test_iteration_rows_with_and_without_ended_episodes():
    """An iteration in which no episode ended (RLlib sums nothing: NaN) has 0 episodes and no return;
    otherwise returns and measures are the sums over the ended episodes divided by their count."""
    nan = float("nan")
    learners = {"node_0": {"policy_loss": 0.1, "vf_loss": 2.0, "entropy": 0.5}}
    none = {"env_runners": {"num_env_steps_sampled_lifetime": 1024, "capgym": {"episodes": nan, "illegal": nan}},
            "learners": learners}
    row = rllib_ppo._row(0, none, 100.0, ["node_0"], ["node_0"])
    assert row["episodes"] == 0 and row["illegal_actions"] == 0 and "return_mean" not in row
    assert row["env_steps"] == 1024 and row["value_loss/node_0"] == 2.0
    two = {"env_runners": {"num_env_steps_sampled_lifetime": 2048, "capgym": {
        "episodes": 2, "illegal": 0, "return": {"node_0": 30.0}, "global": {"availability": 1.5},
        "global_n": {"availability": 2}}}, "learners": learners}
    row = rllib_ppo._row(1, two, 100.0, ["node_0"], ["node_0"])
    assert row["return_mean"] == row["return/node_0"] == 15.0 and row["global/availability"] == 0.75


@pytest.mark.parametrize("over, words", [
    (["learner.critic=central"], "learner.critic: central (MAPPO) is not available with learner.backend: rllib"),
    (["learner.recurrent=gru"], "learner.recurrent"),
    (["ppo.norm_adv=false"], "ppo.norm_adv"),
    (["ppo.reward_scale=2"], "ppo.reward_scale"),
    (["learner.device=cuda:1"], "learner.device"),
    (["ray.address=127.0.0.1:1"], "ray.address"),
    (["rllib.lr=0.1"], "rllib: unknown key"),
])
def test_what_rllib_cannot_do_is_one_line_exit_2(tmp_path, capsys, over, words):
    rc = main(["train", str(CONFIG), f"output.root={tmp_path}", *over])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not any(tmp_path.iterdir())


# --- with Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_up():
    import os

    import ray

    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield


def test_capgym_train_with_rllib_masks_and_evaluates(tmp_path, ray_up, capsys):
    """``capgym train`` with ``learner.backend: rllib``: every iteration's rollouts took no action its
    mask forbade, episodes ended and were measured; the checkpoint is capgym's (``capgym evaluate``
    plays it), its weights are RLlib's own modules' (the native checkpoint beside it)."""
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    from agents.learn.checkpoint import load_policy

    assert main(["train", str(CONFIG), f"output.root={tmp_path}", "-q", *TINY]) == 0
    (run,) = (tmp_path / "train-rllib-register").iterdir()
    rows = read_csv(run / "metrics.csv")
    assert len(rows) == 2 and int(rows[-1]["env_steps"]) >= 512
    assert all(r["illegal_actions"] == "0" for r in rows)  # masked actions chosen in rollouts: none
    assert sum(int(r["episodes"]) for r in rows) >= 4
    assert all(np.isfinite(float(r["policy_loss"])) and r["global/availability"] for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["agents"] == ["node_0", "node_1", "node_2"]
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    assert meta["backend"] == "rllib" and (run / "checkpoint" / "node_2.pt").is_file()

    policy = load_policy(run)
    native = RLModule.from_checkpoint(run / "checkpoint" / "rllib" / "learner_group" / "learner" / "rl_module"
                                      / "node_1")
    x = torch.randn(8, 6)
    with torch.no_grad():
        theirs = native.forward_inference({Columns.OBS: {"observations": x, "action_mask": torch.ones(8, 4)}})
    assert torch.allclose(theirs[Columns.ACTION_DIST_INPUTS], policy.nets[1].actor(x), atol=1e-5)

    assert main(["evaluate", str(run), "--seeds", "1", "--output-root", str(tmp_path), "-q"]) == 0
    (ev,) = (tmp_path / "evaluate").iterdir()
    s = json.loads((ev / "summary.json").read_text())
    assert s["runs"]["trained"]["availability"] > 0


@pytest.mark.slow  # ~40 s: two Tune sweeps, each trial importing RLlib and building its Algorithm in a fresh worker
def test_sweep_and_align_train_with_rllib(tmp_path, ray_up):
    """A sweep over ``learner.share`` with RLlib trials (no placement group needed: RLlib runs in the
    trial's process), and ``capgym align`` with RLlib trainings."""
    path = tmp_path / "rl.yaml"
    sets = dict(o.split("=", 1) for o in TINY)
    sets = {k: yaml.safe_load(v) for k, v in sets.items()}
    path.write_text(yaml.safe_dump({"name": "rl", "base": str(CONFIG),
                                    "set": {**sets, "output.root": str(tmp_path / "results")},
                                    "grid": {"learner.share": [False, True]}, "seeds": 1}))
    assert main(["sweep", str(path), "-q", "--jobs", "2"]) == 0
    (folder,) = (tmp_path / "results" / "rl").iterdir()
    rows = read_csv(folder / "sweep.csv")
    assert [(r["learner.share"], r["status"]) for r in rows] == [("False", "complete"), ("True", "complete")]
    for r in rows:
        m = read_csv(Path(r["run_dir"]) / "metrics.csv")
        assert all(x["illegal_actions"] == "0" for x in m)
    shared = json.loads((Path(rows[1]["run_dir"]) / "checkpoint" / "meta.json").read_text())
    assert shared["share"] and shared["backend"] == "rllib" and (Path(rows[1]["run_dir"]) / "checkpoint"
                                                                   / "shared.pt").is_file()

    rc = main(["align", str(ROOT / "configs" / "train" / "register_align.yaml"), "-q", "learner.backend=rllib",
               "align.modes=[local]", "align.seeds=1", "align.episodes=1", "align.baselines=false",
               f"output.root={tmp_path / 'results'}", *TINY])
    assert rc == 0
    (al,) = (tmp_path / "results" / "align-register").iterdir()
    s = json.loads((al / "summary.json").read_text())
    assert s["runs"]["ppo_local"]["n"] == 1 and s["runs"]["ppo_local"]["availability"] > 0


@pytest.mark.slow  # ~30 s: two RLlib trainings
def test_same_seed_same_rllib_training(tmp_path, ray_up):
    """Same seed, same RLlib training: identical weights and metrics (steps/s aside)."""
    import torch

    runs = []
    for i in range(2):
        assert main(["train", str(CONFIG), f"output.root={tmp_path / str(i)}", "-q", *TINY]) == 0
        (run,) = (tmp_path / str(i) / "train-rllib-register").iterdir()
        runs.append(run)
    a, b = (torch.load(r / "checkpoint" / "node_0.pt", weights_only=True) for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = ([{k: v for k, v in r.items() if k != "sps"} for r in read_csv(run / "metrics.csv")] for run in runs)
    assert ra == rb
