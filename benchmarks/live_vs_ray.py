"""Live transport vs raw Ray actor calls: messages per second between 5 node actors, no faults.

Ours: 5 node actors of the live runtime (experiments/live) run a token-passing node (every received
message is forwarded to a random peer; ``--tokens`` tokens per node in flight), through the batched
transport with everything on: latency draws, cut and loss checks, Lamport and vector clocks, the
trace, delivery horizons. The peer: 5 plain Ray async actors passing the same tokens, batched the
same way (at most one call per destination every ``BATCH_MS``), doing nothing else. Both run for
``SECONDS`` after start-up on the same local Ray instance; the figure is messages delivered per
second. Prints both and ends with ``ratio: <transport over raw Ray>``.

The transport also does flow control (at most ``LiveOptions.window`` batches on their way per
link, see experiments/live/transport.py) and pickles each batch in one piece; the peer does
neither, which is why the transport can carry more than the peer when the run is throughput-bound.

    PYTHONPATH=. python benchmarks/live_vs_ray.py [--seconds 3] [--tokens 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import ray

from envs.world.config import ScenarioConfig
from envs.world.node import Node
from experiments.live import LiveOptions, LiveWorld

N, BATCH_MS = 5, 10.0


class Tokens(Node):
    """Forward every token to a random peer; start with ``tokens`` of them."""

    tokens = 50

    def on_start(self, ctx):
        for i in range(self.tokens):
            ctx.send(ctx.rng.choice(ctx.peers), ("token", i))

    def on_message(self, ctx, src, body):
        ctx.send(ctx.rng.choice(ctx.peers), body)


def ours(seconds: float, tokens: int) -> float:
    Tokens.tokens = tokens
    scn = ScenarioConfig.model_validate({
        "seed": 0, "world": {"nodes": N, "duration_ms": seconds * 1000,
                             "network": {"latency": {"dist": "constant", "ms": 0.0}}},
        "workload": {"clients": 0}})
    world = LiveWorld(scn, Tokens, None, options=LiveOptions(batch_ms=BATCH_MS))
    world.start()
    try:
        world.run()
    finally:
        world.close()
    st = world.stats()
    return st["messages_delivered"] / (st["true_time_ms"] / 1000.0)


@ray.remote(num_cpus=0.1)
class RawNode:
    """A bare actor: receives batches, forwards each message to a random peer, batched per destination."""

    def __init__(self, me: int, tokens: int):
        self.me, self.tokens, self.received = me, tokens, 0
        self.rng = random.Random(me)
        self.out: dict[int, list] = {}
        self.armed, self.last = False, 0.0

    async def start(self, peers):
        self.peers = peers
        self.loop = asyncio.get_running_loop()
        for i in range(self.tokens):
            self.put(("token", i))
        self.arm()

    def put(self, msg):
        dst = self.rng.choice([p for p in range(len(self.peers)) if p != self.me])
        self.out.setdefault(dst, []).append(msg)

    async def recv(self, batch):
        self.received += len(batch)
        for m in batch:
            self.put(m)
        self.arm()

    def arm(self):
        if self.out and not self.armed:
            self.armed = True
            self.loop.call_at(max(self.loop.time(), self.last + BATCH_MS / 1000), self.flush)

    def flush(self):
        self.armed, self.last = False, self.loop.time()
        out, self.out = self.out, {}
        for dst, batch in out.items():
            self.peers[dst].recv.remote(batch)

    async def count(self):
        return self.received


def raw(seconds: float, tokens: int) -> float:
    nodes = [RawNode.remote(i, tokens) for i in range(N)]
    ray.get([n.count.remote() for n in nodes])
    t0 = time.monotonic()
    ray.get([n.start.remote(nodes) for n in nodes])
    time.sleep(seconds)
    got = sum(ray.get([n.count.remote() for n in nodes]))
    elapsed = time.monotonic() - t0
    for n in nodes:
        ray.kill(n)
    return got / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tokens", type=int, default=1000,
                    help="tokens per node in flight (enough to be throughput-bound)")
    args = ap.parse_args()
    ray.init(include_dashboard=False, num_cpus=2, log_to_driver=False)
    a = ours(args.seconds, args.tokens)
    b = raw(args.seconds, args.tokens)
    print(f"live transport: {a:,.0f} messages/s ({N} node actors, batch {BATCH_MS:g} ms, trace on)")
    print(f"raw Ray actors: {b:,.0f} messages/s ({N} actors, same batching, nothing else)")
    print(f"ratio: {a / b:.2f}")


if __name__ == "__main__":
    main()
