"""A population of agents, seat by seat: focal agents (a trained checkpoint) among background agents
(a scripted policy by name, or another run's checkpoint), as Melting Pot evaluates (Leibo et al.
2021, "Scalable Evaluation of Multi-Agent Reinforcement Learning with Melting Pot").

A **seat** is a node index ``0..n-1`` (agent ``node_k``). A checkpoint plays seat ``k`` with its
own agent ``node_k``'s network: with per-agent checkpoints (``learner.share: false``) the network
trained in seat ``k``; with a shared one, the shared network given seat ``k``'s one-hot id. So a
focal or background checkpoint must have been trained with the same agents as the game it plays.

:class:`Population` plays in both runtimes:

* sim: ``population.act(agent, obs, mask) -> action`` (the ``choose`` of
  ``experiments.evaluate_cmd.play``), ``population.reset()`` at each episode start;
* live: ``population.ask_policy(k)`` is seat ``k``'s ``policy(ask) -> action`` for
  ``experiments.live.run_live(..., agents=...)``: it builds the same observation as the
  environment (the game's features of the ask, the node's clock in seconds, 1.0) and answers the
  protocol's default for the no-op or an illegal choice, as the environment does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents import scripted


class Seat:
    """What plays one seat: ``kind`` is ``"checkpoint"`` (``policy`` an
    :class:`agents.learn.checkpoint.Policy`) or ``"scripted"`` (``policy`` a
    ``policy(obs, mask) -> action`` and ``name`` its registry name)."""

    def __init__(self, kind: str, policy, name: str, env_id: str | None = None, seed: int = 0):
        self.kind, self.policy, self.name = kind, policy, name
        self.env_id, self.seed = env_id, seed  # a scripted seat's game and seed (to make one per node)

    def for_node(self, k: int) -> Seat:
        """This seat as node ``k`` plays it alone (a live actor): a scripted policy gets its own
        generator, seeded from the seat's seed and ``k``, so that seats do not draw in lockstep."""
        if self.kind != "scripted" or self.env_id is None:
            return self
        return scripted_seat(self.name, self.env_id, self.seed * 1_000_003 + k + 1)

    def act(self, agent: str, obs, mask) -> int:
        if self.kind == "checkpoint":
            return self.policy.act(agent, obs, mask)
        return int(self.policy(obs, mask))


class Population:
    """Seats ``0..n-1`` of the game ``env_spec`` (``{"id", "params"}``): ``focal`` seats played by
    ``focal_seat``, the others by ``background_seat``."""

    def __init__(self, env_spec: dict, n: int, focal: Sequence[int], focal_seat: Seat, background_seat: Seat):
        self.env_spec = env_spec
        self.n = n
        self.focal = sorted(set(focal))
        self.background = [k for k in range(n) if k not in self.focal]
        self.seats = [focal_seat if k in self.focal else background_seat for k in range(n)]
        self._game = None

    def reset(self) -> None:
        """Start an episode: recurrent checkpoints forget their GRU states."""
        for seat in {id(s): s for s in self.seats}.values():
            if seat.kind == "checkpoint":
                seat.policy.reset()

    def act(self, agent: str, obs, mask) -> int:
        """The action of ``agent`` (``node_k``) for one observation vector and action mask."""
        return self.seats[int(agent.rsplit("_", 1)[1])].act(agent, obs, mask)

    def ask_policy(self, k: int) -> Callable:
        """Seat ``k``'s ``policy(ask) -> action`` for the live runtime (picklable)."""
        return AskPolicy(self.env_spec, self.seats[k].for_node(k), k)


class AskPolicy:
    """One seat's policy over the simulator's :class:`~envs.world.sim.Ask` (what a live node actor
    calls at ``ctx.ask``): the environment's observation of the ask, the seat's choice, and the
    protocol's default for the no-op or an illegal choice (what the environment answers then)."""

    def __init__(self, env_spec: dict, seat: Seat, k: int):
        self.env_spec, self.seat, self.k = env_spec, seat, k
        self.game = game_of(env_spec)

    def __getstate__(self):
        return {"env_spec": self.env_spec, "seat": self.seat, "k": self.k}

    def __setstate__(self, state):
        # built when unpickled (a live actor does it when it is warmed, before the run's clock starts)
        self.__dict__.update(state)
        self.game = game_of(self.env_spec)

    def __call__(self, ask) -> int:
        g = self.game
        k = g.n_actions
        mask = [*g.mask(ask), 0]
        if not any(mask[:k]):
            return ask.default
        obs = [*g.features(ask), ask.t / 1000.0, 1.0]
        a = self.seat.act(f"node_{self.k}", obs, mask)
        return a if 0 <= a < k and mask[a] else ask.default


_GAMES: dict = {}


def game_of(env_spec: dict):
    """The game object of ``env_spec`` (features and masks of an ``Ask``), one per spec and process."""
    import json

    key = json.dumps(env_spec, sort_keys=True, default=repr)
    game = _GAMES.get(key)
    if game is None:
        from agents.learn.config import EnvSpec, make_env

        game = _GAMES[key] = make_env(EnvSpec(**env_spec)).game
    return game


def scripted_seat(name: str, env_id: str, seed: int = 0) -> Seat:
    """A seat played by the scripted policy ``name`` (``ValueError``, one line, when it does not
    apply to ``env_id``: see :func:`agents.scripted.make_scripted`)."""
    return Seat("scripted", scripted.make_scripted(name, env_id, seed), name, env_id, seed)
