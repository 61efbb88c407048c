"""How a run's cost grows with its size: ABD and the eventual store at 5-300 nodes, gossip at 1,000
and 5,000, Register-v0's decisions per second at 5-500 agents.

Each size runs in its own process (so its peak memory is its own) through the same stages as
``capgym run``: simulate (the sim's loop), trace (streaming it to ``trace.parquet``), measures
(the summary without the linearizability search, and the time series), checks (linearizability:
Gibbons-Korach zones or Wing-Gong-Lowe, as ``metrics.linearizability.check`` picks) and plots
(timeline and latency). Per size it prints the trace's events, wall time per stage, events/s over
all stages and the process's peak resident memory, overall (``peak MB``), up to the end of the
simulation (``sim MB``) and during the measures alone (``meas MB``: Linux's ``VmHWM``, reset after the
simulation through ``/proc/self/clear_refs``; ``-`` where that cannot be done), and how much the
measures added to what the process held when they began (``meas +MB``). Register-v0's
decisions per second (Parallel API, random legal actions, faults on) are printed with the
decision window at 0 and at 50 ms, and at 50 ms with ABD's register kept by ``REPLICAS`` replicas
(``protocol_params.replicas``; the other agents coordinate as ABD's clients): with every agent a
replica an ABD operation costs messages to every agent (about 140 a decision at 100 agents with
random actions, ~5 us each in plain Python), so decisions/s falls with n; with a fixed replica
group it does not.

The scenario is ``configs/abd.yaml``'s (random partitions, crashes, pauses, loss and clock faults
every 2 s) with 10 closed-loop clients at every size. ABD's messages grow with n per operation and
with n^2 for heartbeats (every node to every node each 100 ms), so the simulated time shrinks as
n grows (``SIZES`` states it per size: 30 s at 5 nodes, 6 s at 25, 1 s at 100, 0.3 s at 300; the
eventual store 60, 20, 4 and 1.5 s), so that every size has a few hundred thousand events and the
per-event cost is what is compared. Gossip (``configs/gossip.yaml``, fanout 2 every 50 ms) runs
1,000 and 5,000 nodes for 1 s of simulated time each (its messages carry every value a peer may
lack and each node records an ``apply`` per value, so its cost per event grows with the run's
writes: the same simulated time keeps the two sizes comparable). Imports (pyarrow, matplotlib) are made
before the clock starts: they cost the same at every size.

    python benchmarks/scaling.py [--quick]

Ends with ``ratio: <events/s at the largest size over events/s at 5 nodes>`` for the protocol
where it is lowest (each protocol's is printed above it; gossip's base is its 1,000-node run).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 10
#: (protocol, config, nodes, simulated ms)
SIZES = [
    ("abd", "abd", 5, 30000), ("abd", "abd", 25, 6000), ("abd", "abd", 100, 1000), ("abd", "abd", 300, 300),
    ("eventual", "eventual", 5, 60000), ("eventual", "eventual", 25, 20000), ("eventual", "eventual", 100, 4000),
    ("eventual", "eventual", 300, 1500),
    ("gossip", "gossip", 1000, 1000), ("gossip", "gossip", 5000, 1000),
]
QUICK = [("abd", "abd", 5, 4000), ("abd", "abd", 25, 1000), ("gossip", "gossip", 1000, 200)]
AGENTS = [5, 25, 100, 500]
#: the Parallel API's decision window of the second Register-v0 column (``decision_window_ms``)
WINDOW_MS = 50.0
#: the replica group of the third Register-v0 column (``protocol_params.replicas``)
REPLICAS = 5


def _reset_peak() -> bool:
    """Reset the process's peak resident memory (Linux: ``VmHWM``, by writing 5 to
    ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb(field: str = "VmHWM") -> float | None:
    """The process's peak resident memory since the last :func:`_reset_peak` (MB), from ``VmHWM``
    (``field="VmRSS"``: the resident memory now)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def one(protocol: str, config: str, nodes: int, ms: int) -> dict:
    """Run one size through every stage; returns its figures."""
    from experiments import plots, runner
    from experiments.config import load_config

    cfg = load_config(str(ROOT / "configs" / f"{config}.yaml"),
                      [f"world.nodes={nodes}", f"world.duration_ms={ms}", f"workload.clients={CLIENTS}",
                       "wandb.mode=disabled"])
    (entry,) = cfg.entries()
    import pyarrow.compute  # noqa: F401  (one-time costs, the same at every size)
    import pyarrow.parquet  # noqa: F401

    plots.pyplot()
    out: dict = {"protocol": protocol, "nodes": nodes, "sim_ms": ms}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        d = runner.simulate(cfg, entry, progress=False, trace_path=Path(tmp) / "trace.parquet")
        wall = time.perf_counter() - t0
        out["trace_s"] = d.stats["trace_s"]
        out["simulate_s"] = wall - out["trace_s"]
        out["events"] = len(d.events)
        out["simulate_peak_mb"] = _peak_mb()
        resettable = _reset_peak()
        rss0 = _peak_mb("VmRSS")
        t0 = time.perf_counter()
        runner.summarize(d.history, d.events, d.sim_ms, entry, check=False)
        series = runner.series(d.history, d.events, d.sim_ms)
        out["measures_s"] = time.perf_counter() - t0
        out["measures_peak_mb"] = _peak_mb() if resettable else None
        # what the measures added to the memory the process held when they began
        out["measures_added_mb"] = out["measures_peak_mb"] - rss0 if resettable and rss0 is not None else None
        t0 = time.perf_counter()
        li = runner.linearizability(d.history, protocol=entry.name)
        out["checks_s"] = time.perf_counter() - t0
        out["verdict"] = f"{li['verdict']} ({li.get('algorithm') or '-'})"
        t0 = time.perf_counter()
        from metrics.timeline import partition_intervals

        parts = partition_intervals(list(d.events.events(kinds=("partition", "heal"))), end=d.sim_ms)
        plots.timeline(Path(tmp) / "timeline.png", {entry.tag: series}, parts)
        plots.latency(Path(tmp) / "latency.png", {entry.tag: d.history})
        out["plots_s"] = time.perf_counter() - t0
    out["ops"] = len(d.history)
    if resettable:  # the reset also lowered ru_maxrss: the run's peak is the larger of the two spans'
        out["peak_mb"] = max(out["simulate_peak_mb"], _peak_mb())
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def decisions_per_s(agents: int, seconds: float, window_ms: float = 0.0, replicas: int = 0) -> float:
    """Register-v0 (Parallel API, faults on, ``decision_window_ms=window_ms``, ABD's
    ``replicas``, 0: every agent) with random legal actions: decisions per second."""
    from envs.register import parallel_env

    rng = random.Random(0)
    env = parallel_env(nodes=agents, faults=True, decision_window_ms=window_ms,
                       protocol_params={"replicas": min(replicas, agents)})
    decisions, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        obs, _ = env.reset(seed=rng.randrange(10**6))
        while env.agents and time.perf_counter() - t0 < seconds:
            actions = {}
            for a in env.agents:
                legal = [i for i, m in enumerate(obs[a]["action_mask"].tolist()) if m]
                actions[a] = rng.choice(legal)
                decisions += len(legal) > 1
            obs, *_ = env.step(actions)
    rate = decisions / (time.perf_counter() - t0)
    env.close()  # let the last world go now: left to the cyclic GC, a 500-node world costs the next
    gc.collect()  # measurement ~9 s of collection (a GC pass over it), outside its own clock
    return rate


def _mb(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"error: size {args} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="ABD at 5 and 25 nodes, gossip at 1,000 for 200 ms; agents 5, 25")
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per Register-v0 measurement")
    args = ap.parse_args()
    if args.one:
        if args.one[0] == "agents":
            n, secs = int(args.one[1]), float(args.one[2])
            print(json.dumps({"agents": n, "decisions_per_s": decisions_per_s(n, secs),
                              "windowed_per_s": decisions_per_s(n, secs, WINDOW_MS),
                              "replicas_per_s": decisions_per_s(n, secs, WINDOW_MS, REPLICAS),
                              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        else:
            p, c, n, ms = args.one
            print(json.dumps(one(p, c, int(n), int(ms))))
        return 0
    if args.seconds <= 0:
        print("error: --seconds must be > 0", file=sys.stderr)
        return 2
    start = time.perf_counter()
    head = (f"{'protocol':9} {'nodes':>5} {'sim ms':>6} {'events':>10} {'simulate':>8} {'trace':>6} {'measures':>8} "
            f"{'checks':>6} {'plots':>6} {'events/s':>9} {'peak MB':>7} {'sim MB':>6} {'meas MB':>7} {'meas +MB':>8}"
            "  verdict")
    print(head)
    rates: dict[str, list[tuple[int, float]]] = {}
    for p, c, n, ms in (QUICK if args.quick else SIZES):
        r = child([p, c, str(n), str(ms)])
        total = r["simulate_s"] + r["trace_s"] + r["measures_s"] + r["checks_s"] + r["plots_s"]
        eps = r["events"] / total
        rates.setdefault(p, []).append((n, eps))
        print(f"{p:9} {n:>5} {ms:>6} {r['events']:>10,} {r['simulate_s']:>8.2f} {r['trace_s']:>6.2f} "
              f"{r['measures_s']:>8.2f} {r['checks_s']:>6.2f} {r['plots_s']:>6.2f} {eps:>9,.0f} {r['peak_mb']:>7.0f}"
              f" {_mb(r.get('simulate_peak_mb')):>6} {_mb(r.get('measures_peak_mb')):>7}"
              f" {_mb(r.get('measures_added_mb')):>8}  {r['verdict']}", flush=True)
    print()
    print(f"{'Register-v0 agents':>18} {'decisions/s':>11} {f'window {WINDOW_MS:g} ms':>12} "
          f"{f'+ {REPLICAS} replicas':>12} {'peak MB':>7}")
    for n in (AGENTS[:2] if args.quick else AGENTS):
        r = child(["agents", str(n), str(args.seconds)])
        print(f"{n:>18} {r['decisions_per_s']:>11,.0f} {r['windowed_per_s']:>12,.0f} "
              f"{r['replicas_per_s']:>12,.0f} {r['peak_mb']:>7.0f}",
              flush=True)
    print()
    ratios = {}
    for p, rs in rates.items():
        ratios[p] = rs[-1][1] / rs[0][1]
        print(f"{p}: events/s at {rs[-1][0]} nodes over {rs[0][0]} nodes: {ratios[p]:.2f}")
    print(f"benchmark wall time: {time.perf_counter() - start:.0f} s")
    print(f"ratio: {min(ratios.values()):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
