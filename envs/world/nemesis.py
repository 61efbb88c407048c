"""The nemesis: faults from a timed schedule, or at random, like Jepsen's nemesis.

A scheduled fault happens at ``at_ms`` of true time. The random nemesis, every ``interval_ms``,
picks a kind (partition, crash, pause, slow, clock, loss, byzantine), starts it on a random target and
stops it ``duration_ms`` later (heal, restart, resume, normal speed, normal drift, normal loss; a
Byzantine node stays Byzantine, up to ``max_byzantine`` of them), until
``stop_ms``; after that the world is left fault-free so that recovery can be observed. All choices
come from the run's seed. A crash with ``lose_unsynced`` (a scheduled crash's field, or the random
nemesis's option for all its crashes) takes the node's disk back to its last ``ctx.fsync()``.
"""

from __future__ import annotations

from .config import Fault, NemesisConfig
from .network import groups_cuts, partition_shape
from .rng import derive_rng


class Nemesis:
    def __init__(self, cfg: NemesisConfig, seed: int, duration_ms: float):
        self.cfg = cfg
        self.rng = derive_rng(seed, "nemesis")
        self.duration_ms = duration_ms
        self.log: list[tuple[float, str, object]] = []  # (true time, what, target), for summaries

    def attach(self, sim) -> Nemesis:
        self.sim = sim
        self.base_loss = sim.net.loss
        for f in self.cfg.schedule:
            sim.call_at(f.at_ms, self.apply, f)
        r = self.cfg.random
        if r is not None:
            self.stop_ms = r.stop_ms if r.stop_ms is not None else 0.8 * self.duration_ms
            sim.call_at(r.start_ms + r.interval_ms, self._tick)
        return self

    # --- scheduled faults ----------------------------------------------------------------------
    def _node(self, f: Fault) -> int:
        return f.node if f.node is not None else self.rng.randrange(self.sim.n)

    def apply(self, f: Fault) -> None:
        sim, kind = self.sim, f.fault
        self.log.append((sim.now, kind, f.node))
        if kind == "partition":
            if f.groups:
                sim.set_cuts(groups_cuts(f.groups), "groups")
            elif f.cuts:
                sim.set_cuts({tuple(c) for c in f.cuts}, "cuts")
            else:
                shape = f.shape or "majority"
                sim.set_cuts(partition_shape(shape, range(sim.n), self.rng, f.node), shape)
        elif kind == "heal":
            sim.heal()
        elif kind == "crash":
            sim.crash(self._node(f), lose_unsynced=f.lose_unsynced)
        elif kind == "restart":
            if f.node is None:
                for i in range(sim.n):
                    sim.restart(i)
            else:
                sim.restart(f.node)
        elif kind == "pause":
            sim.pause(self._node(f))
        elif kind == "resume":
            for i in ([f.node] if f.node is not None else range(sim.n)):
                sim.resume(i)
        elif kind == "slow":
            sim.slow(self._node(f), f.factor)
        elif kind == "fast":
            for i in ([f.node] if f.node is not None else range(sim.n)):
                sim.slow(i, 1.0)
        elif kind == "clock":
            self._clock(self._node(f), f.clock, f.delta_ms, f.drift, f.period_ms, f.duration_ms)
        elif kind == "loss":
            sim.set_loss(f.loss)
        elif kind == "byzantine":
            sim.byzantine(self._node(f), f.strategy, **f.options)

    def _clock(self, node: int, how: str, delta: float, drift: float, period: float, duration: float) -> None:
        sim = self.sim
        if how == "bump":
            sim.clock_bump(node, delta)
        elif how == "drift":
            sim.clock_drift(node, drift)
        else:  # strobe: jump forward and back every period for duration
            steps = max(1, int(duration // period))
            for k in range(steps):
                sim.call_at(sim.now + k * period, sim.clock_bump, node, delta if k % 2 == 0 else -delta)
            if steps % 2 == 1:
                sim.call_at(sim.now + steps * period, sim.clock_bump, node, -delta)

    # --- the random nemesis --------------------------------------------------------------------
    def _tick(self) -> None:
        sim, r, rng = self.sim, self.cfg.random, self.rng
        if sim.now > self.stop_ms:
            return
        kind = rng.choice(r.kinds)
        end = sim.now + r.duration_ms
        self.log.append((sim.now, kind, None))
        if kind == "partition":
            shape = rng.choice(r.shapes)
            sim.set_cuts(partition_shape(shape, range(sim.n), rng), shape)
            sim.call_at(end, sim.heal)
        elif kind == "loss":
            sim.set_loss(r.loss)
            sim.call_at(end, sim.set_loss, self.base_loss)
        elif kind == "byzantine":  # a node turns Byzantine for good, up to max_byzantine of them
            most = r.max_byzantine if r.max_byzantine is not None else (sim.n - 1) // 3
            honest = [i for i in range(sim.n) if i not in sim.byzantine_nodes]
            if honest and len(sim.byzantine_nodes) < most:
                sim.byzantine(rng.choice(honest), rng.choice(r.strategies))
        else:
            up = [i for i in range(sim.n) if sim.is_up(i)]
            if up:
                node = rng.choice(up)
                if kind == "crash":
                    sim.crash(node, lose_unsynced=r.lose_unsynced)
                    sim.call_at(end, sim.restart, node)
                elif kind == "pause":
                    sim.pause(node)
                    sim.call_at(end, sim.resume, node)
                elif kind == "slow":
                    sim.slow(node, r.slow_factor)
                    sim.call_at(end, sim.slow, node, 1.0)
                elif kind == "clock":
                    how = rng.choice(("bump", "strobe", "drift"))
                    delta = rng.uniform(-r.max_clock_delta_ms, r.max_clock_delta_ms)
                    if how == "drift":
                        old = sim.states[node].clock.drift
                        sim.clock_drift(node, rng.uniform(-0.05, 0.05))
                        sim.call_at(end, sim.clock_drift, node, old)
                    else:
                        self._clock(node, how, delta, 0.0, max(1.0, r.duration_ms / 10), r.duration_ms)
        sim.call_at(sim.now + r.interval_ms, self._tick)
