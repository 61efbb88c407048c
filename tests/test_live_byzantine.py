"""Byzantine nodes in the live runtime: signatures, authenticated channels, strategies, f+1 clients.

Without Ray: a node's ``ctx.sign`` signs only as that node and no strategy can make another
signer's tag (copied tags do not fit another body, changed bodies lose theirs); a batch that names
a sender other than the one whose channel key sealed it is dropped. With Ray (one session, short
runs): PBFT with f = 1 Byzantine replica under three scripted strategies keeps the correct replicas
in agreement and their clients' history linearizable; f + 1 colluding ``pbft`` liars (their state
shared through one actor) make correct replicas execute different requests at one sequence number,
and the observer finds it; ``capgym run`` runs the PBFT and Byzantine compare configs live.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from agents.protocols import get  # noqa: E402
from envs.world.byzantine import Corrupted, mutate  # noqa: E402
from envs.world.clock import Clock  # noqa: E402
from envs.world.config import ScenarioConfig  # noqa: E402
from envs.world.node import ClientOp  # noqa: E402
from experiments.live import run_live  # noqa: E402
from experiments.live.actors import NodeRuntime, wire  # noqa: E402
from experiments.live.signing import Keyring, Signed, client_certificate  # noqa: E402
from experiments.live.transport import NetState  # noqa: E402
from metrics import models  # noqa: E402
from metrics.byzantine import correct_view, faulty_writes, log_agreement  # noqa: E402
from metrics.linearizability import is_linearizable  # noqa: E402

PBFT = get("pbft")
ROOT = Path(__file__).resolve().parents[1]
SECRET = b"k" * 32


class FakeTime:
    t = 0.0

    def now(self):
        return self.t

    def mono(self, t):
        return t / 1000.0


def node(i, n=4, byzantine=None):
    spec = {"node": i, "n": n, "seed": 0, "incarnation": 0, "cls": PBFT, "params": PBFT.Params(),
            "clock": Clock(), "latency": {"dist": "constant", "ms": 1.0}, "secret": SECRET,
            "byzantine": byzantine}
    return NodeRuntime(spec, FakeTime(), {}, NetState())


# --- without Ray ---------------------------------------------------------------------------------------
def test_a_liar_signs_only_as_itself_and_cannot_forge_a_signature():
    liar, honest, judge = node(1, byzantine=("equivocate", {})), node(0), node(2)
    assert liar.obj.name == "equivocate"  # the strategy wraps the protocol from the start
    pp = honest.ctx.sign(("pre_prepare", 0, 1, ("req", 0, 7, "write", None, 7)))
    assert judge.ctx.verify(0, pp) and not judge.ctx.verify(1, pp)
    mine = liar.ctx.sign(("pre_prepare", 0, 1, None))  # its own signature: fine
    assert judge.ctx.verify(1, mine) and not judge.ctx.verify(0, mine)
    # the primary's tag copied onto another body, a signed body changed, an unsigned body
    assert not judge.ctx.verify(0, Signed(("pre_prepare", 0, 1, None), pp.sigs))
    changed = mutate(pp, random.Random(3))
    assert changed != pp and not judge.ctx.verify(0, changed)
    assert not judge.ctx.verify(0, ("pre_prepare", 0, 2, None))
    assert not judge.ctx.verify([0], pp) and not judge.ctx.verify(0, ["pre_prepare"])  # junk: no signature
    # the liar's key is not the primary's: its signature never passes for node 0's
    assert liar.keys.sign(("x",)).sigs[1] != Keyring(SECRET, 0).sign(("x",)).sigs[0]
    # a client's certificate fits its own operation only
    op = ClientOp(5, "write", None, 9, 2)
    assert judge.keys.certify(client_certificate(SECRET, 2, op))
    assert judge.ctx.verify(("client", 2), ClientOp(5, "write", None, 9, 2))
    assert not judge.ctx.verify(("client", 2), ClientOp(5, "write", None, 8, 2))
    assert not judge.keys.certify((("client", 2), b"\0" * 32, b"\0" * 32))


def test_a_batch_is_taken_only_from_the_sender_whose_key_sealed_it():
    a, b = node(0), node(1)
    own = [(1.0, 0, ("commit", 0, 1, None, 0), 1, "commit", 1, (1, 0, 0, 0))]
    claims_2 = [(1.0, 2, ("commit", 0, 1, None, 2), 2, "commit", 1, (1, 0, 0, 0))]
    data = wire(own + claims_2)
    assert b.receive(data, 0, a.keys.seal(data)) == 1  # the message naming node 2 is dropped
    assert b.receive(data, 2, a.keys.seal(data)) == 0  # node 0's seal does not pass for node 2's
    assert b.receive(data, 0, b"\0" * 32) == 0
    assert b.stats["forged"] == 3 and len(b.heap) == 1


def test_restarted_byzantine_node_is_byzantine_again():
    rt = node(3, byzantine=("silent", {}))
    assert isinstance(rt.cls, Corrupted) and rt.obj.name == "silent" and rt.obj.inner is None
    rt.byzantine("pbft")  # a new strategy replaces the old one around the same protocol object
    assert rt.obj.name == "pbft" and rt.cls.honest_cls is PBFT


# --- with Ray ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session():
    if not ray.is_initialized():
        ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False)
    yield


PARAMS = PBFT.Params(checkpoint_period=16, view_change_timeout_ms=300, retry_ms=100, give_up_ms=2000)


def pbft_live(liars, strategy, seed, duration=2000.0):
    scn = ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": 4, "duration_ms": duration, "network": {"latency": {"dist": "exponential", "mean": 2}}},
        "nemesis": {"schedule": [{"at_ms": 200, "fault": "byzantine", "node": i, "strategy": strategy}
                                 for i in liars]},
        "workload": {"clients": 3, "ops": {"read": 0.5, "write": 0.5}, "keys": 0, "think_ms": 10,
                     "timeout_ms": 1000, "replies": 2},
    })
    history, events, stats = run_live(scn, PBFT, PARAMS)
    assert not stats["errors"], stats["errors"]
    correct, evs, left = correct_view(history, events)
    assert left["nodes"] == {str(i): strategy for i in liars}
    checked = correct + faulty_writes(history, set(liars))
    return correct, log_agreement(evs), is_linearizable(checked, models.REGISTER, timeout=20)


@pytest.mark.parametrize("strategy", ["pbft", "equivocate", "silent"])
def test_pbft_live_with_one_byzantine_replica_stays_safe(session, strategy):
    for seed in (1, 2):  # the primary of view 0 lies from 200 ms on
        ops, agreement, linearizable = pbft_live([0], strategy, seed)
        assert sum(op.status == "ok" for op in ops) > 10, (strategy, seed)
        assert agreement["positions"] > 10 and agreement["conflicts"] == 0, (strategy, seed, agreement)
        assert linearizable is True, (strategy, seed)


def test_f_plus_one_colluding_pbft_liars_are_caught_live(session):
    ops, agreement, _lin = pbft_live([0, 1], "pbft", seed=1)
    assert agreement["conflicts"] > 0, agreement  # correct replicas 2 and 3 executed different requests
    assert set(agreement["first_conflict"]["values"]) == {"2", "3"}
    # the backup backs, to each replica, what the primary sent it: that needs their shared state
    # (one SharedState actor); each with its own dict, 1-3 conflicts in ~20 positions, shared 9-18 in ~25-30
    assert 4 * agreement["conflicts"] >= agreement["positions"], agreement


def test_cli_runs_pbft_and_a_byzantine_compare_live(session, tmp_path):
    from experiments.cli import main

    common = ["runtime=live", "wandb.mode=disabled", f"output.root={tmp_path}", "output.progress=false", "-q"]
    assert main(["run", str(ROOT / "configs" / "pbft_byzantine.yaml"), "world.duration_ms=2500",
                 "nemesis.schedule.0.at_ms=300", "nemesis.random.start_ms=1000", *common]) == 0
    (run,) = list((tmp_path / "pbft_byzantine").iterdir())
    r = json.loads((run / "summary.json").read_text())["runs"]["pbft"]
    assert r["byzantine"]["nodes"] == {"0": "pbft"} and r["linearizable"] is True, r
    assert main(["run", str(ROOT / "configs" / "byzantine_abd.yaml"), "world.duration_ms=1500",
                 "nemesis.schedule.0.at_ms=300",
                 "nemesis.random={kinds: [byzantine], strategies: [silent], interval_ms: 500, max_byzantine: 2}",
                 *common]) == 0
    (run,) = list((tmp_path / "byzantine_abd").iterdir())
    runs = json.loads((run / "summary.json").read_text())["runs"]
    for name in ("abd", "pbft"):  # node 3 scheduled, and a random one: both marked and left out
        nodes = runs[name]["byzantine"]["nodes"]
        assert nodes["3"] == "abd" and list(nodes.values()).count("silent") == 1, nodes


def test_live_byzantine_config_errors_stay_one_line(tmp_path, capsys):
    """Nothing Byzantine is refused live any more; a bad strategy is still one line, exit 2, no Ray."""
    from experiments.cli import main

    args = ["run", str(ROOT / "configs" / "pbft_byzantine.yaml"), "runtime=live", f"output.root={tmp_path}"]
    assert main(args + ["nemesis.schedule.0.strategy=lie"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "strategy" in err[0] and not (tmp_path / "pbft_byzantine").exists()
    assert main(args + ["workload.replies=5"]) == 2
    assert "workload.replies" in capsys.readouterr().err
    for bad, key in (("nemesis.schedule.0.options.bogus=1", "nemesis.schedule.0.options.bogus: unknown option"),
                     ("nemesis.schedule.0.options.p=2", "nemesis.schedule.0.options.p: unknown option"),
                     ("nemesis.random.max_byzantine=9", "nemesis.random.max_byzantine: 9")):
        assert main(args + [bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0], err
    assert main(args + ["nemesis.schedule.0.strategy=delay", "nemesis.schedule.0.options.delay_ms=-50"]) == 2
    assert "nemesis.schedule.0.options.delay_ms: " in capsys.readouterr().err
