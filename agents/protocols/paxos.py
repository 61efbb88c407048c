"""Paxos, single decree (the Synod protocol): proposers, acceptors and learners.

L. Lamport, "Paxos Made Simple", ACM SIGACT News 32(4), 2001, Section 2. Every node is an
acceptor and a learner; the nodes in ``Params.proposers`` (default: all) are also proposers.
A ballot (the paper's *proposal number*) is ``(round, node id)``, compared lexicographically, so
two proposers never use the same one. The messages carry the paper's phase names:

* Phase 1a (``"1a"``, prepare): a proposer picks a ballot ``b`` above any it has seen and sends
  ``prepare(b)`` to all acceptors.
* Phase 1b (``"1b"``, promise): an acceptor receiving ``prepare(b)`` with ``b`` above every
  prepare it has answered promises never to accept a ballot below ``b`` and replies with the
  highest-numbered proposal it has accepted, if any.
* Phase 2a (``"2a"``, accept): on promises from a majority, the proposer sends ``accept(b, v)``
  where ``v`` is the value of the highest-numbered proposal among the replies, or its own input
  if there is none.
* Phase 2b (``"2b"``, accepted): an acceptor accepts ``(b, v)`` unless it has promised a higher
  ballot, and tells every learner. A learner that hears ``accepted(b, v)`` from a majority of
  acceptors for one ``b`` has learned that ``v`` is chosen: it records ``decide``.

Also from the paper (Section 2.4 and 2.3): an acceptor that ignores a prepare or accept tells the
proposer (``"nack"`` with its promised ballot), and the proposer then *abandons* the ballot, as it
does when its own acceptor sees a higher ballot or when ``phase_timeout_ms`` passes without a
decision. An abandoned proposer tries again with a higher ballot after a retry delay:
``retry_ms``, plus, when ``backoff`` is on, a random exponential backoff (uniform in
``[0, backoff_ms * 2^attempt]``, attempt capped at 6). With ``backoff`` off and two proposers,
each one's new prepare cuts the other's phase 2 -- the *duelling proposers* livelock of the
paper's Section 2.4 -- until chance latencies break the symmetry.

Acceptor state (``promised``, ``accepted``) and each proposer's highest round are kept in
``ctx.durable`` (the paper's stable storage) and synced (``ctx.fsync()``) before the message that
relies on them leaves -- an acceptor before its promise (``1b``) or acceptance (``2b``), a proposer
before its prepare (``1a``), a learner before it tells others what it learned -- so a restarted
node, even one whose crash lost unsynced writes, keeps its promises and never reuses a ballot.
A learner that has learned the value tells the others once (``"chosen"``) and
answers later prepares and accepts with it, so late nodes and proposers learn it too.
Inputs: ``Params.inputs[i]`` is node ``i``'s value (default: ``i``, so inputs are distinct and
agreement is meaningful). Left out: Multi-Paxos (see ``multipaxos.py``), a distinguished proposer
or learner, reconfiguration.

Learnable choice
----------------
``("retry", ballot)``: asked when a proposer abandons ``ballot``. Actions ``0..k-1`` wait
``retry_choices_ms[a]`` before the next ballot; action ``k`` (the default) is the textbook rule
above (``retry_ms`` plus random backoff when ``backoff`` is on). Mask: all ``k + 1`` allowed.
obs: ``[round of the abandoned ballot, attempts so far, highest round seen, promises held,
accepts held]``.

Trace records: ``propose`` {value} (a proposer's input), ``decide`` {value, round} (round of the
ballot in which the learner saw the value chosen), ``candidate`` {term: round} when a proposer
starts a ballot (useful to count duelling ballots).
Clients: ``read`` answers the learned value, or ``fail`` before this node has learned it; other
operations fail.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node

NONE = (0, -1)  # below every real ballot


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] | None = Field(None, description="node i's value at index i (default: i)")
    proposers: list[int] | None = Field(None, description="node ids that propose (default: all)")
    start_ms: float = Field(0.0, ge=0, description="a proposer's first ballot starts after this (own clock)")
    phase_timeout_ms: float = Field(100.0, gt=0, description="abandon a ballot not decided within this")
    retry_ms: float = Field(5.0, ge=0, description="wait this long after abandoning a ballot")
    backoff: bool = Field(True, description="add random exponential backoff to retry_ms")
    backoff_ms: float = Field(20.0, gt=0, description="backoff window for the first retry (doubles each time)")
    retry_choices_ms: list[float] = Field(default_factory=lambda: [0.0, 10.0, 40.0, 160.0],
                                          description="retry delays a learner may pick")


class Paxos(Node):
    Params = Params

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        d = ctx.durable
        self.promised = d.setdefault("promised", NONE)  # acceptor: highest prepare answered
        self.accepted = d.setdefault("accepted", None)  # acceptor: (ballot, value) or None
        self.chosen = d.get("chosen")  # learner: the learned value, or None
        self.votes: dict = {}  # learner: ballot -> (value, set of acceptors)
        props = self.params.proposers
        self.proposer = props is None or ctx.node_id in props
        self.ballot = None  # proposer: the ballot in progress, or None
        self.phase = None  # 1 or 2 while a ballot is in progress
        self.promises: dict = {}  # proposer: acceptor -> accepted (ballot, value) or None
        self.acks: set = set()
        self.attempts = 0
        self.majority = ctx.n // 2 + 1
        inputs = self.params.inputs
        if inputs is not None and len(inputs) < ctx.n:
            raise ValueError(f"paxos: inputs has {len(inputs)} values for {ctx.n} nodes")
        self.input = inputs[ctx.node_id] if inputs is not None else ctx.node_id
        if self.proposer and self.chosen is None:
            if not d.get("proposed"):
                d["proposed"] = True
                ctx.record("propose", value=self.input)
            ctx.set_timer("retry", self.params.start_ms)

    # --- proposer --------------------------------------------------------------------------------
    def phase1a(self, ctx):
        """Pick a ballot above any seen (persisted first) and send prepare to all acceptors."""
        rnd = max(ctx.durable.get("round", 0), self.promised[0]) + 1
        ctx.durable["round"] = rnd
        ctx.fsync()  # a restarted proposer never reuses a ballot
        self.ballot, self.phase = (rnd, ctx.node_id), 1
        self.promises, self.acks = {}, set()
        ctx.record("candidate", term=rnd)
        self.to_all(ctx, ("1a", self.ballot))
        ctx.set_timer("timeout", self.params.phase_timeout_ms)

    def phase2a(self, ctx):
        """Promises from a majority: accept(b, v), v from the highest-numbered accepted proposal."""
        prior = [a for a in self.promises.values() if a is not None]
        v = max(prior, key=lambda a: a[0])[1] if prior else self.input
        self.phase = 2
        self.to_all(ctx, ("2a", self.ballot, v))

    def abandon(self, ctx):
        """Give the ballot up (preempted or timed out) and ask how long to wait before retrying."""
        if self.ballot is None:
            return
        b, self.ballot, self.phase = self.ballot, None, None
        ctx.cancel_timer("timeout")
        self.attempts += 1
        k = len(self.params.retry_choices_ms)
        obs = [float(b[0]), float(self.attempts), float(self.promised[0]), float(len(self.promises)),
               float(len(self.acks))]
        ctx.ask(("retry", b), obs, default=k, mask=[True] * (k + 1))

    def on_decision(self, ctx, point, action):
        if point[0] != "retry" or self.ballot is not None or self.chosen is not None:
            return
        choices = self.params.retry_choices_ms
        if action < len(choices):
            delay = choices[action]
        else:  # textbook: retry_ms, plus random exponential backoff
            delay = self.params.retry_ms
            if self.params.backoff:
                delay += ctx.rng.uniform(0, self.params.backoff_ms * 2 ** min(self.attempts - 1, 6))
        ctx.set_timer("retry", delay)

    def on_timer(self, ctx, name):
        if self.chosen is not None:
            return
        if name == "retry" and self.ballot is None:
            self.phase1a(ctx)
        elif name == "timeout":
            self.abandon(ctx)

    # --- messages --------------------------------------------------------------------------------
    def to_all(self, ctx, body):
        for p in ctx.nodes:  # acceptors and learners: every node, this one included
            ctx.send(p, body)

    def on_message(self, ctx, src, body):
        kind = body[0]
        if kind == "chosen":
            self.learn(ctx, body[1], body[2])
        elif self.chosen is not None and kind in ("1a", "2a"):
            ctx.send(src, ("chosen", self.chosen[0], self.chosen[1]))  # already decided: say so
        elif kind == "1a":
            self.on_prepare(ctx, src, body[1])
        elif kind == "1b":
            self.on_promise(ctx, src, body[1], body[2])
        elif kind == "2a":
            self.on_accept(ctx, src, body[1], body[2])
        elif kind == "2b":
            self.on_accepted(ctx, src, body[1], body[2])
        elif kind == "nack" and body[1] == self.ballot:
            self.abandon(ctx)

    # acceptor
    def on_prepare(self, ctx, src, b):
        if b > self.promised:
            self.promised = ctx.durable["promised"] = b
            ctx.fsync()  # stable storage before the promise leaves
            ctx.send(src, ("1b", b, self.accepted))
            if self.ballot is not None and b > self.ballot:
                self.abandon(ctx)  # a higher ballot is under way: ours cannot win
        elif b < self.promised:
            ctx.send(src, ("nack", b, self.promised))

    def on_accept(self, ctx, src, b, v):
        if b >= self.promised:
            self.promised = ctx.durable["promised"] = b
            self.accepted = ctx.durable["accepted"] = (b, v)
            ctx.fsync()  # stable storage before the acceptance leaves
            self.to_all(ctx, ("2b", b, v))  # tell every learner
        else:
            ctx.send(src, ("nack", b, self.promised))

    # proposer
    def on_promise(self, ctx, src, b, accepted):
        if b != self.ballot or self.phase != 1:
            return
        self.promises[src] = accepted
        if len(self.promises) >= self.majority:
            self.phase2a(ctx)

    # learner
    def on_accepted(self, ctx, src, b, v):
        value, who = self.votes.setdefault(b, (v, set()))
        who.add(src)
        if len(who) >= self.majority:
            self.learn(ctx, v, b[0])

    def learn(self, ctx, v, rnd):
        if self.chosen is not None:
            return
        self.chosen = ctx.durable["chosen"] = (v, rnd)
        ctx.fsync()  # what it learned, before it tells anyone (or a client reads it)
        ctx.record("decide", value=v, round=rnd)
        ctx.cancel_timer("timeout")
        ctx.cancel_timer("retry")
        self.ballot = None
        ctx.broadcast(("chosen", v, rnd))

    # --- clients ---------------------------------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f == "read" and self.chosen is not None:
            ctx.reply(op, "ok", self.chosen[0])
        else:
            ctx.reply(op, "fail")


NODE = Paxos
#: client reads return the decided value, not a register: the runner checks agreement, not linearizability
REGISTER_READS = False
