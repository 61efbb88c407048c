"""The ``live`` runtime: every node a Ray actor running the same node code as the simulator.

Each node is a Ray actor (``actors.py``) that runs the protocol's handlers on its own clock (the
machine's monotonic clock shifted and skewed by the node's clock model, ``clock.py``); messages go
from actor to actor in batches through a transport that enforces the simulator's fault model
(latency, loss, duplication, symmetric and one-way partitions, ``transport.py``); the driver
(``driver.py``) runs the simulator's own nemesis and closed-loop clients in real time, kills and
restarts actors for crashes, and collects the history and the trace. See ``docs/live.md``.

Entry point (what ``capgym run`` calls for ``runtime: live``)::

    from experiments.live import run_live
    history, events, stats = run_live(scenario, node_cls, params, address=None, agents=None,
                                      options=None, stop=None, durable=None, byzantine=None)

* ``scenario``: a validated :class:`envs.world.config.ScenarioConfig` (or the plain dict of one);
* ``node_cls``, ``params``: the protocol's node class and its validated ``Params`` (as for
  ``build_sim``);
* ``address``: a Ray cluster address (``ray.address`` / ``--address``); ``None`` starts a local Ray
  instance (dashboard off) unless Ray is already initialised in this process, which is then used;
* ``agents``: ``{node: policy}`` with ``policy(ask) -> action`` any picklable callable (the
  simulator's :class:`~envs.world.sim.Ask` is passed) answering that node's ``ctx.ask``;
* ``options``: :class:`LiveOptions` (or a dict of its fields): batch interval, drain interval,
  CPU share per actor, spares, timeouts;
* ``durable``: ``{node: dict}`` written on each node's disk before it starts;
* ``byzantine``: ``{node: (strategy, options)}``: nodes Byzantine from the start (their strategy
  wraps the protocol before ``on_start``, as a game's ``setup`` makes them with ``Sim.byzantine``;
  e.g. Byzantine-v0's adversaries), besides those of the nemesis;
* ``stop``: a callable polled by the driver; when it returns True the run ends early
  (``stats["interrupted"]``).

Returns the history (``list[envs.world.records.Op]``, true times in ms), the trace
(``list[envs.world.records.Event]`` in true-time order, same kinds and fields as the sim's) and a
stats dict (the sim's keys ``true_time_ms``, ``events``, ``messages_sent``,
``messages_delivered``, ``messages_dropped``, ``operations``, ``trace_events``, plus ``runtime``,
``batches``, ``crashes``, ``restarts``, ``actor_deaths``, ``errors``, ``batch_ms``,
``interrupted``). A run that cannot start raises :class:`experiments.cli.UserError` with one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from envs.world.config import ScenarioConfig

from .driver import _POOL, LiveOptions, LiveWorld

ROOT = Path(__file__).resolve().parents[2]
#: what a cluster does not need of the project folder
EXCLUDES = [".venv", ".git", "results", "wandb", "**/__pycache__", "*.gz"]

__all__ = ["run_live", "ensure_ray", "LiveOptions", "LiveWorld"]


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A one-line ``UserError`` when nothing accepts TCP connections at ``address`` (``host:port``
    or ``ray://host:port``; ``None`` and ``auto`` are not checked) within ``timeout_s``: Ray's own
    connection attempt to a dead address retries for minutes."""
    import socket

    from experiments.cli import UserError

    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"ray.address: {address!r} is not host:port (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"ray.address: nothing answers at {address} ({e.strerror or e}); is a Ray head "
                        f"running there (ray start --head)?") from None


def ensure_ray(address: str | None = None, num_cpus: float | None = None) -> bool:
    """Make sure Ray is up; True when this call started (or connected) it.

    With an ``address`` this connects to that cluster and ships the project folder to its workers
    (``runtime_env.working_dir``); without one it starts a local instance, dashboard off.
    """
    import ray

    from experiments.cli import UserError

    if ray.is_initialized():
        return False
    check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False,
                     runtime_env={"working_dir": str(ROOT), "excludes": EXCLUDES})
        else:
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            ray.init(include_dashboard=False, num_cpus=num_cpus, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
    except (ConnectionError, RuntimeError, ValueError) as e:
        from agents.learn.actors import auth_hint

        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = str(e).strip().splitlines()[0]
        raise UserError(f"ray.address: cannot start or reach {where}: {first}{auth_hint(address)}") from None
    return True


def run_live(scenario: ScenarioConfig | dict, node_cls: type, params: Any = None, *, address: str | None = None,
             agents: dict | None = None, options: LiveOptions | dict | None = None,
             stop: Callable[[], bool] | None = None, durable: dict | None = None,
             byzantine: dict | None = None) -> tuple[list, list, dict]:
    """Run ``scenario`` live (see the module docstring); ``(history, events, stats)``. ``durable``:
    ``{node: dict}`` on each node's disk before it starts (e.g. Consensus-v0's private inputs);
    ``byzantine``: ``{node: (strategy, options)}`` Byzantine from the start."""
    import ray

    from experiments.cli import UserError

    scn = scenario if isinstance(scenario, ScenarioConfig) else ScenarioConfig.model_validate(scenario)
    if isinstance(options, dict):
        known = {f.name for f in fields(LiveOptions)}
        for k in options:
            if k not in known:
                raise UserError(f"live.{k}: unknown key (choose from {', '.join(sorted(known))})")
        options = LiveOptions(**options)
    try:
        world = LiveWorld(scn, node_cls, params, agents=agents, options=options)
    except ValueError as e:
        raise UserError(str(e)) from None
    for i, d in (durable or {}).items():
        world.states[i].durable.update(d)
    try:
        for i, (strategy, opts) in (byzantine or {}).items():
            world.byzantine(i, strategy, opts)
    except KeyError as e:
        raise UserError(f"byzantine: {e.args[0]}") from None
    started = ensure_ray(address)
    try:
        world.run(stop=stop)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    finally:
        world.close()
        if started:
            ray.shutdown()
            _POOL.clear()  # the pooled actors died with this Ray instance
    return world.history, world.events(), world.stats()
