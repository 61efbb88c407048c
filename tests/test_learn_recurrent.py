"""The recurrent (GRU) policy: numpy copy == torch network, episode starts reset the memory, same seed
same result, checkpoints, the CLI, and memory pays on a task that needs it (a cue to recall)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.learn import checkpoint
from agents.learn.config import TrainConfig
from agents.learn.nets import RecurrentActorCritic, StackedRecurrentPolicy
from agents.learn.ppo import LocalLearners, learner_dims, recurrent_spec, train
from agents.learn.runner import EnvRunner, groups_for, split

SCHEDULE = {"schedule": [{"at_ms": 300, "fault": "partition", "shape": "majority"}, {"at_ms": 800, "fault": "heal"}]}


def small_cfg(seed=0, steps=512, **learner) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": seed,
        "env": {"params": {"nodes": 3, "duration_ms": 1000, "nemesis": SCHEDULE, "check_linearizability": False}},
        "ppo": {"total_steps": steps, "num_envs": 4, "num_steps": 64, "lr": 0.001, "num_minibatches": 2},
        "learner": {"recurrent": "gru", "rnn_hidden": 16, **learner}})


def random_net(seed: int, central: bool = False, obs_dim: int = 5, k: int = 4) -> RecurrentActorCritic:
    torch.manual_seed(seed)
    net = RecurrentActorCritic(obs_dim, k, [16], 8, critic_dim=11 if central else None, central=central)
    with torch.no_grad():  # larger weights than the init, so the state matters and differences show
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


# --- the numpy copy computes what the torch network does -------------------------------------------

@pytest.mark.parametrize("central", [False, True])
def test_numpy_gru_equals_torch_over_random_sequences_with_resets(central):
    rng = np.random.default_rng(0)
    for trial in range(20):
        nets = [random_net(10 * trial + g, central) for g in range(3)]
        sp = StackedRecurrentPolicy([n.state_dict() for n in nets])
        T, B = 25, 6
        x = rng.normal(0, 2, (3, T, B, 5)).astype(np.float32)
        starts = rng.random((3, T, B)) < 0.15
        h0 = rng.normal(0, 1, (3, B, 8)).astype(np.float32)
        s = rng.normal(0, 1, (3, T, B, 11)).astype(np.float32)
        mask = rng.random((3, T, B, 4)) < 0.6
        mask[..., 0] = True
        hs, lps, vs = [], [], []
        h = h0
        for t in range(T):  # the runner's way: one numpy step at a time
            h = sp.step(x[:, t], h, starts[:, t])
            hs.append(h)
            lps.append(sp.act(h, mask[:, t], None, greedy=True)[1])
            vs.append(sp.value(s[:, t] if central else h))
        for g, net in enumerate(nets):  # the learner's way: the whole sequence replayed in torch
            with torch.no_grad():
                core, last = net.core(torch.from_numpy(x[g]), torch.from_numpy(starts[g]), torch.from_numpy(h0[g]))
                logp, _ = net.dist(core, torch.from_numpy(mask[g]))
                v = net.value(core, torch.from_numpy(s[g]))
            assert np.allclose(core.numpy(), np.stack(hs)[:, g], atol=1e-5)
            assert np.allclose(last.numpy(), h[g], atol=1e-5)
            assert np.allclose(logp.max(-1).values.numpy(), np.stack(lps)[:, g], atol=1e-5)
            assert np.allclose(v.numpy(), np.stack(vs)[:, g], atol=1e-5)


def test_torch_replay_is_pytorchs_gru_cell():
    """``core`` computes the GRU of ``nn.GRUCell`` (its own weights), resets aside."""
    net = random_net(3)
    x, h = torch.randn(7, 4, 5), torch.randn(4, 8)
    core, _ = net.core(x, torch.zeros(7, 4, dtype=torch.bool), h)
    with torch.no_grad():
        for t in range(7):
            h = net.gru(net.body(x[t]), h)
            assert torch.allclose(core[t], h, atol=1e-6)


def test_masked_actions_are_never_illegal():
    net = random_net(1)
    sp = StackedRecurrentPolicy([net.state_dict()])
    rng = np.random.default_rng(0)
    mask = rng.random((1, 3000, 4)) < 0.4
    mask[0, np.arange(3000), rng.integers(0, 4, 3000)] = True
    h = sp.step(rng.normal(size=(1, 3000, 5)).astype(np.float32), sp.initial_state(1, 3000), np.ones((1, 3000), bool))
    a, lp = sp.act(h, mask, rng)
    assert mask[0, np.arange(3000), a[0]].all() and np.isfinite(lp).all()


# --- the memory is reset at episode starts ------------------------------------------------------------

@pytest.mark.parametrize("share", [False, True])
def test_rollout_state_is_reset_at_every_episode_start(share):
    """Replaying each episode alone, from a zero state, gives the log-probabilities the runner acted
    with: nothing of an episode's memory reaches the next one (or another copy, or another agent).
    The rollout spans several episodes per copy and starts mid-episode (the second rollout)."""
    cfg = TrainConfig.model_validate({**small_cfg().model_dump(), "env": {"params": {
        "nodes": 3, "duration_ms": 300, "nemesis": SCHEDULE, "check_linearizability": False}},
        "learner": {"recurrent": "gru", "rnn_hidden": 16, "share": share}})
    agents, dims = learner_dims(cfg)
    groups = groups_for(len(agents), share)
    specs = [dict(obs_dim=dims["obs_dim"], n_actions=dims["n_actions"], critic_dim=dims["critic_dim"], cfg=cfg.ppo,
                  seed=gi, **recurrent_spec(cfg)) for gi in range(len(groups))]
    learners = LocalLearners(specs)
    for lr in learners.learners:  # strong recurrent weights: a leaked state would change the actions' odds
        with torch.no_grad():
            lr.net.gru.weight_hh.mul_(3.0)
    from agents.learn.nets import stacked

    runner = EnvRunner(cfg, stacked(learners.weights(), "gru"))
    runner.rollout(13)  # so the next rollout begins mid-episode, with a non-zero state
    T = 100
    roll = runner.rollout(T)
    assert (roll["starts"].sum(0) >= 1).all() and not roll["starts"][0].any()
    assert np.abs(roll["h0"]).max() > 0.1
    checked = 0
    for gi, g in enumerate(groups):
        b = split(roll, g, share, False)
        net = learners.learners[gi].net
        for e in range(cfg.ppo.num_envs):
            first = np.flatnonzero(b["starts"][:, e, 0])
            for s0, s1 in zip(first, [*first[1:], T]):  # whole episodes inside the rollout
                x = torch.from_numpy(b["obs"][s0:s1, e])
                with torch.no_grad():
                    core, _ = net.core(x, torch.zeros(x.shape[:2], dtype=torch.bool), net.initial_state(len(g)))
                    logp, _ = net.dist(core, torch.from_numpy(b["mask"][s0:s1, e]))
                lp = logp.gather(-1, torch.from_numpy(b["actions"][s0:s1, e]).unsqueeze(-1)).squeeze(-1)
                assert np.allclose(lp.numpy(), b["logp"][s0:s1, e], atol=1e-4)
                checked += s1 - s0
            # and the learner's replay of the whole sequence from h0 (resets inside) agrees too
            with torch.no_grad():
                core, _ = net.core(torch.from_numpy(b["obs"][:, e]), torch.from_numpy(b["starts"][:, e]),
                                   torch.from_numpy(b["h0"][e]))
                v = net.value(core)
            assert np.allclose(v.numpy(), b["values"][:, e], atol=1e-4)
    assert checked > T


@pytest.mark.parametrize("share", [False, True])
def test_loaded_policy_keeps_and_resets_each_agents_state(tmp_path, share):
    trained = train(small_cfg(steps=256, share=share))
    checkpoint.save(tmp_path / "ck", trained)
    meta, weights = checkpoint.load(tmp_path / "ck")
    assert meta["recurrent"] == "gru" and meta["rnn_hidden"] == 16
    for w0, w1 in zip(trained.weights, weights):
        assert all(torch.equal(w0[k], w1[k]) for k in w0)
    pol = checkpoint.load_policy(tmp_path / "ck")
    with torch.no_grad():  # make the memory decisive, so a leaked state changes the greedy choice
        for net in pol.nets:
            net.gru.weight_hh.mul_(4.0)
    rng = np.random.default_rng(0)
    d = meta["dims"]["env_obs_dim"]
    seqs = [rng.normal(0, 2, (6, d)).astype(np.float32) for _ in range(30)]
    mask = np.array([1, 1, 1, 0], bool)

    def play(seq, agent="node_1"):
        return [pol.act(agent, o, mask) for o in seq]

    alone = []
    for seq in seqs:
        pol.reset()
        alone.append(play(seq))
    # after a reset a sequence plays as from scratch, in whatever order the sequences come
    for seq, r in reversed(list(zip(seqs, alone))):
        pol.reset("node_1")
        assert play(seq) == r
    # without resets the memory carries over, and changes choices
    pol.reset()
    assert [play(seq) for seq in seqs] != alone
    # each agent's memory is its own: node_0 acting in between changes nothing for node_1
    for seq, r in zip(seqs, alone):
        pol.reset("node_1")
        got = []
        for o in seq:
            pol.act("node_0", rng.normal(0, 2, d).astype(np.float32), mask)
            got.append(pol.act("node_1", o, mask))
        assert got == r
    assert set(pol.states) == {0, 1}


# --- training ---------------------------------------------------------------------------------------

def test_same_seed_same_training():
    for learner in ({}, {"share": True}, {"critic": "central"}):
        a, b = train(small_cfg(steps=256, **learner)), train(small_cfg(steps=256, **learner))
        strip = lambda rows: [{k: v for k, v in r.items() if k != "sps"} for r in rows]
        assert strip(a.rows) == strip(b.rows)
        assert all(torch.equal(wa[k], wb[k]) for wa, wb in zip(a.weights, b.weights) for k in wa)
        assert np.isfinite(a.rows[-1]["policy_loss"]) and np.isfinite(a.rows[-1]["value_loss"])
    c = train(small_cfg(seed=1, steps=256))
    assert any(not torch.equal(c.weights[0][k], a.weights[0][k]) for k in c.weights[0])


@pytest.mark.parametrize("args, needle", [
    (["learner.recurrent=lstm"], "learner.recurrent"),
    (["learner.recurrent=gru", "learner.rnn_hidden=0"], "learner.rnn_hidden"),
    (["learner.recurrent=gru", "ppo.num_envs=6"], "ppo.num_minibatches"),
])
def test_bad_recurrent_config_is_one_line_exit_2(tmp_path, capsys, args, needle):
    from experiments.cli import main

    assert main(["train", "configs/train/register.yaml", f"output.root={tmp_path}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not any(tmp_path.iterdir())


def test_train_and_evaluate_gru_config(tmp_path):
    from experiments.cli import main

    root = tmp_path / "res"
    code = main(["train", "configs/train/register_gru.yaml", "ppo.total_steps=256", "ppo.num_envs=2",
                 "ppo.num_steps=64", "ppo.num_minibatches=2", "env.params.duration_ms=500", f"output.root={root}",
                 "wandb.mode=disabled", "-q"])
    assert code == 0
    (run,) = (root / "train-register-gru").iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert json.loads((run / "checkpoint" / "meta.json").read_text())["recurrent"] == "gru"
    code = main(["evaluate", str(run), "--seeds", "5", "6", "--output-root", str(root), "-q"])
    assert code == 0
    (ev,) = (root / "evaluate").iterdir()
    s = json.loads((ev / "summary.json").read_text())
    assert s["runs"]["trained"]["episodes"] == 2 and np.isfinite(s["runs"]["trained"]["return_mean"])


# --- memory pays: recall a cue ------------------------------------------------------------------------

CUE_ID = "capgym-test/Cue-v0"


class CueEnv:
    """A tiny Parallel environment that needs memory. Each agent sees a random bit (one-hot) only at
    an episode's first step; for ``length`` steps it may do nothing but the no-op, then at the last
    step it must name the bit (+1 if right, 0 if wrong). A memoryless policy earns 0.5 on average."""

    metadata = {"name": "cue_v0"}

    def __init__(self, agents: int = 2, length: int = 4):
        self.possible_agents = [f"agent_{i}" for i in range(agents)]
        self.length = length
        self.agents: list[str] = []

    def observation_space(self, agent):
        return spaces.Dict({"observation": spaces.Box(0, 1, (3,)), "action_mask": spaces.MultiBinary(3)})

    def action_space(self, agent):
        return spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.cue = self.rng.integers(0, 2, len(self.possible_agents))
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def _obs(self) -> dict:
        last = self.t == self.length - 1
        out = {}
        for i, a in enumerate(self.possible_agents):
            x = np.zeros(3, np.float32)
            if self.t == 0:
                x[self.cue[i]] = 1.0
            x[2] = float(last)
            out[a] = {"observation": x, "action_mask": np.array([1, 1, 0] if last else [0, 0, 1], np.int8)}
        return out

    def step(self, actions: dict):
        last = self.t == self.length - 1
        rew = {a: float(last and actions[a] == self.cue[i]) for i, a in enumerate(self.possible_agents)}
        self.t += 1
        if self.t == self.length:
            self.agents = []
        done = {a: self.t == self.length for a in self.possible_agents}
        return self._obs(), rew, done, dict(done), {a: {} for a in self.possible_agents}

    def global_measures(self) -> dict:
        return {}

    def close(self):
        pass


def parallel_env(**params):
    return CueEnv(**params)


def cue_return(recurrent: str, seed: int, share: bool = True, steps: int = 3072) -> float:
    """Mean return per agent over the last 8 iterations of training on the cue task (1.0: always
    right; 0.5: guessing, the best a memoryless policy can do)."""
    cfg = TrainConfig.model_validate({
        "seed": seed, "env": {"id": CUE_ID, "params": {"agents": 2, "length": 4}},
        "ppo": {"total_steps": steps, "num_envs": 8, "num_steps": 16, "lr": 0.003, "num_minibatches": 4,
                "hidden": [32], "ent_coef": 0.01},
        "learner": {"recurrent": recurrent, "rnn_hidden": 16, "share": share}})
    rows = train(cfg).rows
    return float(np.mean([r["return_mean"] for r in rows[-8:]]))


@pytest.fixture
def cue_env(monkeypatch):
    from envs import registry

    monkeypatch.setitem(registry.ENVIRONMENTS, CUE_ID, __name__)


def test_memory_recalls_the_cue_where_an_mlp_cannot(cue_env):
    """Parameter sharing, 3,072 env steps: the GRU names the cue (near 1.0), the MLP guesses (0.5)."""
    gru, mlp = cue_return("gru", 0), cue_return("none", 0)
    print(f"cue task: gru {gru:.3f}, mlp {mlp:.3f}")
    assert gru > 0.9 and mlp < 0.6, (gru, mlp)


@pytest.mark.slow
def test_memory_with_independent_learners_over_seeds(cue_env):
    """Independent learners (one GRU each), three seeds, 6,144 env steps."""
    gru = [cue_return("gru", s, share=False, steps=6144) for s in range(3)]
    mlp = [cue_return("none", s, share=False, steps=6144) for s in range(3)]
    print(f"cue task (independent): gru {gru}, mlp {mlp}")
    assert min(gru) > 0.9 and max(mlp) < 0.6, (gru, mlp)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_learners_train_the_same_gru_as_local_ones():
    """One Ray actor per learner, same seed: the same weights as the in-process learners."""
    local, remote = train(small_cfg(steps=256)), train(small_cfg(steps=256, backend="ray"))
    assert all(torch.equal(wa[k], wb[k]) for wa, wb in zip(local.weights, remote.weights) for k in wa)
