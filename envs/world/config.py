"""The scenario schema: the world (nodes, network, clocks), the nemesis and the client workload.

Validated with pydantic before anything runs: unknown keys, wrong types and impossible values are
errors that name the key (``world.network.loss: must be <= 1``). Times are in milliseconds.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .byzantine import STRATEGY_NAMES, check_options
from .network import LATENCY_KINDS, PARTITION_SHAPES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Latency(Strict):
    """A latency distribution in ms: constant (``ms``), uniform (``low``, ``high``), exponential
    (``mean``), lognormal (``median``, ``sigma``), pareto (``scale``, ``alpha``); ``min`` is a floor."""

    dist: Literal["constant", "uniform", "exponential", "lognormal", "pareto"] = "exponential"
    ms: float = Field(1.0, ge=0)
    low: float = Field(0.0, ge=0)
    high: float = Field(1.0, ge=0)
    mean: float = Field(1.0, gt=0)
    median: float = Field(1.0, gt=0)
    sigma: float = Field(0.5, ge=0)
    scale: float = Field(1.0, gt=0)
    alpha: float = Field(2.0, gt=0)
    min: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _range(self):
        if self.dist == "uniform" and self.high < self.low:
            raise ValueError("high must be >= low")
        return self


class Link(Strict):
    src: int = Field(ge=0)
    dst: int = Field(ge=0)
    latency: Latency


class NetworkConfig(Strict):
    latency: Latency = Field(default_factory=lambda: Latency(dist="exponential", mean=5.0))
    links: list[Link] = Field(default_factory=list, description="per-link latency overrides")
    loss: float = Field(0.0, ge=0, le=1, description="probability a message is lost")
    duplicate: float = Field(0.0, ge=0, le=1, description="probability a message is delivered twice")
    hold_partitioned: bool = Field(False, description="hold messages across a cut until it heals")


class NodeClock(Strict):
    node: int = Field(ge=0)
    offset_ms: float = 0.0
    drift: float = Field(0.0, gt=-1)
    jitter_ms: float = Field(0.0, ge=0)


class ClockConfig(Strict):
    """Per-node clocks: offset and drift drawn uniformly in ``[-max, +max]`` unless set per node."""

    max_offset_ms: float = Field(10.0, ge=0)
    max_drift: float = Field(1e-4, ge=0, lt=1, description="e.g. 1e-4 = 100 ppm")
    jitter_ms: float = Field(0.0, ge=0)
    nodes: list[NodeClock] = Field(default_factory=list)


class WorldConfig(Strict):
    nodes: int = Field(5, ge=1, le=10_000)
    duration_ms: float = Field(10_000.0, gt=0)
    processing_ms: float = Field(0.0, ge=0, description="true ms each handler takes")
    client_latency_ms: float = Field(0.5, ge=0)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    clocks: ClockConfig = Field(default_factory=ClockConfig)


FAULT_KINDS = ("partition", "heal", "crash", "restart", "pause", "resume", "slow", "fast", "clock", "loss",
               "byzantine")
RANDOM_KINDS = ("partition", "crash", "pause", "slow", "clock", "loss", "byzantine")


class Fault(Strict):
    """One scheduled fault. ``node`` picks a node (random when absent); partitions take a ``shape``
    or explicit ``groups`` / one-way ``cuts``; clock faults take ``clock`` (bump/strobe/drift); a
    crash with ``lose_unsynced`` also loses the node's disk writes since its last ``ctx.fsync()``."""

    at_ms: float = Field(ge=0)
    fault: Literal["partition", "heal", "crash", "restart", "pause", "resume", "slow", "fast", "clock", "loss",
                   "byzantine"]
    node: int | None = Field(None, ge=0)
    shape: Literal["isolate", "halves", "majority", "majorities-ring", "bridge", "random", "one-way"] | None = None
    groups: list[list[int]] | None = None
    cuts: list[tuple[int, int]] | None = None
    clock: Literal["bump", "strobe", "drift"] = "bump"
    delta_ms: float = 100.0
    drift: float = Field(0.01, gt=-1)
    period_ms: float = Field(10.0, gt=0)
    duration_ms: float = Field(500.0, ge=0, description="strobe length")
    factor: float = Field(10.0, gt=0, description="slow-down of a slow node")
    loss: float = Field(0.5, ge=0, le=1)
    lose_unsynced: bool = Field(False, description="crash only: lose disk writes not yet fsynced")
    strategy: str | None = Field(None, description="byzantine only: the scripted strategy that replaces "
                                                   "the node's protocol (envs/world/byzantine.py)")
    options: dict[str, Any] = Field(default_factory=dict, description="byzantine only: the strategy's "
                                                                      "options (p, delay_ms, ...: each "
                                                                      "strategy's Options in byzantine.py)")

    @field_validator("options")
    @classmethod
    def _options(cls, v, info):
        strategy = info.data.get("strategy")
        if strategy in STRATEGY_NAMES:  # else the model check below names the strategy
            return check_options(strategy, v)
        return v

    @model_validator(mode="after")
    def _crash_only(self):
        if self.lose_unsynced and self.fault != "crash":
            raise ValueError(f"lose_unsynced: only a crash loses unsynced writes, not a {self.fault}")
        if self.fault == "byzantine":
            if self.strategy is None:
                raise ValueError("strategy: a byzantine fault needs a strategy "
                                 f"(choose from {', '.join(STRATEGY_NAMES)})")
            if self.strategy not in STRATEGY_NAMES:
                raise ValueError(f"strategy: unknown Byzantine strategy {self.strategy!r} "
                                 f"(choose from {', '.join(STRATEGY_NAMES)})")
        elif self.strategy is not None or self.options:
            raise ValueError(f"strategy: only a byzantine fault takes a strategy, not a {self.fault}")
        return self


class RandomNemesis(Strict):
    """Jepsen-style: every ``interval_ms`` pick a kind, start it, stop it ``duration_ms`` later."""

    kinds: list[Literal["partition", "crash", "pause", "slow", "clock", "loss", "byzantine"]] = Field(
        default_factory=lambda: ["partition"])
    shapes: list[Literal["isolate", "halves", "majority", "majorities-ring", "bridge", "random", "one-way"]] = Field(
        default_factory=lambda: ["majority", "halves", "isolate"])
    interval_ms: float = Field(1000.0, gt=0)
    duration_ms: float = Field(500.0, gt=0)
    start_ms: float = Field(0.0, ge=0)
    stop_ms: float | None = Field(None, ge=0, description="no new faults after this (default: 80% of the run)")
    max_clock_delta_ms: float = Field(200.0, ge=0)
    slow_factor: float = Field(10.0, gt=0)
    loss: float = Field(0.3, ge=0, le=1)
    lose_unsynced: bool = Field(False, description="crashes lose disk writes not yet fsynced")
    strategies: list[str] = Field(default_factory=lambda: ["equivocate"],
                                  description="byzantine: the strategies it picks from")
    max_byzantine: int | None = Field(None, ge=0, description="byzantine: at most this many Byzantine "
                                                              "nodes (default f = (nodes - 1) // 3); they stay so")

    @model_validator(mode="after")
    def _fits(self):
        for s in self.strategies:
            if s not in STRATEGY_NAMES:
                raise ValueError(f"strategies: unknown Byzantine strategy {s!r} "
                                 f"(choose from {', '.join(STRATEGY_NAMES)})")
        if "byzantine" in self.kinds and not self.strategies:
            raise ValueError("strategies: the byzantine kind needs at least one strategy")
        if self.duration_ms > self.interval_ms:
            raise ValueError("duration_ms must be <= interval_ms")
        if not self.kinds:
            raise ValueError("kinds must not be empty")
        return self


class NemesisConfig(Strict):
    schedule: list[Fault] = Field(default_factory=list)
    random: RandomNemesis | None = None

    @property
    def loses_unsynced(self) -> bool:
        """Some crash may lose unsynced writes (the sim must then track each node's fsyncs)."""
        return any(f.lose_unsynced for f in self.schedule) or bool(self.random and self.random.lose_unsynced)


class WorkloadConfig(Strict):
    """Closed-loop clients (one outstanding operation each), like Jepsen's."""

    clients: int = Field(5, ge=0)
    ops: dict[str, float] = Field(default_factory=lambda: {"read": 0.5, "write": 0.5},
                                  description="relative weights of read, write, cas (or get, put, append; "
                                              "or add and read: a set per key)")
    keys: int = Field(0, ge=0, description="0: one register; k: keys 0..k-1")
    think_ms: float = Field(20.0, ge=0, description="mean pause between a client's operations")
    timeout_ms: float = Field(500.0, gt=0)
    target: Literal["random", "fixed"] = Field("fixed", description="fixed: client i talks to node i mod n")
    start_ms: float = Field(0.0, ge=0)
    stop_ms: float | None = Field(None, ge=0, description="no new operations after this (default: 90% of the run)")
    value_range: int = Field(5, ge=1, description="cas compares against values in 0..value_range-1")
    replies: int = Field(1, ge=1, description="1: an operation goes to one node and completes at its reply; "
                                              "k > 1: it goes, signed, to every node and completes on k "
                                              "matching replies (PBFT's f+1)")
    final_read_ms: float | None = Field(
        None, ge=0, description="set workload: every client reads every key from this time on, until one "
                                "read of each succeeds (default: halfway between stop_ms and the end)")

    @field_validator("ops")
    @classmethod
    def _ops(cls, v):
        known = {"read", "write", "cas", "get", "put", "append", "add"}
        for k, w in v.items():
            if k not in known:
                raise ValueError(f"unknown operation {k!r} (choose from {', '.join(sorted(known))})")
            if w < 0:
                raise ValueError(f"weight of {k} must be >= 0")
        if "add" in v and set(v) - {"add", "read"}:
            raise ValueError("add makes a set workload: it goes with read only ({add: ..., read: ...})")
        if v and sum(v.values()) <= 0:
            raise ValueError("operation weights must not all be 0")
        return v


class ScenarioConfig(Strict):
    seed: int = 0
    world: WorldConfig = Field(default_factory=WorldConfig)
    nemesis: NemesisConfig = Field(default_factory=NemesisConfig)
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)

    @model_validator(mode="after")
    def _nodes_exist(self):
        n = self.world.nodes
        for i, f in enumerate(self.nemesis.schedule):
            if f.node is not None and f.node >= n:
                raise ValueError(f"nemesis.schedule.{i}.node: node {f.node} does not exist ({n} nodes)")
            for g in f.groups or []:
                for x in g:
                    if x >= n or x < 0:
                        raise ValueError(f"nemesis.schedule.{i}.groups: node {x} does not exist ({n} nodes)")
            for c in f.cuts or []:
                for x in c:
                    if x >= n or x < 0:
                        raise ValueError(f"nemesis.schedule.{i}.cuts: node {x} does not exist ({n} nodes)")
        r = self.nemesis.random
        if r is not None and r.max_byzantine is not None and r.max_byzantine > n:
            raise ValueError(f"nemesis.random.max_byzantine: {r.max_byzantine} Byzantine nodes of {n} nodes "
                             f"(at most {n})")
        if self.workload.replies > n:
            raise ValueError(f"workload.replies: {self.workload.replies} matching replies from {n} nodes "
                             "can never come")
        for i, link in enumerate(self.world.network.links):
            if link.src >= n or link.dst >= n:
                raise ValueError(f"world.network.links.{i}: node does not exist ({n} nodes)")
        for i, c in enumerate(self.world.clocks.nodes):
            if c.node >= n:
                raise ValueError(f"world.clocks.nodes.{i}.node: node {c.node} does not exist ({n} nodes)")
        return self


def error_line(exc) -> str:
    """One line naming the first invalid key of a pydantic ``ValidationError`` and why."""
    errs = exc.errors()
    if not errs:
        return str(exc)
    e = errs[0]
    loc = ".".join(str(x) for x in e.get("loc", ()))
    msg = e.get("msg", "invalid")
    if e.get("type") == "extra_forbidden":
        msg = "unknown key"
    msg = msg.removeprefix("Value error, ")
    if msg.startswith(loc + ":") or not loc:
        return msg
    sub = _SUBKEY.match(msg)  # a validator that names a key below its own: one path
    if sub:
        return f"{loc}.{sub.group(1)}: {msg[sub.end():]}"
    return f"{loc}: {msg}"


#: ``key.sub: why``, the way validators name the key they refuse
_SUBKEY = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z0-9_-]+)*): ")


__all__ = ["ScenarioConfig", "WorldConfig", "NemesisConfig", "WorkloadConfig", "error_line",
           "LATENCY_KINDS", "PARTITION_SHAPES", "FAULT_KINDS", "RANDOM_KINDS"]
