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

The world
    Besides the episode's own faults, the world crashes whoever leads (in the highest term) every
    ``leader_crash_ms`` x U(0.5, 1.5) of true time (default 500 ms; 0: never) and restarts it
    ``leader_down_ms`` later (default 100 ms), so a 5 s episode holds about ten elections. Leading
    has a price: the crashed leader hears no leader from the crash on, its followers only once
    its last heartbeat is ``election_timeout_ms[0]`` old (a volunteer's dilemma: someone must
    stand, and whoever wins pays most at the next crash).

Rewards
    local: every ``tick_ms`` the observer charges each node ``miss_cost`` per second of *its own
    clock* (never negative) in which it hears no leader, and credits ``know_reward`` (default 0)
    per second in which it does. A node hears a leader when it leads, or when an AppendEntries of
    the leader it knows arrived within ``election_timeout_ms[0]`` of its own clock (what the node
    itself can tell; a node that is down or paused hears none). ``leader_bonus`` per second as
    leader is the selfish incentive (default 0). The observer's welfare, per agent: ``-miss_cost``
    per true second without an *effective* leader (``know_reward`` per second with one), minus
    ``safety_penalty`` if two leaders were ever elected in one term. A leader is effective while
    it makes progress: a majority (itself included) answered its AppendEntries in its term within
    the last election timeout (``election_timeout_ms[1]``), CheckQuorum's test (Raft thesis 6.2)
    applied by the observer. Who the followers believe leads does not count: a leader whose
    inbound links are cut still sends heartbeats, so its followers hear it (their local rewards do
    not see the fault), but it commits nothing.

Why (docs/environments.md): with one election per episode and a reward for *believing* in a leader
(``leaderId`` set, which a node keeps after its leader died until it stands itself), random play
earned 4.79 a node and the textbook 4.82: almost nothing to learn.

Global measures: ``metrics.election`` (safety, time without leader, elections, split votes) plus
``effective_leader_fraction`` (the observer's own sampling) and ``returns``.
"""

from __future__ import annotations

from pydantic import Field

from agents.protocols.raft import LEADER, Raft
from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.rng import derive_rng
from envs.world.sim import Ask


class ElectionConfig(EnvConfig):
    know_reward: float = Field(0.0, description="local reward per own-clock second of hearing a leader")
    miss_cost: float = Field(1.0, ge=0, description="local cost per own-clock second of hearing no leader "
                             "(down and paused nodes hear none)")
    leader_bonus: float = Field(0.0, description="extra local reward per own-clock second as leader")
    safety_penalty: float = Field(100.0, ge=0, description="observer welfare lost per election-safety violation")
    tick_ms: float = Field(10.0, gt=0, description="observer sampling period (true ms)")
    leader_crash_ms: float = Field(500.0, ge=0, description="the world crashes whoever leads about this often "
                                   "(true ms, uniform in [0.5, 1.5] times it; 0: never)")
    leader_down_ms: float = Field(100.0, gt=0, description="a crashed leader restarts this long after (true ms)")


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
        self.params = validate(self.cls.Params, cfg.protocol_params, "protocol_params")
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
        ep.sampled = 0.0  # true ms sampled
        ep.sampled_paid = 0.0
        ep.lead = [None] * ep.n  # per node: (term, {peer: replies seen}, {peer: true ms of the last}) as leader
        ep.heard_ms = self.params.election_timeout_ms[0]  # a leader heard this recently (own clock) is heard
        sim.call_at(self.cfg.tick_ms, self.sample, ep)
        if self.cfg.leader_crash_ms > 0:
            ep.crash_rng = derive_rng(ep.seed, "leader_crash")
            sim.call_at(self.cfg.leader_crash_ms * (0.5 + ep.crash_rng.random()), self.crash_leader, ep)

    def crash_leader(self, ep: Episode) -> None:
        """The world's fault: crash the node that leads in the highest term (if any node leads), and
        restart it ``leader_down_ms`` later; then schedule the next crash."""
        sim, cfg = ep.sim, self.cfg
        leaders = [(s.obj.currentTerm, s.id) for s in sim.states if s.up and not s.paused and s.obj.state == LEADER]
        if leaders:
            lid = max(leaders)[1]
            sim.crash(lid)
            sim.call_at(sim.now + cfg.leader_down_ms, sim.restart, lid)
        sim.call_at(sim.now + cfg.leader_crash_ms * (0.5 + ep.crash_rng.random()), self.crash_leader, ep)

    def sample(self, ep: Episode) -> None:
        """The observer's tick: credit hearing a leader (and leading) by own-clock time, and count
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
        heard_ms = ep.heard_ms
        effective = False
        for i, s in enumerate(sim.states):
            c = s.clock.local(now)
            dc, last[i] = max(0.0, c - last[i]) / 1000.0, c
            if not s.up or s.paused:
                earned[i] -= cfg.miss_cost * dc
                continue
            node = s.obj
            leads = node.state == LEADER
            if leads or (node.leaderId is not None and c - node.leader_at < heard_ms):
                earned[i] += cfg.know_reward * dc
            else:
                earned[i] -= cfg.miss_cost * dc
            if leads:
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
        ep.sampled += cfg.tick_ms
        if effective:
            ep.led += cfg.tick_ms
        sim.call_at(now + cfg.tick_ms, self.sample, ep)

    def welfare_step(self, ep: Episode, local) -> None:
        """Per agent: ``know_reward`` per second with an effective leader, ``-miss_cost`` per second
        without one (true time)."""
        led, unled = ep.led - ep.led_paid, (ep.sampled - ep.sampled_paid) - (ep.led - ep.led_paid)
        ep.welfare += (self.cfg.know_reward * led - self.cfg.miss_cost * unled) / 1000.0
        ep.led_paid, ep.sampled_paid = ep.led, ep.sampled

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
