"""Figures of a run (matplotlib, Agg backend, PNG).

* ``timeline.png``   -- availability and consistency per time bucket, partitions shaded;
* ``latency.png``    -- the distribution of ok operations' latency;
* ``spacetime-<label>.png`` -- a Lamport space-time diagram (one line per node, an arrow per
  delivered message from its send to its receive) for short runs;
* ``rewards.png``    -- per-agent reward curves, when there are any;
* ``compare.png``    -- availability, stale-read rate and messages per operation across protocols.

Each function takes plain data and a path and writes the PNG atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from envs.world.records import OK, Event, Op
from experiments.results import write_bytes

#: the space-time diagram is drawn for runs with at most this many messages
SPACETIME_MAX_MESSAGES = 300


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _shade(ax, partitions: Sequence[tuple[float, float]], label: bool = True) -> None:
    for i, (a, b) in enumerate(partitions):
        ax.axvspan(a / 1000, b / 1000, color="tab:red", alpha=0.12, lw=0,
                   label="partition" if label and i == 0 else None)


def timeline(path: Path, series: dict[str, list[dict]], partitions: Sequence[tuple[float, float]]) -> Path:
    """Availability (ok fraction) and consistency (1 - stale-read fraction) over true time."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, layout="constrained")
    for ax, key, title in ((axes[0], "availability", "availability (ok fraction)"),
                           (axes[1], "consistency", "consistency (1 - stale-read fraction)")):
        _shade(ax, partitions)
        for label, rows in series.items():
            xs = [(r["t_start_ms"] + r["t_end_ms"]) / 2000 for r in rows if r[key] is not None]
            ys = [r[key] for r in rows if r[key] is not None]
            ax.plot(xs, ys, marker=".", ms=3, lw=1.2, label=label)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(title.split(" ")[0])
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left", ncol=4)
    axes[1].set_xlabel("true time (s)")
    return save_figure(fig, path)


def latency(path: Path, histories: dict[str, list[Op]]) -> Path:
    """Histogram (log-spaced bins) of the latency of ok operations, per protocol."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    lats = {label: [op.complete - op.invoke for op in h if op.status == OK and op.complete is not None]
            for label, h in histories.items()}
    every = [x for v in lats.values() for x in v if x > 0]
    if every:
        bins = np.geomspace(max(min(every), 1e-3), max(every) * 1.01, 40)
        for label, v in lats.items():
            v = [x for x in v if x > 0]
            if v:
                ax.hist(v, bins=bins, histtype="step", lw=1.5, label=f"{label} (n={len(v)})")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no ok operations", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency of ok operations (true ms)")
    ax.set_ylabel("operations")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def count_messages(events: Sequence[Event]) -> int:
    return sum(1 for e in events if e.kind == "send")


#: the only kinds :func:`spacetime` draws (a trace file is read for these alone)
SPACETIME_KINDS = frozenset({"send", "recv", "drop", "crash"})


def spacetime(path: Path, events: Sequence[Event], n: int, title: str = "", end: float | None = None) -> Path:
    """Lamport's space-time diagram (Lamport 1978, Fig. 1, drawn sideways): one horizontal line per
    node, true time to the right, an arrow from each send to its receive; dropped messages end in
    a cross; crashes are marked. ``end``: the trace's last true time, when ``events`` holds only the
    kinds drawn (:data:`SPACETIME_KINDS`; by default the last event's time)."""
    plt = pyplot()
    events = list(events)
    if end is None:
        end = max((e.t for e in events), default=None)
    sends: dict[int, Event] = {}
    fig, ax = plt.subplots(figsize=(10, 0.6 * n + 1.5), layout="constrained")
    ax.hlines(range(n), 0, end if end is not None else 1.0, color="0.75", lw=1, zorder=0)
    arrows, drops, crashes = [], [], []
    for e in events:
        f = e.fields
        if e.kind == "send":
            sends[f["mid"]] = e
        elif e.kind == "recv" and f["mid"] in sends:
            s = sends[f["mid"]]
            arrows.append((s.t, s.node, e.t - s.t, e.node - s.node))
        elif e.kind == "drop" and f.get("mid") in sends:
            s = sends[f["mid"]]
            drops.append((s.t, s.node, e.t, f["dst"]))
        elif e.kind == "crash":
            crashes.append((e.t, e.node))
    if arrows:
        x, y, dx, dy = zip(*arrows)
        ax.quiver(x, y, dx, dy, angles="xy", scale_units="xy", scale=1, width=0.0015,
                  color="tab:blue", alpha=0.7)
    for x0, y0, x1, y1 in drops:
        ax.plot([x0, x1], [y0, y1], color="tab:red", lw=0.6, ls=":", alpha=0.7)
    if drops:
        ax.plot([d[2] for d in drops], [d[3] for d in drops], "x", color="tab:red", ms=4, label="dropped")
    if crashes:
        ax.plot(*zip(*crashes), "X", color="black", ms=8, label="crash")
    drawn, dropped = len(arrows), len(drops)
    ax.set_yticks(range(n), [f"n{i}" for i in range(n)])
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("true time (ms)")
    ax.set_title(f"{title} space-time diagram: {drawn} delivered, {dropped} dropped", fontsize=10, loc="left")
    if end is not None:
        ax.set_xlim(0, end * 1.02 + 1e-9)
    return save_figure(fig, path)


#: above this many agents the reward plot draws their mean and range, not one line each
REWARD_LINES_MAX = 10


def rewards(path: Path, curves: dict[str, Sequence[float]], xlabel: str = "episode") -> Path:
    """Per-agent reward curves; above :data:`REWARD_LINES_MAX` agents, the mean over agents with
    the band between the lowest and the highest agent (one line each would bury the legend)."""
    import warnings

    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    if len(curves) > REWARD_LINES_MAX:
        n = max(len(ys) for ys in curves.values())
        grid = np.full((len(curves), n), np.nan)
        for k, ys in enumerate(curves.values()):
            grid[k, :len(ys)] = [np.nan if y is None else y for y in ys]
        xs = np.arange(n)
        with warnings.catch_warnings():  # an iteration no agent finished an episode in: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.fill_between(xs, np.nanmin(grid, 0), np.nanmax(grid, 0), alpha=0.25, lw=0,
                            label=f"lowest to highest of {len(curves)} agents")
            ax.plot(xs, np.nanmean(grid, 0), lw=1.5, label=f"mean over {len(curves)} agents")
    else:
        for agent, ys in curves.items():
            ax.plot(range(len(ys)), list(ys), lw=1.2, label=str(agent))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path)


def compare(path: Path, rows: list[dict]) -> Path:
    """Bars across protocols: availability, stale-read rate, messages per op; the linearizability
    verdict is written over each availability bar."""
    plt = pyplot()
    labels = [r["protocol"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), layout="constrained")
    specs = (("availability", "availability (ok fraction)", (0, 1.1)),
             ("stale_read_rate", "stale-read rate", (0, None)),
             ("messages_per_op", "messages per operation", (0, None)))
    colors = [f"C{i}" for i in range(len(rows))]
    for ax, (key, title, ylim) in zip(axes, specs):
        ys = [r[key] if r[key] is not None else 0.0 for r in rows]
        bars = ax.bar(labels, ys, color=colors)
        ax.set_title(title, fontsize=10)
        if ylim[1] is not None:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
        if key == "availability":
            for b, r in zip(bars, rows):
                v = r["linearizable"]
                text = ("linearizable" if v is True else "NOT lin." if v is False
                        else "lin. n/a" if r.get("linearizability_verdict") == "not_applicable" else "lin.?")
                ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.02, text, ha="center", fontsize=8)
    return save_figure(fig, path)
