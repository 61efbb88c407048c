"""``capgym evaluate --focal K --background POLICY``: focal seats play the checkpoint (its network of
node_k in seat k), background seats the named scripted policy or another run's checkpoint; bad
inputs stop with one line, exit status 2, nothing written."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from agents import population, scripted
from agents.learn import checkpoint
from agents.learn.config import TrainConfig
from agents.learn.ppo import train
from experiments.cli import main
from experiments.evaluate_cmd import make_eval_env, play

SCHEDULE = {"schedule": [{"at_ms": 300, "fault": "partition", "shape": "majority"}, {"at_ms": 800, "fault": "heal"}]}
LOCAL, QUORUM, REFUSE, NOOP = 0, 1, 2, 3


def rigged(folder, choices: dict[str, int]):
    """A tiny trained Register-v0 checkpoint (3 nodes, 1 s) whose agent ``node_k`` is then made to
    pick ``choices[node_k]`` whenever a decision is owed (a large bias on that logit): so a seat's
    actions say which network played it."""
    cfg = TrainConfig.model_validate({
        "seed": 0, "env": {"params": {"nodes": 3, "duration_ms": 1000, "nemesis": SCHEDULE,
                                      "check_linearizability": False}},
        "ppo": {"total_steps": 256, "num_envs": 2, "num_steps": 64}})
    tr = train(cfg)
    for gi, w in enumerate(tr.weights):
        agent = tr.agents[tr.groups[gi][0]]
        key = max((k for k in w if k.startswith("actor.") and k.endswith(".bias")), key=lambda k: int(k.split(".")[1]))
        w[key] = torch.zeros_like(w[key])
        w[key][choices[agent]] = 100.0
    return checkpoint.save(folder, tr)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    refuse = rigged(root / "refuse", {"node_0": REFUSE, "node_1": REFUSE, "node_2": LOCAL})
    quorum = rigged(root / "quorum", dict.fromkeys(("node_0", "node_1", "node_2"), QUORUM))
    return refuse, quorum


def seat_actions(ck, focal, background: str, seed: int = 900_000_000) -> dict[str, Counter]:
    """The decisions (non-no-op answers to an owed decision) each agent made in one episode."""
    meta, weights = checkpoint.load(ck)
    spec = meta["env"]
    mine = population.Seat("checkpoint", checkpoint.Policy(meta, weights), "trained")
    if background in scripted.SCRIPTED:
        bg = population.scripted_seat(background, spec["id"])
    else:
        bm, bw = checkpoint.load(background)
        bg = population.Seat("checkpoint", checkpoint.Policy(bm, bw), background)
    pop = population.Population(spec, 3, focal, mine, bg)
    seen: dict[str, Counter] = {a: Counter() for a in meta["agents"]}

    def choose(agent, obs, mask):
        a = pop.act(agent, obs, mask)
        if obs[-1] > 0:  # a decision was owed
            seen[agent][a] += 1
        return a

    play(make_eval_env(spec, check=False), choose, seed)
    return seen


def test_focal_seats_play_the_checkpoint_and_background_seats_the_named_policy(ckpts):
    refuse, _ = ckpts
    tb = seat_actions(refuse, [0], "textbook")
    rnd = seat_actions(refuse, [0], "random")
    assert set(tb["node_0"]) == {REFUSE} and set(rnd["node_0"]) == {REFUSE}  # node_0's network
    for a in ("node_1", "node_2"):
        assert set(tb[a]) == {NOOP}, tb[a]  # textbook: the no-op, i.e. the protocol's default
        assert {LOCAL, QUORUM, REFUSE} <= set(rnd[a]), rnd[a]  # random: every legal choice
    # --focal-nodes 2: seat 2 plays node_2's network (local), not node_0's (refuse)
    other = seat_actions(refuse, [2], "textbook")
    assert set(other["node_2"]) == {LOCAL} and set(other["node_0"]) == {NOOP}


def test_background_checkpoint_plays_its_own_seats(ckpts):
    refuse, quorum = ckpts
    seen = seat_actions(refuse, [1], str(quorum))
    assert set(seen["node_1"]) == {REFUSE}
    assert set(seen["node_0"]) == {QUORUM} and set(seen["node_2"]) == {QUORUM}


def test_focal_summary_from_the_command_line(ckpts, tmp_path, capsys):
    refuse, _ = ckpts
    root = tmp_path / "res"
    out = {}
    for bg, extra in (("textbook", []), ("always_local", []), ("textbook", ["env.params.reward_mode=global"])):
        name = f"{bg}{len(extra)}"
        assert main(["evaluate", str(refuse), *extra, "--focal", "2", "--background", bg, "--seeds", "1", "2",
                     "--output-root", str(root), "--experiment", name, "-q"]) == 0
        (run,) = (root / name).iterdir()
        out[bg if not extra else "global"] = json.loads((run / "summary.json").read_text())
        page = (run / "report.html").read_text()  # the page leads with the focal figures
        assert "Focal agents among background agents" in page and "focal per-capita local return" in page
    f = out["textbook"]["focal"]
    assert f["nodes"] == [0, 1] and f["background"] == "textbook"
    assert f["focal_per_capita_return"] < 0.0  # the focal seats refuse: no ok answers, only messages
    assert f["background_per_capita_return"] > 5.0
    assert set(out["textbook"]["runs"]) == {"focal", "all_background"}
    assert f["welfare_change"] == pytest.approx(f["welfare"] - f["welfare_all_background"])
    assert {"availability", "stale_fraction", "welfare"} <= set(f["measures"])
    # a different background changes the background's figures, not who the focal seats are
    g = out["always_local"]["focal"]
    assert g["background"] == "always_local" and g["nodes"] == [0, 1]
    assert g["background_per_capita_return"] != f["background_per_capita_return"]
    # per-capita returns are local (what each seat's node earned), whatever reward the env pays
    h = out["global"]["focal"]
    assert h["focal_per_capita_return"] == f["focal_per_capita_return"]
    assert h["background_per_capita_return"] == f["background_per_capita_return"]
    assert len(set(out["global"]["runs"]["focal"]["returns"].values())) == 1  # the global reward: one for all


@pytest.mark.parametrize("args, needle", [
    (["--focal", "4"], "--focal"),
    (["--focal", "0"], "--focal"),
    (["--focal-nodes", "0,0"], "--focal-nodes"),
    (["--focal-nodes", "0,7"], "--focal-nodes"),
    (["--focal-nodes", "a"], "--focal-nodes"),
    (["--focal", "1", "--focal-nodes", "0"], "--focal-nodes"),
    (["--background", "random"], "--background"),
    (["--focal", "1", "--background", "nope"], "always_quorum"),  # lists the valid names
    (["--focal", "1", "--background", "eager"], "does not apply"),
    (["env.params.nodes=4", "--focal", "1"], "env.params.nodes"),
])
def test_bad_focal_input_is_one_line_exit_2(ckpts, tmp_path, capsys, args, needle):
    refuse, _ = ckpts
    assert main(["evaluate", str(refuse), *args, "--output-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not any(tmp_path.iterdir())


def test_registry_names_per_game():
    assert scripted.scripted_names("Register-v0")[:2] == ["textbook", "random"]
    assert "eager" in scripted.scripted_names("capgym/Election-v0")
    assert "eager" not in scripted.scripted_names("capgym/Commons-v0")
    with pytest.raises(ValueError, match="choose from textbook, random"):
        scripted.make_scripted("greedy", "capgym/Consensus-v0")


def test_live_ask_policies_seat_by_seat():
    """A node's ``policy(ask)``: the checkpoint's network of that node in focal seats; a scripted
    background with its own seeded generator per node (seats do not draw in lockstep; the same
    seed draws the same)."""
    import pickle

    from envs.world.sim import Ask

    cloudpickle = pytest.importorskip("cloudpickle")  # what Ray ships a policy to its actor with

    spec = {"id": "capgym/Register-v0", "params": {"nodes": 3}}
    seat = population.scripted_seat("random", spec["id"])
    pop = population.Population(spec, 3, [], seat, seat)

    def draws(k):
        p = pickle.loads(cloudpickle.dumps(pop.ask_policy(k)))
        return [p(Ask(i, k, ("serve", i), [0.0, 1.0, 1.0, 0.0], None, 1, 100.0, 0)) for i in range(24)]

    assert draws(0) != draws(1) != draws(2) and draws(1) == draws(1)
    assert set(draws(0)) == {LOCAL, QUORUM, REFUSE}
    tb = population.Population(spec, 3, [], None, population.scripted_seat("textbook", spec["id"]))
    # textbook answers the protocol's default (here 1, quorum), whatever the seat
    assert {tb.ask_policy(k)(Ask(0, k, ("serve", 0), [0.0, 1.0, 1.0, 0.0], None, 1, 100.0, 0)) for k in range(3)} == {1}


def test_a_shared_checkpoint_plays_a_focal_seat_with_that_seats_id(tmp_path):
    """With parameter sharing, seat k is the shared network given seat k's one-hot id."""
    cfg = TrainConfig.model_validate({
        "seed": 0, "env": {"params": {"nodes": 3, "duration_ms": 500, "check_linearizability": False}},
        "ppo": {"total_steps": 128, "num_envs": 2, "num_steps": 64}, "learner": {"share": True}})
    ck = checkpoint.save(tmp_path / "ck", train(cfg))
    assert (ck / "shared.pt").is_file()
    meta, weights = checkpoint.load(ck)
    pol = checkpoint.Policy(meta, weights)
    seat = population.Seat("checkpoint", pol, "shared")
    pop = population.Population(meta["env"], 3, [2], seat, population.scripted_seat("textbook", meta["env"]["id"]))
    obs, mask = [1.0, 1.0, 1.0, 0.0, 0.1, 1.0], [1, 1, 1, 0]
    assert pop.act("node_2", obs, mask) == pol.act("node_2", obs, mask) and pop.act("node_0", obs, mask) == NOOP
    assert main(["evaluate", str(ck), "--focal-nodes", "2", "--seeds", "1", "--output-root", str(tmp_path / "r"),
                 "-q"]) == 0
