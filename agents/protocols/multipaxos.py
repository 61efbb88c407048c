"""Multi-Paxos: a replicated log of Synod instances with a distinguished proposer (the leader).

L. Lamport, "Paxos Made Simple", ACM SIGACT News 32(4), 2001, Section 3 ("Implementing a State
Machine"); message and role names as in Section 2 and in ``paxos.py``. Log slot ``i`` is Synod
instance ``i``; every node is an acceptor and a learner of every slot, and a replica of a
key-value state machine that applies chosen commands in slot order.

* **Leader**: the lowest-numbered node this node has heard from within ``leader_timeout_ms``
  (itself included; every node broadcasts a ``heartbeat`` every ``heartbeat_ms``). A node that
  considers itself leader runs **phase 1 once for all slots** from its first unchosen one:
  ``1a(b, first)``; acceptors promise ``b`` for every slot and return what they accepted at slots
  ``>= first`` (``1b``). With a majority of promises the leader re-proposes, for every such slot,
  the value of the highest ballot reported, fills the gaps with no-ops, and is *active*: each new
  client command gets the next slot and goes straight to **phase 2** (``2a(b, slot, cmd)``,
  acceptors answer ``2b``). A majority of ``2b`` means chosen: the leader learns it and tells
  everybody (``decision``). Two nodes that both think they lead duel with ballots, as in the
  Synod protocol; safety never depends on there being a single leader.
* A ballot is the integer ``round * n + node id`` (unique per node; above every ballot seen when
  picked). A ``nack`` (an acceptor promised a higher ballot) makes the leader step back, wait
  ``retry_ms`` plus a random backoff, and run phase 1 again if it still thinks it leads.
* **Clients**: every operation (reads too) is a command in the log, so histories are
  linearizable. A node that is not the leader forwards the command to the leader it believes in;
  the node the client asked replies when it applies the command itself. ``fail`` is answered only
  when the command was never proposed (no leader known, or the leader refused it).
* **Catch-up**: heartbeats carry the sender's applied prefix; a node behind asks for the chosen
  commands it lacks (``catchup`` / ``decisions``). Lost ``2a``/``1a`` are resent every heartbeat.

Stable storage (``ctx.durable``): ``promised``, ``accepted`` (slot -> (ballot, cmd)), ``chosen``
(slot -> (cmd, ballot)) and the highest round used; a restarted node replays the chosen prefix.
Synced (``ctx.fsync()``): an acceptor before its promise (``1b``) or acceptance (``2b``), a
proposer before its prepare (``1a``). ``chosen`` is not synced: it is a cache of decisions that a
restarted node learns again from the others (``catchup``).
Left out: leases and local reads, batching, log truncation/snapshots, reconfiguration, and the
paper's "alpha" window of concurrent proposals (unbounded here).

Learnable choice: ``("retry", ballot)`` when a leader's ballot is nacked, as in ``paxos.py``:
action ``a < k`` waits ``retry_choices_ms[a]`` before running phase 1 again; action ``k`` (the
default) is the textbook rule, ``retry_ms`` plus a uniform random backoff in ``[0, backoff_ms]``.
Mask: all ``k + 1`` allowed. obs: ``[round of the nacked ballot, round promised, log slots chosen,
commands waiting]``.

Trace records: ``propose`` {value: cmd, instance: slot} (a leader proposing a new command or a
no-op), ``decide`` {value: cmd, round: ballot, instance: slot} (learned), ``commit`` {index: slot,
term: ballot, cmd} (applied in order), ``leader`` {term: ballot} (phase 1 won), ``follower``
{term: ballot} (stepped back). ``cmd`` is ``[origin, op id, f, key, value]`` or ``None`` (no-op).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node

FS = ("read", "write", "cas", "get", "put", "append", "add")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heartbeat_ms: float = Field(20.0, gt=0, description="heartbeat and retransmission period (own clock)")
    leader_timeout_ms: float = Field(100.0, gt=0, description="a node not heard from for this long is not leader")
    retry_ms: float = Field(10.0, ge=0, description="wait after a nack before phase 1 again")
    backoff_ms: float = Field(40.0, ge=0, description="random backoff window added to retry_ms")
    catchup_batch: int = Field(64, ge=1, description="most chosen commands in one decisions message")
    retry_choices_ms: list[float] = Field(default_factory=lambda: [0.0, 10.0, 40.0, 160.0],
                                          description="retry delays a learner may pick")


class MultiPaxos(Node):
    Params = Params

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        d = ctx.durable
        self.promised = d.setdefault("promised", -1)  # acceptor, all slots
        self.accepted = d.setdefault("accepted", {})  # acceptor: slot -> (ballot, cmd)
        self.chosen = d.setdefault("chosen", {})  # learner: slot -> (cmd, ballot)
        self.n, self.majority = ctx.n, ctx.n // 2 + 1
        self.kv: dict = {}  # the replica's state machine
        self.done: set = set()  # client op ids applied (a command is applied once)
        self.applied = 0  # slots 0..applied-1 are applied
        self.waiting: dict = {}  # op id -> ClientOp this node must answer
        now = ctx.now()
        self.heard = {p: now for p in ctx.peers}  # assume everyone up at start
        self.ballot = None  # leader: ballot of the phase 1 under way or won
        self.active = False  # leader: phase 1 won for self.ballot
        self.promises: dict = {}  # leader: acceptor -> accepted entries
        self.proposals: dict = {}  # leader: slot -> [cmd, acks]
        self.queue: list = []  # leader: commands waiting for phase 1 to finish
        self.next_slot = 0
        self.backing_off = False
        self.apply_chosen(ctx)
        ctx.set_timer("tick", self.params.heartbeat_ms)
        self.check_leader(ctx)

    # --- leadership ------------------------------------------------------------------------------
    def leader(self, ctx):
        """The lowest id heard from within leader_timeout_ms (this node included)."""
        now, to = ctx.now(), self.params.leader_timeout_ms
        return min([ctx.node_id] + [p for p, t in self.heard.items() if now - t < to])

    def check_leader(self, ctx):
        if self.leader(ctx) == ctx.node_id:
            if self.ballot is None and not self.backing_off:
                self.phase1a(ctx)
        elif self.ballot is not None:
            self.step_back(ctx)

    def step_back(self, ctx):
        """Stop leading: commands not yet proposed are refused (they never entered the log)."""
        if self.ballot is not None:
            ctx.record("follower", term=self.ballot)
        self.ballot, self.active, self.proposals = None, False, {}
        for cmd in self.queue:
            self.refuse(ctx, cmd)
        self.queue = []

    def on_timer(self, ctx, name):
        if name == "tick":
            ctx.broadcast(("heartbeat", self.applied))
            self.check_leader(ctx)
            self.resend(ctx)
            ctx.set_timer("tick", self.params.heartbeat_ms)
        elif name == "retry":
            self.backing_off = False
            self.check_leader(ctx)

    def resend(self, ctx):
        if self.ballot is None:
            return
        if not self.active:
            for p in ctx.nodes:
                if p not in self.promises:
                    ctx.send(p, ("1a", self.ballot, self.applied))
        for slot, (cmd, acks) in self.proposals.items():
            for p in ctx.nodes:
                if p not in acks:
                    ctx.send(p, ("2a", self.ballot, slot, cmd))

    # --- phase 1 (once per leadership, for all slots) ----------------------------------------------
    def phase1a(self, ctx):
        rnd = max(ctx.durable.get("round", 0), self.promised // self.n) + 1
        ctx.durable["round"] = rnd
        ctx.fsync()  # a restarted node never reuses a ballot
        self.ballot, self.active, self.promises, self.proposals = rnd * self.n + ctx.node_id, False, {}, {}
        for p in ctx.nodes:
            ctx.send(p, ("1a", self.ballot, self.applied))

    def on_prepare(self, ctx, src, b, first):
        if b >= self.promised:
            self.promised = ctx.durable["promised"] = b
            ctx.fsync()  # stable storage before the promise leaves
            ctx.send(src, ("1b", b, {s: a for s, a in self.accepted.items() if s >= first}))
        else:
            ctx.send(src, ("nack", b, self.promised))

    def on_promise(self, ctx, src, b, entries):
        if b != self.ballot or self.active:
            return
        self.promises[src] = entries
        if len(self.promises) < self.majority:
            return
        best: dict = {}  # slot -> (ballot, cmd) of the highest ballot reported
        for ents in self.promises.values():
            for s, (ab, cmd) in ents.items():
                if s not in best or ab > best[s][0]:
                    best[s] = (ab, cmd)
        self.active = True
        ctx.record("leader", term=b)
        top = max(list(best) + list(self.chosen) + [self.applied - 1])
        self.next_slot = top + 1
        for s in range(self.applied, top + 1):
            if s in self.chosen:
                continue
            if s in best:
                self.phase2a(ctx, s, best[s][1])
            else:
                self.propose(ctx, s, None)  # fill the gap with a no-op
        queue, self.queue = self.queue, []
        for cmd in queue:
            self.propose(ctx, self.new_slot(), cmd)

    # --- phase 2 (per slot) ----------------------------------------------------------------------
    def new_slot(self):
        while self.next_slot in self.chosen:
            self.next_slot += 1
        self.next_slot += 1
        return self.next_slot - 1

    def propose(self, ctx, slot, cmd):
        ctx.record("propose", value=cmd, instance=slot)
        self.phase2a(ctx, slot, cmd)

    def phase2a(self, ctx, slot, cmd):
        self.proposals[slot] = [cmd, set()]
        for p in ctx.nodes:
            ctx.send(p, ("2a", self.ballot, slot, cmd))

    def on_accept(self, ctx, src, b, slot, cmd):
        if b >= self.promised:
            self.promised = ctx.durable["promised"] = b
            self.accepted[slot] = (b, cmd)
            ctx.fsync()  # stable storage before the acceptance leaves
            ctx.send(src, ("2b", b, slot))
        else:
            ctx.send(src, ("nack", b, self.promised))

    def on_accepted(self, ctx, src, b, slot):
        prop = self.proposals.get(slot)
        if b != self.ballot or prop is None:
            return
        prop[1].add(src)
        if len(prop[1]) >= self.majority:
            del self.proposals[slot]
            ctx.broadcast(("decision", slot, prop[0], b))
            self.learn(ctx, slot, prop[0], b)

    def on_nack(self, ctx, b, promised):
        if b != self.ballot:
            return
        ctx.durable["round"] = max(ctx.durable.get("round", 0), promised // self.n)
        self.step_back(ctx)
        self.backing_off = True
        k = len(self.params.retry_choices_ms)
        obs = [float(b // self.n), float(promised // self.n), float(len(self.chosen)), float(len(self.queue))]
        ctx.ask(("retry", b), obs, default=k, mask=[True] * (k + 1))

    def on_decision(self, ctx, point, action):
        if point[0] != "retry" or not self.backing_off:
            return
        choices = self.params.retry_choices_ms
        if 0 <= action < len(choices):
            delay = choices[action]
        else:  # textbook: retry_ms plus a random backoff
            delay = self.params.retry_ms + ctx.rng.uniform(0, self.params.backoff_ms)
        ctx.set_timer("retry", delay)

    # --- learning and applying -------------------------------------------------------------------
    def learn(self, ctx, slot, cmd, b):
        if slot in self.chosen:
            return
        self.chosen[slot] = (cmd, b)
        ctx.record("decide", value=cmd, round=b, instance=slot)
        self.apply_chosen(ctx)

    def apply_chosen(self, ctx):
        while self.applied in self.chosen:
            cmd, b = self.chosen[self.applied]
            ctx.record("commit", index=self.applied, term=b, cmd=cmd)
            self.applied += 1
            self.apply(ctx, cmd)

    def apply(self, ctx, cmd):
        """The state machine: one register per key; answer the client if it asked this node."""
        if cmd is None or cmd[1] in self.done:
            return
        origin, oid, f, key, value = cmd
        self.done.add(oid)
        status, out = "ok", None
        if f == "read":
            out = self.kv.get(key)
        elif f == "get":
            out = self.kv.get(key, "")
        elif f in ("write", "put"):
            self.kv[key] = value
        elif f == "append":
            self.kv[key] = f"{self.kv.get(key, '')}{value}"
        elif f == "add":  # a set per key (Jepsen's set workload): the read returns the elements
            self.kv[key] = tuple(sorted(set(self.kv.get(key) or ()) | {value}))
        elif self.kv.get(key) == value[0]:  # cas
            self.kv[key] = value[1]
        else:
            status = "fail"
        op = self.waiting.pop(oid, None) if origin == ctx.node_id else None
        if op is not None:
            ctx.reply(op, status, out)

    # --- clients ---------------------------------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f not in FS:
            return ctx.reply(op, "fail")
        self.waiting[op.id] = op
        self.request(ctx, [ctx.node_id, op.id, op.f, op.key, list(op.value) if op.f == "cas" else op.value])

    def request(self, ctx, cmd):
        """Leaders propose (or queue during phase 1); others forward once to their leader."""
        leader = self.leader(ctx)
        if self.active:
            self.propose(ctx, self.new_slot(), cmd)
        elif leader == ctx.node_id:
            self.queue.append(cmd)
            self.check_leader(ctx)
        elif cmd[0] == ctx.node_id:
            ctx.send(leader, ("request", cmd))
        else:
            self.refuse(ctx, cmd)

    def refuse(self, ctx, cmd):
        if cmd[0] == ctx.node_id:
            op = self.waiting.pop(cmd[1], None)
            if op is not None:
                ctx.reply(op, "fail")
        else:
            ctx.send(cmd[0], ("refused", cmd[1]))

    # --- messages --------------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        if src in self.heard:
            self.heard[src] = ctx.now()
        kind = body[0]
        if kind == "heartbeat":
            if body[1] > self.applied:
                ctx.send(src, ("catchup", self.applied))
        elif kind == "1a":
            self.on_prepare(ctx, src, body[1], body[2])
        elif kind == "1b":
            self.on_promise(ctx, src, body[1], body[2])
        elif kind == "2a":
            self.on_accept(ctx, src, body[1], body[2], body[3])
        elif kind == "2b":
            self.on_accepted(ctx, src, body[1], body[2])
        elif kind == "nack":
            self.on_nack(ctx, body[1], body[2])
        elif kind == "decision":
            self.learn(ctx, body[1], body[2], body[3])
        elif kind == "catchup":
            first = body[1]
            ents = [(s, *self.chosen[s]) for s in range(first, first + self.params.catchup_batch) if s in self.chosen]
            if ents:
                ctx.send(src, ("decisions", ents))
        elif kind == "decisions":
            for s, cmd, b in body[1]:
                self.learn(ctx, s, cmd, b)
        elif kind == "request":
            self.request(ctx, body[1])
        elif kind == "refused":
            op = self.waiting.pop(body[1], None)
            if op is not None:
                ctx.reply(op, "fail")


NODE = MultiPaxos
