"""Commons-v0: agents harvest a shared renewable resource whose level they know only through gossip.

The resource (held by the world, not by any node) has level ``R`` and grows logistically,
``dR/dt = growth * R * (1 - R / capacity)`` per second, sampled every ``tick_ms``. If it ever falls
below ``collapse_fraction * capacity`` it **collapses** (``R = 0`` for good). Every node runs the
small program :class:`Harvester` below: every ``harvest_ms`` of its own clock it owes a decision
``("harvest", n)``; the harvest it chooses is taken from the resource at once (no more than is
there), and the node then sees the level it left behind. Between its own harvests it learns the
level only from the readings its peers gossip (every ``gossip_ms``, the freshest reading it knows,
by the reader's clock), which the network delays, loses and partitions away.

Actions (``Discrete(L + 1)``)
    ``a < L`` harvests ``harvest_levels[a]`` (default ``[0, 0.1, 0.2, 0.4, 0.8]``); ``L`` is the
    no-op. The textbook default (:meth:`Harvester.restrained`) takes the largest level no larger
    than the node's share of the maximum sustainable yield (``growth * capacity / 4`` per second
    shared by ``n`` nodes) while its known level is at least half the capacity, and nothing below.

Observation (``Box(7)``, local view only)
    ``[known level / capacity, has a reading, age of that reading in s (own clock), fraction of
    peers heard from within suspect_ms, own last harvest / max level, clock_s, owes_decision]``.

Rewards
    local: what the node harvested. The observer's welfare: the mean harvest, minus
    ``collapse_penalty`` (per agent) if the resource collapsed, charged at the step the collapse
    happens (not at the episode's end, where a discounted return would barely see it: a 20 s
    episode is about 1,000 steps), so a global-reward learner is told which harvest caused it.

Variants (``variant=``)
    ``"default"``: the parameters above, 5 s. At these, with scripted ``greedy`` and
    ``make_restrained()`` agents, the game is not a social dilemma: the restrained harvest (0.1 per
    decision, 5/s for 5 agents) is far below the maximum sustainable yield (12.5/s at half
    capacity) and 5 s is too short for a sustainable flow to beat grabbing the stock, so all
    greedy (total 59.8) beats all restrained (24.5) and a mix (3 restrained, 2 greedy) is best.
    ``"dilemma"``: harvest levels ``[0, 0.25, 0.5, 1, 2]`` and a 20 s horizon, so that the
    restrained level is each agent's share of the maximum sustainable yield (0.25 per decision at
    10 decisions/s = 12.5/s / 5) and the horizon is long enough for that flow (250 in 20 s) to beat
    the one-off stock a greedy grab takes (about 50). Its Schelling diagram (payoff of a restrained
    and of a greedy agent against the number of restrained others, ``agents.scripted.schelling``)
    is a Prisoner's Dilemma: greedy pays more than restrained at every count, all restrained pays
    each agent more than all greedy, and all restrained is the group's best outcome
    (docs/environments.md has the numbers). Keys given explicitly override the preset.

Global measures: ``collapsed`` (and when, true ms), ``final_level``, ``min_level``, and the social
outcome measures of Perolat et al. (2017) from ``metrics.alignment`` over ``tick_ms`` steps:
efficiency, equality, sustainability, and peace (here an agent is "tagged" during a step when its
node is down or paused: the world's faults play the part of the paper's tagging beam).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.node import Node
from envs.world.sim import Ask


class HarvesterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    harvest_ms: float = Field(100.0, gt=0, description="a harvest decision this often (own clock)")
    gossip_ms: float = Field(50.0, gt=0, description="gossip the freshest reading this often (own clock)")
    suspect_ms: float = Field(300.0, gt=0, description="a peer silent this long counts as unreachable")
    capacity: float = Field(100.0, gt=0)
    growth: float = Field(0.5, gt=0, description="logistic growth rate per second")
    harvest_levels: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8], min_length=2)


class Harvester(Node):
    """A harvester: harvests on a timer, keeps the freshest level reading, gossips it."""

    Params = HarvesterParams

    def on_start(self, ctx):
        p = self.params
        self.reading = None  # (level, reader's clock when read, reader id)
        self.got_at = None  # own clock when that reading arrived (or was made)
        self.last_taken = 0.0
        self.count = 0
        self.heard = {q: None for q in ctx.peers}
        ctx.set_timer("harvest", p.harvest_ms * (0.5 + ctx.rng.random()))
        ctx.set_timer("gossip", p.gossip_ms * ctx.rng.random())

    def obs(self, ctx):
        p, now = self.params, ctx.now()
        up = sum(t is not None and now - t < p.suspect_ms for t in self.heard.values())
        level = self.reading[0] / p.capacity if self.reading else 0.0
        age = (now - self.got_at) / 1000.0 if self.reading else 0.0
        return [level, float(self.reading is not None), age, up / max(1, len(self.heard)),
                self.last_taken / max(p.harvest_levels)]

    def restrained(self, ctx) -> int:
        """The textbook rule: a share of the maximum sustainable yield while the stock is healthy."""
        p = self.params
        if self.reading is None or self.reading[0] < p.capacity / 2:
            return 0
        share = p.growth * p.capacity / 4 * (p.harvest_ms / 1000.0) / ctx.n
        return max(i for i, x in enumerate(p.harvest_levels) if x <= share or i == 0)

    def on_timer(self, ctx, name):
        if name == "harvest":
            self.count += 1
            ctx.ask(("harvest", self.count), self.obs(ctx), default=self.restrained(ctx))
        else:
            if self.reading is not None:
                ctx.broadcast(("level",) + self.reading)
            ctx.set_timer("gossip", self.params.gossip_ms)

    def on_decision(self, ctx, point, action):
        """``action`` is ``(choice, taken, level left)``: the world applied the harvest."""
        _choice, taken, level = action
        self.last_taken = taken
        self.reading, self.got_at = (level, ctx.now(), ctx.node_id), ctx.now()
        ctx.record("harvest", amount=taken)
        ctx.set_timer("harvest", self.params.harvest_ms)

    def on_message(self, ctx, src, body):
        if src in self.heard:
            self.heard[src] = ctx.now()
        if body[0] == "level":
            reading = body[1:]
            if self.reading is None or (reading[1], reading[2]) > (self.reading[1], self.reading[2]):
                self.reading, self.got_at = reading, ctx.now()


#: named variants: presets under the caller's own keys (``variant="dilemma"``; see the module docstring)
VARIANTS = {
    "default": {},
    "dilemma": {"duration_ms": 20_000.0, "protocol_params": {"harvest_levels": [0.0, 0.25, 0.5, 1.0, 2.0]}},
}


class CommonsConfig(EnvConfig):
    variant: Literal["default", "dilemma"] = Field("default", description="a named preset (see VARIANTS)")
    initial_level: float = Field(0.5, gt=0, le=1, description="initial level as a fraction of capacity")
    collapse_fraction: float = Field(0.05, ge=0, lt=1, description="collapse below this fraction of capacity")
    collapse_penalty: float = Field(10.0, ge=0, description="observer welfare lost (per agent) on collapse")
    tick_ms: float = Field(50.0, gt=0, description="regrowth and measurement step (true ms)")

    @model_validator(mode="before")
    @classmethod
    def _variant(cls, data):
        """A variant's preset fills in what the caller did not give (protocol_params key by key)."""
        if not isinstance(data, dict) or data.get("variant", "default") not in VARIANTS:
            return data
        out = dict(data)
        for key, value in VARIANTS[data.get("variant", "default")].items():
            if key == "protocol_params":
                out[key] = {**value, **(data.get(key) or {})}
            else:
                out.setdefault(key, value)
        return out


class CommonsGame(Game):
    Config = CommonsConfig
    name = "Commons-v0"
    n_features = 5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.params = validate(HarvesterParams, cfg.protocol_params, "protocol_params")
        self.levels = self.params.harvest_levels
        self.n_actions = len(self.levels)

    def node_program(self):
        return Harvester, self.params

    def features(self, ask: Ask) -> list[float]:
        return ask.obs

    def setup(self, ep: Episode) -> None:
        p, cfg = self.params, self.cfg
        ep.level = cfg.initial_level * p.capacity
        ep.min_level = ep.level
        ep.collapsed_at = None
        ep.collapse_charged = False  # the observer's welfare has paid collapse_penalty
        steps = int(np.ceil(cfg.duration_ms / cfg.tick_ms)) + 1
        ep.harvests = np.zeros((steps, ep.n))  # per tick_ms step: what each agent harvested
        ep.tagged = np.zeros((steps, ep.n), dtype=bool)
        ep.sim.call_at(cfg.tick_ms, self.regrow, ep)

    def regrow(self, ep: Episode) -> None:
        """Every ``tick_ms``: logistic regrowth (until collapse) and who is down or paused (tagged).

        A method rescheduled with ``ep`` as its argument (not a closure that names itself), so that
        a released episode is freed at once."""
        sim, p, cfg = ep.sim, self.params, self.cfg
        if ep.collapsed_at is None:
            ep.level += p.growth * ep.level * (1 - ep.level / p.capacity) * (cfg.tick_ms / 1000.0)
        k = min(int(sim.now / cfg.tick_ms), len(ep.harvests) - 1)
        ep.tagged[k] = [not s.up or s.paused for s in sim.states]
        sim.call_at(sim.now + cfg.tick_ms, self.regrow, ep)

    def action(self, ep: Episode, ask: Ask, a: int):
        """Take the harvest from the world now; the node is told what it got and what is left."""
        taken = min(self.levels[a], ep.level)
        ep.level -= taken
        ep.min_level = min(ep.min_level, ep.level)
        if ep.collapsed_at is None and ep.level < self.cfg.collapse_fraction * self.params.capacity:
            ep.collapsed_at, ep.level = ep.sim.now, 0.0
        ep.earned[ask.node] += taken
        ep.harvests[min(int(ep.sim.now / self.cfg.tick_ms), len(ep.harvests) - 1), ask.node] += taken
        return (a, taken, ep.level)

    def default(self, ep: Episode, ask: Ask):
        return self.action(ep, ask, ask.default)

    def measures(self, ep: Episode) -> dict:
        from metrics.alignment import social_outcomes

        used = min(int(ep.sim.now / self.cfg.tick_ms) + 1, len(ep.harvests))
        so = social_outcomes(ep.harvests[:used], ep.tagged[:used])
        return {
            "collapsed": ep.collapsed_at is not None,
            "collapsed_at_ms": ep.collapsed_at,
            "final_level": ep.level,
            "min_level": ep.min_level,
            "decisions": ep.decisions,
            "efficiency": so["efficiency"],
            "equality": so["equality"],
            "sustainability": so["sustainability"],
            "peace": so["peace"],
            "returns": ep.returns(),
        }

    def welfare_step(self, ep: Episode, local: list[float]) -> None:
        """The mean harvest, minus ``collapse_penalty`` once, at the step the resource collapsed."""
        super().welfare_step(ep, local)
        if ep.collapsed_at is not None and not ep.collapse_charged:
            ep.collapse_charged = True
            ep.welfare -= self.cfg.collapse_penalty


class raw_env(CapAEC):
    """Commons-v0 in the AEC API (see the module docstring)."""

    game_cls = CommonsGame
    metadata = {"render_modes": ["ansi"], "name": "Commons-v0", "is_parallelizable": True}


class parallel_raw_env(CapParallel):
    """Commons-v0 in the Parallel API (see the module docstring)."""

    game_cls = CommonsGame
    metadata = {"render_modes": ["ansi"], "name": "Commons-v0", "is_parallelizable": True}


def env(**kwargs) -> raw_env:
    return raw_env(**kwargs)


def parallel_env(**kwargs) -> parallel_raw_env:
    return parallel_raw_env(**kwargs)
