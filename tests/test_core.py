"""The compiled core (``envs/world/_core.pyx``) and the pure-Python one (``envs/world/_pycore.py``)
are the same simulator: every protocol, under random partitions, crashes, pauses, slow nodes, clock
faults (bump, strobe, drift), loss, duplication and held messages, gives byte-identical traces and
histories in both. Each side runs in its own interpreter (``CAPGYM_PURE=1`` picks the pure one)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs.world import _pycore
from envs.world import sim as simmod

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import hashlib, io, sys
from agents import protocols
from envs.world import sim as simmod
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.records import history_to_jsonl

seeds = [int(x) for x in sys.argv[1].split(",")]
print("compiled" if simmod.COMPILED else "pure")
for name in ["abd", "eventual", "raft", "paxos", "multipaxos", "benor", "primary_backup", "gossip", "echo"]:
    cas = name in ("raft", "multipaxos", "primary_backup")
    ops = {"read": 0.4, "write": 0.4, "cas": 0.2} if cas else {"read": 0.5, "write": 0.5}
    for seed in seeds:
        for variant in range(3):
            world = {"nodes": 3 + seed % 3, "duration_ms": 1200,
                     "network": {"loss": 0.03, "duplicate": 0.03, "hold_partitioned": variant == 1},
                     "clocks": {"max_offset_ms": 50, "max_drift": 0.05, "jitter_ms": 0.5},
                     "processing_ms": 0.05 if variant == 2 else 0.0}
            nem = {"random": {"kinds": ["partition", "crash", "pause", "slow", "clock", "loss"],
                              "interval_ms": 150, "duration_ms": 120,
                              "lose_unsynced": variant == 2}} if variant else {}
            scn = ScenarioConfig.model_validate({
                "seed": seed, "world": world, "nemesis": nem,
                "workload": {"clients": 3, "ops": ops, "timeout_ms": 200, "think_ms": 5},
            })
            cls = protocols.get(name)
            sim = build_sim(scn, cls, cls.Params() if getattr(cls, "Params", None) else None,
                            full_trace=variant != 2 or seed % 2 == 0)
            sim.run(until=scn.world.duration_ms / 2)
            sim.run(until=scn.world.duration_ms, max_events=10**9)
            buf = io.StringIO()
            sim.trace.write_jsonl(buf)
            text = buf.getvalue() + history_to_jsonl(sim.history) + repr(sorted(sim.stats().items()))
            text += repr(sim.sent_counts()) + repr(sim.next_time())
            print(name, seed, variant, len(sim.trace), hashlib.sha256(text.encode()).hexdigest())
"""


def run(pure: bool, seeds: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "CAPGYM_PURE"}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env["CAPGYM_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", SCRIPT, seeds], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


needs_core = pytest.mark.skipif(not simmod.COMPILED and not os.environ.get("CAPGYM_REQUIRE_CORE"),
                                reason="the compiled core is not built")


def test_compiled_core_is_in_use_when_required():
    """``make test`` sets CAPGYM_REQUIRE_CORE: a build that silently fell back would be slow."""
    if os.environ.get("CAPGYM_REQUIRE_CORE") and not os.environ.get("CAPGYM_PURE"):
        assert simmod.COMPILED, "the compiled core (envs/world/_core) did not build or import"


@needs_core
def test_core_kinds_match():
    from envs.world import _core

    assert (_core.MSG, _core.TIMER, _core.CLIENT, _core.DECISION, _core.CALL) == (
        _pycore.MSG, _pycore.TIMER, _pycore.CLIENT, _pycore.DECISION, _pycore.CALL)


def _compare(seeds: str) -> None:
    fast, pure = run(False, seeds), run(True, seeds)
    assert fast[0] == "compiled" and pure[0] == "pure"
    assert len(fast) == len(pure) > 1
    assert all(int(line.split()[3]) > 0 for line in fast[1:])
    diff = [(a, b) for a, b in zip(fast[1:], pure[1:]) if a != b]
    assert not diff, f"compiled and pure cores differ on {len(diff)} runs, first: {diff[0]}"


@needs_core
def test_compiled_and_pure_cores_give_identical_traces():
    _compare("1,2")


@needs_core
@pytest.mark.slow
def test_compiled_and_pure_cores_give_identical_traces_many_seeds():
    _compare(",".join(str(s) for s in range(3, 23)))


def test_pure_core_runs_a_world():
    """The fallback alone (no compiler on the machine) runs a protocol end to end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPGYM_PURE": "1"}
    code = ("from envs.world import sim; assert not sim.COMPILED\n"
            "class P(sim.Node):\n"
            "    def on_start(self, ctx): ctx.broadcast(('ping',))\n"
            "    def on_message(self, ctx, src, body): ctx.send(src, body)\n"
            "s = sim.Sim(3, P); print(s.run(until=50.0), s.delivered > 100)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["until", "True"]


def test_a_core_older_than_its_source_is_stale(tmp_path):
    src, built = tmp_path / "_core.pyx", tmp_path / "_core.so"
    src.write_text("x")
    built.write_text("y")
    os.utime(src, (1000, 1000))
    os.utime(built, (2000, 2000))
    assert not simmod.core_is_stale(str(src), str(built))
    os.utime(src, (3000, 3000))
    assert simmod.core_is_stale(str(src), str(built))
    assert not simmod.core_is_stale(str(tmp_path / "missing.pyx"), str(built))
    assert not simmod.core_is_stale(str(src), None)


BAD_SEND = """
import sys
from envs.world import sim

class B(sim.Node):
    def on_start(self, ctx):
        ctx.send(int(sys.argv[1]), ("x",))

try:
    sim.Sim(3, B).run(until=5.0)
except ValueError as e:
    print(e)
"""


@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("dst", [3, -1, 99])
def test_sending_to_a_node_that_does_not_exist_is_a_clear_error(pure, dst):
    """Not a crash, not a wrapped index: both cores refuse the destination when it is sent to."""
    env = {k: v for k, v in os.environ.items() if k != "CAPGYM_PURE"}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env["CAPGYM_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", BAD_SEND, str(dst)], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"send: there is no node {dst} (nodes are 0..2)"


@pytest.mark.parametrize("node", [-1, 3])
def test_an_event_for_a_node_that_does_not_exist_is_refused(node):
    from envs.world.sim import TIMER, Sim

    sim = Sim(3, simmod.Node)
    with pytest.raises(ValueError, match=f"no node {node}"):
        sim.push(1.0, TIMER, node, ("t", 0))
    assert sim.pending_events() == 0


ASK_AT_START = """
from envs.world import sim

class A(sim.Node):
    def on_start(self, ctx):
        ctx.ask(("first", 0), default=0)

s = sim.Sim(3, A, agents=dict.fromkeys(range(3), sim.EXTERNAL))
print(sim.COMPILED, s.run(until=100.0), s.now, len(s.pending))
"""


@pytest.mark.parametrize("pure", [False, True])
def test_a_decision_owed_with_nothing_else_pending_stops_the_run(pure):
    """Every node asks in ``on_start`` and schedules nothing: the run stops with ``"ask"`` at time 0,
    not ``"idle"`` at ``until`` (Consensus-v0 without faults began its episodes at the horizon)."""
    env = {k: v for k, v in os.environ.items() if k != "CAPGYM_PURE"}
    env["PYTHONPATH"] = str(ROOT)
    if pure:
        env["CAPGYM_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", ASK_AT_START], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    compiled, reason, now, owed = out.stdout.split()
    assert (reason, float(now), int(owed)) == ("ask", 0.0, 3)
    assert compiled == ("False" if pure else str(simmod.COMPILED))
