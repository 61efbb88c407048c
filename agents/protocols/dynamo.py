"""A Dynamo-style partial-quorum store: N replicas per key, W acks for a write, the newest of R replies.

G. DeCandia et al., "Dynamo: Amazon's Highly Available Key-value Store", SOSP 2007 (Sec. 4.2
partitioning, 4.3 replication, 4.4 data versioning, 4.5 execution of get and put, 4.7
anti-entropy), as P. Bailis et al. model it in "Probabilistically Bounded Staleness for Practical
Partial Quorums", VLDB 2012 (Sec. 3: N, R, W; Sec. 5: the WARS model; expanding and
non-expanding quorums).

**Preference list** (Sec. 4.2-4.3): the ``N`` replicas of a key are the ``N`` nodes that follow
the key's position on the ring: ``position(key) % n, position(key) + 1, ...`` (``None`` is at 0,
an int is at itself, anything else at the CRC-32 of its ``repr``; no virtual nodes). Any node can
*coordinate* a client operation; it need not be a replica of the key.

* **put** (a ``write``): the coordinator sends ``put(key, version, value)`` and answers ``ok``
  after ``W`` replicas have acknowledged it (``put_ack``).
* **get** (a ``read``): the coordinator sends ``get(key)`` and answers with the value of the
  newest version among the first ``R`` replies (``get_reply``).
* **expanding** quorums (Dynamo's, the default): each message goes to all ``N`` replicas and the
  coordinator waits for the first ``R`` (``W``) answers. **non-expanding** (``expanding: false``,
  what PBS's closed forms assume): a write goes to ``W`` replicas and a read to ``R`` replicas
  chosen at random, and to no others.
* **versions without node clocks** (Sec. 4.4): Dynamo's put carries the *context* of an earlier
  get. Here the coordinator fetches it itself before a put: it sends ``get`` as for a read and
  takes the newest version among the first ``R`` replies, then writes version
  ``(counter + 1, node, epoch, seq)`` where ``counter`` is the larger of that version's counter
  and the highest counter this node has seen (a Lamport clock over versions; ``node, epoch, seq``
  make every write's version unique). Versions compare lexicographically. No node clock is read,
  so clock faults change nothing; with ``R + W > N`` every read quorum meets every write quorum,
  so a write that starts after another completed gets a higher version, and a read that starts
  after a write completed returns it or a newer one -- no stale read, absent faults. Concurrent
  writes are ordered by version (no sibling versions: the higher counter wins, as with last-writer-wins).
* **read repair** (``read_repair``, off by default; Dynamo Sec. 5): after answering a read, the
  coordinator waits for the late replies (up to ``give_up_ms``), then sends the newest version it
  saw to the replicas whose replies were older.
* **anti-entropy** (``anti_entropy_ms``, 0 = off; Sec. 4.7, without Merkle trees): every
  ``anti_entropy_ms`` a replica pushes its entries to one random fellow replica of each key;
  the receiver keeps the newer version of each key it replicates.

A replica keeps ``(version, value)`` per key in ``ctx.durable`` (the disk) and adopts a version
only when it is higher than its own. Each phase retransmits to its silent targets every
``retry_ms`` of the coordinator's own clock; after ``give_up_ms`` a read fails, a write fails
while only its versions were being fetched, and is ``unknown`` once its put was sent. Only
``read`` and ``write`` are served (keys from the workload's ``keys``); other operations fail.

Left out: sloppy quorums and hinted handoff (a crashed replica's share is not taken over, so a
non-expanding operation whose chosen replica is down times out), vector-clock siblings,
virtual nodes, Merkle trees, membership and the coordinator's forwarding to a preferred replica.

Learnable choice
----------------
``("quorum", op.id)`` on every client operation: the number of replies to wait for (``action =
size - 1``, sizes ``1..N``; ``default`` ``R - 1`` for reads, ``W - 1`` for writes: Cassandra's
per-request consistency level). obs: ``[is_write, reachable]``, ``reachable`` the fraction of the
key's other replicas heard from within ``suspect_ms`` of the node's own clock.
"""

from __future__ import annotations

import zlib

from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs.world.node import Node

ZERO = (0, -1, 0, 0)  # the version of a key never written: lower than every written version
INITIAL = (ZERO, None)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    N: int = Field(3, ge=1, description="replicas per key (at most the number of nodes)")
    R: int = Field(2, ge=1, description="replies a read waits for (at most N)")
    W: int = Field(2, ge=1, description="acks a write waits for (at most N)")
    expanding: bool = Field(True, description="send to all N and take the first R/W; false: only to R/W random")
    read_repair: bool = Field(False, description="after a read, send the newest version to older replies")
    anti_entropy_ms: float = Field(0.0, ge=0, description="push entries to a fellow replica this often (0: off)")
    retry_ms: float = Field(50.0, gt=0, description="retransmit a phase to silent targets this often")
    give_up_ms: float = Field(1000.0, gt=0, description="stop an unfinished operation after this long")
    suspect_ms: float = Field(300.0, gt=0, description="obs: a replica not heard from for this long is unreachable")

    def check_nodes(self, nodes: int) -> str | None:
        """Why these params cannot run on ``nodes`` nodes (``experiments.config`` asks), or None."""
        return f"N={self.N} replicas per key but world.nodes={nodes}" if self.N > nodes else None

    @model_validator(mode="after")
    def _quorums_within_n(self):
        if self.R > self.N or self.W > self.N:
            raise ValueError(f"R and W must be at most N (N={self.N}, R={self.R}, W={self.W})")
        return self


def position(key) -> int:
    """The key's place on the ring (deterministic across processes: no ``hash()``)."""
    if key is None:
        return 0
    if isinstance(key, int):
        return key
    return zlib.crc32(repr(key).encode())


class Operation:
    """A coordinator's operation in flight: phase ``get`` (a read, or a write fetching versions),
    ``put``, or ``repair`` (an answered read awaiting late replies); its targets, who answered, and
    the newest ``(version, value)`` seen."""

    __slots__ = ("op", "rid", "phase", "need", "quorum", "targets", "replies", "newest")

    def __init__(self, op, rid, need):
        self.op, self.rid, self.need = op, rid, need
        self.phase, self.quorum = "get", need
        self.targets: list[int] = []
        self.replies: dict[int, tuple] = {}  # replica -> its version (get) or None (put)
        self.newest = INITIAL


class Dynamo(Node):
    Params = Params

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        p = self.params
        self.n = ctx.n
        if p.N > ctx.n:
            raise ValueError(f"dynamo: N={p.N} replicas per key but only {ctx.n} nodes")
        d = ctx.durable
        self.store = d.setdefault("store", {})  # key -> (version, value); on disk
        d["epoch"] = self.epoch = d.get("epoch", 0) + 1
        self.seq = 0
        self.counter = max((v[0][0] for v in self.store.values()), default=0)  # Lamport clock over versions
        self.ops: dict = {}  # rid -> Operation
        self.waiting: dict = {}  # op id -> ClientOp awaiting its quorum decision
        self.heard: dict[int, float] = {}  # node -> own clock when last heard from
        if p.anti_entropy_ms:
            ctx.set_timer("anti_entropy", p.anti_entropy_ms * (0.5 + ctx.rng.random()))

    def preference_list(self, key) -> list[int]:
        """The key's N replicas: the N nodes from its position on the ring (Dynamo Sec. 4.3)."""
        start = position(key) % self.n
        return [(start + i) % self.n for i in range(self.params.N)]

    def local(self, key):
        return self.store.get(key, INITIAL)

    def adopt(self, key, version, value) -> bool:
        """The replica rule: keep the higher version. True when the replica changed."""
        self.counter = max(self.counter, version[0])
        if version > self.local(key)[0]:
            self.store[key] = (version, value)
            return True
        return False

    # --- clients and the quorum decision ---------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f not in ("read", "write"):
            ctx.reply(op, "fail")
            return
        self.waiting[op.id] = op
        size = self.params.W if op.f == "write" else self.params.R
        ctx.ask(("quorum", op.id), self.observe(ctx, op), default=size - 1, mask=[True] * self.params.N)

    def observe(self, ctx, op):
        now, s = ctx.now(), self.params.suspect_ms
        others = [r for r in self.preference_list(op.key) if r != ctx.node_id]
        up = sum(1 for r in others if r in self.heard and now - self.heard[r] < s)
        return [float(op.f == "write"), up / len(others) if others else 1.0]

    def on_decision(self, ctx, point, action):
        op = self.waiting.pop(point[1], None)
        if op is None:
            return
        self.seq += 1
        o = Operation(op, (ctx.node_id, self.epoch, self.seq), int(action) + 1)
        self.ops[o.rid] = o
        ctx.set_timer(("give_up", o.rid), self.params.give_up_ms)
        # a write first fetches the newest version from R replicas (Dynamo's context), then puts
        self.start_phase(ctx, o, "get", self.params.R if op.f == "write" else o.need)

    def start_phase(self, ctx, o, phase, need):
        replicas = self.preference_list(o.op.key)
        o.phase, o.quorum, o.replies = phase, need, {}
        o.targets = replicas if self.params.expanding else ctx.rng.sample(replicas, need)
        self.send_phase(ctx, o, o.targets)

    def send_phase(self, ctx, o, dsts):
        if o.phase == "get":
            body = ("get", o.rid, o.op.key)
        else:
            body = ("put", o.rid, o.op.key) + o.newest
        for r in dsts:
            self.reply_to(ctx, r, body)
        if o.rid in self.ops and o.phase != "repair":  # (a local reply may have answered it already)
            ctx.set_timer(("retry", o.rid), self.params.retry_ms)

    def answered(self, ctx, o):
        """Move ``o`` on once its phase has its quorum of answers."""
        if o.rid not in self.ops or len(o.replies) < o.quorum:
            return
        if o.phase == "get" and o.op.f == "write":
            self.counter = max(self.counter, o.newest[0][0]) + 1
            o.newest = ((self.counter,) + o.rid, o.op.value)  # (counter, node, epoch, seq)
            self.start_phase(ctx, o, "put", o.need)
            return
        self.finish(ctx, o)
        if o.op.f == "write":
            ctx.reply(o.op, "ok")
            return
        ctx.reply(o.op, "ok", o.newest[1])
        if self.params.read_repair and len(o.replies) < len(o.targets):
            self.ops[o.rid] = o  # wait for the late replies (until give_up), then repair
            o.phase = "repair"
            ctx.set_timer(("give_up", o.rid), self.params.give_up_ms)
        elif self.params.read_repair:
            self.repair(ctx, o)

    def repair(self, ctx, o):
        """Read repair: send the newest version seen to the replies that were older."""
        version, value = o.newest
        for r, v in o.replies.items():
            if v < version:
                self.reply_to(ctx, r, ("put", None, o.op.key, version, value))

    def finish(self, ctx, o):
        self.ops.pop(o.rid, None)
        ctx.cancel_timer(("retry", o.rid))
        ctx.cancel_timer(("give_up", o.rid))

    # --- messages: the replica and the coordinator -----------------------------------------------
    def on_message(self, ctx, src, body):
        self.heard[src] = ctx.now()
        kind = body[0]
        if kind == "get":  # replica: report (version, value)
            _, rid, key = body
            self.reply_to(ctx, src, ("get_reply", rid) + self.local(key))
        elif kind == "put":  # replica: keep the higher version, acknowledge
            _, rid, key, version, value = body
            self.adopt(key, version, value)
            if rid is not None:
                self.reply_to(ctx, src, ("put_ack", rid))
        elif kind == "get_reply":
            _, rid, version, value = body
            o = self.ops.get(rid)
            if o is not None and o.phase in ("get", "repair") and src in o.targets:
                o.replies[src] = version
                if version > o.newest[0]:
                    o.newest = (version, value)
                if o.phase == "get":
                    self.answered(ctx, o)
                elif len(o.replies) == len(o.targets):  # every late reply is in: repair
                    self.finish(ctx, o)
                    self.repair(ctx, o)
        elif kind == "put_ack":
            o = self.ops.get(body[1])
            if o is not None and o.phase == "put" and src in o.targets:
                o.replies[src] = None
                self.answered(ctx, o)
        elif kind == "sync":  # anti-entropy: keep the newer version of each key this node replicates
            for key, version, value in body[1]:
                if ctx.node_id in self.preference_list(key):
                    self.adopt(key, version, value)

    def reply_to(self, ctx, dst, body):
        """Send ``body`` to ``dst``; to this node itself (a replica of the key), handle it at once."""
        if dst == ctx.node_id:
            self.on_message(ctx, dst, body)
        else:
            ctx.send(dst, body)

    def on_timer(self, ctx, name):
        if name == "anti_entropy":
            by_peer: dict[int, list] = {}
            for key, (version, value) in self.store.items():
                fellows = [r for r in self.preference_list(key) if r != ctx.node_id]
                if fellows:
                    by_peer.setdefault(ctx.rng.choice(fellows), []).append((key, version, value))
            for peer in sorted(by_peer):
                ctx.send(peer, ("sync", by_peer[peer]))
            ctx.set_timer("anti_entropy", self.params.anti_entropy_ms)
            return
        what, rid = name
        o = self.ops.get(rid)
        if o is None:
            return
        if o.phase == "repair":  # the read was answered; repair with the replies that came
            self.finish(ctx, o)
            self.repair(ctx, o)
        elif what == "retry":
            self.send_phase(ctx, o, [r for r in o.targets if r not in o.replies])
        else:  # give_up: a read, or a write still fetching versions -> fail; a write being put -> unknown
            self.finish(ctx, o)
            ctx.reply(o.op, "unknown" if o.phase == "put" else "fail")


NODE = Dynamo
