"""Ping-pong on 5 nodes with exponential latency: capgym's sim runtime beside SimPy.

Each node starts ``BALLS`` messages to random peers; every delivered message is bounced back to
its sender, until ``DELIVERIES`` messages have been delivered. capgym records the whole trace
(a ``send`` and a ``recv`` event per message: node, true time, node clock, Lamport clock, message
id and type; vector clocks are derived from it on read); the SimPy peer records one tuple per
delivery. capgym's compiled core records trace events into a C buffer and turns them into Python
tuples when the trace is first read: the benchmark reads it after the run and prints that time too
(``with the trace decoded``), so both figures are on the table.

Two SimPy idioms are timed (a timeout whose callback puts into the receiver's store, served by
one process per node; and a bare timeout callback calling the handler), both with the cyclic GC
off as capgym's loop runs, and the faster is the peer.

    python benchmarks/world_vs_simpy.py [--deliveries N]

Ends with ``ratio: <capgym over SimPy>`` (deliveries per second).
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import simpy

from envs.world.network import Network
from envs.world.node import Node
from envs.world.sim import COMPILED, Sim

N, BALLS, MEAN_MS = 5, 20, 1.0


class PingPong(Node):
    def on_start(self, ctx):
        for _ in range(BALLS):
            ctx.send(ctx.rng.choice(ctx.peers), ("ping",))

    def on_message(self, ctx, src, body):
        ctx.send(src, body)


def run_capgym(deliveries: int) -> tuple[float, float, int]:
    """Deliveries per second of the run, and of the run plus decoding its whole trace."""
    net = Network(range(N), seed=1, latency={"dist": "exponential", "mean": MEAN_MS})
    sim = Sim(N, PingPong, seed=1, network=net)
    t0 = time.perf_counter()
    sim.run(stop=None, max_events=deliveries + N)
    dt = time.perf_counter() - t0
    assert len(sim.trace) >= 2 * deliveries, "the whole trace must be recorded"
    t1 = time.perf_counter()
    raw = sim.trace.raw  # every event as a Python tuple
    decode = time.perf_counter() - t1
    assert len(raw) == len(sim.trace) and raw[-1][0] in ("send", "recv")
    return sim.delivered / dt, sim.delivered / (dt + decode), sim.delivered


def run_simpy_store(deliveries: int) -> tuple[float, int]:
    env = simpy.Environment()
    rng = random.Random(1)
    expo = rng.expovariate
    lam = 1.0 / MEAN_MS
    stores = [simpy.Store(env) for _ in range(N)]
    trace = []
    count = [0]

    def send(src, dst):
        ev = env.timeout(expo(lam), (src, dst))
        ev.callbacks.append(lambda e: stores[e.value[1]].put(e.value))

    def node(i):
        get = stores[i].get
        while True:
            src, dst = yield get()
            trace.append((env.now, src, dst))
            count[0] += 1
            send(dst, src)

    for i in range(N):
        env.process(node(i))
        for _ in range(BALLS):
            send(i, rng.choice([p for p in range(N) if p != i]))
    t0 = time.perf_counter()
    while count[0] < deliveries:
        env.step()
    dt = time.perf_counter() - t0
    return count[0] / dt, count[0]


def run_simpy_callback(deliveries: int) -> tuple[float, int]:
    env = simpy.Environment()
    rng = random.Random(1)
    expo = rng.expovariate
    lam = 1.0 / MEAN_MS
    trace = []
    timeout = env.timeout

    def deliver(ev):
        src, dst = ev.value
        trace.append((env.now, src, dst))
        send(dst, src)

    def send(src, dst):
        timeout(expo(lam), (src, dst)).callbacks.append(deliver)

    for i in range(N):
        for _ in range(BALLS):
            send(i, rng.choice([p for p in range(N) if p != i]))
    t0 = time.perf_counter()
    step = env.step
    while len(trace) < deliveries:
        step()
    dt = time.perf_counter() - t0
    return len(trace) / dt, len(trace)


def no_gc(fn, *args):
    """Run a peer with the cyclic GC off, as capgym's loop runs (a fair fastest idiom)."""
    gc.collect()
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    a = ap.parse_args()
    ours, decoded, n1 = run_capgym(a.deliveries)
    core = "compiled core" if COMPILED else "pure-Python core"
    print(f"capgym sim      : {ours:12,.0f} deliveries/s  ({n1:,} deliveries, full trace; {core})")
    print(f"  + trace read  : {decoded:12,.0f} deliveries/s  (the same run with its trace decoded to tuples)")
    store, n2 = no_gc(run_simpy_store, a.deliveries)
    print(f"simpy store     : {store:12,.0f} deliveries/s  ({n2:,} deliveries; timeout callback puts into a store)")
    cb, n3 = no_gc(run_simpy_callback, a.deliveries)
    print(f"simpy callback  : {cb:12,.0f} deliveries/s  ({n3:,} deliveries; bare timeout callbacks)")
    print(f"ratio over the store idiom: {ours / store:.2f}")
    peer = max(store, cb)
    print(f"ratio with the trace decoded: {decoded / peer:.2f}")
    print(f"ratio: {ours / peer:.2f}")


if __name__ == "__main__":
    main()
