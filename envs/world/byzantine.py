"""Byzantine nodes: a *strategy* replaces a node's protocol and may send anything to anyone.

A node turned Byzantine (``Sim.byzantine(node, strategy)``, or the scheduled fault
``{at_ms, fault: byzantine, node, strategy}``) keeps its place in the world: it receives what is sent
to it, its timers and clients reach it, but its handlers are now the strategy's. Channels stay
authenticated: whatever it sends, the receiver learns the true sender (``src``), and it can only
``ctx.sign`` as itself, so it cannot forge another node's identity or signature -- the fault model of
Castro and Liskov's PBFT (OSDI 1999, section 2) and of Lamport, Shostak and Pease's signed messages.

Most strategies corrupt the honest protocol rather than replace it: the node's protocol object keeps
running (``inner``) against a context whose ``send`` and ``broadcast`` go through the strategy, which
decides what actually leaves the node. The generic strategies know nothing of any protocol; the
targeted ones know a protocol's wire format (message tuples), never its code:

=================  ================================================================================
``silent``         sends nothing and answers no client (a crash that keeps receiving)
``equivocate``     every message goes as it is to half of the peers and with a field changed to the
                   other half (different values to different peers); clients get wrong values
``random-fields``  each message has one field changed with probability ``p`` (0.5); clients get
                   wrong values
``replay``         sends what it sends, and with probability ``p`` (0.5) also an older message
                   (one it sent or received) to a random peer
``delay``          holds each message for a uniform ``0..delay_ms`` (default 200) of its own clock
``pbft``           PBFT, colluding: as primary, pre-prepares one request to every other replica and
                   the null request at the same sequence number to the others; as a backup, sends
                   each replica prepares and commits for what the primary sent it (signed as itself)
``raft``           Raft: claims leadership of a higher term in AppendEntries whose entries are its
                   own forged commands, with a commit index that covers them, to every peer
``multipaxos``     Multi-Paxos: for every accept (``2a``) it sees, tells every peer a forged write
                   was decided in that slot
``abd``            ABD: answers every query with a forged value under a tag above any real one
``phased``         the node's agent decides (``ctx.ask``), once per protocol phase: honest, drop,
                   delay, equivocate or corrupt, and with the option ``collude`` collude as the
                   ``pbft`` strategy (see :class:`Phased`)
=================  ================================================================================

Each strategy declares the options it takes in its ``Options`` model (pydantic, unknown keys
refused): the run config's ``options`` of a byzantine fault are checked against it
(:func:`check_options`) and the strategy reads them from ``self.opts``.

Byzantine nodes may collude: every strategy object of a world sees ``self.shared``, one dict per
world. All randomness comes from ``derive_rng(seed, "byzantine", node)``.
"""

from __future__ import annotations

import weakref
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .node import Node
from .rng import derive_rng


def mutate(body: Any, rng, depth: int = 0) -> Any:
    """``body`` with one field changed (a field below the first, which names the message type):
    numbers moved by 1..3, strings suffixed, ``None`` made 0, booleans flipped, tuples and lists
    changed inside. Deterministic given ``rng``."""
    if isinstance(body, bool):
        return not body
    if isinstance(body, int):
        return body + rng.choice((-3, -2, -1, 1, 2, 3))
    if isinstance(body, float):
        return body + rng.uniform(-10, 10)
    if isinstance(body, str):
        return body + "~"
    if body is None:
        return 0
    if isinstance(body, (tuple, list)) and body and depth < 4:
        first = 1 if depth == 0 and isinstance(body[0], str) and len(body) > 1 else 0
        k = rng.randrange(first, len(body))
        out = list(body)
        out[k] = mutate(out[k], rng, depth + 1)
        return type(body)(out) if isinstance(body, tuple) else out
    if isinstance(body, dict) and body:
        k = rng.choice(sorted(body, key=repr))
        return {**body, k: mutate(body[k], rng, depth + 1)}
    return body


def resign(ctx, original: Any, body: Any) -> Any:
    """A Byzantine node signs what it changes when the original carried its own signature (it may
    sign anything as itself; a body that cannot be signed goes unsigned)."""
    sign, verify = getattr(ctx, "sign", None), getattr(ctx, "verify", None)
    if sign is not None and body is not original and verify(ctx.node_id, original):
        try:
            sign(body)
        except TypeError:
            pass
    return body


class Mouth:
    """The context the honest protocol object sees inside a Byzantine node: everything is the real
    context's, except that ``send`` and ``broadcast`` hand the message to the strategy."""

    def __init__(self, ctx, strategy: Strategy):
        # a weak proxy: the strategy keeps its mouth, so a strong reference back would make a cycle
        # that keeps a finished world (through ``ctx``) alive until a full cyclic-GC pass
        self._ctx, self._strategy = ctx, weakref.proxy(strategy)

    def send(self, dst: int, body: Any) -> None:
        self._strategy.emit(self._ctx, dst, body)

    def broadcast(self, body: Any) -> None:
        for p in self._ctx.peers:
            self._strategy.emit(self._ctx, p, body)

    def reply(self, op, status: str = "ok", value: Any = None) -> None:
        self._strategy.answer(self._ctx, op, status, value)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class NoOptions(BaseModel):
    """The options a strategy takes: none (subclasses add fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChanceOptions(NoOptions):
    p: float = Field(0.5, ge=0, le=1, description="probability per message")


class DelayOptions(NoOptions):
    delay_ms: float = Field(200.0, ge=0, description="the longest a message is held (node's clock)")


class Strategy(Node):
    """Base strategy: runs the honest protocol (``inner``) and sends what it sends (``emit``).
    Subclasses override ``emit`` (what leaves the node) and ``on_receive`` (what it learns), and
    declare the options they take in ``Options`` (read from ``self.opts``)."""

    name = "honest"
    TIMER = "__byzantine"  # prefix of the strategy's own timer names
    Options: type[NoOptions] = NoOptions

    def __init__(self, inner: Node | None, shared: dict, seed: int, node: int, **options: Any):
        super().__init__(getattr(inner, "params", None))
        self.inner, self.shared, self.options = inner, shared, options
        self.opts = self.Options.model_validate(options)
        self.rng = derive_rng(seed, "byzantine", node)
        self.mouth = None

    def _mouth(self, ctx):
        if self.mouth is None or self.mouth._ctx is not ctx:
            self.mouth = Mouth(ctx, self)
        return self.mouth

    # --- the node's handlers: the strategy sees everything first -------------------------------
    def on_start(self, ctx):
        if self.inner is not None:
            self.inner.on_start(self._mouth(ctx))

    def on_message(self, ctx, src, body):
        self.on_receive(ctx, src, body)
        if self.inner is not None:
            self.inner.on_message(self._mouth(ctx), src, body)

    def on_timer(self, ctx, name):
        if isinstance(name, tuple) and name and name[0] == self.TIMER:
            self.on_own_timer(ctx, name)
        elif self.inner is not None:
            self.inner.on_timer(self._mouth(ctx), name)

    def on_client(self, ctx, op):
        if self.inner is not None:
            self.inner.on_client(self._mouth(ctx), op)

    def on_decision(self, ctx, point, action):
        if self.inner is not None:
            self.inner.on_decision(self._mouth(ctx), point, action)

    # --- what a strategy overrides ---------------------------------------------------------------
    def on_receive(self, ctx, src, body) -> None:
        """Called with every message the node receives, before the honest protocol sees it."""

    def emit(self, ctx, dst, body) -> None:
        """The honest protocol wants ``body`` sent to ``dst``: decide what goes (default: it)."""
        ctx.send(dst, body)

    def on_own_timer(self, ctx, name) -> None:
        pass

    def answer(self, ctx, op, status, value) -> None:
        """The honest protocol answers a client: decide what the client hears (default: that)."""
        ctx.reply(op, status, value)


class Liar(Strategy):
    """Strategies that also lie to clients: every answer's value has a field changed."""

    def answer(self, ctx, op, status, value):
        ctx.reply(op, status, mutate(value, self.rng))


class Silent(Strategy):
    name = "silent"

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(None, shared, seed, node, **options)  # the protocol is gone

    def on_client(self, ctx, op):
        pass  # its clients time out


class Equivocate(Liar):
    name = "equivocate"

    def emit(self, ctx, dst, body):
        peers = ctx.peers
        if dst in peers[len(peers) // 2:]:
            body = resign(ctx, body, mutate(body, self.rng))
        ctx.send(dst, body)


class RandomFields(Liar):
    name = "random-fields"
    Options = ChanceOptions

    def emit(self, ctx, dst, body):
        if self.rng.random() < self.opts.p:
            body = resign(ctx, body, mutate(body, self.rng))
        ctx.send(dst, body)


class Replay(Strategy):
    name = "replay"
    KEEP = 256
    Options = ChanceOptions

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(inner, shared, seed, node, **options)
        self.seen: list = []

    def remember(self, body):
        self.seen.append(body)
        if len(self.seen) > self.KEEP:
            del self.seen[: self.KEEP // 2]

    def on_receive(self, ctx, src, body):
        self.remember(body)

    def emit(self, ctx, dst, body):
        ctx.send(dst, body)
        if self.seen and self.rng.random() < self.opts.p:
            ctx.send(self.rng.choice(ctx.peers), self.seen[self.rng.randrange(len(self.seen))])
        self.remember(body)


class Delay(Strategy):
    name = "delay"
    Options = DelayOptions

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(inner, shared, seed, node, **options)
        self.held: dict = {}
        self.k = 0

    def emit(self, ctx, dst, body):
        self.k += 1
        self.held[self.k] = (dst, body)
        ctx.set_timer((self.TIMER, self.k), self.rng.uniform(0, self.opts.delay_ms))

    def on_own_timer(self, ctx, name):
        item = self.held.pop(name[1], None)
        if item is not None:
            ctx.send(*item)


class PBFTAttack(Strategy):
    """Targets ``agents/protocols/pbft.py``'s messages, colluding through ``shared``. As primary it
    splits the replicas: a pre-prepare for the request to every other peer, one for the null
    request at the same sequence number to the others, and to each a commit for what that
    replica was sent. As a backup, for every pre-prepare it sees, it sends each replica a signed
    prepare and a commit for what a colluding primary sent that replica (the null request when the
    primary is correct). One such node is within PBFT's bound; f + 1 of them (the primary among
    them) make correct replicas execute different requests at one sequence number."""

    name = "pbft"

    def emit(self, ctx, dst, body):
        if isinstance(body, tuple) and len(body) == 4 and body[0] == "pre_prepare":
            _, v, n, m = body
            if ctx.peers.index(dst) % 2:  # every other peer: the null request at the same n
                m = None
                body = ctx.sign(("pre_prepare", v, n, None))
            self.shared[("sent", v, n, dst)] = m
            ctx.send(dst, body)
            ctx.send(dst, ("commit", v, n, m, ctx.node_id))
            return
        ctx.send(dst, body)

    def on_receive(self, ctx, src, body):
        if isinstance(body, tuple) and len(body) == 4 and body[0] == "pre_prepare":
            _, v, n, _m = body
            key = ("backed", ctx.node_id, v, n)
            if key in self.shared:
                return
            self.shared[key] = True
            for dst in ctx.peers:
                m = self.shared.get(("sent", v, n, dst))
                ctx.send(dst, ctx.sign(("prepare", v, n, m, ctx.node_id)))
                ctx.send(dst, ("commit", v, n, m, ctx.node_id))

    def back(self, ctx, v, n) -> None:
        """Back sequence number ``n`` of view ``v`` as on seeing its pre-prepare (once per node):
        prepares and commits, to each replica, for what a colluding primary sent it. The hook
        :class:`Phased`'s ``collude`` action calls."""
        self.on_receive(ctx, None, ("pre_prepare", v, n, None))


class RaftAttack(Strategy):
    """Targets ``agents/protocols/raft.py``'s messages. Raft trusts whoever claims leadership of a
    higher term: when this node hears an AppendEntries of term ``t`` covering index ``i``, it sends
    every peer an AppendEntries of term ``t + 1`` naming itself leader, with ``i + extra`` (5) forged
    writes from index 1 and ``leaderCommit`` covering them, and keeps doing so every ``period_ms``
    (40, a leader's heartbeat) for ``rounds`` (5) rounds, then falls silent. Followers truncate
    what they had (committed or not) and commit the forgery: correct replicas then hold different
    commands at the same index, and the next correct leader serves values nobody wrote."""

    name = "raft"

    class Options(NoOptions):
        extra: int = Field(5, ge=0, description="forged writes beyond the index it heard of")
        rounds: int = Field(5, ge=1, description="forged AppendEntries rounds before it falls silent")
        period_ms: float = Field(40.0, gt=0, description="between rounds (a leader's heartbeat)")

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(inner, shared, seed, node, **options)
        self.term = None
        self.rounds = 0
        self.keys: set = set()

    def on_receive(self, ctx, src, body):
        if not (isinstance(body, tuple) and len(body) == 7 and body[0] == "append_entries"):
            return
        term, prev, entries = body[1], body[3], body[5]
        for e in entries:  # forge commands on the keys the clients use
            if isinstance(e, tuple) and len(e) == 2 and isinstance(e[1], tuple) and len(e[1]) == 5:
                self.keys.add(e[1][3])
        if self.term is None or term >= self.term:
            self.term = term + 1
            self.length = prev + len(entries) + self.opts.extra
            if self.rounds == 0:
                self.forge(ctx)

    def forge(self, ctx):
        me, t = ctx.node_id, self.term
        keys = sorted(self.keys, key=repr) or [None]
        entries = [(t, (me, -(i + 1), "write", keys[i % len(keys)], f"forged-{i}")) for i in range(self.length)]
        for p in ctx.peers:
            ctx.send(p, ("append_entries", t, me, 0, 0, entries, self.length))
        self.rounds += 1
        if self.rounds < self.opts.rounds:
            ctx.set_timer((self.TIMER, "forge"), self.opts.period_ms)

    def on_own_timer(self, ctx, name):
        self.forge(ctx)

    def emit(self, ctx, dst, body):
        pass  # it speaks only through its forgeries


class MultiPaxosAttack(Strategy):
    """Targets ``agents/protocols/multipaxos.py``'s messages. Multi-Paxos learners trust a
    ``decision``: whenever this node sees a ``2a`` (accept) for a slot, it tells every peer that a
    forged write was chosen there, before the real decision can arrive."""

    name = "multipaxos"

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(inner, shared, seed, node, **options)
        self.keys: set = set()
        self.done: set = set()

    def on_receive(self, ctx, src, body):
        if not (isinstance(body, tuple) and len(body) == 4 and body[0] == "2a"):
            return
        _, b, slot, cmd = body
        if isinstance(cmd, (list, tuple)) and len(cmd) == 5:
            self.keys.add(cmd[3])
        if slot in self.done:
            return
        self.done.add(slot)
        keys = sorted(self.keys, key=repr) or [None]
        forged = [ctx.node_id, -(slot + 1), "write", keys[slot % len(keys)], f"forged-{slot}"]
        ctx.broadcast(("decision", slot, forged, b))


class ABDAttack(Strategy):
    """Targets ``agents/protocols/abd.py``'s messages. ABD's coordinator adopts the highest tag a
    replica reports: this replica answers every ``query`` with a forged value under a tag above any
    real one, so reads return (and write back) a value no client wrote."""

    name = "abd"

    def emit(self, ctx, dst, body):
        if isinstance(body, tuple) and len(body) == 5 and body[0] == "query_ack":
            _, rid, key, _tag, _value = body
            self.k = getattr(self, "k", 0) + 1
            body = ("query_ack", rid, key, (10**9 + self.k, (ctx.node_id, 0, self.k)), f"forged-{self.k}")
        ctx.send(dst, body)


class Phased(Strategy):
    """Leaves the lying to the node's agent, one decision per protocol phase (not per message).
    The messages of one type that one handler emits (a broadcast) are held, and the node asks its
    agent ``ctx.ask(("byzantine", type), obs, default=HONEST)`` what to do with them:

    ``0`` honest (send them), ``1`` drop, ``2`` delay (``delay_ms``, 200), ``3`` equivocate (a field
    changed for every other recipient), ``4`` corrupt (a field changed for all).
    With the option ``collude`` (true) also ``5`` collude: the batch goes as the world's ``pbft``
    strategy (:class:`PBFTAttack`, whose object this node keeps, sharing ``shared`` with every other
    colluding node) would send it: a pre-prepare splits the replicas (the request to some, the null
    request at the same sequence number to the others, each with this node's commit); a batch of
    prepares or commits for ``(v, n)`` is replaced by the backing of ``(v, n)`` (each replica is sent
    a prepare and a commit for what a colluding primary sent it, once per node and ``(v, n)``);
    any other batch goes as written. f + 1 nodes colluding (the primary among them) is the attack
    known to break PBFT's safety; with at most f it is just another lie.

    obs: ``[one-hot of the type among PHASES (the last slot: any other type), messages held]`` and
    then the node's own protocol state (:meth:`own_state`: 6 floats, zeros for a protocol with no
    views), read inside the node when it asks, so that an agent answering in the node's own process
    (a live actor) sees what ``capgym/Byzantine-v0`` observes in the simulator.
    With no agent attached every answer is the default, honest. This is the action space of the
    learned adversaries of ``capgym/Byzantine-v0``."""

    name = "phased"
    HONEST, DROP, DELAY, EQUIVOCATE, CORRUPT = range(5)
    COLLUDE = 5  # with the option collude
    PHASES = ("request", "pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view")

    class Options(DelayOptions):  # delay_ms: how long action 2 (delay) holds a batch
        collude: bool = Field(False, description="add action 5, collude (as the pbft strategy)")

    def __init__(self, inner, shared, seed, node, **options):
        super().__init__(inner, shared, seed, node, **options)
        self.batch: dict = {}  # type -> [(dst, body)] emitted by the current handler
        self.asked: dict = {}  # ask id -> [(dst, body)] awaiting the agent's answer
        self.delayed: dict = {}  # timer id -> (dst, body)
        self.k = 0
        self.colluder = PBFTAttack(None, shared, seed, node)  # action 5 (collude): the pbft strategy
        self.n_choices = 6 if self.opts.collude else 5

    def emit(self, ctx, dst, body):
        kind = body[0] if isinstance(body, tuple) and body and isinstance(body[0], str) else "?"
        self.batch.setdefault(kind, []).append((dst, body))

    def flush(self, ctx):
        batch, self.batch = self.batch, {}
        for kind, msgs in batch.items():
            self.k += 1
            self.asked[self.k] = msgs
            hot = [float(kind == p) for p in self.PHASES] + [float(kind not in self.PHASES)]
            ctx.ask(("byzantine", kind, self.k), hot + [float(len(msgs))] + self.own_state(ctx),
                    default=self.HONEST, mask=[True] * self.n_choices)

    def own_state(self, ctx) -> list[float]:
        """The node's own (inner, honest) protocol state as its agent sees it at a phase:
        ``[1.0 when it is the primary of its view, 1.0 while it is changing views, view / 10,
        requests pending / 10, 0.0, view changes since the last view entered / 4]`` for a protocol
        with views (PBFT: ``view``, ``changing``, ``pending``, ``tries``); zeros before it started
        or for any other protocol. (The 0.0 is the slot ``capgym/Byzantine-v0`` sets to 1.0 for a
        view-change-timeout decision.)"""
        try:
            v, changing, pending, tries = self.inner.view, self.inner.changing, self.inner.pending, self.inner.tries
        except AttributeError:  # no protocol (silent), not started yet (PBFT's state is on its disk), no views
            return [0.0] * 6
        return [float(v % ctx.n == ctx.node_id), float(changing), v / 10.0, len(pending) / 10.0, 0.0, tries / 4.0]

    def on_start(self, ctx):
        super().on_start(ctx)
        self.flush(ctx)

    def on_message(self, ctx, src, body):
        super().on_message(ctx, src, body)
        self.flush(ctx)

    def on_timer(self, ctx, name):
        super().on_timer(ctx, name)
        self.flush(ctx)

    def on_own_timer(self, ctx, name):
        item = self.delayed.pop(name[1], None)
        if item is not None:
            ctx.send(*item)

    def on_client(self, ctx, op):
        super().on_client(ctx, op)
        self.flush(ctx)

    def on_decision(self, ctx, point, action):
        if not (isinstance(point, tuple) and point and point[0] == "byzantine"):
            super().on_decision(ctx, point, action)
            self.flush(ctx)
            return
        msgs = self.asked.pop(point[2], [])
        if action == self.COLLUDE:
            self.collude(ctx, msgs)
            return
        for j, (dst, body) in enumerate(msgs):
            if action == self.DROP:
                continue
            if action == self.DELAY:
                self.k += 1
                self.delayed[self.k] = (dst, body)
                ctx.set_timer((self.TIMER, self.k), self.opts.delay_ms)
                continue
            if action == self.CORRUPT or (action == self.EQUIVOCATE and j % 2):
                body = resign(ctx, body, mutate(body, self.rng))
            ctx.send(dst, body)

    def collude(self, ctx, msgs) -> None:
        """Action 5: ``msgs`` as the colluding ``pbft`` strategy would send them (see the class)."""
        att = self.colluder
        for dst, body in msgs:
            kind = body[0] if isinstance(body, tuple) and body else None
            if kind == "pre_prepare" and len(body) == 4:
                att.emit(ctx, dst, body)
            elif kind in ("prepare", "commit") and len(body) >= 3:
                att.back(ctx, body[1], body[2])
            else:
                ctx.send(dst, body)


#: the scripted strategies by name (``capgym list nemesis`` shows them)
STRATEGIES: dict[str, type[Strategy]] = {c.name: c for c in (
    Silent, Equivocate, RandomFields, Replay, Delay, PBFTAttack, RaftAttack, MultiPaxosAttack, ABDAttack,
    Phased)}
STRATEGY_NAMES = tuple(STRATEGIES)


def check_options(strategy: str, options: dict) -> dict:
    """``options`` checked against what ``strategy`` takes (its ``Options``): the options given,
    with their values converted (``"0.2"`` to 0.2, ``5.0`` to 5). ``ValueError("KEY: why")`` for an
    unknown option or a bad value (a strategy that takes none names that)."""
    model = STRATEGIES[strategy].Options
    try:
        return model.model_validate(options).model_dump(exclude_unset=True)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err.get("loc", ())) or "options"
        takes = ", ".join(model.model_fields) or "no options"
        if err.get("type") == "extra_forbidden":
            raise ValueError(f"{key}: unknown option of the {strategy} strategy (it takes {takes})") from None
        raise ValueError(f"{key}: {err.get('msg', 'invalid')}") from None


class Corrupted:
    """``NodeState.cls`` of a Byzantine node: builds the strategy around a fresh protocol object,
    so that a Byzantine node that crashes and restarts is Byzantine again."""

    def __init__(self, honest_cls, strategy: str, shared: dict, seed: int, node: int, options: dict):
        self.honest_cls, self.strategy = honest_cls, strategy
        self.shared, self.seed, self.node, self.options = shared, seed, node, options

    def __call__(self, params):
        return self.wrap(self.honest_cls(params))

    def wrap(self, inner: Node | None) -> Strategy:
        return STRATEGIES[self.strategy](inner, self.shared, self.seed, self.node, **self.options)
