"""Consensus-v0: agents with private binary inputs must decide one value through message rounds.

Every node runs :class:`BenOr` below, the randomized binary consensus of M. Ben-Or, "Another
Advantage of Free Choice: Completely Asynchronous Agreement Protocols", PODC 1983 (crash-fault
version, ``n > 2f``). Round ``r``:

1. broadcast ``("report", r, est)``; wait for reports from a majority (itself included). If more
   than ``n/2`` of *all* nodes reported ``v``, propose ``v``, else propose ``?``;
2. broadcast ``("proposal", r, p)``; wait for proposals from a majority. If at least ``f + 1`` of
   them (``f = (n - 1) // 2``) propose ``v``: **decide** ``v``. Then the next estimate is chosen --
   this is the agent's decision ``("estimate", r)``. Textbook: ``v`` if some proposal was ``v``,
   otherwise a fair coin (``ctx.rng``).

A node that decides broadcasts ``("decided", v)``; a node that hears it decides ``v`` too, and a
decided node answers any round message with it (so late nodes terminate). Messages are
retransmitted every ``retry_ms`` of the node's own clock; a node answers a message of a round it
has left with its own messages of that round (so loss cannot strand a slower node). Inputs, round,
estimate and decision are kept in ``ctx.durable`` (they survive crashes; synced before each round
message leaves). Trace records:
``propose`` {value} (the input, once) and ``decide`` {value, round}.

Actions (``Discrete(3)``): ``0``/``1`` the next estimate, ``2`` the no-op. An agent may prefer its
own input (``own_bias``), which can stall the rounds -- or, ignoring a proposal, break agreement.

Observation (``Box(8)``, local view only)
    ``[own input, fraction of the round's proposals for 0, for 1, for ?, round / 10, fraction of peers
    heard from within suspect_ms, clock_s, owes_decision]``.

Rewards
    local: ``decide_reward`` when the node decides, plus ``own_bias`` if it decided its own input,
    minus ``round_cost`` for every estimate it chooses (every round it goes on to, the first
    included). ``round_cost`` is 0.1, a tenth of the decide reward (it was 0.01, and the textbook
    policy then earned within 0.03 of random: the rounds a policy wastes did not show; issue 14,
    docs/environments.md). The observer's welfare: the mean local reward,
    minus ``agreement_penalty`` if two nodes decided differently, ``validity_penalty`` if a decided
    value was nobody's input, and ``termination_penalty`` times the fraction of live nodes that did
    not decide. Global measures: ``metrics.consensus`` (agreement, validity, termination, rounds).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.node import Node
from envs.world.rng import derive_rng
from envs.world.sim import Ask

UNDECIDED = None
Q = "?"


class BenOrParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retry_ms: float = Field(50.0, gt=0, description="retransmit the current phase's message this often")
    suspect_ms: float = Field(300.0, gt=0, description="a peer silent this long counts as unreachable")


class BenOr(Node):
    Params = BenOrParams

    def on_start(self, ctx):
        d = ctx.durable
        self.d = d
        d.setdefault("input", ctx.rng.randrange(2))
        if not d.get("proposed"):
            d["proposed"] = True
            ctx.record("propose", value=d["input"])
        d.setdefault("round", 0)  # 0: the first estimate is not chosen yet
        d.setdefault("phase", 1)
        d.setdefault("est", d["input"])
        d.setdefault("decided", UNDECIDED)
        d.setdefault("mine", {})  # (round, phase) -> what this node sent
        self.got = {}  # (round, phase) -> {src: value}
        self.heard = {p: None for p in ctx.peers}
        self.f = (ctx.n - 1) // 2
        self.majority = ctx.n // 2 + 1
        self.asking = False
        if d["decided"] is None:
            if d["round"] == 0:  # choose the first estimate (textbook: one's own input)
                self.asking = True
                ctx.ask(("estimate", 0), self.obs(ctx, []), default=d["input"])
            else:
                self.enter(ctx)

    # --- the rounds ---------------------------------------------------------------------------------
    def enter(self, ctx):
        """Send this phase's message (keeping it for late peers) and wait."""
        d = self.d
        key = (d["round"], d["phase"])
        if key not in d["mine"]:
            d["mine"][key] = d["est"] if d["phase"] == 1 else d.get("prop", Q)
        self.got.setdefault(key, {})[ctx.node_id] = d["mine"][key]
        self.broadcast_phase(ctx)
        self.check(ctx)

    def broadcast_phase(self, ctx):
        d = self.d
        r, ph = d["round"], d["phase"]
        ctx.fsync()  # a restarted node resends this message, never a different one for the phase
        ctx.broadcast(("report" if ph == 1 else "proposal", r, d["mine"][(r, ph)]))
        ctx.set_timer("retry", self.params.retry_ms)

    def check(self, ctx):
        d = self.d
        if d["decided"] is not None or self.asking:
            return
        r, ph = d["round"], d["phase"]
        got = self.got.get((r, ph), {})
        if len(got) < self.majority:
            return
        vals = list(got.values())
        if ph == 1:
            d["prop"] = next((v for v in (0, 1) if vals.count(v) * 2 > ctx.n), Q)
            d["phase"] = 2
            self.enter(ctx)
            return
        for v in (0, 1):
            if vals.count(v) >= self.f + 1:
                self.decide(ctx, v)
                return
        seen = [v for v in (0, 1) if v in vals]
        default = seen[0] if seen else ctx.rng.randrange(2)
        self.asking = True
        ctx.ask(("estimate", r), self.obs(ctx, vals), default=default)

    def obs(self, ctx, vals):
        now, s = ctx.now(), self.params.suspect_ms
        up = sum(t is not None and now - t < s for t in self.heard.values())
        k = max(1, len(vals))
        return [float(self.d["input"]), vals.count(0) / k, vals.count(1) / k, vals.count(Q) / k,
                self.d["round"] / 10.0, up / max(1, len(self.heard))]

    def on_decision(self, ctx, point, action):
        d = self.d
        if not self.asking or point[1] != d["round"] or d["decided"] is not None:
            return
        self.asking = False
        d["est"] = int(action)
        d["round"] += 1
        d["phase"] = 1
        self.enter(ctx)

    def decide(self, ctx, v):
        d = self.d
        if d["decided"] is not None:
            return
        d["decided"] = v
        ctx.cancel_timer("retry")
        ctx.record("decide", value=v, round=d["round"])
        ctx.broadcast(("decided", v))

    # --- messages and timers ------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        if src in self.heard:
            self.heard[src] = ctx.now()
        d = self.d
        kind = body[0]
        if kind == "decided":
            self.decide(ctx, body[1])
            return
        if d["decided"] is not None:
            ctx.send(src, ("decided", d["decided"]))
            return
        _, r, v = body
        ph = 1 if kind == "report" else 2
        self.got.setdefault((r, ph), {})[src] = v
        mine = d["mine"]
        if (r, ph) < (d["round"], d["phase"]) and (r, ph) in mine:  # a slower peer: help it on
            ctx.send(src, (kind, r, mine[(r, ph)]))
            if ph == 1 and (r, 2) in mine:
                ctx.send(src, ("proposal", r, mine[(r, 2)]))
        self.check(ctx)

    def on_timer(self, ctx, name):
        if name == "retry" and self.d["decided"] is None:
            self.broadcast_phase(ctx)


class ConsensusConfig(EnvConfig):
    inputs: list[int] | None = Field(None, description="each node's private input (0/1); None: random by seed")
    decide_reward: float = Field(1.0, description="local reward for deciding")
    own_bias: float = Field(0.5, description="extra local reward for deciding one's own input")
    round_cost: float = Field(0.1, ge=0, description="local cost of every round (every estimate chosen)")
    agreement_penalty: float = Field(10.0, ge=0)
    validity_penalty: float = Field(10.0, ge=0)
    termination_penalty: float = Field(5.0, ge=0)


class ConsensusGame(Game):
    Config = ConsensusConfig
    name = "Consensus-v0"
    n_actions = 2
    n_features = 6

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.inputs is not None and (len(cfg.inputs) != cfg.nodes or any(v not in (0, 1) for v in cfg.inputs)):
            raise ValueError(f"inputs: need {cfg.nodes} values, each 0 or 1")
        self.params = validate(BenOrParams, cfg.protocol_params, "protocol_params")

    def node_program(self):
        return BenOr, self.params

    def setup(self, ep: Episode) -> None:
        rng = derive_rng(ep.seed, "inputs")
        ep.inputs = list(self.cfg.inputs) if self.cfg.inputs is not None else [rng.randrange(2) for _ in range(ep.n)]
        for i, s in enumerate(ep.sim.states):
            s.durable["input"] = ep.inputs[i]  # the private input is on the node's disk from the start
        ep.cursor = 0
        ep.decided = [None] * ep.n

    def features(self, ask: Ask) -> list[float]:
        return ask.obs

    def action(self, ep: Episode, ask: Ask, a: int):
        ep.earned[ask.node] -= self.cfg.round_cost
        return a

    def default(self, ep: Episode, ask: Ask):
        return self.action(ep, ask, ask.default)

    def collect(self, ep: Episode) -> None:
        """Credit each node's decision (read off the trace's ``decide`` records)."""
        raw, cfg = ep.sim.trace.raw, self.cfg
        for i in range(ep.cursor, len(raw)):
            r = raw[i]
            if r[0] == "decide" and ep.decided[r[1]] is None:
                v = r[5]["value"]
                ep.decided[r[1]] = v
                ep.earned[r[1]] += cfg.decide_reward + (cfg.own_bias if v == ep.inputs[r[1]] else 0.0)
        ep.cursor = len(raw)

    def measures(self, ep: Episode) -> dict:
        from metrics.consensus import consensus

        m = consensus(ep.sim.trace.events(), nodes=range(ep.n))
        m["inputs"] = ep.inputs
        m["decided"] = ep.decided
        m["decisions"] = ep.decisions
        m["returns"] = ep.returns()
        return m

    def terminal_welfare(self, ep: Episode, m: dict) -> float:
        c = self.cfg
        pen = 0.0 if m.get("agreement", True) else c.agreement_penalty
        pen += c.validity_penalty if m.get("validity") is False else 0.0
        term = m.get("termination")
        pen += c.termination_penalty * (1.0 - term) if term is not None else 0.0
        return -pen


class raw_env(CapAEC):
    """Consensus-v0 in the AEC API (see the module docstring)."""

    game_cls = ConsensusGame
    metadata = {"render_modes": ["ansi"], "name": "Consensus-v0", "is_parallelizable": True}


class parallel_raw_env(CapParallel):
    """Consensus-v0 in the Parallel API (see the module docstring)."""

    game_cls = ConsensusGame
    metadata = {"render_modes": ["ansi"], "name": "Consensus-v0", "is_parallelizable": True}


def env(**kwargs) -> raw_env:
    return raw_env(**kwargs)


def parallel_env(**kwargs) -> parallel_raw_env:
    return parallel_raw_env(**kwargs)
