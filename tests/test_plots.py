"""Plots: each figure is a real PNG, drawn from plain data."""

from __future__ import annotations

from envs.world.records import Event, Op
from experiments import plots

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(p) -> bool:
    return p.is_file() and p.read_bytes()[:8] == PNG and p.stat().st_size > 2000


def ev(kind, node, t, **fields):
    return Event(kind, node, t, t, 0, (), fields)


def test_timeline_with_partitions_shaded(tmp_path):
    rows = [{"t_start_ms": i * 100.0, "t_end_ms": (i + 1) * 100.0, "availability": 1 - 0.5 * (3 <= i < 6),
             "consistency": None if i == 0 else 1.0} for i in range(10)]
    p = plots.timeline(tmp_path / "t.png", {"a": rows, "b": rows}, [(300.0, 600.0)])
    assert is_png(p)


def test_latency_histogram_also_without_ok_operations(tmp_path):
    h = [Op(i, 0, "read", invoke=i, complete=i + 1 + i % 7, status="ok") for i in range(50)]
    assert is_png(plots.latency(tmp_path / "l.png", {"x": h}))
    assert is_png(plots.latency(tmp_path / "l0.png", {"x": [Op(0, 0, "read", status="unknown")]}))


def test_spacetime_diagram_draws_sends_receives_drops_and_crashes(tmp_path):
    events = [ev("send", 0, 1.0, dst=1, mid=0, msg="ping"), ev("recv", 1, 3.0, src=0, mid=0, msg="ping"),
              ev("send", 1, 4.0, dst=2, mid=1, msg="pong"), ev("drop", None, 6.0, src=1, dst=2, mid=1, why="loss"),
              ev("crash", 2, 7.0)]
    assert plots.count_messages(events) == 2
    assert is_png(plots.spacetime(tmp_path / "s.png", events, 3, "echo"))


def test_rewards_and_compare(tmp_path):
    assert is_png(plots.rewards(tmp_path / "r.png", {"agent_0": [0, 1, 3, 2], "agent_1": [1, 1, 2, 4]}))
    rows = [{"protocol": "abd", "availability": 0.9, "linearizable": True, "stale_read_rate": 0.0,
             "messages_per_op": 18.0},
            {"protocol": "eventual", "availability": 1.0, "linearizable": False, "stale_read_rate": 0.4,
             "messages_per_op": 2.0},
            {"protocol": "x", "availability": None, "linearizable": None, "stale_read_rate": None,
             "messages_per_op": None}]
    assert is_png(plots.compare(tmp_path / "c.png", rows))


def test_rewards_of_many_agents_draw_their_mean_and_range(tmp_path, monkeypatch):
    """100 agents' curves (register_100.yaml) drew 100 lines under a legend that covered the plot
    and a constrained-layout warning; above REWARD_LINES_MAX agents: the mean and the range."""
    import warnings

    seen = {}
    real = plots.save_figure

    def keep(fig, path):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_legend().get_texts()]
        seen["lines"] = len(ax.get_lines())
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    curves = {f"node_{k}": [k + i for i in range(6)] + ([None] if k % 2 else []) for k in range(100)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert is_png(plots.rewards(tmp_path / "r.png", curves, xlabel="iteration"))
    assert seen == {"labels": ["lowest to highest of 100 agents", "mean over 100 agents"], "lines": 1}
    plots.rewards(tmp_path / "r2.png", {"a": [1, 2], "b": [2, 3]})  # a few agents: a line each
    assert seen["labels"] == ["a", "b"] and seen["lines"] == 2
