"""Same seed, same trace, across processes: two interpreters with different hash seeds (so any
iteration over a set of strings would differ) produce byte-identical histories and traces for every
protocol under random faults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import hashlib, io, sys
from agents import protocols
from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.records import history_to_jsonl

name, seed = sys.argv[1], int(sys.argv[2])
cas = name in ("raft", "multipaxos", "primary_backup")
ops = {"read": 0.4, "write": 0.4, "cas": 0.2} if cas else {"read": 0.5, "write": 0.5}
scn = ScenarioConfig.model_validate({
    "seed": seed,
    "world": {"nodes": 5, "duration_ms": 1500, "network": {"loss": 0.02, "duplicate": 0.02}},
    "nemesis": {"random": {"kinds": ["partition", "crash", "pause", "slow", "clock", "loss"],
                           "interval_ms": 200, "duration_ms": 150}},
    "workload": {"clients": 3, "ops": ops, "timeout_ms": 200, "think_ms": 10},
})
cls = protocols.get(name)
sim = build_sim(scn, cls, cls.Params() if getattr(cls, "Params", None) else None)
sim.run(until=scn.world.duration_ms)
buf = io.StringIO()
sim.trace.write_jsonl(buf)
h = hashlib.sha256((buf.getvalue() + history_to_jsonl(sim.history)).encode()).hexdigest()
print(h, len(sim.trace), len(sim.history))
"""

PROTOCOLS = ["abd", "eventual", "raft", "paxos", "multipaxos", "benor", "primary_backup", "gossip"]


def run(name, seed, hashseed):
    env = {**os.environ, "PYTHONHASHSEED": str(hashseed), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, name, str(seed)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("name", PROTOCOLS)
def test_same_seed_same_trace_in_another_process(name):
    a = run(name, 7, 1)
    b = run(name, 7, 2)
    c = run(name, 8, 1)
    assert int(a[1]) > 100, a
    assert a == b, f"{name}: the trace depends on the interpreter's hash seed"
    assert a[0] != c[0], f"{name}: another seed gave the same trace"
