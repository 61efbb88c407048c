"""ABD: an atomic (linearizable) register emulated by message passing over majority quorums.

H. Attiya, A. Bar-Noy, D. Dolev, "Sharing Memory Robustly in Message-Passing Systems",
JACM 42(1), 1995 -- here the multi-writer variant (Lynch and Shvartsman 1997), one register per
key (``key`` None: the single register; an int: one independent register per key).

Every node is both a *replica* (it stores ``(tag, value)`` per key) and a *coordinator* for the
client operations sent to it. A tag is ``(ts, writer)``, compared lexicographically; the writer id
is ``(node, epoch, seq)`` because one node coordinates several clients' writes at once.

* **read**: phase 1 ``query`` a majority for their ``(tag, value)``; phase 2 ``store`` the maximum
  back to a majority (the write-back); then answer the maximum's value.
* **write**: phase 1 ``query`` a majority for the maximum tag; phase 2 ``store`` the value with tag
  ``(max ts + 1, writer)`` at a majority; then answer ok.
* A replica adopts a stored ``(tag, value)`` only when the tag is higher than its own.

The coordinator counts itself as one replica. Each phase retransmits to the replicas that have
not answered every ``retry_ms`` of its own clock, so message loss delays but never blocks an
operation; after ``give_up_ms`` it gives up: ``fail`` while nothing was stored (query phase, or
any read: a read changes no register), ``unknown`` once a write's store phase has begun.
Linearizable whenever it answers; in a minority it cannot finish a phase, so it does not answer ok.

Replicas and clients: with ``replicas: r`` (0, the default: every node) only nodes ``0..r-1``
store the register, and the majorities are majorities of those ``r``; the other nodes coordinate
operations as the paper's readers and writers, which are not servers in Lynch and Shvartsman's
multi-writer presentation (FTCS 1997). A client-only coordinator counts for no quorum and starts
each query from the bottom tag. An operation then costs ``4 * (r // 2 + 1)`` messages or more
instead of growing with every node, so many agents can share a small replicated register.

Left out / changed from the paper: the paper is crash-stop; here replicas keep ``(tag, value)``
in ``ctx.durable`` (the disk) so that crash-recovery keeps the quorum intersection, synced
(``ctx.fsync()``) before a replica acknowledges a store, before a coordinator counts itself in a
store majority, and before a local write answers ok; each start's ``epoch`` (for fresh operation
ids) is synced at once. No
compare-and-set (ABD cannot implement it: that needs consensus), so ``cas`` is refused, and so
is a set's ``add`` (a read-modify-write, for the same reason). No
reconfiguration, no garbage collection of finished operations' late acks (they are ignored).

Learnable choice
----------------
``("serve", op.id)`` on every client operation, ``default=1`` (textbook ABD), ``mask`` all allowed:

* 0 = answer from local state at once (read: the local value; write: store locally with a new tag
  and send ``store`` to every replica fire-and-forget) -- available, not linearizable (a client-only
  node's local state is what its own operations last saw);
* 1 = quorum: the two-phase ABD operation above;
* 2 = refuse: reply ``fail``.

obs (floats, from this node's own state and clock only):
``[is_write, reachable, quorum, staleness]`` where ``reachable`` is the fraction of the other
replicas heard from within ``suspect_ms`` of the own clock, ``quorum`` is 1.0 when those replicas
plus this node (if it is one) make a majority, and ``staleness`` is the mean over the other replicas
of ``min(1, time since last heard / suspect_ms)``. Replicas send every node a ``ping`` every
``heartbeat_ms`` (0: off) so that the obs stays informed when idle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node

BOTTOM = (0, (-1, 0, 0))  # the initial tag: lower than every written tag
INITIAL = (BOTTOM, None)  # a replica's (tag, value) before any store
LOCAL, QUORUM, REFUSE = 0, 1, 2


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retry_ms: float = Field(50.0, gt=0, description="retransmit a phase's message to silent replicas this often")
    give_up_ms: float = Field(1000.0, gt=0, description="stop an unfinished operation after this long")
    heartbeat_ms: float = Field(100.0, ge=0, description="ping peers this often for the obs (0: off)")
    suspect_ms: float = Field(300.0, gt=0, description="a peer not heard from for this long counts as unreachable")
    replicas: int = Field(0, ge=0, strict=True, description="nodes 0..replicas-1 store the register, the others only "
                                               "coordinate (0: every node)")

    def check_nodes(self, nodes: int) -> str | None:
        """Why these params cannot run on ``nodes`` nodes (``experiments.config`` and the games ask), or None."""
        return f"replicas={self.replicas} but only {nodes} nodes" if self.replicas > nodes else None


class Operation:
    """A coordinator's operation in flight: its phase (``query`` or ``store``) and who answered."""

    __slots__ = ("op", "rid", "phase", "acks", "tag", "value")

    def __init__(self, op, rid):
        self.op, self.rid = op, rid
        self.phase = "query"
        self.acks: set[int] = set()
        self.tag, self.value = BOTTOM, None  # the maximum seen (query) / the pair being stored


class ABD(Node):
    Params = Params

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        d = ctx.durable
        self.reg = d.setdefault("reg", {})  # key -> (tag, value); on disk
        d["epoch"] = self.epoch = d.get("epoch", 0) + 1  # new rids after each restart
        ctx.fsync()  # on disk before any rid of this epoch is used
        self.seq = 0
        self.ops: dict = {}  # rid -> Operation
        self.waiting: dict = {}  # op id -> ClientOp awaiting its serve decision
        r = self.params.replicas or ctx.n
        self.replica = ctx.node_id < r  # stores the register and counts in its majorities
        self.servers = ctx.peers if r == ctx.n else [p for p in range(r) if p != ctx.node_id]
        self.heard = {p: None for p in self.servers}  # own clock when last heard from each replica
        self.majority = r // 2 + 1
        if self.params.heartbeat_ms and self.replica:  # replicas ping every node; clients need not
            ctx.set_timer("heartbeat", self.params.heartbeat_ms)

    def next_rid(self, ctx):
        self.seq += 1
        return (ctx.node_id, self.epoch, self.seq)

    def local(self, key):
        return self.reg.get(key, INITIAL)

    def adopt(self, key, tag, value):
        """The replica rule: keep the pair with the higher tag."""
        if tag > self.local(key)[0]:
            self.reg[key] = (tag, value)

    # --- clients and the serve decision ----------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f not in ("read", "write"):
            ctx.reply(op, "fail")
            return
        self.waiting[op.id] = op
        ctx.ask(("serve", op.id), self.observe(ctx, op), default=QUORUM, mask=[True, True, True])

    def observe(self, ctx, op):
        now, s = ctx.now(), self.params.suspect_ms
        ages = [1.0 if t is None else min(1.0, max(0.0, now - t) / s) for t in self.heard.values()]
        up = sum(a < 1.0 for a in ages)
        peers = max(1, len(ages))
        quorum = 1.0 if up + self.replica >= self.majority else 0.0
        return [float(op.f == "write"), up / peers, quorum, sum(ages) / peers if ages else 0.0]

    def on_decision(self, ctx, point, action):
        op = self.waiting.pop(point[1], None)
        if op is None:
            return
        if action == LOCAL:
            self.serve_locally(ctx, op)
        elif action == REFUSE:
            ctx.reply(op, "fail")
        else:
            self.begin(ctx, op)

    def serve_locally(self, ctx, op):
        tag, value = self.local(op.key)
        if op.f == "read":
            ctx.reply(op, "ok", value)
            return
        rid = self.next_rid(ctx)
        tag = (tag[0] + 1, rid)
        self.adopt(op.key, tag, op.value)
        ctx.fsync()  # on this replica's disk before the client hears ok
        body = ("store", None, op.key, tag, op.value)  # fire and forget
        for p in self.servers:
            ctx.send(p, body)
        ctx.reply(op, "ok")

    # --- the coordinator: two phases over majorities ---------------------------------------------
    def begin(self, ctx, op):
        o = Operation(op, self.next_rid(ctx))
        self.ops[o.rid] = o
        if self.replica:
            o.acks.add(ctx.node_id)  # phase 1 at this replica
            o.tag, o.value = self.local(op.key)
        self.send_phase(ctx, o, self.servers)
        ctx.set_timer(("give_up", o.rid), self.params.give_up_ms)
        self.advance(ctx, o)

    def send_phase(self, ctx, o, dsts):
        if o.phase == "query":
            body = ("query", o.rid, o.op.key)
        else:
            body = ("store", o.rid, o.op.key, o.tag, o.value)
        for p in dsts:
            ctx.send(p, body)
        ctx.set_timer(("retry", o.rid), self.params.retry_ms)

    def advance(self, ctx, o):
        """Move ``o`` on once a majority has answered its current phase."""
        if len(o.acks) < self.majority:
            return
        if o.phase == "query":
            if o.op.f == "write":  # a higher tag than any in the majority
                o.tag, o.value = (o.tag[0] + 1, o.rid), o.op.value
            o.phase, o.acks = "store", ({ctx.node_id} if self.replica else set())
            self.adopt(o.op.key, o.tag, o.value)  # phase 2 at this replica (a client: its cache)
            ctx.fsync()  # it counts itself among the majority that stored it
            self.send_phase(ctx, o, self.servers)
            self.advance(ctx, o)
        else:
            self.finish(ctx, o)
            ctx.reply(o.op, "ok", o.value if o.op.f == "read" else None)

    def finish(self, ctx, o):
        self.ops.pop(o.rid, None)
        ctx.cancel_timer(("retry", o.rid))
        ctx.cancel_timer(("give_up", o.rid))

    # --- messages --------------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        if src in self.heard:
            self.heard[src] = ctx.now()
        kind = body[0]
        if kind == "query":  # replica: report (tag, value)
            _, rid, key = body
            ctx.send(src, ("query_ack", rid, key) + self.local(key))
        elif kind == "store":  # replica: adopt if newer, acknowledge
            _, rid, key, tag, value = body
            self.adopt(key, tag, value)
            ctx.fsync()  # a replica stores before it acknowledges
            if rid is not None:
                ctx.send(src, ("store_ack", rid))
        elif kind == "query_ack":
            _, rid, _key, tag, value = body
            o = self.ops.get(rid)
            if o is not None and o.phase == "query":
                o.acks.add(src)
                if tag > o.tag:
                    o.tag, o.value = tag, value
                self.advance(ctx, o)
        elif kind == "store_ack":
            o = self.ops.get(body[1])
            if o is not None and o.phase == "store":
                o.acks.add(src)
                self.advance(ctx, o)

    def on_timer(self, ctx, name):
        if name == "heartbeat":
            ctx.broadcast(("ping",))
            ctx.set_timer("heartbeat", self.params.heartbeat_ms)
            return
        what, rid = name
        o = self.ops.get(rid)
        if o is None:
            return
        if what == "retry":
            self.send_phase(ctx, o, [p for p in self.servers if p not in o.acks])
        else:  # give_up: nothing stored yet (or a read) -> fail; a write being stored -> unknown
            self.finish(ctx, o)
            stored = o.phase == "store" and o.op.f == "write"
            ctx.reply(o.op, "unknown" if stored else "fail")


NODE = ABD
