"""Gossip broadcast (Maelstrom's "broadcast" workload; Demers et al. 1987, anti-entropy).

A client ``write`` of a value at any node adds it to that node's set of seen values; every
``interval_ms`` a node pushes the values it has not yet acknowledged to ``fanout`` random peers.
A ``read`` returns the set the node has seen so far (eventually every value everywhere, once the
network heals). Each newly learned value is recorded as an ``apply`` event. The seen set is kept
in ``ctx.durable`` and synced (``ctx.fsync()``) whenever it grows, before a client's write is
acknowledged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_ms: float = Field(50.0, gt=0, description="gossip period on the node's own clock")
    fanout: int = Field(2, ge=1, description="peers contacted per gossip round")


EMPTY = frozenset()


class Gossip(Node):
    Params = Params

    def on_start(self, ctx):
        self.seen = set(ctx.durable.get("seen", ()))
        self.known = {}  # what each peer is known to have (made when first needed: n^2 sets at n nodes otherwise)
        ctx.set_timer("gossip", self.params.interval_ms)

    def learn(self, ctx, values):
        new = [v for v in values if v not in self.seen]
        for v in sorted(new):
            self.seen.add(v)
            ctx.record("apply", key=None, value=v)
        if new:
            ctx.durable["seen"] = sorted(self.seen)
            ctx.fsync()  # a client's write is on disk before it is acknowledged

    def on_client(self, ctx, op):
        if op.f == "write":
            self.learn(ctx, [op.value])
            ctx.reply(op, "ok")
        elif op.f == "read":
            ctx.reply(op, "ok", sorted(self.seen))
        else:
            ctx.reply(op, "fail")

    def on_timer(self, ctx, name):
        peers = ctx.peers
        k = min(self.params.fanout, len(peers))
        for p in ctx.rng.sample(peers, k):
            missing = self.seen - self.known.get(p, EMPTY)
            if missing:
                ctx.send(p, ("gossip", sorted(missing)))
        ctx.set_timer("gossip", self.params.interval_ms)

    def on_message(self, ctx, src, body):
        if body[0] == "gossip":
            self.learn(ctx, body[1])
            self.known.setdefault(src, set()).update(body[1])
            ctx.send(src, ("ack", body[1]))
        elif body[0] == "ack":
            self.known.setdefault(src, set()).update(body[1])


NODE = Gossip
