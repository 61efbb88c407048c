"""Agents as Ray actors: one actor per agent (or per parameter-sharing group) owns that agent's
policy network, its optimizer and the experience it is handed, and learns from it alone.

The actors wrap :class:`agents.learn.ppo.PPOLearner` unchanged. The runner (in the driver) keeps
policy copies for acting and refreshes them from ``get_weights`` after each update; all actors
update in parallel (``ray.get`` on every ``update.remote`` at once).

Ray starts locally (dashboard off, a small CPU share per actor) unless ``ray.address`` names a
cluster. :func:`ensure_ray` is idempotent, so one ``ray.init`` serves a whole test session.
"""

from __future__ import annotations

import os

import ray

from agents.learn.config import TrainConfig


def auth_hint(address: str | None) -> str:
    """What to add to "cannot reach the cluster at ``address``": a cluster started by ``ray start``
    asks for token authentication by default, but a driver given an explicit address sends its token
    only when ``RAY_AUTH_MODE=token`` (only ``address=auto`` turns it on by itself)."""
    if not address or address == "auto" or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return " (if the cluster uses token authentication, Ray's default for `ray start`, set RAY_AUTH_MODE=token)"


def ensure_ray(address: str | None = None) -> None:
    """Connect to ``address`` (a cluster) or start a local Ray instance, once per process."""
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            first = str(e).strip().splitlines()[0]
            raise ConnectionError(f"ray.address: cannot reach the Ray cluster at {address}: {first}"
                                  f"{auth_hint(address)}") from None
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


class RayLearners:
    """The learners as Ray actors, one each; same interface as ``ppo.LocalLearners``."""

    def __init__(self, cfg: TrainConfig, specs: list[dict]):
        from agents.learn.ppo import PPOLearner

        ensure_ray(cfg.ray.address)
        Actor = ray.remote(num_cpus=cfg.ray.num_cpus_per_learner, num_gpus=cfg.ray.num_gpus_per_learner)(PPOLearner)
        self.actors = [Actor.remote(**s) for s in specs]

    def update(self, batches: list[dict], frac: float) -> list[dict]:
        return ray.get([a.update.remote(b, frac) for a, b in zip(self.actors, batches)])

    def weights(self) -> list[dict]:
        return ray.get([a.get_weights.remote() for a in self.actors])

    def states(self) -> list[dict]:
        return ray.get([a.state.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
