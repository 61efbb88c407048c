"""PBFT: Practical Byzantine Fault Tolerance, a replicated register/kv that tolerates f Byzantine replicas.

M. Castro and B. Liskov, "Practical Byzantine Fault Tolerance", OSDI 1999 (section numbers below are
that paper's). ``n = 3f + 1`` replicas (``f = (n - 1) // 3``); replica ``i``'s view is ``v`` and the
primary of view ``v`` is ``p = v mod n`` (4.1).

* **Normal case** (4.2). A request ``m`` reaches the primary, which assigns it sequence number ``n``
  and multicasts ``<PRE-PREPARE, v, n, d>`` (``m`` piggybacked). A backup accepts it when it is in
  view ``v``, the signature is the primary's, ``h < n <= H`` (the water marks) and it has accepted no
  other pre-prepare for ``v, n``; it then multicasts ``<PREPARE, v, n, d, i>``. *prepared(m, v, n, i)*
  holds once it has the pre-prepare and ``2f`` matching prepares from different backups; the replica
  then multicasts ``<COMMIT, v, n, D(m), i>``. *committed-local* holds once it is prepared and has
  ``2f + 1`` matching commits; the replica executes requests in sequence-number order.
* **Garbage collection** (4.3). After executing ``n`` with ``n mod K = 0`` (``checkpoint_period``)
  a replica multicasts ``<CHECKPOINT, n, d, i>`` (``d``: the digest of its state); ``2f + 1`` matching
  ones make a *stable checkpoint* whose messages are its proof. The low water mark ``h`` moves to it,
  ``H = h + L`` (``L = log_factor * K``), and every log entry at or below it is discarded. A replica
  that learns of a stable checkpoint beyond what it executed fetches the state from the proof's
  signers and keeps it when the digest matches (state transfer).
* **View change** (4.4). A backup with a pending request starts a timer; when it expires the backup
  moves to view ``v + 1`` and multicasts ``<VIEW-CHANGE, v+1, n, C, P, i>``: ``n`` and ``C`` are its
  stable checkpoint and proof, ``P`` holds, for every request prepared above ``n``, the pre-prepare and
  ``2f`` prepares that prove it. The primary of ``v + 1``, with ``2f + 1`` valid view-changes (``V``),
  computes ``O``: for every ``n`` between ``min-s`` (the latest stable checkpoint in ``V``) and
  ``max-s`` (the highest prepared sequence number in ``V``) a pre-prepare for the request prepared
  there in the highest view, or for the *null request*; it multicasts ``<NEW-VIEW, v+1, V, O>``.
  Backups check ``O`` by computing it again, enter ``v + 1`` and prepare what ``O`` holds. A replica
  that sees ``f + 1`` view-changes for higher views joins the smallest; a view change that does not
  complete in ``T`` moves on to the next view with ``2T``.
* **Clients** (4.1, 4.2). With ``workload.replies: f+1`` the client signs its request
  ``<REQUEST, o, t, c>`` (here ``("req", ("client", c), op id, f, key, value)``), sends it to every
  replica and completes on ``f + 1`` matching replies, as in the paper (each replica answers when it
  executes the request). Otherwise the replica a client talks to (its *entry*) acts as that client:
  it signs the request (``("req", entry, op id, f, key, value)``), multicasts it to all replicas,
  retransmits it every ``retry_ms`` and answers its client when it executes the request itself.
  Backups that receive a request start their view-change timer. Requests are executed at most once
  (the replies table, part of the state, as the paper's last reply per client).

Signatures: the paper's view-change proofs carry other replicas' signed messages (the OSDI paper
signs every message). Here ``ctx.sign(body)`` / ``ctx.verify(signer, body)`` stand in for them (the
sim runtime keeps the set of signed pairs, the live one carries HMAC tags made with the signer's
own key on the signed tuple: either way no node can sign as another); pre-prepares, prepares,
checkpoints, view-changes, new-views and requests are signed. Commits are authenticated by the
channel (the receiver learns the true sender). A message that does not parse is dropped.

Left out / changed: no batching, no tentative execution or read-only optimization (section 5.1),
one request per sequence number; with ``workload.replies: 1`` the entry replica stands for the
client (so the observer judges only the clients of correct replicas), and with ``f + 1`` clients
do not retransmit (a view change brings a request a faulty primary dropped to the next one); MACs
are not modelled (signatures throughout, as in the OSDI paper). The paper does not say what a
replica keeps on disk; here everything it has vouched for lives in ``ctx.durable``, synced before
every prepare, commit, checkpoint, view-change and new-view it sends and before it answers a
client, so that a crash-recovered replica never contradicts itself.

Learnable choice: with ``learn_timeout`` the replica asks its agent (``ctx.ask(("view_change_timeout", k),
(tries, view, pending, changing))``) which of ``timeout_multiples`` of ``T`` to wait whenever its
view-change timer starts from idle (not on the restarts after each execution), and starts the timer
when the answer comes; the default is the multiple nearest 1 (the paper's ``T``). This is the honest
side's action in ``capgym/Byzantine-v0``'s two-sided game.

Trace records: ``execute`` (``seq``, ``op``: the request's ``(entry, op id)`` or None for a null
request), ``apply`` (``key``, ``value``), ``view`` (``view``: a view entered), ``stable`` (``seq``).
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, field_validator

from envs.world.node import ClientOp, Node

FS = ("read", "write", "cas", "get", "put", "append")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint_period: int = Field(16, ge=1, description="K: checkpoint every K sequence numbers (4.3)")
    log_factor: int = Field(2, ge=1, description="L = log_factor * K: the window between the water marks")
    view_change_timeout_ms: float = Field(300.0, gt=0,
                                          description="T: a pending request's wait before a view change (4.4)")
    retry_ms: float = Field(100.0, gt=0, description="the entry replica retransmits a request this often")
    give_up_ms: float = Field(2000.0, gt=0, description="the entry replica stops waiting for a request after this")
    learn_timeout: bool = Field(False, description="ask the node's agent for T's multiple whenever the view-change "
                                "timer starts from idle (capgym/Byzantine-v0's two-sided game)")
    timeout_multiples: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0],
                                           description="learn_timeout: the agent's choices, multiples of T")

    @field_validator("timeout_multiples")
    @classmethod
    def _multiples(cls, v):
        if not v or any(x <= 0 for x in v):
            raise ValueError("timeout_multiples must be a non-empty list of positive numbers")
        return v


def stored(name):
    """A replica attribute kept in ``ctx.durable`` (the node's disk)."""
    return property(lambda self: self.d[name], lambda self, x: self.d.__setitem__(name, x))


def state_digest(kv: dict, replies: dict) -> str:
    """D(state): a digest of the service state (values and the replies table), stable across runs."""
    items = (sorted(kv.items(), key=repr), sorted(replies.items(), key=repr))
    return hashlib.sha1(repr(items).encode()).hexdigest()[:16]


def rid_of(m):
    return None if m is None else (m[1], m[2])


class PBFT(Node):
    Params = Params
    REPLICAS_REPLY = True  # each replica answers a client's signed request when it executes it (4.1)

    view = stored("view")  # v
    changing = stored("changing")  # True between VIEW-CHANGE and NEW-VIEW
    h = stored("h")  # low water mark: the last stable checkpoint
    stable_digest = stored("stable_digest")
    stable_proof = stored("stable_proof")  # C: 2f+1 CHECKPOINT messages
    last_exec = stored("last_exec")
    seq = stored("seq")  # the primary's last assigned sequence number

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        self.d = d = ctx.durable
        if "view" not in d:
            d.update(view=0, changing=False, h=0, stable_digest=state_digest({}, {}), stable_proof=(),
                     last_exec=0, seq=0, kv={}, replies={}, pending={}, preprepared={}, pp_msg={},
                     prepares={}, commits={}, sent_commit=set(), pcert={}, committed={}, checkpoints={},
                     snapshots={}, view_changes={}, new_views=set())
        for k in ("kv", "replies", "pending", "preprepared", "pp_msg", "prepares", "commits", "sent_commit",
                  "pcert", "committed", "checkpoints", "snapshots", "view_changes", "new_views"):
            setattr(self, k, d[k])
        self.n = ctx.n
        self.f = (ctx.n - 1) // 3
        self.K = self.params.checkpoint_period
        self.L = self.params.log_factor * self.K
        self.clients: dict = {}  # request id -> ClientOp (volatile: the client's connection)
        self.requests: dict = {}  # request id -> the signed request, retransmitted until executed
        self.assigned: set = set()  # request ids the primary assigned in this view
        self.timer_on = False
        self.slot: dict = {}  # request id -> (v, n) of its pre-prepare (for retransmission)
        self.early: list = []  # pre-prepares for a view not yet entered, handled when it is
        self.tries = 0  # view changes since the last view entered (the timeout doubles each time)
        self.scale = 1.0  # learn_timeout: the agent's multiple of T
        self.timer_asks = 0  # learn_timeout: the current ask for T's multiple
        self.malformed = 0
        if self.pending:
            self.start_timer(ctx)
        if self.changing:  # a crash in the middle of a view change: announce it again
            self.start_view_change(ctx, self.view)

    def primary(self, v):
        return v % self.n

    def is_primary(self, ctx):
        return self.primary(self.view) == ctx.node_id

    def timeout(self, ctx):
        """T, doubled for each view change that did not complete (4.4); times the agent's multiple
        with ``learn_timeout``."""
        return self.params.view_change_timeout_ms * self.scale * 2 ** min(self.tries, 8)

    # --- messages --------------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        handler = self.HANDLERS.get(body[0]) if isinstance(body, tuple) and body else None
        if handler is None:
            self.malformed += 1
            return
        try:
            handler(self, ctx, src, body)
        except (TypeError, ValueError, IndexError, AttributeError):  # a Byzantine sender's junk
            self.malformed += 1

    def valid_request(self, ctx, m):
        """Signed by its entry replica, or by its client (``("client", c)``, the operation itself)."""
        if not (isinstance(m, tuple) and len(m) == 6 and m[0] == "req" and m[3] in FS):
            return False
        if isinstance(m[1], tuple) and len(m[1]) == 2 and m[1][0] == "client":
            return ctx.verify(m[1], ClientOp(m[2], m[3], m[4], m[5], m[1][1]))
        return ctx.verify(m[1], m)

    # --- clients (4.1) ---------------------------------------------------------------------------
    def on_client(self, ctx, op):
        if op.f not in FS:
            return ctx.reply(op, "fail")
        if op.client is not None:  # the client sent its signed request to every replica (4.1)
            m = ("req", ("client", op.client), op.id, op.f, op.key, op.value)
            rid = rid_of(m)
            self.clients[rid] = op
            ctx.set_timer(("give_up", rid), self.params.give_up_ms)
            self.receive_request(ctx, m)
            return
        value = tuple(op.value) if isinstance(op.value, list) else op.value
        m = ctx.sign(("req", ctx.node_id, op.id, op.f, op.key, value))
        rid = rid_of(m)
        self.clients[rid] = op
        self.requests[rid] = m
        ctx.set_timer(("retry", rid), self.params.retry_ms)
        ctx.set_timer(("give_up", rid), self.params.give_up_ms)
        ctx.broadcast(("request", m))
        self.receive_request(ctx, m)

    def answer(self, ctx, rid):
        """A replica answers a client that asked it once the request has executed here."""
        op = self.clients.pop(rid, None)
        if op is not None:
            self.requests.pop(rid, None)
            ctx.cancel_timer(("retry", rid))
            ctx.cancel_timer(("give_up", rid))
            status, out = self.replies[rid]
            ctx.fsync()
            ctx.reply(op, status, out)

    def on_request(self, ctx, src, body):
        self.receive_request(ctx, body[1])

    def receive_request(self, ctx, m):
        if not self.valid_request(ctx, m):
            return
        rid = rid_of(m)
        if rid in self.replies:
            self.answer(ctx, rid)
            return
        if rid in self.pending and not self.changing:
            self.retransmit(ctx, rid)
        self.pending[rid] = m
        if not self.changing:
            self.start_timer(ctx)
            if self.is_primary(ctx):
                self.assign(ctx, m)

    def retransmit(self, ctx, rid):
        """The client retransmitted a request this replica has ordered but not executed: the
        messages it sent for it may have been lost, so send them again (the implementation's
        retransmission, which the paper leaves out of its pseudocode)."""
        vn = self.slot.get(rid)
        if vn is None or vn[0] != self.view or vn not in self.pp_msg:
            return
        if self.primary(vn[0]) == ctx.node_id:
            ctx.broadcast(self.pp_msg[vn])
        else:
            mine = self.prepares.get(vn, {}).get(ctx.node_id)
            if mine is not None:
                ctx.broadcast(mine)
        if vn in self.sent_commit:
            ctx.broadcast(("commit", vn[0], vn[1], self.preprepared[vn], ctx.node_id))

    # --- normal case (4.2) -----------------------------------------------------------------------
    def assign(self, ctx, m):
        """The primary assigns the next sequence number to request ``m`` and multicasts PRE-PREPARE."""
        rid = rid_of(m)
        if rid in self.assigned or rid in self.replies or self.seq + 1 > self.h + self.L:
            return  # already assigned in this view, executed, or beyond the high water mark (wait)
        self.assigned.add(rid)
        self.seq += 1
        pp = ctx.sign(("pre_prepare", self.view, self.seq, m))
        ctx.fsync()
        ctx.broadcast(pp)
        self.accept_pre_prepare(ctx, pp)

    def on_pre_prepare(self, ctx, src, pp):
        _, v, n, m = pp
        if v > self.view or (v == self.view and self.changing):  # early: wait for the NEW-VIEW
            if src == self.primary(v) and len(self.early) < 4 * self.L:
                self.early.append((src, pp))
            return
        if (v != self.view or self.changing or src != self.primary(v) or not ctx.verify(src, pp)
                or not (self.h < n <= self.h + self.L) or not (m is None or self.valid_request(ctx, m))):
            return
        if (v, n) in self.preprepared:
            return  # a pre-prepare for v, n was accepted already (a different one is refused)
        self.accept_pre_prepare(ctx, pp)

    def accept_pre_prepare(self, ctx, pp):
        _, v, n, m = pp
        self.preprepared[(v, n)] = m
        self.pp_msg[(v, n)] = pp
        if m is not None:
            self.slot[rid_of(m)] = (v, n)
        if m is not None and rid_of(m) not in self.replies:
            self.pending.setdefault(rid_of(m), m)
        if self.primary(v) != ctx.node_id:
            prepare = ctx.sign(("prepare", v, n, m, ctx.node_id))
            self.prepares.setdefault((v, n), {})[ctx.node_id] = prepare
            ctx.fsync()
            ctx.broadcast(prepare)
            self.start_timer(ctx)
        self.check_prepared(ctx, v, n)

    def on_prepare(self, ctx, src, p):
        _, v, n, m, i = p
        if i != src or i == self.primary(v) or v < self.view or not (self.h < n <= self.h + self.L):
            return
        if not ctx.verify(i, p):
            return
        self.prepares.setdefault((v, n), {}).setdefault(i, p)
        self.check_prepared(ctx, v, n)

    def prepared(self, v, n):
        """prepared(m, v, n, i): the pre-prepare and 2f matching prepares from different backups."""
        if (v, n) not in self.preprepared:
            return None
        m = self.preprepared[(v, n)]
        match = [p for i, p in self.prepares.get((v, n), {}).items() if p[3] == m]
        return match if len(match) >= 2 * self.f else None

    def check_prepared(self, ctx, v, n):
        match = self.prepared(v, n)
        if match is None or (v, n) in self.sent_commit:
            return
        self.sent_commit.add((v, n))
        old = self.pcert.get(n)
        if old is None or old[0][1] < v:  # P keeps the proof from the highest view
            self.pcert[n] = (self.pp_msg[(v, n)], tuple(sorted(match, key=lambda p: p[4])[: 2 * self.f]))
        m = self.preprepared[(v, n)]
        self.commits.setdefault((v, n), {})[ctx.node_id] = m
        ctx.fsync()
        ctx.broadcast(("commit", v, n, m, ctx.node_id))
        self.check_committed(ctx, v, n)

    def on_commit(self, ctx, src, c):
        _, v, n, m, i = c
        if i != src or v < self.view or not (self.h < n <= self.h + self.L):
            return
        self.commits.setdefault((v, n), {}).setdefault(i, m)
        self.check_committed(ctx, v, n)

    def check_committed(self, ctx, v, n):
        """committed-local(m, v, n, i): prepared and 2f+1 matching commits (possibly its own)."""
        if (v, n) not in self.sent_commit or n in self.committed or n <= self.last_exec:
            return
        m = self.preprepared[(v, n)]
        if sum(1 for x in self.commits.get((v, n), {}).values() if x == m) >= 2 * self.f + 1:
            self.committed[n] = m
            self.execute(ctx)

    def execute(self, ctx):
        """Execute committed requests in sequence-number order; checkpoint every K."""
        while self.last_exec + 1 in self.committed:
            n = self.last_exec + 1
            m = self.committed[n]
            self.last_exec = n
            ctx.record("execute", seq=n, op=rid_of(m))
            if m is not None:
                self.apply(ctx, m)
            if n % self.K == 0:
                self.checkpoint(ctx, n)
        if self.pending:
            if self.timer_on:
                self.start_timer(ctx, restart=True)
        else:
            self.stop_timer(ctx)

    def apply(self, ctx, m):
        _, origin, oid, f, key, value = m
        rid = (origin, oid)
        self.pending.pop(rid, None)
        self.slot.pop(rid, None)
        if rid in self.replies:
            return  # executed at most once
        kv, status, out = self.kv, "ok", None
        if f == "read":
            out = kv.get(key)
        elif f == "get":
            out = kv.get(key, "")
        elif f in ("write", "put"):
            self.store(ctx, key, value)
        elif f == "append":
            self.store(ctx, key, f"{kv.get(key, '')}{value}")
        elif f == "cas":
            if kv.get(key) == value[0]:
                self.store(ctx, key, value[1])
            else:
                status = "fail"
        self.replies[rid] = (status, out)
        self.answer(ctx, rid)

    def store(self, ctx, key, value):
        self.kv[key] = value
        ctx.record("apply", key=key, value=value)

    # --- checkpoints and garbage collection (4.3) ------------------------------------------------
    def checkpoint(self, ctx, n):
        d = state_digest(self.kv, self.replies)
        self.snapshots[n] = (dict(self.kv), dict(self.replies))
        msg = ctx.sign(("checkpoint", n, d, ctx.node_id))
        ctx.fsync()
        ctx.broadcast(msg)
        self.on_checkpoint(ctx, ctx.node_id, msg)

    def on_checkpoint(self, ctx, src, msg):
        _, n, d, i = msg
        if i != src or n <= self.h or not ctx.verify(i, msg):
            return
        got = self.checkpoints.setdefault(n, {})
        got[i] = msg
        proof = tuple(c for c in got.values() if c[2] == d)
        if len(proof) >= 2 * self.f + 1:
            self.stabilize(ctx, n, d, proof)

    def valid_proof(self, ctx, n, proof):
        """C: 2f+1 signed CHECKPOINT messages for ``n`` from different replicas with one digest;
        returns the digest, or None."""
        if n == 0:
            return state_digest({}, {})
        ok = {c[3]: c[2] for c in proof if c[0] == "checkpoint" and c[1] == n and ctx.verify(c[3], c)}
        digests = list(ok.values())
        for d in set(digests):
            if digests.count(d) >= 2 * self.f + 1:
                return d
        return None

    def stabilize(self, ctx, n, d, proof):
        """A stable checkpoint at ``n``: move the low water mark, discard the log up to it."""
        if n <= self.h:
            return
        self.h, self.stable_digest, self.stable_proof = n, d, tuple(proof)
        ctx.record("stable", seq=n)
        for table in (self.preprepared, self.pp_msg, self.prepares, self.commits):
            for key in [k for k in table if k[1] <= n]:
                del table[key]
        for key in [k for k in self.sent_commit if k[1] <= n]:
            self.sent_commit.discard(key)
        for table in (self.pcert, self.committed, self.checkpoints, self.snapshots):
            for key in [k for k in table if k <= n and not (table is self.snapshots and k == n)]:
                del table[key]
        if self.last_exec < n:  # behind: fetch the state from the checkpoint's signers
            for c in proof:
                if c[3] != ctx.node_id:
                    ctx.send(c[3], ("fetch_state", n))
        if self.is_primary(ctx) and not self.changing:
            self.seq = max(self.seq, n)
            for m in list(self.pending.values()):
                self.assign(ctx, m)

    def on_fetch_state(self, ctx, src, body):
        n = body[1]
        if n in self.snapshots:
            kv, replies = self.snapshots[n]
            ctx.send(src, ("state", n, dict(kv), dict(replies)))

    def on_state(self, ctx, src, body):
        _, n, kv, replies = body
        if n != self.h or self.last_exec >= n or state_digest(kv, replies) != self.stable_digest:
            return
        self.kv.clear()
        self.kv.update(kv)
        self.replies.clear()
        self.replies.update(replies)
        self.last_exec = n
        self.snapshots[n] = (dict(kv), dict(replies))
        ctx.record("state_transfer", seq=n)
        for rid in [r for r in self.pending if r in self.replies]:
            del self.pending[rid]
        for rid in list(self.clients):
            if rid in self.replies:
                self.answer(ctx, rid)
        self.execute(ctx)

    # --- view changes (4.4) ----------------------------------------------------------------------
    def start_timer(self, ctx, restart=False):
        if not self.timer_on or restart:
            idle = not self.timer_on
            self.timer_on = True
            if idle and self.params.learn_timeout:  # the agent chooses T's multiple; the timer starts then
                self.timer_asks += 1
                m = self.params.timeout_multiples
                ctx.ask(("view_change_timeout", self.timer_asks), (self.tries, self.view, len(self.pending),
                        self.changing), default=min(range(len(m)), key=lambda i: abs(m[i] - 1.0)))
                return
            ctx.set_timer("view_change", self.timeout(ctx))

    def on_decision(self, ctx, point, action):
        """learn_timeout: the agent's multiple of T for the timer started at the ask (ignored when the
        timer stopped or started again since)."""
        if point[0] == "view_change_timeout" and point[1] == self.timer_asks and self.timer_on:
            m = self.params.timeout_multiples
            self.scale = m[action] if isinstance(action, int) and 0 <= action < len(m) else 1.0
            ctx.set_timer("view_change", self.timeout(ctx))

    def stop_timer(self, ctx):
        if self.timer_on:
            self.timer_on = False
            ctx.cancel_timer("view_change")

    def on_timer(self, ctx, name):
        if name == "resend":  # retransmit the VIEW-CHANGE until the NEW-VIEW arrives
            if self.changing:
                ctx.broadcast(self.my_view_change)
                ctx.set_timer("resend", self.params.view_change_timeout_ms)
            return
        if name == "view_change":
            self.timer_on = False
            if self.pending or self.changing:
                self.start_view_change(ctx, self.view + 1)
            return
        what, rid = name[0], name[1]
        op = self.clients.get(rid)
        if op is None:
            return
        if what == "retry":
            ctx.broadcast(("request", self.requests[rid]))
            ctx.set_timer(name, self.params.retry_ms)
        else:  # give_up: a read changed nothing; anything else may still execute
            self.clients.pop(rid)
            self.requests.pop(rid, None)
            ctx.cancel_timer(("retry", rid))
            ctx.reply(op, "fail" if op.f in ("read", "get") else "unknown")

    def start_view_change(self, ctx, v):
        """Move to view ``v``: multicast <VIEW-CHANGE, v, n, C, P, i>; wait T * 2^k for NEW-VIEW."""
        self.tries += 1
        self.view, self.changing = v, True
        self.assigned = set()
        P = tuple(cert for n, cert in sorted(self.pcert.items()) if n > self.h)
        msg = self.my_view_change = ctx.sign(("view_change", v, self.h, self.stable_proof, P, ctx.node_id))
        ctx.fsync()
        ctx.broadcast(msg)
        ctx.set_timer("resend", self.params.view_change_timeout_ms)
        self.stop_timer(ctx)  # restarted once 2f+1 view-changes for v are in
        self.on_view_change(ctx, ctx.node_id, msg)

    def valid_view_change(self, ctx, msg):
        _, v, n, C, P, i = msg
        if not ctx.verify(i, msg) or self.valid_proof(ctx, n, C) is None:
            return False
        for pp, prepares in P:
            _, pv, pn, m = pp
            if pv >= v or not (n < pn <= n + self.L) or not ctx.verify(self.primary(pv), pp):
                return False
            signers = {p[4] for p in prepares if p[:4] == ("prepare", pv, pn, m) and p[4] != self.primary(pv)
                       and ctx.verify(p[4], p)}
            if len(signers) < 2 * self.f:
                return False
        return True

    def on_view_change(self, ctx, src, msg):
        _, v, n, C, P, i = msg
        if i != src or v < self.view:
            return
        if v == self.view and not self.changing and i != ctx.node_id:  # it missed the NEW-VIEW
            if self.d.get("new_view") is not None and self.d["new_view"][1] == v:
                ctx.send(i, self.d["new_view"])
            return
        if not self.valid_view_change(ctx, msg):
            return
        self.view_changes.setdefault(v, {})[i] = msg
        if v == self.view and self.changing and len(self.view_changes[v]) >= 2 * self.f + 1:
            self.start_timer(ctx)  # 2f+1 view-changes: wait T for the NEW-VIEW, then try v + 1
        if (self.primary(v) == ctx.node_id and v == self.view and v not in self.new_views
                and len(self.view_changes[v]) >= 2 * self.f + 1):
            self.send_new_view(ctx, v)
            return
        # liveness: f+1 view-changes for views above this one -> join the smallest
        higher = {w: vcs for w, vcs in self.view_changes.items() if w > self.view}
        senders = {j for vcs in higher.values() for j in vcs if j != ctx.node_id}
        if len(senders) >= self.f + 1:
            self.start_view_change(ctx, min(higher))

    def compute_O(self, ctx, v, V):
        """min-s, max-s and O of 4.4: a pre-prepare for each n in (min-s, max-s], for the request
        prepared there in the highest view in V, or for the null request."""
        min_s = max(vc[2] for vc in V)
        best: dict = {}
        for vc in V:
            for pp, _ in vc[4]:
                _, pv, pn, m = pp
                if pn > min_s and (pn not in best or best[pn][0] < pv):
                    best[pn] = (pv, m)
        max_s = max(best, default=min_s)
        return min_s, max_s, tuple(("pre_prepare", v, n, best[n][1] if n in best else None)
                                   for n in range(min_s + 1, max_s + 1))

    def send_new_view(self, ctx, v):
        V = tuple(vc for _, vc in sorted(self.view_changes[v].items()))[: 2 * self.f + 1]
        _, max_s, O = self.compute_O(ctx, v, V)  # noqa: E741 (the paper's name)
        O = tuple(ctx.sign(pp) for pp in O)  # noqa: E741
        nv = self.d["new_view"] = ctx.sign(("new_view", v, V, O))
        self.new_views.add(v)
        ctx.fsync()
        ctx.broadcast(nv)
        self.enter_view(ctx, v, V, O, max_s)

    def on_new_view(self, ctx, src, nv):
        _, v, V, O = nv  # noqa: E741
        if src != self.primary(v) or v < self.view or (v == self.view and not self.changing):
            return
        if not ctx.verify(src, nv):
            return
        senders = set()
        for vc in V:
            if vc[0] != "view_change" or vc[1] != v or not self.valid_view_change(ctx, vc):
                return
            senders.add(vc[5])
        if len(senders) < 2 * self.f + 1:
            return
        _, max_s, O2 = self.compute_O(ctx, v, V)
        if tuple(O) != O2:
            return  # the primary's O is not the one V determines
        self.enter_view(ctx, v, V, O, max_s)

    def enter_view(self, ctx, v, V, O, max_s):  # noqa: E741
        self.view, self.changing = v, False
        self.tries = 0
        ctx.cancel_timer("resend")
        self.stop_timer(ctx)
        ctx.record("view", view=v)
        best = max(V, key=lambda vc: vc[2])
        if best[2] > self.h:  # the new view starts from a later stable checkpoint
            self.stabilize(ctx, best[2], self.valid_proof(ctx, best[2], best[3]), best[3])
        for pp in O:
            if self.h < pp[2] <= self.h + self.L:
                self.accept_pre_prepare(ctx, pp)
        early, self.early = self.early, []
        for src, pp in early:
            if pp[1] >= v:
                self.on_pre_prepare(ctx, src, pp)
        if self.is_primary(ctx):
            self.seq = max(max_s, self.h)
            self.assigned = {rid_of(pp[3]) for pp in O if pp[3] is not None}
            for m in list(self.pending.values()):
                self.assign(ctx, m)
        if self.pending:
            self.start_timer(ctx)

    HANDLERS = {
        "request": on_request,
        "pre_prepare": on_pre_prepare,
        "prepare": on_prepare,
        "commit": on_commit,
        "checkpoint": on_checkpoint,
        "fetch_state": on_fetch_state,
        "state": on_state,
        "view_change": on_view_change,
        "new_view": on_new_view,
    }


NODE = PBFT
