"""Build a simulated world from a validated :class:`~envs.world.config.ScenarioConfig`."""

from __future__ import annotations

from typing import Any

from .clock import Clock
from .config import ClockConfig, ScenarioConfig
from .nemesis import Nemesis
from .network import Network
from .rng import derive_rng
from .sim import Sim
from .workload import Workload


def make_clocks(cfg: ClockConfig, n: int, seed: int) -> list[Clock]:
    """One clock per node: offset and drift uniform in ``[-max, max]`` unless given per node."""
    rng = derive_rng(seed, "clocks")
    clocks = []
    for i in range(n):
        off = rng.uniform(-cfg.max_offset_ms, cfg.max_offset_ms)
        drift = rng.uniform(-cfg.max_drift, cfg.max_drift)
        clocks.append(Clock(off, drift, cfg.jitter_ms, derive_rng(seed, "jitter", i)))
    for c in cfg.nodes:
        clocks[c.node] = Clock(c.offset_ms, c.drift, c.jitter_ms, derive_rng(seed, "jitter", c.node))
    return clocks


def make_network(scn: ScenarioConfig) -> Network:
    net = scn.world.network
    return Network(range(scn.world.nodes), scn.seed, latency=net.latency.model_dump(),
                   links={(lk.src, lk.dst): lk.latency.model_dump() for lk in net.links},
                   loss=net.loss, duplicate=net.duplicate, hold_partitioned=net.hold_partitioned)


def build_sim(scn: ScenarioConfig, node_cls: type, params: Any = None, agents: dict | None = None,
              workload: bool = True, nemesis: bool = True, full_trace: bool = True) -> Sim:
    """A ready-to-run :class:`Sim` with the scenario's network, clocks, nemesis and clients attached.

    ``sim.nemesis`` and ``sim.workload`` hold the attached parts. Run it with
    ``sim.run(until=scn.world.duration_ms)``.
    """
    w = scn.world
    sim = Sim(w.nodes, node_cls, params, seed=scn.seed, network=make_network(scn),
              clocks=make_clocks(w.clocks, w.nodes, scn.seed), agents=agents,
              processing_ms=w.processing_ms, client_latency_ms=w.client_latency_ms, full_trace=full_trace)
    sim.track_fsync = scn.nemesis.loses_unsynced
    sim.client_replies = scn.workload.replies
    sim.nemesis = Nemesis(scn.nemesis, scn.seed, w.duration_ms).attach(sim) if nemesis else None
    sim.workload = Workload(scn.workload, scn.seed, w.duration_ms).attach(sim) if workload else None
    return sim
