"""The world's guarantees, over many seeds: clocks (Lamport, vector, physical), partitions, crashes,
determinism. Happens-before is computed here independently of the runtime, as the transitive
closure of process order and send -> receive edges of the recorded trace."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import ValidationError

from envs.world.build import build_sim
from envs.world.clock import Clock
from envs.world.config import ScenarioConfig, error_line
from envs.world.network import Network, partition_shape
from envs.world.node import Node
from envs.world.records import Op
from envs.world.sim import Sim


class Chatter(Node):
    """Sends to random peers on a timer and sometimes forwards what it receives."""

    def on_start(self, ctx):
        self.volatile = 0
        ctx.durable["starts"] = ctx.durable.get("starts", 0) + 1
        ctx.set_timer("talk", ctx.rng.uniform(1, 10))

    def on_timer(self, ctx, name):
        self.volatile += 1
        if ctx.peers:
            ctx.send(ctx.rng.choice(ctx.peers), ("hello", self.volatile))
        ctx.set_timer("talk", ctx.rng.uniform(1, 10))

    def on_message(self, ctx, src, body):
        self.volatile += 1
        if ctx.rng.random() < 0.3 and ctx.peers:
            ctx.send(ctx.rng.choice(ctx.peers), ("fwd", body[1]))

    def on_client(self, ctx, op):
        ctx.reply(op, "ok", self.volatile)


def scenario(seed, nodes=4, duration=300.0, kinds=("partition", "crash", "pause", "slow", "clock", "loss"), **kw):
    return ScenarioConfig.model_validate({
        "seed": seed,
        "world": {"nodes": nodes, "duration_ms": duration, "network": {"latency": {"dist": "exponential", "mean": 3}},
                  **kw.get("world", {})},
        "nemesis": {"random": {"kinds": list(kinds), "interval_ms": 40, "duration_ms": 30}},
        "workload": {"clients": 2, "think_ms": 5, "timeout_ms": 50},
    })


def run(seed, **kw):
    scn = scenario(seed, **kw)
    sim = build_sim(scn, Chatter)
    sim.run(until=scn.world.duration_ms)
    return sim


def happens_before(events):
    """Reachability over process order and message edges (indices into ``events``, node events only)."""
    idx = [i for i, e in enumerate(events) if e.node is not None]
    pos = {i: k for k, i in enumerate(idx)}
    succ = {i: [] for i in idx}
    last = {}
    send_of = {}
    for i in idx:
        e = events[i]
        if e.node in last:
            succ[last[e.node]].append(i)
        last[e.node] = i
        if e.kind == "send":
            send_of[e.fields["mid"]] = i
        elif e.kind == "recv" and e.fields["mid"] in send_of:
            succ[send_of[e.fields["mid"]]].append(i)
    # successors only point forward in trace order, so a reverse sweep computes reachability sets
    reach = [0] * len(idx)
    for i in reversed(idx):
        r = 0
        for j in succ[i]:
            r |= (1 << pos[j]) | reach[pos[j]]
        reach[pos[i]] = r
    return idx, pos, reach


def vc_less(a, b):
    return all(x <= y for x, y in zip(a, b)) and a != b


@pytest.mark.parametrize("seed", range(12))
def test_lamport_and_vector_clocks_match_happens_before(seed):
    sim = run(seed, nodes=3 + seed % 3, duration=120.0)
    events = list(sim.trace.events())
    idx, pos, reach = happens_before(events)
    assert len(idx) > 50
    for a in idx:
        ra = reach[pos[a]]
        ea = events[a]
        for b in idx:
            if a == b:
                continue
            eb = events[b]
            hb = bool(ra >> pos[b] & 1)
            # Lamport clock condition: e -> f implies L(e) < L(f)
            if hb:
                assert ea.lamport < eb.lamport, (seed, ea, eb)
            # vector clocks: e -> f exactly when VC(e) < VC(f)
            assert vc_less(ea.vc, eb.vc) == hb, (seed, ea, eb)


@pytest.mark.parametrize("seed", range(40))
def test_no_message_crosses_a_standing_cut(seed):
    sim = run(seed, kinds=("partition",), nodes=5)
    cuts = set()
    cut_at_send = {}
    crossed_reverse = 0
    one_way = False
    for e in sim.trace.events():
        if e.kind == "partition":
            cuts = {tuple(c) for c in e.fields["cuts"]}
            one_way = any((b, a) not in cuts for a, b in cuts)
        elif e.kind == "heal":
            cuts = set()
        elif e.kind == "send":
            cut_at_send[e.fields["mid"]] = (e.node, e.fields["dst"]) in cuts
        elif e.kind == "recv":
            link = (e.fields["src"], e.node)
            assert link not in cuts, f"seed {seed}: message {e.fields['mid']} delivered across a standing cut"
            assert not cut_at_send[e.fields["mid"]], f"seed {seed}: message sent into a cut was delivered"
            if one_way and (e.node, e.fields["src"]) in cuts:
                crossed_reverse += 1
    assert sim.dropped > 0


def test_one_way_cut_blocks_one_direction_only():
    sim = Sim(2, Chatter, seed=1)
    sim.start()
    sim.set_cuts({(0, 1)}, "one-way")
    sim.run(until=200)
    recvs = [e for e in sim.trace.events() if e.kind == "recv"]
    assert recvs and all(e.node == 0 for e in recvs)  # 1 -> 0 still flows, 0 -> 1 never


def test_hold_partitioned_delivers_after_heal():
    net = Network(range(2), seed=0, latency={"dist": "constant", "ms": 1}, hold_partitioned=True)
    sim = Sim(2, Chatter, seed=1, network=net)
    sim.start()
    sim.set_cuts({(0, 1), (1, 0)}, "halves")
    sim.run(until=100)
    assert sim.delivered == 0 and sim.dropped == 0
    sim.call_at(100, sim.heal)
    sim.run(until=103)
    assert sim.delivered > 0
    assert all(e.t >= 100 for e in sim.trace.events({"recv"}))


@pytest.mark.parametrize("drift", [-0.5, -0.1, 0.0, 1e-4, 0.2, 1.0])
@pytest.mark.parametrize("d", [1.0, 37.5, 1000.0])
def test_timer_fires_after_d_over_one_plus_r(drift, d):
    fired = []

    class T(Node):
        def on_start(self, ctx):
            ctx.set_timer("x", d)

        def on_timer(self, ctx, name):
            fired.append(sim.now)

    sim = Sim(1, T, clocks=[Clock(offset=123.0, drift=drift)])
    sim.run(until=10 * d)
    assert fired == [pytest.approx(d / (1 + drift))]


def test_clock_bump_moves_pending_timers():
    fired = []

    class T(Node):
        def on_start(self, ctx):
            ctx.set_timer("x", 100)

        def on_timer(self, ctx, name):
            fired.append(sim.now)

    sim = Sim(1, T)
    sim.start()
    sim.call_at(10, sim.clock_bump, 0, 50.0)  # clock jumps ahead: the timer is due 50 ms early
    sim.run(until=500)
    assert fired == [pytest.approx(50.0)]


def test_ctx_never_sees_true_time_but_its_own_clock():
    seen = []

    class T(Node):
        def on_start(self, ctx):
            ctx.set_timer("x", 10)

        def on_timer(self, ctx, name):
            seen.append(ctx.now())

    sim = Sim(1, T, clocks=[Clock(offset=1000.0, drift=0.5)])
    sim.run(until=100)
    assert seen == [pytest.approx(1010.0)]
    assert not hasattr(sim.states[0].ctx, "sim") and "now" not in vars(type(sim.states[0].ctx)).get("__slots__", ())


@pytest.mark.parametrize("seed", range(25))
def test_crashed_node_handles_nothing_and_loses_volatile_state(seed):
    sim = run(seed, kinds=("crash",), nodes=3)
    down = set()
    crashes = 0
    for e in sim.trace.events():
        if e.node is None:
            continue
        if e.kind == "crash":
            down.add(e.node)
            crashes += 1
        elif e.kind == "start":
            down.discard(e.node)
        else:
            assert e.node not in down, f"seed {seed}: crashed node {e.node} handled {e.kind}"
    assert crashes > 0
    for i in range(3):
        node = sim.node(i)
        starts = sim.states[i].durable["starts"]
        assert starts >= 1
        if node is not None and starts > 1:
            # volatile state restarted from zero, so it is smaller than the total work of the node
            assert node.volatile < sum(1 for e in sim.trace.events({"timer", "recv"}) if e.node == i)


def test_crash_and_restart_volatile_and_durable():
    sim = Sim(1, Chatter, seed=0)
    sim.run(until=100)
    before = sim.node(0).volatile
    assert before > 0
    sim.crash(0)
    assert sim.node(0) is None
    sim.run(until=200)
    assert sim.events and not any(e.kind == "timer" and e.t > 100 for e in sim.trace.events())
    sim.restart(0)
    assert sim.node(0).volatile == 0 and sim.states[0].durable["starts"] == 2


def test_pause_queues_events_until_resume():
    sim = Sim(2, Chatter, seed=4)
    sim.start()
    sim.call_at(20, sim.pause, 1)
    sim.call_at(80, sim.resume, 1)
    sim.run(until=200)
    ev1 = [e for e in sim.trace.events() if e.node == 1 and e.kind in ("recv", "timer")]
    assert not [e for e in ev1 if 20 < e.t < 80]
    assert [e for e in ev1 if e.t == 80.0], "queued events are handled at resume"


def test_client_at_crashed_node_fails_and_unanswered_is_unknown():
    class Silent(Node):
        def on_client(self, ctx, op):
            pass

    sim = Sim(2, Silent)
    sim.start()
    sim.crash(1)
    a, b = Op(id=0, process=0, f="read", node=1), Op(id=1, process=1, f="read", node=0)
    sim.submit(a)
    sim.submit(b)
    sim.call_at(30, sim.timeout, 1)
    sim.run(until=100)
    assert a.status == "fail" and a.complete == 0.0
    assert b.status == "unknown" and b.complete is None


def trace_bytes(sim):
    buf = io.StringIO()
    sim.trace.write_jsonl(buf)
    return buf.getvalue()


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_same_seed_same_trace_other_seed_other_trace(seed):
    a, b, c = run(seed), run(seed), run(seed + 100)
    ta, tb, tc = trace_bytes(a), trace_bytes(b), trace_bytes(c)
    assert ta == tb and len(ta) > 1000
    assert ta != tc
    assert [o.to_dict() for o in a.history] == [o.to_dict() for o in b.history]


def test_shiviz_log_is_well_formed():
    sim = run(3, nodes=3, duration=60.0)
    buf = io.StringIO()
    sim.trace.write_shiviz(buf)
    lines = buf.getvalue().split("\n")
    assert lines[0].startswith("(?<event>") and lines[1] == ""
    body = lines[2:-1]
    assert len(body) % 2 == 0 and body
    last = {}
    for text, stamp in zip(body[0::2], body[1::2]):
        host, clock = stamp.split(" ", 1)
        vc = json.loads(clock)
        # ShiViz requires each host's own entry to grow by exactly one per event
        assert vc[host] == last.get(host, 0) + 1, (text, stamp)
        last[host] = vc[host]


def test_partition_shapes():
    import random

    nodes = list(range(7))
    for seed in range(20):
        rng = random.Random(seed)
        ring = partition_shape("majorities-ring", nodes, rng)
        views = []
        for x in nodes:
            sees = {y for y in nodes if (x, y) not in ring}
            assert len(sees) > len(nodes) // 2  # every node sees a majority (itself included)
            views.append(frozenset(sees))
        assert len(set(views)) == len(nodes)  # and no two see the same one
        iso = partition_shape("isolate", nodes, rng, node=3)
        assert iso == {(3, y) for y in nodes if y != 3} | {(y, 3) for y in nodes if y != 3}
        maj = partition_shape("majority", nodes, rng)
        minority = {x for x in nodes if sum((x, y) in maj for y in nodes) == 4}
        assert len(minority) == 3
        ow = partition_shape("one-way", nodes, rng)
        assert ow and all((b, a) not in ow for a, b in ow)
        br = partition_shape("bridge", nodes, rng)
        assert any(all((x, y) not in br and (y, x) not in br for y in nodes) for x in nodes)  # the bridge


BAD = [
    ({"world": {"nodes": 3, "bogus": 1}}, "world.bogus: unknown key"),
    ({"world": {"network": {"latency": {"dist": "constant", "ms": -5}}}}, "world.network.latency.ms"),
    ({"world": {"network": {"loss": 1.5}}}, "world.network.loss"),
    ({"world": {"nodes": 3}, "nemesis": {"schedule": [{"at_ms": 1, "fault": "crash", "node": 9}]}},
     "nemesis.schedule.0.node: node 9 does not exist"),
    ({"world": {"nodes": 3}, "nemesis": {"schedule": [{"at_ms": 1, "fault": "partition", "groups": [[0], [5]]}]}},
     "nemesis.schedule.0.groups"),
    ({"nemesis": {"random": {"kinds": ["meteor"]}}}, "nemesis.random.kinds.0"),
    ({"nemesis": {"random": {"interval_ms": 10, "duration_ms": 50}}}, "duration_ms must be <= interval_ms"),
    ({"world": {"nodes": 0}}, "world.nodes"),
    ({"world": {"duration_ms": -1}}, "world.duration_ms"),
    ({"workload": {"ops": {"delete": 1}}}, "unknown operation 'delete'"),
    ({"world": {"network": {"latency": {"dist": "gaussian"}}}}, "world.network.latency.dist"),
]


@pytest.mark.parametrize("cfg,expected", BAD)
def test_bad_scenario_config_names_the_key(cfg, expected):
    with pytest.raises(ValidationError) as ei:
        ScenarioConfig.model_validate(cfg)
    line = error_line(ei.value)
    assert "\n" not in line and expected in line, line


def test_without_message_records_the_run_is_the_same():
    scn = scenario(5)
    full = build_sim(scn, Chatter)
    lean = build_sim(scn, Chatter, full_trace=False)
    full.run(until=scn.world.duration_ms)
    lean.run(until=scn.world.duration_ms)
    assert [o.to_dict() for o in full.history] == [o.to_dict() for o in lean.history]
    sends = [0] * scn.world.nodes
    for e in full.trace.events({"send"}):
        sends[e.node] += 1
    assert full.sent_counts() == sends == lean.sent_counts()
    assert not any(r[0] in ("send", "recv", "timer", "client", "reply") for r in lean.trace.raw)
    assert any(r[0] == "timer" for r in full.trace.raw)
    with pytest.raises(RuntimeError, match="full_trace"):
        lean.trace.vclock(0)


def test_clients_time_out_exactly_at_their_deadline():
    class Slow(Node):
        """Answers even-numbered operations at once and never the odd ones."""

        def on_client(self, ctx, op):
            if op.id % 2 == 0:
                ctx.reply(op, "ok", None)

    scn = ScenarioConfig.model_validate({"seed": 2, "world": {"nodes": 3, "duration_ms": 2000, "client_latency_ms": 0},
                                         "workload": {"clients": 4, "timeout_ms": 70, "think_ms": 3}})
    sim = build_sim(scn, Slow)
    sim.run(until=2000)
    done = [op for op in sim.history if op.invoke < 1800 - 70]
    assert len(done) > 50
    for op in done:
        if op.id % 2 == 0:
            assert op.status == "ok" and op.complete == op.invoke
        else:
            assert op.status == "unknown" and op.complete is None
    # the client waited exactly its timeout before its next operation
    by_client = {}
    for op in sorted(sim.history, key=lambda o: o.invoke):
        by_client.setdefault(op.process, []).append(op)
    gaps = [b.invoke - a.invoke for ops in by_client.values() for a, b in zip(ops, ops[1:]) if a.id % 2]
    assert gaps and min(gaps) >= 70 - 1e-9
