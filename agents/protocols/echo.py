"""Echo: the smallest protocol. A node answers every client operation itself, and every node
pings a random peer each ``interval_ms`` of its own clock; a ping is answered with a pong.

Exercises the node API end to end (clients, messages, timers); it keeps no replicated state, so
its reads return what *this* node was last told (``write``) locally.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_ms: float = Field(100.0, gt=0, description="ping period on the node's own clock")


class Echo(Node):
    Params = Params

    def on_start(self, ctx):
        self.value = None
        self.pongs = 0
        ctx.set_timer("ping", self.params.interval_ms)

    def on_timer(self, ctx, name):
        if ctx.peers:
            ctx.send(ctx.rng.choice(ctx.peers), ("ping", ctx.now()))
        ctx.set_timer("ping", self.params.interval_ms)

    def on_message(self, ctx, src, body):
        if body[0] == "ping":
            ctx.send(src, ("pong", body[1]))
        elif body[0] == "pong":
            self.pongs += 1

    def on_client(self, ctx, op):
        if op.f == "write":
            self.value = op.value
            ctx.reply(op, "ok")
        elif op.f == "read":
            ctx.reply(op, "ok", self.value)
        else:
            ctx.reply(op, "fail")


NODE = Echo
