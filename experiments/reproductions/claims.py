"""Claims: a reproduction's published numbers beside ours, each with a tolerance and a verdict.

Every reproduction returns a ``claims`` list, one row per published number or claim::

    {"claim": "150-155 ms: median time to elect",      # what the paper says, in words
     "paper": 287.0,                                     # the paper's value (number, bool or text)
     "source": "Ongaro & Ousterhout 2014, Sec. 9.3, Fig. 16 (top)",   # where the paper says it
     "ours": 1662.0,                                     # our measured value
     "tolerance": "within 25% of the paper: [215, 359]", # the band ``ours`` must fall in
     "basis": "relative band (the issue's target)",      # how the tolerance was chosen
     "holds": False,                                     # ours within the tolerance
     "evidence": "measured",                             # what kind of test this is (below)
     "deviation": None}                                  # or the explanation of a known gap

``evidence`` says how much a claim that holds shows, so that weak rows are not counted as strong:

* ``measured``: the simulator's measurement tested against the paper's value or inequality, with
  an interval that could have excluded it (the default);
* ``one-sided``: the measurement can bound the paper's value from one side only (0 stale reads in
  20,000 bound a probability of 1.9e-6 from above; a bootstrap interval of the 99.9th percentile of
  1,000 trials cannot exceed their maximum; a median censored at the cap is only seen as ">=");
* ``computed``: our computation of the paper's formula or model, outside the simulator (it checks
  the formula and our reading of it against the paper's printed number, not the simulator).

A claim that does not hold may carry ``deviation``: the explanation of a known gap, backed by a
measured ablation written up in docs/reproductions.md. ``capgym reproduce NAME --check`` exits 1
when a claim neither holds nor is such a documented deviation (:func:`failing`).

Intervals: :func:`binomial_interval` (Clopper-Pearson, exact, via scipy) for proportions and
:func:`bootstrap_interval` (percentile bootstrap, seeded) for percentiles and means.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

EVIDENCE = ("measured", "one-sided", "computed")


def claim(claim: str, paper, source: str, ours, holds: bool, tolerance: str, basis: str,
          deviation: str | None = None, evidence: str = "measured") -> dict:
    """One row of the ``claims`` list (see the module docstring for the fields). Raises
    ``ValueError`` for an ``evidence`` kind not in :data:`EVIDENCE`."""
    if evidence not in EVIDENCE:
        raise ValueError(f"evidence must be one of {', '.join(EVIDENCE)}, not {evidence!r}")
    row = {"claim": claim, "paper": paper, "source": source, "ours": _plain(ours), "tolerance": tolerance,
           "basis": basis, "holds": bool(holds), "evidence": evidence}
    if deviation:
        row["deviation"] = deviation
    return row


def interval(lo: float, hi: float, spec: str = ".2f") -> str:
    """``CI [lo, hi]`` for a claim's text, formatted with ``spec``. An interval whose ends print
    alike (every resample gave the same value at this precision: deterministic runs, or too few
    runs to vary) says so instead of passing for a precise estimate; one with no values (NaN ends)
    says it is undefined."""
    if math.isnan(lo) or math.isnan(hi):
        return "CI undefined (no values to resample)"
    a, b = f"{lo:{spec}}", f"{hi:{spec}}"
    text = f"CI [{a}, {b}]"
    if a == b:
        text += " (zero width at this precision: every resample gave the same value, so it says nothing of the spread)"
    return text


def _plain(v):
    """JSON-friendly: ``inf`` as the string ``"inf"``, numpy scalars as Python ones."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def relative(ours: float | None, paper: float, rel: float, unit: str = "") -> tuple[bool, str]:
    """``ours`` within ``rel`` (e.g. 0.25 = 25%) of ``paper``: ``(holds, tolerance text)``."""
    lo, hi = paper * (1 - rel), paper * (1 + rel)
    ok = ours is not None and math.isfinite(ours) and lo <= ours <= hi
    return ok, f"within {rel:.0%} of the paper: [{lo:.4g}, {hi:.4g}]{unit}"


def binomial_interval(k: int, n: int, confidence: float = 0.99) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``confidence`` interval of a proportion seen ``k`` times in ``n``.

    ``(0.0, 1.0)`` when ``n`` is 0. Raises ``ValueError`` unless ``0 <= k <= n``.
    """
    if n == 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} not within 0..n={n}")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def bootstrap_interval(values: Sequence[float], stat: Callable[[list[float]], float], confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap ``confidence`` interval of ``stat(values)`` (seeded: same input, same
    interval). ``inf`` values are kept (censored trials count as the longest)."""
    rng = random.Random(seed)
    xs = list(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    stats = sorted(stat([xs[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    a = (1 - confidence) / 2
    return stats[int(a * (resamples - 1))], stats[int(math.ceil((1 - a) * (resamples - 1)))]


def bootstrap_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(b) - mean(a)``, each sample resampled on its own."""
    rng = random.Random(seed)
    if not a or not b:
        return math.nan, math.nan
    na, nb = len(a), len(b)
    ds = sorted(sum(b[rng.randrange(nb)] for _ in range(nb)) / nb - sum(a[rng.randrange(na)] for _ in range(na)) / na
                for _ in range(resamples))
    q = (1 - confidence) / 2
    return ds[int(q * (resamples - 1))], ds[int(math.ceil((1 - q) * (resamples - 1)))]


def failing(claims: Sequence[dict]) -> list[dict]:
    """The claims that neither hold nor are documented deviations (``--check`` exits 1 on any)."""
    return [c for c in claims if not c["holds"] and not c.get("deviation")]


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(claims: Sequence[dict]) -> str:
    """The paper-vs-ours table as text (``summary.txt``)."""
    if not claims:
        return "claims: none"
    lines = [f"claims ({sum(c['holds'] for c in claims)} of {len(claims)} hold; "
             f"{len(failing(claims))} fail, {sum(bool(c.get('deviation')) and not c['holds'] for c in claims)} "
             f"documented deviations; evidence: {evidence_counts(claims)}):"]
    for c in claims:
        verdict = "holds" if c["holds"] else ("DEVIATION" if c.get("deviation") else "FAILS")
        kind = "" if c.get("evidence", "measured") == "measured" else f" ({c['evidence']})"
        lines.append(f"  [{verdict}]{kind} {c['claim']}: paper {fmt(c['paper'])} ({c['source']}), "
                     f"ours {fmt(c['ours'])}; {c['tolerance']} ({c['basis']})")
        if c.get("deviation") and not c["holds"]:
            lines.append(f"      deviation: {c['deviation']}")
    return "\n".join(lines)


def evidence_counts(claims: Sequence[dict]) -> str:
    """``"5 measured, 1 one-sided, 2 computed"`` (kinds with none left out)."""
    n = {k: sum(c.get("evidence", "measured") == k for c in claims) for k in EVIDENCE}
    return ", ".join(f"{v} {k}" for k, v in n.items() if v)


def markdown(claims: Sequence[dict]) -> str:
    """The paper-vs-ours table as Markdown (docs/reproductions.md)."""
    rows = ["| claim | paper | source | ours | tolerance | evidence | holds |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        verdict = "yes" if c["holds"] else ("deviation" if c.get("deviation") else "**no**")
        rows.append(f"| {c['claim']} | {fmt(c['paper'])} | {c['source']} | {fmt(c['ours'])} | "
                    f"{c['tolerance']} ({c['basis']}) | {c.get('evidence', 'measured')} | {verdict} |")
    return "\n".join(rows)
