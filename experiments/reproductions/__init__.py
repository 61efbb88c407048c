"""Paper reproductions: one module per reproduction, run by ``capgym reproduce NAME [--quick]``.

Each module has a docstring citing the paper and saying what figure or claim it reproduces and how
faithfully, a pydantic ``Params`` (its defaults live in ``configs/reproduce/<name>.yaml``, with a
``quick:`` section for a seconds-long version), and ``run(p, out, stop) -> dict`` that runs the
simulations, writes its plot into ``out`` and returns::

    {"table": [row, ...],      # written to table.csv and results.json
     "summary": "text",        # written to summary.txt and printed
     "findings": {...},        # the qualitative claims, measured (tests read these)
     "plots": [Path, ...]}

Every figure comes from real runs in the sim; nothing is hard-coded. ``stop()`` is checked between
trials: a stopped reproduction returns what it has measured so far.
"""

from __future__ import annotations

import importlib

#: reproduction name -> module
REPRODUCTIONS = {
    "raft-election": "experiments.reproductions.raft_election",
    "raft-split-vote": "experiments.reproductions.raft_split_vote",
    "cap": "experiments.reproductions.cap",
    "pbs": "experiments.reproductions.pbs",
    "flp": "experiments.reproductions.flp",
    "commons": "experiments.reproductions.commons",
}


def available() -> list[str]:
    """The reproductions whose module has landed."""
    out = []
    for name, mod in REPRODUCTIONS.items():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        out.append(name)
    return out


def get(name: str):
    """The module of reproduction ``name``; ``KeyError`` with the choices when there is none."""
    if name not in available():
        raise KeyError(f"no reproduction {name!r} (choose from {', '.join(available())})")
    return importlib.import_module(REPRODUCTIONS[name])


def cdf(values: list[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF of ``values``: sorted values and the fraction <= each."""
    xs = sorted(values)
    return xs, [(i + 1) / len(xs) for i in range(len(xs))]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank); ``inf`` entries count (censored trials)."""
    if not values:
        return None
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, int(-(-q * len(xs) // 100)) - 1))
    return xs[k]
