"""Shared machinery of the capgym environments: a simulated world driven one decision at a time.

A :class:`Game` says what one environment adds to the world (its node program, how a pending
decision looks to the agent, what each agent earns, what the observer measures at the end). The
:class:`Episode` runs a :class:`~envs.world.sim.Sim` whose every node's agent is
:data:`~envs.world.sim.EXTERNAL`: the simulator stops as soon as some node owes a decision
(``ctx.ask``), and the environment answers it with :meth:`Sim.decide`.

No global clock
---------------
* **AEC** (:class:`CapAEC`): the next agent to act is the node whose decision came due first in
  simulated time (the oldest pending ask). Only agents that owe a decision get turns.
* **Parallel** (:class:`CapParallel`): one ``step`` answers, for every agent that owes one, its
  oldest decision, then advances simulated time to the next moment some decision is due (and,
  with ``decision_window_ms > 0``, on for that long, so that every decision due in the window is
  owed at once). Agents with nothing to decide get an observation whose action mask allows only
  the no-op.

Spaces (the same for every agent of an environment)
---------------------------------------------------
* actions: ``Discrete(k + 1)``; ``0..k-1`` are the game's choices, the **last index ``k`` is the
  no-op** (legal exactly when the agent owes no decision). An agent that owes a decision and sends
  the no-op, an action its mask forbids, or nothing (Parallel) gets the protocol's textbook default.
* observations: PettingZoo's masked form ``Dict(observation=Box(float32, (d + 2,)),
  action_mask=Box(0, 1, (k + 1,), int8))``. ``observation`` is the game's ``d`` local features
  of the pending decision (or of the agent's last decision when it owes none), then the agent's own
  clock reading in seconds (``ctx.now()`` without jitter: never true time), then 1.0 when it owes a
  decision, else 0.0.

Rewards
-------
``reward_mode``: ``local`` (default: what the agent's own node earned since its last reward),
``global`` (every agent gets the observer's welfare increment, the game's own measure, including a
terminal term computed from the global measures at the end), or ``mixed``
(``(1 - w) * local + w * global`` with ``w = mixed_weight``).

Horizon and the end
-------------------
An episode ends when simulated time reaches ``duration_ms`` or after ``max_decisions`` decisions
(every agent is then truncated). The observer's global measures are computed once, at the end:
they are in every agent's final ``infos[agent]["global"]`` and in :meth:`global_measures`.
"""

from __future__ import annotations

from operator import sub
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envs.world.build import build_sim
from envs.world.config import ScenarioConfig, error_line
from envs.world.sim import EXTERNAL, Ask, Sim

REWARD_MODES = ("local", "global", "mixed")
DEFAULT_FAULTS = ["partition", "crash", "pause", "clock", "loss"]


class EnvConfig(BaseModel):
    """Parameters common to every capgym environment (games add their own)."""

    model_config = ConfigDict(extra="forbid")
    nodes: int = Field(5, ge=2, le=1024, description="number of nodes = agents")
    duration_ms: float = Field(5000.0, gt=0, description="horizon in simulated (true) ms")
    max_decisions: int | None = Field(None, ge=1, description="also stop after this many decisions")
    seed: int = Field(0, description="seed of the first episode (reset(seed=...) overrides)")
    latency: dict = Field(default_factory=lambda: {"dist": "exponential", "mean": 5.0},
                          description="world.network.latency of the scenario")
    loss: float = Field(0.0, ge=0, le=1, description="probability that a message is lost")
    clocks: dict = Field(default_factory=dict, description="world.clocks of the scenario")
    faults: bool | list[str] = Field(False, description="random nemesis: True (partition, crash, pause, "
                                     "clock, loss) or a list of kinds; ignored when nemesis is given")
    nemesis: dict | None = Field(None, description="a full nemesis section (schedule and/or random)")
    workload: dict | None = Field(None, description="a workload section (the game's default when None)")
    protocol_params: dict = Field(default_factory=dict, description="parameters of the node program")
    decision_window_ms: float = Field(0.0, ge=0, description="Parallel API: a step answers every decision due "
                                      "within this many simulated ms of the first (0: one moment at a time)")
    reward_mode: Literal["local", "global", "mixed"] = "local"
    mixed_weight: float = Field(0.5, ge=0, le=1, description="w of the mixed reward")


def validate(model: type[BaseModel], kwargs: dict, where: str = "") -> BaseModel:
    """``model(**kwargs)``, or a ``ValueError`` whose message is one line naming the wrong key
    (after ``where.``, e.g. ``protocol_params.replicas: ...``, when ``where`` is given)."""
    try:
        return model.model_validate(kwargs)
    except ValidationError as e:
        line = error_line(e)
        if where:
            errs = e.errors()
            line = f"{where}.{line}" if errs and errs[0].get("loc") else f"{where}: {line}"
        raise ValueError(line) from None


class Game:
    """What an environment adds to the world. Subclasses set the class attributes and hooks."""

    Config: type[EnvConfig] = EnvConfig
    name = "game"
    n_actions = 1  # the game's choices; the no-op is index n_actions
    n_features = 1  # d: local features of a decision
    default_workload: dict = {"clients": 0}

    def __init__(self, cfg: EnvConfig):
        self.cfg = cfg

    # --- the world ------------------------------------------------------------------------------
    def node_program(self) -> tuple[type, Any]:
        """``(node class, its params object)``."""
        raise NotImplementedError

    def scenario(self, seed: int) -> ScenarioConfig:
        c = self.cfg
        nemesis = c.nemesis
        if nemesis is None and c.faults:
            kinds = DEFAULT_FAULTS if c.faults is True else list(c.faults)
            interval = c.duration_ms / 5
            nemesis = {"random": {"kinds": kinds, "interval_ms": interval, "duration_ms": interval / 2}}
        raw = {"seed": seed,
               "world": {"nodes": c.nodes, "duration_ms": c.duration_ms,
                         "network": {"latency": c.latency, "loss": c.loss}, "clocks": c.clocks},
               "nemesis": nemesis or {},
               "workload": c.workload if c.workload is not None else self.default_workload}
        return validate(ScenarioConfig, raw)

    def setup(self, ep: Episode) -> None:
        """Attach callbacks and observer ticks to ``ep.sim`` before it starts."""

    # --- decisions ------------------------------------------------------------------------------
    def features(self, ask: Ask) -> list[float]:
        """``n_features`` floats from the asking node's local view (``ask.obs``)."""
        raise NotImplementedError

    def mask(self, ask: Ask) -> list[int]:
        """Legal choices (length ``n_actions``) for ``ask``."""
        return [1] * self.n_actions

    def action(self, ep: Episode, ask: Ask, a: int) -> Any:
        """The protocol's action for the agent's legal choice ``a`` (world effects may happen here)."""
        return a

    def default(self, ep: Episode, ask: Ask) -> Any:
        """The protocol's action when the agent gives no legal choice: the textbook default."""
        return ask.default

    # --- rewards and the observer ---------------------------------------------------------------
    def collect(self, ep: Episode) -> None:
        """Bring ``ep.earned`` (and ``ep.welfare``) up to date after the world advanced."""

    def welfare_step(self, ep: Episode, local: list[float]) -> None:
        """Default observer welfare: the mean of what the agents earned (utilitarian, per agent)."""
        ep.welfare += sum(local) / ep.n

    def measures(self, ep: Episode) -> dict:
        """The observer's global measures of the finished episode."""
        return {}

    def terminal_welfare(self, ep: Episode, m: dict) -> float:
        """A last welfare term from the global measures (e.g. a penalty for inconsistency)."""
        return 0.0


class Episode:
    """One run of the world under a game: the sim, who owes what, what everyone has earned."""

    def __init__(self, game: Game, seed: int):
        self.game = game
        self.seed = seed
        cfg = game.cfg
        cls, params = game.node_program()
        n = cfg.nodes
        self.n = n
        self.scn = game.scenario(seed)
        # the games score from the history and protocol records: no per-message trace needed
        self.sim: Sim = build_sim(self.scn, cls, params, agents=dict.fromkeys(range(n), EXTERNAL),
                                  full_trace=False)
        self.horizon = float(cfg.duration_ms)
        self.max_decisions = cfg.max_decisions
        self.decisions = 0
        # plain lists, not numpy: five-element arithmetic every step is faster on Python floats
        self.earned = [0.0] * n  # local reward earned so far, per agent (node)
        self.paid = [0.0] * n  # what has been handed out as reward
        self.welfare = 0.0  # the observer's welfare so far
        self.welfare_paid = 0.0
        self.done = False
        self.mode = cfg.reward_mode
        self.final: dict | None = None
        self.side: list[float] | None = None  # per agent, the sign of the global term (a game's setup may set
        # it: two sides of a zero-sum game, e.g. Byzantine-v0's adversaries +1 and correct replicas -1)
        k, d = game.n_actions, game.n_features
        self.noop_mask = np.zeros(k + 1, dtype=np.int8)
        self.noop_mask[k] = 1
        self.masks: dict[tuple, np.ndarray] = {}  # legal choices -> its action_mask (copied out)
        # a game that keeps Game.mask allows every choice at every decision: no call needed
        self.all_legal = type(game).mask is Game.mask
        self.legal_mask = np.array([1] * k + [0], dtype=np.int8)  # every choice, not the no-op
        self.clocks = [s.clock for s in self.sim.states]  # each node's clock (faults change it in place)
        self.feat = [[0.0] * d for _ in range(n)]  # each agent's last decision's features
        self._cache: dict = {}
        game.setup(self)

    # --- who owes what --------------------------------------------------------------------------
    def first_asks(self) -> dict[int, Ask]:
        """Each node's oldest pending ask."""
        first: dict[int, Ask] = {}
        for a in self.sim.pending:
            if a.node not in first:
                first[a.node] = a
        return first

    def first_ask(self, i: int) -> Ask | None:
        for a in self.sim.pending:
            if a.node == i:
                return a
        return None

    def decide(self, ask: Ask, a: Any) -> None:
        """Answer ``ask`` with the agent's choice ``a`` (the default when ``a`` is not legal)."""
        g = self.game
        if a is not None:
            a = int(a)
            if 0 <= a < g.n_actions and (self.all_legal or g.mask(ask)[a]):
                self.sim.decide(ask, g.action(self, ask, a))
                self.decisions += 1
                return
        self.sim.decide(ask, g.default(self, ask))
        self.decisions += 1

    def advance(self, window_ms: float = 0.0) -> bool:
        """Run the world to the next moment some decision is due; True when the episode is over.

        With ``window_ms > 0`` the world then runs on for up to ``window_ms`` of simulated time
        (never past the horizon) without stopping at asks, so every decision that comes due in
        that window is owed at once: a node that asked first waits up to ``window_ms`` longer for
        its answer (the fidelity given up), and one step answers them all (the speed gained)."""
        if not self.done:
            if self.max_decisions is not None and self.decisions >= self.max_decisions:
                self.done = True
            elif self.sim.run(until=self.horizon) != "ask":
                self.done = True
            elif window_ms > 0:
                self.sim.run(until=min(self.horizon, self.sim.now + window_ms), stop_on_ask=False)
            self.game.collect(self)
        return self.done

    # --- observations ---------------------------------------------------------------------------
    def observe(self, i: int, ask: Ask | None) -> dict:
        now = self.sim.now
        key = (i, None if ask is None else ask.id, now)
        cache = self._cache
        obs = cache.get(key)
        if obs is not None:
            return obs
        clock_s = self.clocks[i].local(now) / 1000.0
        if ask is not None:
            g = self.game
            self.feat[i] = feat = list(g.features(ask))
            if self.all_legal:
                mask = self.legal_mask
            else:
                legal = tuple(g.mask(ask))
                mask = self.masks.get(legal)
                if mask is None:
                    mask = self.masks[legal] = np.array(legal + (0,), dtype=np.int8)
            vec = np.array(feat + [clock_s, 1.0], dtype=np.float32)
        else:
            mask = self.noop_mask
            vec = np.array(self.feat[i] + [clock_s, 0.0], dtype=np.float32)
        obs = {"observation": vec, "action_mask": mask.copy()}
        if len(cache) > 4 * self.n:
            cache.clear()
        cache[key] = obs
        return obs

    # --- rewards --------------------------------------------------------------------------------
    def rewards(self) -> list[float]:
        """Each agent's reward since the last call, in the configured mode."""
        earned = self.earned
        local = list(map(sub, earned, self.paid))  # what each earned since it was last paid
        self.paid = earned[:]
        self.game.welfare_step(self, local)
        if self.done and self.final is None:
            self.final = self.game.measures(self)
            self.welfare += self.game.terminal_welfare(self, self.final)
        mode = self.mode
        if mode == "local":
            self.welfare_paid = self.welfare
            return local
        glob = self.welfare - self.welfare_paid
        self.welfare_paid = self.welfare
        side = self.side
        if mode == "global":
            return [glob] * self.n if side is None else [s * glob for s in side]
        w = self.game.cfg.mixed_weight
        if side is not None:
            return [(1.0 - w) * x + w * s * glob for x, s in zip(local, side, strict=True)]
        return [(1.0 - w) * x + w * glob for x in local]

    def release(self) -> None:
        """Let a finished episode's world go at once (called when the next episode starts).

        The simulator's parts point at each other (every node's context at the sim, the clients and
        the nemesis at the sim, the event heap at their callbacks), so without this an old episode
        lives until a full cyclic-GC pass, and those passes, scanning every dead episode's trace,
        cost more than the rest of the environment's bookkeeping. The history, the trace, the
        counters and the measures stay readable; the nodes and pending events are dropped.
        """
        self.sim.close()

    def returns(self) -> list[float]:
        """What each agent has earned in the episode so far (local rewards, rounded to 1e-6)."""
        return [round(x, 6) for x in self.earned]

    def global_measures(self) -> dict:
        """The observer's measures of the episode so far (computed once the episode is over)."""
        if self.final is not None:
            return self.final
        return self.game.measures(self)


# =====================================================================================================
# The two PettingZoo APIs over an Episode
# =====================================================================================================

class _Common:
    game_cls: type[Game] = Game
    metadata: dict = {"render_modes": ["ansi"], "name": "capgym", "is_parallelizable": True}

    def _init(self, render_mode: str | None, max_cycles: int | None, kwargs: dict) -> None:
        cfg = validate(self.game_cls.Config, kwargs)
        if max_cycles is not None:  # PettingZoo's registry passes max_cycles: decisions per agent
            if max_cycles < 1:
                raise ValueError(f"max_cycles must be >= 1, not {max_cycles}")
            cap = max_cycles * cfg.nodes
            cfg.max_decisions = min(cfg.max_decisions or cap, cap)
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        self.render_mode = render_mode
        self.game = self.game_cls(cfg)
        self.cfg = cfg
        self.possible_agents = [f"node_{i}" for i in range(cfg.nodes)]
        self.agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        k, d = self.game.n_actions, self.game.n_features
        self._obs_space = spaces.Dict({
            "observation": spaces.Box(-np.inf, np.inf, (d + 2,), np.float32),
            "action_mask": spaces.Box(0, 1, (k + 1,), np.int8),
        })
        self._act_spaces = {a: spaces.Discrete(k + 1) for a in self.possible_agents}
        self._obs_spaces = dict.fromkeys(self.possible_agents, self._obs_space)
        self._next_seed = cfg.seed
        self.episode: Episode | None = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    @property
    def noop(self) -> int:
        """The index of the no-op action (the last one)."""
        return self.game.n_actions

    def _window(self) -> float:
        """Simulated ms of decisions batched into one turn: 0 (AEC: one decision a turn)."""
        return 0.0

    def _new_episode(self, seed: int | None) -> Episode:
        if seed is None:
            seed = self._next_seed
        self._next_seed = seed + 1
        for i, sp in enumerate(self._act_spaces.values()):
            sp.seed(seed * 1000 + i)
        if self.episode is not None:
            self.episode.release()
        self.episode = Episode(self.game, seed)
        self.episode.advance(self._window())
        return self.episode

    def global_measures(self) -> dict:
        """The observer's global measures of the current episode (final once it is over)."""
        return self.episode.global_measures() if self.episode else {}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.episode is None:
            return None
        ep = self.episode
        owed = sorted({a.node for a in ep.sim.pending})
        return (f"{self.game.name}: t={ep.sim.now:.1f} ms, decisions={ep.decisions}, owed by {owed}, "
                f"earned={[round(x, 2) for x in ep.earned]}")

    def close(self) -> None:
        if self.episode is not None:
            self.episode.release()
        self.episode = None


class CapAEC(_Common, AECEnv):
    """The AEC form: agents take turns in the order their decisions come due in simulated time."""

    def __init__(self, render_mode: str | None = None, max_cycles: int | None = None, **kwargs: Any):
        AECEnv.__init__(self)
        self._init(render_mode, max_cycles, kwargs)

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        ep = self._new_episode(seed)
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._skip_agent_selection = None
        ep.rewards()  # nothing is owed for what happened before the first decision
        self._select(ep)

    def _select(self, ep: Episode) -> None:
        if ep.done:
            m = ep.global_measures()
            for a in self.agents:
                self.truncations[a] = True
                self.infos[a] = {"global": m}
            self.agent_selection = self.agents[0]
        else:
            self.agent_selection = self.possible_agents[ep.sim.pending[0].node]

    def observe(self, agent: str) -> dict:
        i = self.agent_index[agent]
        return self.episode.observe(i, self.episode.first_ask(i))

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        ep = self.episode
        ask = ep.first_ask(self.agent_index[agent])
        ep.decide(ask, action)
        ep.advance()
        rewards, cumulative = self.rewards, self._cumulative_rewards
        cumulative[agent] = 0.0
        for a, r in zip(self.possible_agents, ep.rewards()):  # PettingZoo's _accumulate_rewards, inlined
            rewards[a] = r
            cumulative[a] += r
        self._select(ep)


class CapParallel(_Common, ParallelEnv):
    """The Parallel form: each step answers every owed decision, then time runs to the next one."""

    def __init__(self, render_mode: str | None = None, max_cycles: int | None = None, **kwargs: Any):
        self._init(render_mode, max_cycles, kwargs)
        self.agents: list[str] = []

    def _window(self) -> float:
        return self.cfg.decision_window_ms

    def reset(self, seed: int | None = None, options: dict | None = None):
        ep = self._new_episode(seed)
        ep.rewards()
        self.agents = self.possible_agents[:]
        return self._observations(ep), {a: {} for a in self.agents}

    def _observations(self, ep: Episode) -> dict:
        first = ep.first_asks()
        return {a: ep.observe(i, first.get(i)) for i, a in enumerate(self.possible_agents)}

    def step(self, actions: dict):
        ep = self.episode
        for i, ask in ep.first_asks().items():
            ep.decide(ask, actions.get(self.possible_agents[i]))
        ep.advance(self.cfg.decision_window_ms)
        r = ep.rewards()
        agents = self.agents
        obs = self._observations(ep)
        rewards = {a: r[self.agent_index[a]] for a in agents}
        terms = dict.fromkeys(agents, False)
        truncs = dict.fromkeys(agents, ep.done)
        if ep.done:
            m = ep.global_measures()
            infos = {a: {"global": m} for a in agents}
            self.agents = []
        else:
            infos = {a: {} for a in agents}
        return obs, rewards, terms, truncs, infos
