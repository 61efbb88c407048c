"""Election-v0: Raft servers whose agents choose their election timeouts and whether to stand.

Every node runs ``raft`` (Ongaro and Ousterhout 2014) from ``agents/protocols``. Two decisions are
left to the agents:

* ``("election_timeout", term)`` -- asked whenever the node enters a new term: actions
  ``0..k-1`` pick ``timeout_choices_ms[a]`` (default: 5 evenly spaced in ``election_timeout_ms``);
  action ``k`` draws one uniformly from ``election_timeout_ms`` (the textbook rule, the default);
* ``("stand", term)`` -- asked when the election timer fires: ``1`` become a candidate (default),
  ``0`` stay a follower for another timeout; only actions 0 and 1 are legal.

Actions: ``Discrete(k + 2)``; index ``k + 1`` is the no-op (legal only with nothing to decide).

Observation (``Box(10)``, local view only)
    ``[is_timeout_decision, is_stand_decision, currentTerm, lastLogIndex, lastLogTerm, commitIndex,
    failed elections in a row, seconds since heard from a leader or granted a vote, clock_s,
    owes_decision]`` -- from the node's own state and its own clock.

Rewards
    local: every ``tick_ms`` the observer credits each running node with the time that passed on
    *its own clock* (in seconds, never negative) times ``know_reward`` when the node knows a leader
    (``leaderId`` set), plus ``leader_bonus`` per second while it is the leader itself (the selfish
    incentive). The observer's welfare: per second with an *effective* leader ``know_reward`` per
    agent, minus ``safety_penalty`` if two leaders were ever elected in one term. A leader is
    effective while it makes progress: a majority (itself included) answered its AppendEntries in
    its term within the last election timeout (``election_timeout_ms[1]``), CheckQuorum's test
    (Raft thesis 6.2) applied by the observer. Who the followers believe leads does not count: a
    leader whose inbound links are cut still sends heartbeats, so its followers follow it (and
    earn ``know_reward``: the local reward does not see the fault), but it commits nothing.

Global measures: ``metrics.election`` (safety, time without leader, elections, split votes) plus
``effective_leader_fraction`` (the observer's own sampling) and ``returns``.
"""

from __future__ import annotations

from pydantic import Field

from agents.protocols.raft import LEADER, Raft
from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.sim import Ask


class ElectionConfig(EnvConfig):
    know_reward: float = Field(1.0, description="local reward per own-clock second of knowing a leader")
    leader_bonus: float = Field(0.0, description="extra local reward per own-clock second as leader")
    safety_penalty: float = Field(100.0, ge=0, description="observer welfare lost per election-safety violation")
    tick_ms: float = Field(10.0, gt=0, description="observer sampling period (true ms)")


class ObservedRaft(Raft):
    """``raft`` exactly, plus what the observer reads of it: ``acks``, per peer, how many
    AppendEntries replies of its current term this node has received as leader (reset when it
    becomes leader). The node itself never reads it; nothing it does changes."""

    def become_leader(self, ctx):
        self.acks: dict[int, int] = {}
        super().become_leader(ctx)

    def append_entries_reply(self, ctx, src, term, success, index):
        if self.state == LEADER and term == self.currentTerm:
            self.acks[src] = self.acks.get(src, 0) + 1
        super().append_entries_reply(ctx, src, term, success, index)


class ElectionGame(Game):
    Config = ElectionConfig
    name = "Election-v0"
    n_features = 8

    def __init__(self, cfg):
        super().__init__(cfg)
        self.cls = ObservedRaft
        self.params = validate(self.cls.Params, cfg.protocol_params)
        self.k = len(self.params.timeout_choices_ms)
        self.n_actions = self.k + 1
        self.stand_mask = [1, 1] + [0] * (self.n_actions - 2)
        self.timeout_mask = [1] * self.n_actions

    def node_program(self):
        return self.cls, self.params

    def features(self, ask: Ask) -> list[float]:
        o = ask.obs
        timeout = ask.point[0] == "election_timeout"
        return [float(timeout), float(not timeout), o[0], o[1], o[2], o[3], o[4], o[5] / 1000.0]

    def mask(self, ask: Ask) -> list[int]:
        return self.timeout_mask if ask.point[0] == "election_timeout" else self.stand_mask

    def setup(self, ep: Episode) -> None:
        sim = ep.sim
        ep.last_clock = [s.clock.local(0.0) for s in sim.states]  # each node's clock at the last sample
        ep.led = 0.0  # true ms with an effective leader
        ep.led_paid = 0.0
        ep.lead = [None] * ep.n  # per node: (term, {peer: replies seen}, {peer: true ms of the last}) as leader
        sim.call_at(self.cfg.tick_ms, self.sample, ep)

    def sample(self, ep: Episode) -> None:
        """The observer's tick: credit knowing a leader (and leading) by own-clock time, and count
        true time with an *effective* leader: one that is making progress, i.e. a majority (itself
        included) answered its AppendEntries in its term within the last election timeout
        (``election_timeout_ms[1]``, as true ms) -- CheckQuorum's test (Raft thesis 6.2), applied by
        the observer whatever the nodes run. Who the followers *believe* leads does not count: a
        leader that can send but not hear keeps its followers and commits nothing.

        A method rescheduled with ``ep`` as its argument (not a closure that names itself), so that
        a released episode is freed at once."""
        sim, cfg, last = ep.sim, self.cfg, ep.last_clock
        majority = ep.n // 2 + 1
        now = sim.now
        earned = ep.earned
        window = self.params.election_timeout_ms[1]
        effective = False
        for i, s in enumerate(sim.states):
            c = s.clock.local(now)
            dc, last[i] = max(0.0, c - last[i]) / 1000.0, c
            if not s.up or s.paused:
                continue
            node = s.obj
            if node.leaderId is not None:
                earned[i] += cfg.know_reward * dc
            if node.state == "leader":
                earned[i] += cfg.leader_bonus * dc
                lead = ep.lead[i]
                if lead is None or lead[0] != node.currentTerm:
                    lead = ep.lead[i] = (node.currentTerm, {}, {})
                _term, seen, acked = lead
                for p, k in node.acks.items():
                    if seen.get(p) != k:
                        seen[p] = k
                        acked[p] = now
                if 1 + sum(now - t <= window for t in acked.values()) >= majority:
                    effective = True
        if effective:
            ep.led += cfg.tick_ms
        sim.call_at(now + cfg.tick_ms, self.sample, ep)

    def welfare_step(self, ep: Episode, local) -> None:
        ep.welfare += self.cfg.know_reward * (ep.led - ep.led_paid) / 1000.0
        ep.led_paid = ep.led

    def measures(self, ep: Episode) -> dict:
        from metrics.election import election

        m = election(ep.sim.trace.events(), start=0.0, end=ep.sim.now)
        m["effective_leader_fraction"] = ep.led / ep.sim.now if ep.sim.now else None
        m["decisions"] = ep.decisions
        m["returns"] = ep.returns()
        return m

    def terminal_welfare(self, ep: Episode, m: dict) -> float:
        return -self.cfg.safety_penalty * len(m["safety_violations"])


class raw_env(CapAEC):
    """Election-v0 in the AEC API (see the module docstring)."""

    game_cls = ElectionGame
    metadata = {"render_modes": ["ansi"], "name": "Election-v0", "is_parallelizable": True}


class parallel_raw_env(CapParallel):
    """Election-v0 in the Parallel API (see the module docstring)."""

    game_cls = ElectionGame
    metadata = {"render_modes": ["ansi"], "name": "Election-v0", "is_parallelizable": True}


def env(**kwargs) -> raw_env:
    return raw_env(**kwargs)


def parallel_env(**kwargs) -> parallel_raw_env:
    return parallel_raw_env(**kwargs)
