"""Primary-backup replication with a fixed primary: the simplest CP baseline.

After Alsberg and Day, "A Principle for Resilient Sharing of Distributed Resources", ICSE 1976,
and Budhiraja, Marzullo, Schneider and Toueg, "The Primary-Backup Approach" (Distributed
Systems, 2nd ed., 1993), in its synchronous, blocking form.

Node ``primary`` (0 by default) orders every operation; every other node is a *backup*.

* A client operation at a backup is forwarded to the primary (``request``), retransmitted every
  ``retry_ms`` until the primary's ``response`` comes back; the primary executes each request id
  once and answers duplicates from its record of outcomes.
* The primary executes reads on its own state and answers at once. An update (write/put/append,
  or a cas that holds) is appended to the primary's log and applied, then ``replicate``\\ d to every
  backup; the primary answers only when **all** backups have acknowledged it (``ack`` carries the
  length of the backup's log). Unacknowledged entries are retransmitted every ``retry_ms``.
* A backup applies log entries strictly in order and acknowledges its log length.

While the primary lives, it is the one copy every operation goes through, so histories are
linearizable; a crashed, paused or partitioned backup blocks every update (consistency over
availability). Logs live in ``ctx.durable``, synced (``ctx.fsync()``) at the primary before it
replicates an update and at a backup before it acknowledges.

Left out: failover (no view change, no election: if the primary fails the service stops until it
restarts), membership changes, log truncation or snapshots, reads at backups (see the choice below).

Learnable choice
----------------
``("serve", op.id)`` on every client operation, ``default=1`` (textbook), ``mask``:

* 0 = local: a read is answered from this node's own copy (a backup's may be stale); masked off
  for updates at backups (a backup cannot order them);
* 1 = through the primary (forward at a backup, execute at the primary);
* 2 = refuse: reply ``fail``.

obs: ``[is_write, is_primary, lag, primary_staleness]``: ``lag`` is
``min(1, entries the primary has that this node lacks / 10)`` as last seen by this node (0 at the
primary), ``primary_staleness`` is ``min(1, time since last heard from the primary / suspect_ms)``
on the own clock (0 at the primary).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import ClientOp, Node

LOCAL, PRIMARY, REFUSE = 0, 1, 2
UPDATES = ("write", "put", "append", "cas")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary: int = Field(0, ge=0, description="the fixed primary's node id")
    retry_ms: float = Field(50.0, gt=0, description="retransmit requests and log entries this often")
    give_up_ms: float = Field(1000.0, gt=0, description="a backup stops forwarding a request after this long")
    batch: int = Field(64, ge=1, description="most log entries per replicate message")
    suspect_ms: float = Field(300.0, gt=0, description="scale of the primary_staleness obs")


class PrimaryBackup(Node):
    Params = Params

    def on_start(self, ctx):
        if self.params.primary >= ctx.n:
            raise ValueError(f"protocol.params.primary: node {self.params.primary} does not exist ({ctx.n} nodes)")
        self.is_primary = ctx.node_id == self.params.primary
        self.log = ctx.durable.setdefault("log", [])  # [(key, value)], applied in order; on disk
        self.state: dict = {}
        for key, value in self.log:
            self.state[key] = value
        self.waiting: dict = {}  # op id -> ClientOp awaiting its serve decision
        self.forwarded: dict = {}  # op id -> ClientOp sent on to the primary (backup)
        self.primary_len = len(self.log)  # primary's log length, as last heard (backup)
        self.heard_primary = None
        if self.is_primary:
            self.acked = {b: 0 for b in ctx.peers}  # log length each backup has acknowledged
            self.pending: dict = {}  # log index -> [(requester, op)] answered once all backups ack
            self.outcome: dict = {}  # request id -> (status, value): execute once
            self.executing: dict = {}  # request id -> log index of an update in flight
        ctx.set_timer("retry", self.params.retry_ms)

    def apply(self, ctx, key, value):
        self.log.append((key, value))
        self.state[key] = value
        ctx.record("apply", key=key, value=value)

    # --- clients and the serve decision ----------------------------------------------------------
    def on_client(self, ctx, op):
        self.waiting[op.id] = op
        update = op.f in UPDATES
        mask = [self.is_primary or not update, True, True]
        ctx.ask(("serve", op.id), self.observe(ctx, op), default=PRIMARY, mask=mask)

    def observe(self, ctx, op):
        if self.is_primary:
            return [float(op.f in UPDATES), 1.0, 0.0, 0.0]
        lag = min(1.0, max(0, self.primary_len - len(self.log)) / 10)
        age = 1.0 if self.heard_primary is None else min(1.0, (ctx.now() - self.heard_primary) / self.params.suspect_ms)
        return [float(op.f in UPDATES), 0.0, lag, max(0.0, age)]

    def on_decision(self, ctx, point, action):
        op = self.waiting.pop(point[1], None)
        if op is None:
            return
        if action == REFUSE or (action == LOCAL and op.f in UPDATES and not self.is_primary):
            ctx.reply(op, "fail")
        elif self.is_primary:
            self.execute(ctx, None, op)
        elif action == LOCAL:
            ctx.reply(op, *self.read(op))
        else:  # forward to the primary
            self.forwarded[op.id] = (op, ctx.now())
            ctx.send(self.params.primary, ("request", tuple(op)))

    def read(self, op):
        value = self.state.get(op.key)
        if op.f == "get" and value is None:
            value = ""
        return "ok", value

    # --- the primary -----------------------------------------------------------------------------
    def execute(self, ctx, requester, op):
        """Run one request (``requester``: the forwarding backup, or None for a local client)."""
        if op.id in self.outcome:
            self.respond(ctx, requester, op, *self.outcome[op.id])
            return
        if op.id in self.executing:  # a retransmitted request: answer when its entry is acked
            self.pending[self.executing[op.id]].append((requester, op))
            return
        if op.f in ("read", "get"):
            self.respond(ctx, requester, op, *self.read(op))
            return
        cur = self.state.get(op.key)
        if op.f in ("write", "put"):
            new = op.value
        elif op.f == "append":
            new = ("" if cur is None else str(cur)) + str(op.value)
        elif op.f == "cas" and cur == op.value[0]:
            new = op.value[1]
        else:  # a cas that does not hold, or an unknown operation: no effect
            self.outcome[op.id] = ("fail", None)
            self.respond(ctx, requester, op, "fail", None)
            return
        self.apply(ctx, op.key, new)
        ctx.fsync()  # on the primary's disk before any backup can ack it
        index = len(self.log)
        self.executing[op.id] = index
        self.pending[index] = [(requester, op)]
        for b in ctx.peers:
            self.replicate(ctx, b)
        self.commit(ctx)

    def replicate(self, ctx, b):
        start = self.acked[b]
        if start < len(self.log):
            ctx.send(b, ("replicate", start, self.log[start:start + self.params.batch]))

    def commit(self, ctx):
        """Answer every update that all backups now hold."""
        held = min(self.acked.values(), default=len(self.log))
        for index in sorted(i for i in self.pending if i <= held):
            for requester, op in self.pending.pop(index):
                self.outcome[op.id] = ("ok", None)
                self.executing.pop(op.id, None)
                self.respond(ctx, requester, op, "ok", None)

    def respond(self, ctx, requester, op, status, value):
        if requester is None:
            ctx.reply(op, status, value)
        else:
            ctx.send(requester, ("response", op.id, status, value))

    # --- messages and timers ---------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        kind = body[0]
        if kind == "request" and self.is_primary:
            self.execute(ctx, src, ClientOp(*body[1]))
        elif kind == "ack" and self.is_primary:
            self.acked[src] = max(self.acked[src], body[1])
            self.commit(ctx)
        elif kind == "replicate" and not self.is_primary:  # backup: apply in order
            self.heard_primary = ctx.now()
            _, start, entries = body
            self.primary_len = max(self.primary_len, start + len(entries))
            for key, value in entries[len(self.log) - start:] if start <= len(self.log) else ():
                self.apply(ctx, key, value)
            ctx.fsync()  # a backup stores before it acknowledges
            ctx.send(src, ("ack", len(self.log)))
        elif kind == "response" and not self.is_primary:
            self.heard_primary = ctx.now()
            _, oid, status, value = body
            entry = self.forwarded.pop(oid, None)
            if entry is not None:
                ctx.reply(entry[0], status, value)

    def on_timer(self, ctx, name):
        if self.is_primary:
            for b in ctx.peers:
                self.replicate(ctx, b)
        else:
            now = ctx.now()
            for oid, (op, since) in list(self.forwarded.items()):
                if now - since > self.params.give_up_ms:  # give up: a read did nothing
                    del self.forwarded[oid]
                    ctx.reply(op, "unknown" if op.f in UPDATES else "fail")
                else:
                    ctx.send(self.params.primary, ("request", tuple(op)))
        ctx.set_timer("retry", self.params.retry_ms)


NODE = PrimaryBackup
