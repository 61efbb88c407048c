"""Raft consensus with a replicated key-value store.

Diego Ongaro and John Ousterhout, "In Search of an Understandable Consensus Algorithm",
USENIX ATC 2014. The handlers below follow Figure 2 of the paper ("The Raft consensus
algorithm: a condensed summary"), with its names: ``currentTerm``, ``votedFor``, ``log``
(persistent, kept in ``ctx.durable``), ``commitIndex``, ``lastApplied`` (volatile),
``nextIndex``, ``matchIndex`` (volatile, leaders only), and the RPCs RequestVote and
AppendEntries with their arguments and results.

Implemented
-----------
* Leader election (Section 5.2): randomized election timeouts drawn from
  ``election_timeout_ms = [lo, hi]`` on the node's own clock, a fresh draw for every term;
  heartbeats (empty AppendEntries) every ``heartbeat_ms``; the election restriction
  (Section 5.4.1: vote only for a candidate whose log is at least as up to date).
* Log replication (Section 5.3) with the consistency check, conflict truncation, and the
  usual fast back-off (a failed AppendEntries reply carries the follower's last index).
* Commitment (Section 5.4.2): a leader commits only entries of its own term by counting
  replicas (``matchIndex``); earlier entries commit indirectly. A new leader appends a no-op
  entry of its term at once (Section 8), so that it can commit and serve reads.
* A key-value state machine (Section 7 / Figure 1): ``read``/``write``/``cas`` on a key
  (``None`` = one register), ``get``/``put``/``append``, and ``add`` (a set per key: a read returns
  its elements, sorted). Every client operation, reads too,
  goes through the log, so every answer is linearizable; a node replies only once the entry
  is applied on it. Duplicated commands (same client operation id) are applied once (Section 8).
* Clients: a node that is not the leader *forwards* the operation to the leader it knows
  (``leaderId``); the node the client talked to replies when it applies the entry itself.
  It replies ``fail`` only when it knows no leader (so the operation was sent nowhere);
  a forwarded operation that is lost is left to the client's timeout (``unknown``).
* Persistence (Figure 2, "updated on stable storage before responding to RPCs"): ``ctx.fsync()``
  before every RequestVote and AppendEntries reply, before a candidate asks for votes (its new
  term and its own vote), and after a leader appends to its log (it counts itself as a replica
  only of what is on its disk). A crash with ``lose_unsynced`` loses nothing a reply vouched for.
* PreVote (``prevote: true``; Ongaro's thesis, *Consensus: Bridging Theory and Practice*, 2014,
  §9.6): when its election timer fires a node first sends ``pre_vote`` for ``currentTerm + 1``,
  changing no one's term, and stands only once a majority would vote for it. A node grants a
  pre-vote if the candidate's log is at least as up to date as its own and it has not heard from
  a current leader within the lower election timeout (a leader never grants one). So a node that
  was cut off, and rejoins, does not depose a leader that a majority still follows.
* CheckQuorum (``check_quorum: true``; thesis §6.2): a leader that has not heard an
  AppendEntries reply from a majority (itself included) within an election timeout steps down,
  so a leader that can send but not hear does not lead forever. Both are off by default: the
  paper's Raft.
* ``fsync_ms = [lo, hi]``: the time a write to stable storage takes (uniform, node's clock; 0 by
  default: an instant disk). A RequestVote, or a reply to one or to AppendEntries, that must
  follow an fsync leaves only once the write is done (writes queue on one disk); the leader's own
  AppendEntries go out at once, its disk write running in parallel (thesis §10.2.1). The thesis
  names this time ``W`` in its election model (§9.1: ``E_s = 1 + M_s + 2L + W - U(0, 1/2)``).
* ``timer_granularity_ms``: election timers fire only at multiples of this on the node's own
  clock (0: exact), as with a coarse OS timer tick.
* ``broadcast_delay_ms``: every Raft message waits this long (a timer on the node's clock)
  before it is sent, so that the paper's timing requirement ``broadcastTime << electionTimeout
  << MTBF`` (Section 5.6) can be studied; ``world.processing_ms`` adds handler time on top.

Left out
--------
Cluster membership changes (Section 6), log compaction and snapshots (Section 7),
InstallSnapshot, read leases / ReadIndex (Section 8 reads go through the log instead),
client sessions with retries (duplicates are only filtered by operation id), leader leases
(thesis §4.2.3: ignoring RequestVote while a leader is heard), and batching/pipelining beyond
``max_entries`` per message.

Learnable choices (``ctx.ask``)
-------------------------------
``("election_timeout", term)``
    Actions ``0..k-1`` pick ``timeout_choices_ms[a]``; action ``k`` (the default) draws the
    timeout uniformly from ``election_timeout_ms`` with ``ctx.rng``: the textbook rule.
    Asked whenever the node enters a new term. Mask: all ``k+1`` actions allowed.
``("stand", term)``
    Asked when the election timer fires: ``1`` (default) = become candidate for ``term``,
    ``0`` = stay follower and wait another timeout.
Both observe ``[currentTerm, lastLogIndex, lastLogTerm, commitIndex, failed elections in a row,
ms since heard from a leader or granted a vote]``, from the node's own state and clock.

Trace records: ``candidate`` {term}, ``leader`` {term}, ``follower`` {term} (stepping down or
adopting a newer term), ``vote`` {term, candidate} (a vote granted; a candidate's vote for itself
is not recorded), ``pre_vote`` {term} (a PreVote round for ``term`` began; the node's term is
unchanged), ``commit`` {index, term, cmd} (cmd is ``(origin node, op id, f, key, value)``
or ``None`` for a leader's no-op), ``apply`` {key, value} (the store changed).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs.world.node import Node

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    election_timeout_ms: tuple[float, float] = Field(
        (150.0, 300.0), description="[lo, hi]: election timeouts are drawn uniformly here (node's own clock)")
    heartbeat_ms: float = Field(50.0, gt=0, description="leader's idle AppendEntries period")
    broadcast_delay_ms: float = Field(0.0, ge=0, description="delay before each RPC is sent (node's own clock)")
    fsync_ms: tuple[float, float] = Field(
        (0.0, 0.0), description="[lo, hi]: time one write to stable storage takes, uniform (node's own clock)")
    timer_granularity_ms: float = Field(0.0, ge=0, description="election timers fire at multiples of this (0: exact)")
    timeout_choices_ms: list[float] = Field(
        default_factory=list, description="timeouts a learner may pick; empty: 5 evenly spaced in the range")
    max_entries: int = Field(64, ge=1, description="most log entries in one AppendEntries")
    max_forward_hops: int = Field(2, ge=1, description="how often a client operation may be forwarded")
    prevote: bool = Field(False, description="PreVote (thesis 9.6): stand only if a majority would vote")
    check_quorum: bool = Field(
        False, description="CheckQuorum (thesis 6.2): a leader unheard by a majority for a timeout steps down")

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.election_timeout_ms
        if not 0 < lo <= hi:
            raise ValueError("election_timeout_ms must be [lo, hi] with 0 < lo <= hi")
        if not 0 <= self.fsync_ms[0] <= self.fsync_ms[1]:
            raise ValueError("fsync_ms must be [lo, hi] with 0 <= lo <= hi")
        if self.heartbeat_ms >= lo:
            raise ValueError("heartbeat_ms must be below the election timeout's lo")
        if not self.timeout_choices_ms:
            self.timeout_choices_ms = [lo + (hi - lo) * k / 4 for k in range(5)]
        if any(t <= 0 for t in self.timeout_choices_ms):
            raise ValueError("timeout_choices_ms must be positive")
        return self


class Raft(Node):
    Params = Params

    # --- state (Figure 2, "State") ------------------------------------------------------------
    def on_start(self, ctx):
        d = ctx.durable
        self.currentTerm = d.setdefault("currentTerm", 0)  # persistent
        self.votedFor = d.setdefault("votedFor", None)  # persistent
        self.log = d.setdefault("log", [])  # persistent: entries (term, cmd), index i is log[i-1]
        self.commitIndex = 0  # volatile
        self.lastApplied = 0  # volatile
        self.nextIndex: dict[int, int] = {}  # volatile, leaders
        self.matchIndex: dict[int, int] = {}  # volatile, leaders
        self.state = FOLLOWER
        self.leaderId = None
        self.votes: set[int] = set()
        self.prevotes: set[int] | None = None  # pre-votes granted, while a PreVote round runs
        self.leader_at = -math.inf  # own clock when a current leader was last heard (PreVote)
        self.heard_from: set[int] = set()  # peers that answered since the last CheckQuorum
        self.kv: dict = {}  # the state machine
        self.done: set = set()  # client operation ids already applied (Section 8)
        self.waiting: dict = {}  # op id -> ClientOp this node must answer
        self.outbox: dict = {}  # delayed messages (broadcast_delay_ms, fsync_ms)
        self.disk_done = -math.inf  # own clock when the last write to stable storage completes (fsync_ms)
        self.sent = 0
        self.failed_elections = 0
        self.timeout_ms = self.params.election_timeout_ms[1]
        self.reset_election_timer(ctx)
        self.ask_timeout(ctx)

    # --- log helpers ---------------------------------------------------------------------------
    def last_index(self) -> int:
        return len(self.log)

    def term_at(self, i: int) -> int:
        return self.log[i - 1][0] if 0 < i <= len(self.log) else 0

    def majority(self, ctx) -> int:
        return ctx.n // 2 + 1

    def set_term(self, ctx, term, votedFor=None):
        """Persist currentTerm and votedFor (before any reply leaves, as Figure 2 requires)."""
        new_term = term != self.currentTerm
        self.currentTerm = ctx.durable["currentTerm"] = term
        self.votedFor = ctx.durable["votedFor"] = votedFor
        if new_term:
            self.ask_timeout(ctx)

    def fsync(self, ctx):
        """Persist (``ctx.fsync()``); with ``fsync_ms`` the write takes time, after any still running."""
        ctx.fsync()
        lo, hi = self.params.fsync_ms
        if hi > 0:
            self.disk_done = max(ctx.now(), self.disk_done) + ctx.rng.uniform(lo, hi)

    def send(self, ctx, dst, body, after_fsync=False):
        """Send an RPC, after ``broadcast_delay_ms`` when one is configured, and (``after_fsync``)
        only once the last write to stable storage is done."""
        delay = self.params.broadcast_delay_ms
        if after_fsync:
            delay += max(0.0, self.disk_done - ctx.now())
        if delay <= 0:
            ctx.send(dst, body)
            return
        self.sent += 1
        self.outbox[self.sent] = (dst, body)
        ctx.set_timer(("send", self.sent), delay)

    # --- timers and learnable choices ----------------------------------------------------------
    def obs(self, ctx):
        return [float(self.currentTerm), float(self.last_index()), float(self.term_at(self.last_index())),
                float(self.commitIndex), float(self.failed_elections), ctx.now() - self.heard_at]

    def ask_timeout(self, ctx):
        k = len(self.params.timeout_choices_ms)
        ctx.ask(("election_timeout", self.currentTerm), self.obs(ctx), default=k, mask=[1] * (k + 1))

    def reset_election_timer(self, ctx):
        self.heard_at = ctx.now()
        self.set_election_timer(ctx, self.timeout_ms)

    def set_election_timer(self, ctx, after):
        """The election timer, ``after`` ms from now, rounded up to the timer granularity."""
        g = self.params.timer_granularity_ms
        if g > 0:
            now = ctx.now()
            after = math.ceil((now + after) / g) * g - now
        ctx.set_timer("election", after)

    def on_timer(self, ctx, name):
        if name == "election":
            if self.state != LEADER:
                ctx.ask(("stand", self.currentTerm + 1), self.obs(ctx), default=1)
        elif name == "check_quorum":
            if self.state == LEADER:
                self.check_quorum(ctx)
        elif name == "heartbeat":
            if self.state == LEADER:
                self.replicate(ctx)
                ctx.set_timer("heartbeat", self.params.heartbeat_ms)
        elif name[0] == "send":
            dst, body = self.outbox.pop(name[1])
            ctx.send(dst, body)

    def on_decision(self, ctx, point, action):
        kind, term = point
        if kind == "election_timeout" and term == self.currentTerm:
            lo, hi = self.params.election_timeout_ms
            choices = self.params.timeout_choices_ms
            self.timeout_ms = choices[action] if action < len(choices) else ctx.rng.uniform(lo, hi)
            if self.state != LEADER:  # the running timer counts from heard_at with the new timeout
                left = self.heard_at + self.timeout_ms - ctx.now()
                self.set_election_timer(ctx, min(self.timeout_ms, max(0.0, left)))
        elif kind == "stand" and term == self.currentTerm + 1 and self.state != LEADER:
            if action == 1:
                self.start_pre_vote(ctx) if self.params.prevote else self.start_election(ctx)
            else:
                self.reset_election_timer(ctx)

    # --- roles (Figure 2, "Rules for Servers") -------------------------------------------------
    def step_down(self, ctx, term):
        """If RPC request or response contains term T > currentTerm: set currentTerm = T, convert to follower."""
        was = self.state
        newer = term > self.currentTerm
        if newer:
            self.set_term(ctx, term, None)
        if was != FOLLOWER or newer:
            ctx.record("follower", term=self.currentTerm)
        self.state = FOLLOWER
        self.leaderId = None
        self.prevotes = None
        if was == LEADER:
            ctx.cancel_timer("heartbeat")
            ctx.cancel_timer("check_quorum")
            self.reset_election_timer(ctx)

    def start_pre_vote(self, ctx):
        """PreVote (thesis 9.6): ask whether a majority would vote for us in currentTerm + 1,
        without raising the term; stand only once it would."""
        self.prevotes = {ctx.node_id}
        ctx.record("pre_vote", term=self.currentTerm + 1)
        self.reset_election_timer(ctx)
        li = self.last_index()
        for p in ctx.peers:
            self.send(ctx, p, ("pre_vote", self.currentTerm + 1, ctx.node_id, li, self.term_at(li)))
        if len(self.prevotes) >= self.majority(ctx):
            self.start_election(ctx)

    def start_election(self, ctx):
        """Candidates: increment currentTerm, vote for self, reset election timer, send RequestVote RPCs."""
        if self.state == CANDIDATE:
            self.failed_elections += 1
        self.state = CANDIDATE
        self.leaderId = None
        self.prevotes = None
        self.set_term(ctx, self.currentTerm + 1, ctx.node_id)
        self.votes = {ctx.node_id}
        self.fsync(ctx)  # the new term and the vote for itself, on disk before asking for votes
        ctx.record("candidate", term=self.currentTerm)
        self.reset_election_timer(ctx)
        li = self.last_index()
        for p in ctx.peers:
            self.send(ctx, p, ("request_vote", self.currentTerm, ctx.node_id, li, self.term_at(li)), after_fsync=True)
        if len(self.votes) >= self.majority(ctx):
            self.become_leader(ctx)

    def become_leader(self, ctx):
        """Leaders: reinitialize nextIndex and matchIndex; append a no-op (Section 8); heartbeat at once."""
        self.state = LEADER
        self.leaderId = ctx.node_id
        self.failed_elections = 0
        ctx.record("leader", term=self.currentTerm)
        ctx.cancel_timer("election")
        self.nextIndex = {p: self.last_index() + 1 for p in ctx.peers}  # leader's last log index + 1
        self.log.append((self.currentTerm, None))  # the no-op goes out with the first AppendEntries
        self.fsync(ctx)  # a leader counts itself among the replicas only for what is on its disk
        self.matchIndex = {p: 0 for p in ctx.peers}
        self.advance_commit(ctx)
        self.replicate(ctx)
        ctx.set_timer("heartbeat", self.params.heartbeat_ms)
        if self.params.check_quorum:
            self.heard_from = set()
            ctx.set_timer("check_quorum", self.timeout_ms)

    def check_quorum(self, ctx):
        """CheckQuorum (thesis 6.2): step down unless a majority answered in the last election timeout."""
        if len(self.heard_from) + 1 < self.majority(ctx):
            return self.step_down(ctx, self.currentTerm)
        self.heard_from = set()
        ctx.set_timer("check_quorum", self.timeout_ms)

    # --- RPCs ----------------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        kind, term = body[0], body[1]
        if kind == "client_request":
            return self.client_request(ctx, src, body[1], body[2])
        if kind == "pre_vote":  # a pre-vote's term is the one it asks about: it changes no one's term
            return self.pre_vote(ctx, *body[1:])
        if kind == "pre_vote_reply":
            return self.pre_vote_reply(ctx, src, *body[1:])
        if term > self.currentTerm:
            self.step_down(ctx, term)
        if kind == "request_vote":
            self.request_vote(ctx, *body[1:])
        elif kind == "request_vote_reply":
            self.request_vote_reply(ctx, src, *body[1:])
        elif kind == "append_entries":
            self.append_entries(ctx, *body[1:])
        elif kind == "append_entries_reply":
            self.append_entries_reply(ctx, src, *body[1:])

    def request_vote(self, ctx, term, candidateId, lastLogIndex, lastLogTerm):
        """RequestVote receiver: grant if term is current, not yet voted for another, log up to date."""
        my_last = self.last_index()
        up_to_date = (lastLogTerm, lastLogIndex) >= (self.term_at(my_last), my_last)
        voteGranted = (term == self.currentTerm and self.votedFor in (None, candidateId) and up_to_date)
        if voteGranted:
            self.set_term(ctx, term, candidateId)
            ctx.record("vote", term=term, candidate=candidateId)
            self.reset_election_timer(ctx)
        self.fsync(ctx)  # Figure 2: currentTerm and votedFor on stable storage before responding
        self.send(ctx, candidateId, ("request_vote_reply", self.currentTerm, voteGranted), after_fsync=True)

    def pre_vote(self, ctx, term, candidateId, lastLogIndex, lastLogTerm):
        """PreVote receiver (thesis 9.6): would vote for candidateId in ``term`` -- the term is new,
        its log is up to date, and no current leader was heard within the lower election timeout.
        Changes no state; a refusal carries currentTerm, a grant the asked-for term."""
        my_last = self.last_index()
        up_to_date = (lastLogTerm, lastLogIndex) >= (self.term_at(my_last), my_last)
        leader_heard = self.state == LEADER or ctx.now() - self.leader_at < self.params.election_timeout_ms[0]
        granted = term > self.currentTerm and up_to_date and not leader_heard
        self.send(ctx, candidateId, ("pre_vote_reply", term if granted else self.currentTerm, granted))

    def pre_vote_reply(self, ctx, src, term, granted):
        if not granted:
            if term > self.currentTerm:  # a refusal from a newer term: adopt it, as for any RPC
                self.step_down(ctx, term)
            return
        if self.prevotes is not None and term == self.currentTerm + 1 and self.state != LEADER:
            self.prevotes.add(src)
            if len(self.prevotes) >= self.majority(ctx):
                self.start_election(ctx)

    def request_vote_reply(self, ctx, src, term, voteGranted):
        if self.state == CANDIDATE and term == self.currentTerm and voteGranted:
            self.votes.add(src)
            if len(self.votes) >= self.majority(ctx):
                self.become_leader(ctx)

    def append_entries(self, ctx, term, leaderId, prevLogIndex, prevLogTerm, entries, leaderCommit):
        """AppendEntries receiver, steps 1-5 of Figure 2."""
        if term < self.currentTerm:  # 1. reply false if term < currentTerm
            return self.append_entries_reply_to(ctx, leaderId, False, self.last_index())
        if self.state != FOLLOWER:  # a candidate that hears from the new leader steps down
            self.step_down(ctx, term)
        self.leaderId = leaderId
        self.prevotes = None
        self.leader_at = ctx.now()
        self.reset_election_timer(ctx)
        if prevLogIndex > self.last_index() or self.term_at(prevLogIndex) != prevLogTerm:  # 2.
            hint = min(self.last_index(), prevLogIndex - 1)
            return self.append_entries_reply_to(ctx, leaderId, False, hint)
        for k, entry in enumerate(entries):
            i = prevLogIndex + 1 + k
            if i <= self.last_index() and self.term_at(i) != entry[0]:
                del self.log[i - 1:]  # 3. an existing entry conflicts: delete it and all that follow
            if i > self.last_index():
                self.log.append(entry)  # 4. append any new entries not already in the log
        last_new = prevLogIndex + len(entries)
        if leaderCommit > self.commitIndex:  # 5.
            self.commit_to(ctx, min(leaderCommit, last_new))
        self.append_entries_reply_to(ctx, leaderId, True, last_new)

    def append_entries_reply_to(self, ctx, leaderId, success, index):
        self.fsync(ctx)  # Figure 2: currentTerm, votedFor and log on stable storage before responding
        self.send(ctx, leaderId, ("append_entries_reply", self.currentTerm, success, index), after_fsync=True)

    def append_entries_reply(self, ctx, src, term, success, index):
        if self.state != LEADER or term != self.currentTerm:
            return
        self.heard_from.add(src)
        if success:
            self.matchIndex[src] = max(self.matchIndex[src], index)
            self.nextIndex[src] = max(self.nextIndex[src], index + 1)
            if self.advance_commit(ctx):
                self.replicate(ctx)  # tell followers the new commitIndex now, not at the next heartbeat
            elif self.nextIndex[src] <= self.last_index():
                self.send_append_entries(ctx, src)
        else:  # decrement nextIndex (to just past the follower's last index) and retry
            self.nextIndex[src] = max(self.matchIndex[src] + 1, min(self.nextIndex[src] - 1, index + 1))
            self.send_append_entries(ctx, src)

    def send_append_entries(self, ctx, p):
        prev = self.nextIndex[p] - 1
        entries = self.log[prev:prev + self.params.max_entries]
        self.send(ctx, p, ("append_entries", self.currentTerm, ctx.node_id, prev, self.term_at(prev),
                           entries, self.commitIndex))

    def replicate(self, ctx):
        for p in ctx.peers:
            self.send_append_entries(ctx, p)

    # --- commitment and the state machine ------------------------------------------------------
    def advance_commit(self, ctx) -> bool:
        """If there exists N > commitIndex, a majority of matchIndex[i] >= N, and log[N].term ==
        currentTerm: set commitIndex = N (Figure 2, Leaders; Section 5.4.2). True if it moved."""
        for N in range(self.last_index(), self.commitIndex, -1):
            if self.term_at(N) != self.currentTerm:
                return False
            if 1 + sum(m >= N for m in self.matchIndex.values()) >= self.majority(ctx):
                self.commit_to(ctx, N)
                return True
        return False

    def commit_to(self, ctx, N):
        """Raise commitIndex to N and apply: if commitIndex > lastApplied, apply log[lastApplied+1]."""
        for i in range(self.commitIndex + 1, N + 1):
            term, cmd = self.log[i - 1]
            ctx.record("commit", index=i, term=term, cmd=cmd)
        self.commitIndex = max(self.commitIndex, N)
        while self.lastApplied < self.commitIndex:
            self.lastApplied += 1
            self.apply(ctx, self.log[self.lastApplied - 1][1])

    def apply(self, ctx, cmd):
        """Apply one command to the key-value store; answer the client if it asked this node."""
        if cmd is None or cmd[1] in self.done:  # a leader's no-op, or a duplicate
            return
        origin, oid, f, key, value = cmd
        self.done.add(oid)
        status, out = "ok", None
        if f == "read":
            out = self.kv.get(key)
        elif f == "get":
            out = self.kv.get(key, "")
        elif f in ("write", "put"):
            self.store(ctx, key, value)
        elif f == "append":
            self.store(ctx, key, f"{self.kv.get(key, '')}{value}")
        elif f == "add":  # a set per key (Jepsen's set workload): the read returns the elements
            self.store(ctx, key, tuple(sorted(set(self.kv.get(key) or ()) | {value})))
        elif f == "cas":
            if self.kv.get(key) == value[0]:
                self.store(ctx, key, value[1])
            else:
                status = "fail"
        op = self.waiting.pop(oid, None) if origin == ctx.node_id else None
        if op is not None:
            ctx.reply(op, status, out)

    def store(self, ctx, key, value):
        self.kv[key] = value
        ctx.record("apply", key=key, value=value)

    # --- clients ---------------------------------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f not in ("read", "write", "cas", "get", "put", "append", "add"):
            return ctx.reply(op, "fail")
        if self.state != LEADER and self.leaderId is None:
            return ctx.reply(op, "fail")  # no leader known: sent nowhere, definitely not done
        self.waiting[op.id] = op
        self.client_request(ctx, ctx.node_id, [ctx.node_id, op.id, op.f, op.key, op.value], 0)

    def client_request(self, ctx, src, cmd, hops):
        """Leaders: append the command to the log; others forward it to the leader they know."""
        if self.state == LEADER:
            self.log.append((self.currentTerm, tuple(cmd)))
            self.fsync(ctx)
            self.advance_commit(ctx)  # a one-node cluster commits at once
            self.replicate(ctx)
        elif self.leaderId is not None and self.leaderId != src and hops < self.params.max_forward_hops:
            ctx.send(self.leaderId, ("client_request", cmd, hops + 1))


NODE = Raft
