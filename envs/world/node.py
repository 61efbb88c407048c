"""The node API: every protocol is a :class:`Node`, an event-driven state machine that never blocks.

A node is driven by five handlers and acts only through its context ``ctx``::

    on_start(ctx) · on_message(ctx, src, body) · on_timer(ctx, name) · on_client(ctx, op)
    on_decision(ctx, point, action)

    ctx.node_id · ctx.nodes · ctx.peers · ctx.rng · ctx.now()   (its own clock, never true time)
    ctx.send(dst, body) · ctx.broadcast(body) · ctx.set_timer(name, after) · ctx.cancel_timer(name)
    ctx.reply(op, status, value=None)   (completes a client operation: "ok", "fail" or "unknown")
    ctx.ask(point, obs, default, mask=None)   (asks the node's agent; answered by on_decision)
    ctx.lamport · ctx.vclock   (kept by the runtime on every send, receive and local event)
    ctx.durable   (a dict that survives crashes: the node's disk)
    ctx.fsync()   (what was written to ctx.durable so far survives a crash that loses unsynced writes)
    ctx.record(kind, **fields)   (a protocol event for the observer, e.g. "leader", "decide")
    ctx.sign(body) · ctx.verify(signer, body)   (unforgeable signatures: PBFT)

Message bodies are tuples whose first element names the message type (``("ping", 3)``) or dicts
with a ``"type"`` key. A crash discards the node object (volatile state); restart builds a fresh
one from the same class and parameters and calls ``on_start`` again, with ``ctx.durable`` intact --
or, after a crash with ``lose_unsynced``, as it was at the node's last ``ctx.fsync()`` (a write is in
the page cache until then). A protocol syncs where its paper puts stable storage: before the reply
or message that vouches for what it wrote.

``ask`` is how learning plugs in. ``point`` is a string or a tuple whose first element is a string
naming the kind of decision (``("serve", op.id)``); ``default`` is the textbook answer, which is
what the node gets when no agent is attached.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ClientOp(NamedTuple):
    """A client operation as a node sees it: no true times. ``client`` is set only when clients send
    each operation to every node (``workload.replies > 1``): then the operation, with a list value
    made a tuple, is signed by ``("client", client)`` (``ctx.verify(("client", c), op)``)."""

    id: int
    f: str
    key: Any
    value: Any
    client: Any = None


class Node:
    """Base class: override the handlers you need. ``params`` is the protocol's parameter object."""

    #: optional pydantic model of the protocol's parameters (validated from the run config)
    Params = None
    #: every correct replica answers a client's operation sent to all of them (``op.client`` set), once
    #: for the one request: only then can ``workload.replies > 1`` matching replies come (PBFT)
    REPLICAS_REPLY = False

    def __init__(self, params: Any = None):
        self.params = params

    def on_start(self, ctx) -> None:
        pass

    def on_message(self, ctx, src: int, body: Any) -> None:
        pass

    def on_timer(self, ctx, name: Any) -> None:
        pass

    def on_client(self, ctx, op: ClientOp) -> None:
        ctx.reply(op, "fail")  # a node that serves no clients refuses them

    def on_decision(self, ctx, point: Any, action: Any) -> None:
        pass


def point_kind(point: Any) -> str:
    """The decision kind of an ``ask`` point: the point itself, or its first element."""
    return point[0] if isinstance(point, tuple) else point
