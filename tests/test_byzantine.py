"""Byzantine nodes (envs/world/byzantine.py, Sim.byzantine, the observer's metrics/byzantine.py):
PBFT with f Byzantine replicas stays safe under every scripted strategy over many seeds, with
partitions, loss and clock faults, and keeps completing requests; Raft, which is not Byzantine
fault tolerant, is broken by one node running the targeted strategy; identities cannot be forged;
the trace marks Byzantine nodes and the observer says whom it left out; configs are checked."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from agents.protocols import get
from envs.world.build import build_sim
from envs.world.byzantine import STRATEGY_NAMES, mutate
from envs.world.config import ScenarioConfig, error_line
from envs.world.rng import derive_rng
from metrics.byzantine import correct_view, faulty_writes, log_agreement
from metrics.linearizability import check
from metrics.models import CAS_REGISTER, REGISTER, partition_by_key

PBFT, RAFT = get("pbft"), get("raft")
CAS_REGISTERS = dataclasses.replace(CAS_REGISTER, partition=partition_by_key)
REGISTERS = dataclasses.replace(REGISTER, partition=partition_by_key)
PARAMS = PBFT.Params(checkpoint_period=8, view_change_timeout_ms=100, retry_ms=50, give_up_ms=400)
GENERIC = ["silent", "equivocate", "random-fields", "replay", "delay"]
ROOT = Path(__file__).resolve().parent.parent


def scenario(seed, byzantine, nodes=4, duration=1500.0, kinds=("partition", "loss", "clock"), ops=None):
    """``byzantine``: [(at_ms, node, strategy)]; the random nemesis runs until 60% of the run."""
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes, "duration_ms": duration,
                  "network": {"latency": {"dist": "exponential", "mean": 5}}},
        "nemesis": {"schedule": [{"at_ms": t, "fault": "byzantine", "node": n, "strategy": s}
                                 for t, n, s in byzantine],
                    **({"random": {"kinds": list(kinds), "interval_ms": 200, "duration_ms": 150,
                                   "stop_ms": 0.6 * duration}} if kinds else {})},
        "workload": {"clients": 4, "ops": ops or {"read": 0.4, "write": 0.4, "cas": 0.2}, "think_ms": 10,
                     "timeout_ms": 500, "keys": (seed % 2) * 2},
    })


def judge(sim, model):
    """What the observer says of a run: (left_out, log agreement, linearizability result)."""
    events = list(sim.trace.events())
    history, events, left = correct_view(sim.history, events)
    byz = set(sim.byzantine_nodes)
    return left, log_agreement(events), check(history + faulty_writes(sim.history, byz), model, timeout=10)


def completed(op):
    return op.status == "ok" or (op.f == "cas" and op.status == "fail")


def pbft_with_liars(strategy, seeds):
    late = done = 0
    for seed in seeds:
        n = 7 if seed % 7 == 6 else 4
        liars = [(100.0, seed % n, strategy)] + ([(150.0, (seed + 3) % n, strategy)] if n == 7 else [])
        scn = scenario(seed, liars, nodes=n)
        sim = build_sim(scn, PBFT, PARAMS)
        sim.run(until=scn.world.duration_ms)
        left, agreement, lin = judge(sim, CAS_REGISTERS)
        assert left["nodes"] == {str(x): strategy for _, x, _ in liars}
        assert agreement["conflicts"] == 0, f"seed {seed}: {agreement['first_conflict']}"
        assert lin.ok is True, f"seed {seed}: not linearizable at {lin.failing_op}"
        correct = {x for _, x, _ in liars}
        after = [op for op in sim.history if op.node not in correct and 900 < op.invoke < 1350]
        late += len(after)
        done += sum(map(completed, after))
    assert late > 4 * len(seeds) and done >= 0.9 * late, \
        f"{strategy}: {done} of {late} requests after the faults completed"


@pytest.mark.parametrize("strategy", ["equivocate", "random-fields", "pbft"])
def test_clients_that_wait_for_f_plus_one_matching_replies_are_all_safe(strategy):
    """``workload.replies: 2`` (f + 1 for n = 4): every client sends to every replica and needs two
    matching answers, so no client is left out, even though the liar answers with wrong values."""
    for seed in range(10):
        scn = scenario(seed, [(100.0, seed % 4, strategy)])
        scn.workload.replies = 2
        sim = build_sim(scn, PBFT, PARAMS)
        sim.run(until=scn.world.duration_ms)
        left, agreement, lin = judge(sim, CAS_REGISTERS)
        assert left["ops_left_out"] == 0 and all(op.node is None for op in sim.history)
        assert agreement["conflicts"] == 0 and lin.ok is True, seed
        after = [op for op in sim.history if 900 < op.invoke < 1350]
        assert after and sum(map(completed, after)) >= 0.9 * len(after), seed


def test_one_matching_reply_lets_a_liar_fool_its_client():
    """The control: with ``replies: 2`` and a lying replica the history is linearizable (above);
    a client that trusted the liar's single answer would not be: the liar's answers differ from
    what the correct replicas executed."""
    scn = scenario(0, [(100.0, 1, "random-fields")], kinds=())
    sim = build_sim(scn, PBFT, PARAMS)
    sim.run(until=scn.world.duration_ms)
    lied = [op for op in sim.history if op.node == 1 and op.invoke > 150 and op.status == "ok"]
    assert lied and check(lied + [op for op in sim.history if op.node != 1], CAS_REGISTERS).ok is False


@pytest.mark.parametrize("strategy", GENERIC + ["pbft"])
def test_pbft_with_f_byzantine_replicas_stays_safe(strategy):
    """20 seeds per strategy (n = 4, f = 1; every seventh seed n = 7, f = 2 with two liars), the liar
    taking over at 100 ms (any replica, the primary included), with partitions, loss and clock
    faults: correct replicas never execute different requests at one sequence number, the correct
    clients' history is linearizable, and their requests keep completing."""
    pbft_with_liars(strategy, range(20))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", GENERIC + ["pbft"])
def test_pbft_with_f_byzantine_replicas_stays_safe_200_seeds(strategy):
    pbft_with_liars(strategy, range(20, 220))


def test_raft_is_broken_by_one_targeted_liar():
    """Raft trusts a higher term's AppendEntries: one node running the ``raft`` strategy makes
    correct replicas commit different commands at one index, or serve forged values, on most
    seeds. The same seeds without the liar (control) show neither."""
    broken = 0
    for seed in range(10):
        for liar in (True, False):
            scn = scenario(seed, [(500.0, seed % 5, "raft")] if liar else [], nodes=5, kinds=(),
                           ops={"read": 0.5, "write": 0.5})
            sim = build_sim(scn, RAFT, RAFT.Params())
            sim.run(until=scn.world.duration_ms)
            _, agreement, lin = judge(sim, REGISTERS)
            bad = agreement["conflicts"] > 0 or lin.ok is False
            if liar:
                broken += bad
            else:
                assert not bad, f"seed {seed}: Raft broken with no liar"
    assert broken >= 5, f"only {broken} of 10 seeds broken"


def test_f_plus_one_liars_break_pbft():
    """The bound made visible: with f + 1 = 2 of 4 replicas (the primary among them) running the
    colluding ``pbft`` strategy, the correct replicas execute different requests at one sequence
    number on most seeds; the observer's log check finds it."""
    broken = 0
    for seed in range(10):
        scn = scenario(seed, [(0.0, 0, "pbft"), (0.0, 1, "pbft")], kinds=())
        sim = build_sim(scn, PBFT, PARAMS)
        sim.run(until=600.0)
        _, agreement, _ = judge(sim, CAS_REGISTERS)
        broken += agreement["conflicts"] > 0
    assert broken >= 5, f"only {broken} of 10 seeds broken"


@pytest.mark.parametrize("protocol,model", [("abd", REGISTERS), ("multipaxos", REGISTERS)])
def test_crash_tolerant_protocols_are_broken_by_their_targeted_liar(protocol, model):
    """ABD adopts the highest tag a replica reports; Multi-Paxos learners trust a decision: one
    node running the protocol's targeted strategy breaks linearizability or log agreement on most
    seeds; the same seeds without it do not."""
    node_cls = get(protocol)
    broken = 0
    for seed in range(8):
        for liar in (True, False):
            scn = scenario(seed, [(300.0, seed % 5, protocol)] if liar else [], nodes=5, kinds=(),
                           duration=1000.0, ops={"read": 0.5, "write": 0.5})
            sim = build_sim(scn, node_cls, node_cls.Params())
            sim.run(until=scn.world.duration_ms)
            _, agreement, lin = judge(sim, model)
            bad = (agreement is not None and agreement["conflicts"] > 0) or lin.ok is False
            if liar:
                broken += bad
            else:
                assert not bad, f"seed {seed}: {protocol} broken with no liar"
    assert broken >= 4, f"only {broken} of 8 seeds broken"


def test_random_nemesis_turns_at_most_f_nodes_byzantine_and_pbft_stays_safe():
    """The random nemesis's ``byzantine`` kind: at most ``max_byzantine`` (default f) nodes turn,
    each with one of ``strategies``; PBFT stays safe over seeds."""
    for seed in range(10):
        scn = ScenarioConfig.model_validate({
            "seed": seed, "world": {"nodes": 4, "duration_ms": 1500},
            "nemesis": {"random": {"kinds": ["byzantine", "partition", "loss"], "interval_ms": 100,
                                   "duration_ms": 80, "stop_ms": 900,
                                   "strategies": ["pbft", "equivocate", "replay"]}},
            "workload": {"clients": 4, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 10, "timeout_ms": 500}})
        sim = build_sim(scn, PBFT, PARAMS)
        sim.run(until=1500.0)
        assert len(sim.byzantine_nodes) == 1, seed
        left, agreement, lin = judge(sim, CAS_REGISTERS)
        assert agreement["conflicts"] == 0 and lin.ok is True, seed


def test_phased_strategy_asks_its_agent_once_per_phase():
    """``phased``: with no agent every answer is honest and PBFT runs as usual; a policy that picks
    each action in turn (drop, delay, equivocate, corrupt) is asked once per held batch, never per
    message, and PBFT stays safe."""
    from envs.world.byzantine import Phased

    for policy in (None, lambda ask: (ask.id % 4) + 1):
        scn = scenario(3, [(100.0, 2, "phased")], kinds=())
        sim = build_sim(scn, PBFT, PARAMS, agents={2: policy} if policy else None)
        asks = []
        if policy:
            sim.agents[2] = lambda ask, asks=asks, policy=policy: asks.append(ask) or policy(ask)
        sim.run(until=scn.world.duration_ms)
        assert isinstance(sim.node(2), Phased)
        left, agreement, lin = judge(sim, CAS_REGISTERS)
        assert agreement["conflicts"] == 0 and lin.ok is True
        assert sum(map(completed, sim.history)) > 50
        if policy:
            kinds = {a.point[1] for a in asks}
            assert {"prepare", "commit"} <= kinds and all(len(a.obs) == len(Phased.PHASES) + 8 for a in asks)
            sends = sum(1 for e in sim.trace.events() if e.kind == "send" and e.node == 2 and e.t > 100)
            assert len(asks) < sends  # one decision per batch, not per message


def test_byzantine_primary_is_replaced_by_a_view_change():
    """A silent primary of view 0: the correct replicas change view and requests complete."""
    scn = scenario(1, [(100.0, 0, "silent")], kinds=())
    sim = build_sim(scn, PBFT, PARAMS)
    sim.run(until=scn.world.duration_ms)
    views = {e.fields["view"] for e in sim.trace.events() if e.kind == "view" and e.node != 0}
    assert views and max(views) >= 1
    after = [op for op in sim.history if op.node != 0 and 800 < op.invoke < 1300]
    assert after and all(map(completed, after))


def test_a_liar_cannot_forge_identity_or_signatures():
    """A strategy's messages carry its true id, and it cannot sign as another node."""
    scn = scenario(0, [(50.0, 1, "equivocate")], kinds=())
    sim = build_sim(scn, PBFT, PARAMS)
    sim.run(until=300.0)
    liar = sim.states[1].ctx
    body = ("prepare", 0, 1, None, 2)
    liar.sign(body)
    assert liar.verify(1, body) and not liar.verify(2, body)
    events = list(sim.trace.events())
    sent_by = {e.fields["mid"]: e.node for e in events if e.kind == "send"}
    from_liar = [e for e in events if e.kind == "recv" and sent_by[e.fields["mid"]] == 1 and e.t > 50.0]
    assert from_liar and all(e.fields["src"] == 1 for e in from_liar)


def test_trace_marks_byzantine_nodes_and_restart_keeps_them():
    scn = ScenarioConfig.model_validate({
        "seed": 3, "world": {"nodes": 4, "duration_ms": 800},
        "nemesis": {"schedule": [{"at_ms": 100, "fault": "byzantine", "node": 2, "strategy": "silent"},
                                 {"at_ms": 300, "fault": "crash", "node": 2},
                                 {"at_ms": 400, "fault": "restart", "node": 2}]},
        "workload": {"clients": 4}})
    sim = build_sim(scn, PBFT, PARAMS)
    sim.run(until=800.0)
    marks = [(e.node, e.fields["strategy"]) for e in sim.trace.events() if e.kind == "byzantine"]
    assert marks == [(2, "silent")]
    assert type(sim.node(2)).__name__ == "Silent"
    assert sim.states[2].sent == sum(1 for e in sim.trace.events() if e.kind == "send" and e.node == 2)
    assert not [e for e in sim.trace.events() if e.kind == "send" and e.node == 2 and e.t > 100.0]


def test_same_seed_same_trace_with_liars():
    for strategy in STRATEGY_NAMES:
        runs = []
        for _ in range(2):
            scn = scenario(4, [(100.0, 1, strategy)])
            sim = build_sim(scn, PBFT, PARAMS)
            sim.run(until=600.0)
            runs.append([tuple(e) for e in sim.trace.raw])
        assert runs[0] == runs[1], strategy


def test_mutate_changes_one_field_but_not_the_type():
    rng = derive_rng(0, "t")
    for body in [("prepare", 0, 3, ("req", 1, 2, "write", None, 7), 1), ("ping",), ("x", [1, 2], {"a": 1})]:
        for _ in range(20):
            m = mutate(body, rng)
            assert m != body
            if len(body) > 1:
                assert m[0] == body[0] and type(m) is type(body)


def test_observer_leaves_out_byzantine_clients():
    scn = scenario(2, [(100.0, 3, "silent")], kinds=())
    sim = build_sim(scn, PBFT, PARAMS)
    sim.run(until=scn.world.duration_ms)
    history, events, left = correct_view(sim.history, list(sim.trace.events()))
    assert left["nodes"] == {"3": "silent"} and left["ops_left_out"] > 0
    assert all(op.node != 3 for op in history) and all(e.node != 3 or e.kind == "byzantine" for e in events)
    assert correct_view(sim.history, [e for e in sim.trace.events() if e.kind != "byzantine"])[2] is None


@pytest.mark.parametrize("fault,why", [
    ({"at_ms": 1, "fault": "byzantine", "node": 0}, "needs a strategy"),
    ({"at_ms": 1, "fault": "byzantine", "node": 0, "strategy": "lie"}, "unknown Byzantine strategy"),
    ({"at_ms": 1, "fault": "crash", "node": 0, "strategy": "silent"}, "only a byzantine fault"),
])
def test_bad_byzantine_faults_are_one_line_errors(fault, why):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        ScenarioConfig.model_validate({"nemesis": {"schedule": [fault]}})
    assert why in error_line(e.value)


def _byz(strategy, **options):
    return {"at_ms": 1, "fault": "byzantine", "node": 0, "strategy": strategy, "options": options}


@pytest.mark.parametrize("fault,line", [
    (_byz("pbft", bogus=1), "nemesis.schedule.0.options.bogus: unknown option of the pbft strategy"),
    (_byz("pbft", p=0.5), "nemesis.schedule.0.options.p: unknown option"),
    (_byz("random-fields", p=2), "nemesis.schedule.0.options.p: Input should be less than or equal to 1"),
    (_byz("replay", p=-0.1), "nemesis.schedule.0.options.p: Input should be greater than or equal to 0"),
    (_byz("delay", delay_ms=-50), "nemesis.schedule.0.options.delay_ms: Input should be greater than or equal"),
    (_byz("delay", p=0.5), "nemesis.schedule.0.options.p: unknown option of the delay strategy (it takes delay_ms)"),
    (_byz("raft", rounds=0), "nemesis.schedule.0.options.rounds: Input should be greater than or equal to 1"),
    (_byz("raft", extra=2.5), "nemesis.schedule.0.options.extra: Input should be a valid integer"),
    (_byz("raft", period_ms=0), "nemesis.schedule.0.options.period_ms: Input should be greater than 0"),
    (_byz("phased", delay_ms=-1), "nemesis.schedule.0.options.delay_ms"),
    (_byz("phased", collude="maybe"), "nemesis.schedule.0.options.collude"),
])
def test_bad_strategy_options_name_the_option(fault, line):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        ScenarioConfig.model_validate({"nemesis": {"schedule": [fault]}})
    assert error_line(e.value).startswith(line), error_line(e.value)


def test_strategy_options_are_each_strategys_own_and_reach_it():
    """Good options validate (values converted: "0.2" -> 0.2, 5.0 -> 5) and are what the strategy
    reads (``self.opts``, its ``Options``); unset ones take the strategy's defaults."""
    from envs.world.byzantine import STRATEGIES

    scn = ScenarioConfig.model_validate({"nemesis": {"schedule": [
        _byz("random-fields", p="0.2"), _byz("raft", extra=7.0, rounds=2), _byz("phased", collude=True)]}})
    assert [f.options for f in scn.nemesis.schedule] == [{"p": 0.2}, {"extra": 7, "rounds": 2}, {"collude": True}]
    raft = STRATEGIES["raft"](None, {}, 0, 0, **scn.nemesis.schedule[1].options)
    assert (raft.opts.extra, raft.opts.rounds, raft.opts.period_ms) == (7, 2, 40.0)
    assert STRATEGIES["phased"](None, {}, 0, 0, collude=True).n_choices == 6
    assert STRATEGIES["delay"](None, {}, 0, 0).opts.delay_ms == 200.0
    with pytest.raises(ValueError):  # Sim.byzantine(node, strategy, **options) is checked too
        STRATEGIES["delay"](None, {}, 0, 0, delay_ms=-1)
    from experiments.list_cmd import nemesis

    assert "raft (extra=5 rounds=5 period_ms=40.0)" in nemesis()["byzantine options"]  # capgym list nemesis


def test_max_byzantine_above_the_nodes_is_a_one_line_error():
    from pydantic import ValidationError

    ok = {"kinds": ["byzantine"], "max_byzantine": 4}
    ScenarioConfig.model_validate({"world": {"nodes": 4}, "nemesis": {"random": ok}})
    with pytest.raises(ValidationError) as e:
        ScenarioConfig.model_validate({"world": {"nodes": 4}, "nemesis": {"random": {**ok, "max_byzantine": 9}}})
    assert error_line(e.value).startswith("nemesis.random.max_byzantine: 9 Byzantine nodes of 4 nodes")


def test_replies_beyond_the_nodes_is_a_one_line_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        ScenarioConfig.model_validate({"world": {"nodes": 4}, "workload": {"replies": 5}})
    assert error_line(e.value).startswith("workload.replies: 5 matching replies from 4 nodes")


def test_cli_runs_the_byzantine_configs_and_rejects_bad_ones(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "experiments.cli", "run", str(ROOT / "configs" / "byzantine_raft.yaml"),
           "world.duration_ms=1500", "wandb.mode=disabled", f"output.root={tmp_path}"]
    r = subprocess.run(cmd + ["nemesis.schedule.0.strategy=lie"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "strategy" in r.stderr
    for bad, key in (("nemesis.schedule.0.options.bogus=1", "nemesis.schedule.0.options.bogus"),
                     ("nemesis.random.max_byzantine=9", "nemesis.random.max_byzantine")):
        r = subprocess.run(cmd + [bad], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
        assert key in r.stderr and "Traceback" not in r.stderr
    # (the live runtime runs Byzantine nodes and f+1 clients too: tests/test_live_byzantine.py)


DETERMINISM = r"""
import hashlib, io, sys
from agents.protocols import get
from envs.world import sim as simmod
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.records import history_to_jsonl
P = get("pbft")
for seed in (0, 1):
    for strategy in ("pbft", "equivocate", "replay"):
        scn = ScenarioConfig.model_validate({
            "seed": seed, "world": {"nodes": 4, "duration_ms": 800, "network": {"loss": 0.05}},
            "nemesis": {"schedule": [{"at_ms": 50, "fault": "byzantine", "node": seed, "strategy": strategy}],
                        "random": {"kinds": ["partition", "crash", "clock"], "interval_ms": 150, "duration_ms": 100}},
            "workload": {"clients": 4, "think_ms": 5, "replies": 1 + seed}})
        sim = build_sim(scn, P, P.Params(checkpoint_period=4))
        sim.run(until=800.0)
        buf = io.StringIO()
        sim.trace.write_jsonl(buf)
        print(seed, strategy, hashlib.sha256((buf.getvalue() + history_to_jsonl(sim.history)).encode()).hexdigest())
"""


def test_pbft_with_liars_same_trace_in_both_cores_and_across_processes():
    """Byte-identical traces from the compiled and the pure core, in fresh interpreters with
    different hash seeds (nothing depends on set order or Python's string hashing)."""
    import os

    outs = []
    for pure, hashseed in ((False, "1"), (True, "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hashseed}
        env.pop("CAPGYM_PURE", None)
        if pure:
            env["CAPGYM_PURE"] = "1"
        r = subprocess.run([sys.executable, "-c", DETERMINISM], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.splitlines())
    assert len(outs[0]) == 6 and outs[0] == outs[1]


def test_a_run_whose_every_node_lies_has_nothing_to_judge(tmp_path):
    """Every replica Byzantine: the correct clients made no operation, and the liars' clients'
    writes are of unknown outcome. That is not a linearizable history but no history at all to
    judge: the verdict is not_applicable, with the reason (it said linearizable: true)."""
    import json

    from experiments.cli import main

    sched = "[" + ", ".join(f"{{at_ms: 0, fault: byzantine, node: {i}, strategy: silent}}" for i in range(4)) + "]"
    assert main(["run", str(ROOT / "configs" / "pbft.yaml"), "world.duration_ms=800", f"nemesis.schedule={sched}",
                 "output.plots=false", "output.report=none", "wandb.mode=disabled", f"output.root={tmp_path}",
                 "-q"]) == 0
    (summary,) = tmp_path.glob("*/*/summary.json")
    run = json.loads(summary.read_text())["runs"]["pbft"]
    assert run["linearizability_verdict"] == "not_applicable", run["linearizability_verdict"]
    assert "nothing was observed to judge" in run["linearizability"]["why"]


def test_a_conflicting_no_op_is_named_not_shown_as_a_missing_entry():
    """The first conflict's values: Raft's no-op (and PBFT's null request) hold the command None,
    which printed as "None", read as "no entry"."""
    from envs.world.records import Event

    evs = [Event("commit", 0, 1.0, 1.0, 0, (), {"index": 3, "cmd": None}),
           Event("commit", 1, 1.0, 1.0, 0, (), {"index": 3, "cmd": ("write", 7)})]
    first = log_agreement(evs)["first_conflict"]
    assert first["position"] == 3
    assert first["values"] == {"0": "None (a no-op: Raft's new-leader entry or PBFT's null request)",
                               "1": "('write', 7)"}
