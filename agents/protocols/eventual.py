"""An eventually consistent register / key-value store: last-writer-wins with anti-entropy.

After Dynamo-style replication (DeCandia et al., "Dynamo: Amazon's Highly Available Key-value
Store", SOSP 2007), with the anti-entropy of Demers et al., "Epidemic Algorithms for Replicated
Database Maintenance", PODC 1987, and Thomas's write rule (last writer wins; Thomas, "A Majority
Consensus Approach to Concurrency Control for Multiple Copy Databases", TODS 1979).

Every node holds a full replica: per key a ``(stamp, value)`` with ``stamp = (ts, node, lamport)``,
``ts`` read from the *writing node's own clock* (so clock faults decide which write wins),
``node`` and the write's Lamport time breaking ties (and naming the write: ``origin``). A replica
answers clients from its own state at once (register: read/write/cas; key-value:
get/put/append), and merges any state it hears by keeping the larger stamp per key. Updates spread two ways:

* **broadcast**: a local write is sent to every peer at once (``broadcast_writes``; fire and forget);
* **anti-entropy**: every ``gossip_ms`` a node pushes its whole state to ``fanout`` random peers;
  a peer that holds newer entries (or keys the sender lacks) answers with them (push-pull).

Every change of a replica's value of a key is recorded as an ``apply`` event. Always available;
not linearizable (a partitioned replica serves stale reads, concurrent writes are lost to LWW);
converges once the network heals: every live replica ends with the largest stamp of every key.
Replicas keep their state in ``ctx.durable`` (the disk), synced (``ctx.fsync()``) after a local
write (before the client hears ok, as Dynamo's coordinator writes locally first) and before a
``sync_ack``; gossip merges are not synced (a crash loses them; anti-entropy brings them back).
Left out: vector-clock siblings, hinted handoff, Merkle-tree digests (the whole state is pushed), deletes.

Sets (Jepsen's set workload): ``add`` is a read-modify-write of the key's set (the sorted tuple of
its elements) at the replica that serves it. How replicas then merge two versions is
``set_merge``: ``lww`` (default) keeps the version with the larger stamp, as for any value -- so
an add is lost whenever another replica's version with a larger stamp did not include it
(concurrent adds at two replicas, or any add stamped by a clock that lags); ``union`` merges the
two sets (a grow-only set, a state-based CRDT: Shapiro et al. 2011), losing no add, at the price
that nothing can ever be removed.

Learnable choice
----------------
``("serve", op.id)`` on every client operation, ``default=0`` (local), ``mask`` all allowed:

* 0 = local: answer from this replica at once (writes applied locally, then spread);
* 1 = quorum: apply a write locally, then ``sync`` the key with every peer and answer once a
  majority (this node included) has merged it and sent back its entry -- Dynamo's R = W = majority;
  still not linearizable (LWW by skewed clocks), but a read sees every write a majority has.
  Retransmits every ``retry_ms``; after ``give_up_ms``: a read fails, a write is ``unknown``;
* 2 = refuse: reply ``fail``.

obs: ``[is_write, reachable, quorum, staleness]``, as in ``abd``: the fraction of peers heard from
within ``suspect_ms`` of the own clock, 1.0 when they make a majority with this node, and the mean
over peers of ``min(1, time since last heard / suspect_ms)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node

NOTHING = (float("-inf"), -1, 0)  # the stamp of a key never written
LOCAL, QUORUM, REFUSE = 0, 1, 2
WRITES = ("write", "put", "append", "cas", "add")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gossip_ms: float = Field(100.0, gt=0, description="anti-entropy period on the node's own clock")
    fanout: int = Field(1, ge=1, description="peers pushed to per anti-entropy round")
    broadcast_writes: bool = Field(True, description="send each local write to every peer at once")
    set_merge: Literal["lww", "union"] = Field(
        "lww", description="sets (add): keep the version with the larger stamp, or the union of both")
    retry_ms: float = Field(50.0, gt=0, description="quorum serve: retransmit period")
    give_up_ms: float = Field(1000.0, gt=0, description="quorum serve: give up after this long")
    suspect_ms: float = Field(300.0, gt=0, description="a peer not heard from for this long counts as unreachable")


class Eventual(Node):
    Params = Params

    def on_start(self, ctx):
        d = ctx.durable
        self.store = d.setdefault("store", {})  # key -> (stamp, value); on disk
        self.waiting: dict = {}  # op id -> ClientOp awaiting its serve decision
        self.syncs: dict = {}  # op id -> [op, acks] for quorum serves
        self.heard = {p: None for p in ctx.peers}
        self.majority = ctx.n // 2 + 1
        ctx.set_timer("gossip", self.params.gossip_ms * (0.5 + ctx.rng.random()))

    # --- the replica: last writer wins -----------------------------------------------------------
    def value(self, key):
        return self.store.get(key, (NOTHING, None))[1]

    def merge(self, ctx, key, stamp, value) -> bool:
        """Thomas's write rule: keep the larger stamp (or, for sets with ``set_merge: union``, the
        union of both under the larger stamp). True when the replica changed."""
        old_stamp, old = self.store.get(key, (NOTHING, None))
        if self.params.set_merge == "union" and type(value) is tuple and type(old) is tuple:
            union = tuple(sorted(set(old) | set(value)))
            if union == old:
                return False
            stamp, value = max(stamp, old_stamp), union
        elif stamp <= old_stamp:
            return False
        self.store[key] = (stamp, value)
        ctx.record("apply", key=key, value=value, origin=[stamp[1], stamp[2]])  # [node, lamport] of the write
        return True

    def write(self, ctx, key, value):
        """A local write: a fresh stamp from this node's own clock, then spread it."""
        stamp = (ctx.now(), ctx.node_id, ctx.lamport)  # Lamport times never repeat at a node
        self.merge(ctx, key, stamp, value)
        ctx.fsync()  # on the coordinator's disk before the client hears ok (Dynamo's local write)
        if self.params.broadcast_writes:
            ctx.broadcast(("update", [(key, stamp, value)]))

    # --- clients ---------------------------------------------------------------------------------
    def on_client(self, ctx, op):
        self.waiting[op.id] = op
        ctx.ask(("serve", op.id), self.observe(ctx, op), default=LOCAL, mask=[True, True, True])

    def observe(self, ctx, op):
        now, s = ctx.now(), self.params.suspect_ms
        ages = [1.0 if t is None else min(1.0, max(0.0, now - t) / s) for t in self.heard.values()]
        up = sum(a < 1.0 for a in ages)
        peers = max(1, len(ages))
        return [float(op.f in WRITES), up / peers, 1.0 if up + 1 >= self.majority else 0.0,
                sum(ages) / peers if ages else 0.0]

    def on_decision(self, ctx, point, action):
        op = self.waiting.pop(point[1], None)
        if op is None:
            return
        if action == REFUSE:
            ctx.reply(op, "fail")
            return
        status, out = self.apply_op(ctx, op)
        if action == LOCAL or status == "fail":
            ctx.reply(op, status, out)
        else:  # quorum: answer once a majority holds this key's entry
            self.syncs[op.id] = [op, {ctx.node_id}]
            self.send_sync(ctx, op.id)
            ctx.set_timer(("give_up", op.id), self.params.give_up_ms)

    def apply_op(self, ctx, op):
        """Run ``op`` on this replica: ``(status, output)``."""
        f, key = op.f, op.key
        cur = self.value(key)
        if f == "read":
            return "ok", cur
        if f == "get":
            return "ok", "" if cur is None else cur
        if f in ("write", "put"):
            self.write(ctx, key, op.value)
        elif f == "append":
            self.write(ctx, key, ("" if cur is None else str(cur)) + str(op.value))
        elif f == "cas":
            if cur != op.value[0]:
                return "fail", None
            self.write(ctx, key, op.value[1])
        elif f == "add":  # read-modify-write of the key's set
            self.write(ctx, key, tuple(sorted(set(cur or ()) | {op.value})))
        else:
            return "fail", None
        return "ok", None

    # --- quorum serve ----------------------------------------------------------------------------
    def send_sync(self, ctx, oid):
        op, acks = self.syncs[oid]
        entry = self.store.get(op.key)
        body = ("sync", oid, op.key, [(op.key,) + entry] if entry else [])
        for p in ctx.peers:
            if p not in acks:
                ctx.send(p, body)
        ctx.set_timer(("retry", oid), self.params.retry_ms)

    def sync_done(self, ctx, oid):
        op, acks = self.syncs[oid]
        if len(acks) < self.majority:
            return
        del self.syncs[oid]
        ctx.cancel_timer(("retry", oid))
        ctx.cancel_timer(("give_up", oid))
        if op.f in WRITES:
            ctx.reply(op, "ok")
        else:
            ctx.reply(op, *self.apply_op(ctx, op))

    # --- messages and timers ---------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        if src in self.heard:
            self.heard[src] = ctx.now()
        kind = body[0]
        if kind == "update":
            for key, stamp, value in body[1]:
                self.merge(ctx, key, stamp, value)
        elif kind == "push":  # anti-entropy: merge theirs, send back what they lack
            theirs = {}
            for key, stamp, value in body[1]:
                theirs[key] = stamp
                self.merge(ctx, key, stamp, value)
            newer = [(k,) + e for k, e in self.store.items() if e[0] > theirs.get(k, NOTHING)]
            if newer:
                ctx.send(src, ("update", newer))
        elif kind == "sync":
            _, oid, key, entries = body
            for k, stamp, value in entries:
                self.merge(ctx, k, stamp, value)
            entry = self.store.get(key)
            ctx.fsync()  # a replica stores before it acknowledges
            ctx.send(src, ("sync_ack", oid, [(key,) + entry] if entry else []))
        elif kind == "sync_ack":
            _, oid, entries = body
            for k, stamp, value in entries:
                self.merge(ctx, k, stamp, value)
            if oid in self.syncs:
                self.syncs[oid][1].add(src)
                self.sync_done(ctx, oid)

    def on_timer(self, ctx, name):
        if name == "gossip":
            state = [(k,) + e for k, e in self.store.items()]
            for p in ctx.rng.sample(ctx.peers, min(self.params.fanout, len(ctx.peers))):
                ctx.send(p, ("push", state))
            ctx.set_timer("gossip", self.params.gossip_ms)
            return
        what, oid = name
        if oid not in self.syncs:
            return
        if what == "retry":
            self.send_sync(ctx, oid)
        else:
            op = self.syncs.pop(oid)[0]
            ctx.cancel_timer(("retry", oid))
            ctx.reply(op, "unknown" if op.f in WRITES else "fail")


NODE = Eventual
