"""capgym's public Python API: a thin layer over the packages (``envs``, ``experiments``,
``metrics``, ``agents``), which stay where they are.

    import capgym

    env = capgym.make("capgym/Register-v0", api="parallel", nodes=5, faults=True)
    run = capgym.run("configs/quickstart.yaml", {"seed": 3, "world.duration_ms": 2000})
    run.dir, run.summary["runs"]["abd"]["linearizable"]
    capgym.check("history.edn", model="cas-register").ok is True   # ok: True, False or "unknown"
    policy = capgym.load_policy("results/train-register/<run>/")

Importing ``capgym`` registers the PettingZoo games (``capgym.ENVIRONMENTS``), so
``pettingzoo.make`` knows them too. Errors in what you pass (an unknown environment or key, a bad
history file) raise :class:`CapgymError` with the same one-line message the command line prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.registry import ENVIRONMENTS as _ENVIRONMENTS

__all__ = ["ENVIRONMENTS", "CapgymError", "Run", "check", "load_policy", "make", "run"]

#: the PettingZoo environment ids capgym registers (``docs/environments.md``)
ENVIRONMENTS: tuple[str, ...] = tuple(_ENVIRONMENTS)


class CapgymError(ValueError):
    """Bad input to the API: the message names what is wrong, in one line."""


def _register() -> None:
    import pettingzoo  # noqa: F401  (importing it runs envs' registration hook)

    import envs

    envs.register_all()


def make(env_id: str, api: str = "parallel", **params: Any):
    """A capgym game as a PettingZoo environment.

    ``env_id``: one of :data:`ENVIRONMENTS` (``"Register-v0"`` works too); ``api``: ``"parallel"``
    (``ParallelEnv``) or ``"aec"`` (``AECEnv``); ``params``: the environment's options
    (``nodes``, ``faults``, ``reward_mode``, ...; see ``docs/environments.md``), validated.
    Raises :class:`CapgymError` for an unknown id or api, or an option the game does not have.
    """
    import importlib

    full = env_id if env_id.startswith("capgym/") else f"capgym/{env_id}"
    if full not in _ENVIRONMENTS:
        raise CapgymError(f"unknown environment {env_id!r} (known: {', '.join(ENVIRONMENTS)})")
    if api not in ("parallel", "aec"):
        raise CapgymError(f"api must be 'parallel' or 'aec', got {api!r}")
    _register()
    module = importlib.import_module(_ENVIRONMENTS[full])
    factory = module.parallel_env if api == "parallel" else module.env
    try:
        return factory(**params)
    except (ValueError, TypeError) as e:
        raise CapgymError(f"{full}: {e}") from None


@dataclass
class Run:
    """A finished ``capgym run``: its results folder, ``summary.json`` as a dict, and the exit
    status the command line would give (0 complete, 130 interrupted, 4 failed)."""

    dir: Path
    summary: dict
    status: int


def _override_strings(overrides) -> list[str]:
    import json

    if overrides is None:
        return []
    if isinstance(overrides, dict):
        # JSON is YAML: every value reads back as itself
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return [str(o) for o in overrides]


def run(config_path: str | Path, overrides: dict | list[str] | None = None, quiet: bool = True) -> Run:
    """Run a config (``capgym run``) into a new results folder and return it as a :class:`Run`.

    ``overrides``: a dict of dotted keys (``{"world.nodes": 7, "seed": 3}``) or ``"key=value"``
    strings. Raises :class:`CapgymError` for a config that does not validate (nothing is written).
    """
    import json

    from experiments.cli import UserError
    from experiments.config import load_config
    from experiments.run_cmd import execute

    try:
        cfg = load_config(config_path, _override_strings(overrides))
        run_dir, status = execute(cfg, quiet=quiet)
    except UserError as e:
        raise CapgymError(str(e)) from None
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return Run(run_dir, summary, status)


def check(history, model: str | None = None, timeout: float | None = None, independent: bool = False,
          algorithm: str = "auto"):
    """Linearizability of a history (``capgym check``): a :class:`metrics.linearizability.CheckResult`
    whose ``ok`` is True, False or ``"unknown"`` (the ``timeout``, in seconds, ran out).

    ``history``: a file path (any format ``capgym check`` reads), a list of
    :class:`envs.world.records.Op` or of their dicts (completed operations: ``f``, ``invoke``,
    ``complete``, ``status``, ...), or a list of Jepsen history entries as dicts (``{"process": 0,
    "type": "invoke", "f": "write", "value": 3}``, paired by process); ``model``: ``register``, ``cas-register``,
    ``etcd``, ``kv`` or a :class:`metrics.models.Model` (default: the smallest that fits);
    ``independent``: split ``[key value]`` values per key. Raises :class:`CapgymError` for a history
    that cannot be read or a model that does not fit.
    """
    from envs.world.records import Op
    from metrics.history_io import HistoryError, read_entries, read_history
    from metrics.history_io import independent as split
    from metrics.linearizability import check as _check
    from metrics.models import MODELS, Model, guess_model

    try:
        if isinstance(history, (str, Path)):
            ops = read_history(history)
        elif history and isinstance(history[0], dict) and ("type" in history[0] or ":type" in history[0]):
            ops = read_entries(history)
        else:
            ops = [op if isinstance(op, Op) else Op.from_dict(op) for op in history]
        if independent:
            ops = split(ops)
        if isinstance(model, Model):
            m = model
        elif model is None:
            m = guess_model(ops)
        elif model in MODELS:
            m = MODELS[model]
        else:
            raise CapgymError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
        return _check(ops, m, timeout=timeout, every_key=independent, algorithm=algorithm)
    except HistoryError as e:
        raise CapgymError(str(e)) from None
    except (ValueError, TypeError) as e:
        if isinstance(e, CapgymError):
            raise
        at = ops.locate(str(e)) if "ops" in locals() and hasattr(ops, "locate") else None
        raise CapgymError(f"{at}: {e}" if at else str(e)) from None


def load_policy(path: str | Path, greedy: bool = True, seed: int = 0):
    """A trained checkpoint as a callable ``policy(ask) -> action`` (``agents.learn.checkpoint``)."""
    from agents.learn.checkpoint import load_policy as _load

    try:
        return _load(path, greedy=greedy, seed=seed)
    except FileNotFoundError as e:
        raise CapgymError(f"{path}: no such checkpoint ({e.strerror or e})") from None


_register()
