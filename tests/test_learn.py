"""Learning: masking, GAE, independence of learners, checkpoints, training beats random, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.learn import checkpoint
from agents.learn.config import TrainConfig
from agents.learn.nets import ActorCritic, StackedPolicy, act
from agents.learn.ppo import LocalLearners, PPOLearner, gae, learner_dims, train
from agents.learn.runner import EnvRunner, groups_for, split

SCHEDULE = {"schedule": [{"at_ms": 300, "fault": "partition", "shape": "majority"}, {"at_ms": 800, "fault": "heal"}]}


def small_cfg(seed=0, steps=1024, **learner) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": seed,
        "env": {"params": {"nodes": 3, "duration_ms": 1000, "nemesis": SCHEDULE, "check_linearizability": False}},
        "ppo": {"total_steps": steps, "num_envs": 4, "num_steps": 64, "lr": 0.001},
        "learner": learner})


def test_masked_actions_are_never_illegal():
    torch.manual_seed(0)
    net = ActorCritic(4, 5, [16])
    rng = np.random.default_rng(0)
    mask = rng.random((2000, 5)) < 0.4
    mask[np.arange(2000), rng.integers(0, 5, 2000)] = True
    a, lp = act(net, torch.randn(2000, 4), torch.from_numpy(mask), torch.Generator().manual_seed(0))
    assert mask[np.arange(2000), a.numpy()].all() and torch.isfinite(lp).all()
    sp = StackedPolicy([net.state_dict()])
    a2, lp2 = sp.act(rng.standard_normal((1, 2000, 4)).astype(np.float32), mask[None], rng)
    assert mask[np.arange(2000), a2[0]].all() and np.isfinite(lp2).all()
    # the numpy copy computes the same distribution as the torch network
    x = torch.randn(7, 4)
    m = torch.ones(7, 5, dtype=torch.bool)
    logp, _ = net.dist(x, m)
    g = sp.act(x.numpy()[None], m.numpy()[None], None, greedy=True)
    assert (g[0][0] == logp.argmax(-1).numpy()).all()
    assert np.allclose(sp.value(x.numpy()[None])[0], net.value(x).detach().numpy(), atol=1e-5)


def test_gae_matches_hand_computation():
    r = np.array([[1.0], [0.0], [2.0]], np.float32)
    v = np.array([[0.5], [0.2], [0.1]], np.float32)
    ends = np.array([[0.0], [1.0], [0.0]], np.float32)
    adv, ret = gae(r, v, ends, np.array([0.3], np.float32), gamma=0.9, lam=0.5)
    d2 = 2.0 + 0.9 * 0.3 - 0.1
    d1 = 0.0 - 0.2  # episode ended after step 1: no bootstrap
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    assert np.allclose(adv[:, 0], [d0 + 0.45 * d1, d1, d2])
    assert np.allclose(ret, adv + v)


def test_independent_learner_reads_only_its_own_experience():
    cfg = small_cfg()
    agents, dims = learner_dims(cfg)
    groups = groups_for(len(agents), False)
    specs = [dict(obs_dim=dims["obs_dim"], n_actions=dims["n_actions"], critic_dim=dims["critic_dim"],
                  cfg=cfg.ppo, seed=7) for _ in groups]
    runner = EnvRunner(cfg, StackedPolicy(LocalLearners(specs).weights()))
    roll = runner.rollout(32)
    batch0 = split(roll, groups[0], False, False)
    assert np.array_equal(batch0["rewards"][:, :, 0], roll["rewards"][:, :, 0])
    assert np.array_equal(batch0["obs"][:, :, 0], roll["obs"][:, :, 0])
    assert batch0["rewards"].shape[2] == 1 and batch0["obs"].shape[2] == 1
    # perturbing the other agents' rewards, observations and actions changes nothing for agent 0
    other = {k: v.copy() for k, v in roll.items()}
    other["rewards"][:, :, 1:] += np.random.default_rng(1).normal(0, 10, other["rewards"][:, :, 1:].shape)
    other["obs"][:, :, 1:] += 5.0
    other["actions"][:, :, 1:] = 0
    after = []
    for r in (roll, other):
        lr = PPOLearner(**specs[0])
        lr.update(split(r, groups[0], False, False))
        after.append(lr.get_weights())
    assert all(torch.equal(after[0][k], after[1][k]) for k in after[0])
    # ... while perturbing agent 0's own rewards does change its update
    mine = {k: v.copy() for k, v in roll.items()}
    mine["rewards"][:, :, 0] += 1.0
    lr = PPOLearner(**specs[0])
    lr.update(split(mine, groups[0], False, False))
    assert any(not torch.equal(after[0][k], v) for k, v in lr.get_weights().items())


def test_checkpoint_round_trip_and_policy_of_ask(tmp_path):
    trained = train(small_cfg(steps=256))
    checkpoint.save(tmp_path / "ck", trained)
    meta, weights = checkpoint.load(tmp_path / "ck")
    assert meta["agents"] == trained.agents
    for w0, w1 in zip(trained.weights, weights):
        assert all(torch.equal(w0[k], w1[k]) for k in w0)
    for f in (tmp_path / "ck").glob("*.pt"):
        torch.load(f, weights_only=True)
    # drive a Sim's nodes with the loaded policy: policy(ask) -> action
    from envs.world.sim import Ask

    pol = checkpoint.load_policy(tmp_path / "ck")
    ask = Ask(0, 1, ("serve", 3), [0.0, 1.0, 1.0, 0.0], None, 1, 120.0, 0)
    assert pol(ask) in (0, 1, 2)


def test_shared_and_central_critic_train():
    for learner in ({"share": True}, {"critic": "central"}, {"share": True, "critic": "central"}):
        tr = train(small_cfg(steps=256, **learner))
        assert len(tr.weights) == (1 if learner.get("share") else 3)
        assert np.isfinite(tr.rows[-1]["policy_loss"]) and np.isfinite(tr.rows[-1]["value_loss"])


def test_trained_agents_beat_random_on_their_own_reward():
    """Register-v0 with a fixed partition: PPO agents earn clearly more local reward than random
    agents on held-out seeds, for several training seeds."""
    from agents.scripted import make_random
    from experiments.evaluate_cmd import EVAL_SEED_BASE, evaluate

    spec = small_cfg().env.model_dump()
    seeds = [EVAL_SEED_BASE + i for i in range(3)]
    rnd = make_random(0)
    base = evaluate({"random": lambda a, o, m: rnd(o, m)}, spec, seeds)["random"]
    random_mean = np.mean([np.mean(list(e["returns"].values())) for e in base])
    for s in range(3):
        pol = checkpoint.Policy(*_meta_weights(train(small_cfg(seed=s, steps=2048))))
        eps = evaluate({"trained": pol.act}, spec, seeds)["trained"]
        trained_mean = np.mean([np.mean(list(e["returns"].values())) for e in eps])
        assert trained_mean > 1.3 * random_mean, (s, trained_mean, random_mean)


def _meta_weights(trained):
    meta = {"env": trained.cfg.env.model_dump(), "agents": trained.agents, "groups": trained.groups,
            "dims": trained.dims, "hidden": trained.cfg.ppo.hidden, "share": trained.cfg.learner.share}
    return meta, trained.weights


def test_train_and_evaluate_commands(tmp_path, capsys):
    from experiments.cli import main

    root = tmp_path / "res"
    code = main(["train", "configs/train/register.yaml", "ppo.total_steps=256", "ppo.num_envs=2",
                 "ppo.num_steps=64", "env.params.duration_ms=500", f"output.root={root}", "wandb.mode=disabled",
                 "-q"])
    assert code == 0
    (run,) = (root / "train-register").iterdir()
    assert (run / "checkpoint" / "node_0.pt").is_file() and (run / "metrics.csv").is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    code = main(["evaluate", str(run), "--seeds", "5", "--baselines", "--output-root", str(root), "-q"])
    assert code == 0
    (ev,) = (root / "evaluate").iterdir()
    s = json.loads((ev / "summary.json").read_text())
    assert {"trained", "random", "always_local", "always_quorum"} <= set(s["runs"])
    assert s["runs"]["trained"]["linearizable_fraction"] is not None


@pytest.mark.parametrize("args, needle", [
    (["ppo.lr=-1"], "ppo.lr"),
    (["learner.backend=spark"], "learner.backend"),
    (["env.id=capgym/Nope-v0"], "env.id"),
    (["env.params.nodes=0"], "nodes"),
    (["ppo.bogus=1"], "ppo.bogus"),
])
def test_bad_train_config_is_one_line_exit_2(tmp_path, capsys, args, needle):
    from experiments.cli import main

    assert main(["train", "configs/train/register.yaml", f"output.root={tmp_path}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not any(tmp_path.iterdir())


def test_evaluate_bad_path_is_exit_2(tmp_path, capsys):
    from experiments.cli import main

    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not a checkpoint" in capsys.readouterr().err


@pytest.mark.ray  # the trainings are Ray Tune trials (capgym align runs on the sweep engine)
def test_align_command_writes_report(tmp_path, capsys):
    from experiments.cli import main

    code = main(["align", "configs/train/register_align.yaml", "ppo.total_steps=128", "ppo.num_envs=2",
                 "ppo.num_steps=64", "env.params.nodes=3", "env.params.duration_ms=400", "align.episodes=1",
                 "align.mixed_weight=[0.5, 0.8]", "align.seeds=2", f"output.root={tmp_path}", "--jobs", "2"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    # its own name on its progress line, and one results line (the sweep's table and line are not repeated)
    assert out[0].startswith("capgym align: ") and not any(line.startswith("capgym sweep") for line in out)
    assert sum(line.startswith("results: ") for line in out) == 1 and out[-1].startswith("results: ")
    (run,) = (tmp_path / "align-register").iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert {"ppo_local", "ppo_global", "ppo_mixed_0.5", "ppo_mixed_0.8", "always_local"} <= set(s["runs"])
    assert s["training_seeds"] == [0, 1] and s["runs"]["ppo_mixed_0.8"]["n"] == 2
    lo, hi = s["runs"]["ppo_local"]["ci"]["welfare"]
    assert lo <= s["runs"]["ppo_local"]["welfare"] <= hi
    # one ordinary training folder (with its checkpoint and evaluation) per policy and training seed
    assert len(list(run.glob("runs/*/checkpoint"))) == len(list(run.glob("runs/*/evaluation.json"))) == 8
    assert "gap" in s["alignment_gap"] and (run / "plots" / "alignment.png").is_file()
    assert "[" in (run / "report.md").read_text()
    # the observer's welfare of each episode is what the nodes earned less the stale-read penalty
    ql = s["runs"]["always_local"]
    assert ql["stale_reads"] > 0 and ql["welfare"] < ql["return_mean"]


def test_align_bad_mixed_weight_is_exit_2(tmp_path, capsys):
    from experiments.cli import main

    assert main(["align", "configs/train/register_align.yaml", "align.mixed_weight=[0.5, 2]",
                 f"output.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "align.mixed_weight" in err
    assert not any(tmp_path.iterdir())


def test_global_reward_ranks_consistency_above_availability():
    """The global reward (the observer's welfare, stale reads charged as they complete) prefers
    always-quorum to always-local under a partition, while the local reward prefers always-local:
    the tension the alignment report measures is in the rewards themselves."""
    from agents.scripted import always_local, always_quorum, run_episode
    from envs.register import env

    def total(policy, mode, seed):
        e = env(nodes=5, duration_ms=1000, nemesis=SCHEDULE, stale_penalty=4.0, reward_mode=mode,
                check_linearizability=False)
        return sum(run_episode(e, policy, seed=seed)["returns"].values())

    for seed in range(3):
        assert total(always_local, "local", seed) > total(always_quorum, "local", seed)
        assert total(always_quorum, "global", seed) > total(always_local, "global", seed)


def test_align_on_a_training_config_says_it_runs_the_default_study(capsys):
    """A config with no ``align:`` section gets the default study, and says so before minutes of
    training start; a config with one says nothing."""
    from experiments.align_cmd import load

    _, acfg = load("configs/train/register.yaml", [])
    err = capsys.readouterr().err.strip()
    assert err.startswith("capgym align: note: configs/train/register.yaml has no align: section")
    assert f"{acfg.seeds} training seeds" in err and len(err.splitlines()) == 1
    load("configs/train/register_align.yaml", [])
    assert capsys.readouterr().err == ""


def test_train_says_when_total_steps_round_up_to_whole_iterations(tmp_path, capsys):
    from experiments.cli import main

    assert main(["train", "configs/train/register.yaml", "ppo.total_steps=200", "ppo.num_envs=2", "ppo.num_steps=40",
                 "env.params.duration_ms=300", "output.plots=false", "output.report=none", "output.progress=false",
                 f"output.root={tmp_path}", "wandb.mode=disabled"]) == 0
    out = capsys.readouterr().out
    assert ("note: ppo.total_steps=200 is not a multiple of num_envs x num_steps = 80: 3 iterations, "
            "240 env steps") in out
    (run,) = (tmp_path / "train-register").iterdir()
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 240
