"""Durable writes go through fsync (issue 16): ``ctx.durable`` reaches the disk at ``ctx.fsync()``,
and a crash with ``lose_unsynced`` (lazyfs's fault in Jepsen) takes the disk back to the last fsync.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from envs.world.build import build_sim
from envs.world.config import ScenarioConfig
from envs.world.node import Node
from envs.world.sim import Sim


# --- the world: fsync, lose_unsynced, config ------------------------------------------------------
class Writer(Node):
    """Writes ``n`` = 1, 2, 3, ... to disk every 10 ms, in place into a list too; syncs every third."""

    def on_start(self, ctx):
        self.d = ctx.durable
        self.d.setdefault("log", [])
        ctx.set_timer("w", 10)

    def on_timer(self, ctx, name):
        n = self.d.get("n", 0) + 1
        self.d["n"] = n
        self.d["log"].append(n)
        if n % 3 == 0:
            ctx.fsync()
        ctx.set_timer("w", 10)


def writer_sim(**kw):
    sim = Sim(1, Writer, seed=0)
    sim.track_fsync = True
    for k, v in kw.items():
        setattr(sim, k, v)
    return sim


def test_lose_unsynced_crash_goes_back_to_the_last_fsync():
    sim = writer_sim()
    sim.run(until=55)  # writes 1..5 at 10..50 ms; synced at 3
    assert sim.states[0].durable == {"n": 5, "log": [1, 2, 3, 4, 5]}
    sim.crash(0, lose_unsynced=True)
    assert sim.states[0].durable == {"n": 3, "log": [1, 2, 3]}  # the in-place appends after 3 are gone
    sim.restart(0)
    sim.run(until=100)  # writes 4, 5, ... again from the synced image
    assert sim.states[0].durable["log"][:6] == [1, 2, 3, 4, 5, 6]
    crash = [e for e in sim.trace.events() if e.kind == "crash"]
    assert [e.fields for e in crash] == [{"lose_unsynced": True}]


def test_plain_crash_keeps_everything_and_fsync_is_free_when_not_tracked():
    sim = writer_sim()
    sim.run(until=55)
    sim.crash(0)
    assert sim.states[0].durable == {"n": 5, "log": [1, 2, 3, 4, 5]}
    sim = Sim(1, Writer, seed=0)  # not tracked: fsync keeps no image, and losing one is refused
    sim.run(until=55)
    assert sim.states[0].synced == {}
    with pytest.raises(ValueError, match="track_fsync"):
        sim.crash(0, lose_unsynced=True)


def test_config_lose_unsynced_is_a_crash_field_and_a_random_option():
    base = dict(world=dict(nodes=3, duration_ms=100), workload=dict(clients=0))
    scn = ScenarioConfig.model_validate(
        {**base, "nemesis": {"schedule": [{"at_ms": 10, "fault": "crash", "node": 1, "lose_unsynced": True}]}})
    assert build_sim(scn, Writer).track_fsync
    scn = ScenarioConfig.model_validate({**base, "nemesis": {"random": {"kinds": ["crash"], "lose_unsynced": True}}})
    assert build_sim(scn, Writer).track_fsync
    assert not build_sim(ScenarioConfig.model_validate(base), Writer).track_fsync
    with pytest.raises(ValidationError, match="only a crash loses unsynced writes"):
        ScenarioConfig.model_validate(
            {**base, "nemesis": {"schedule": [{"at_ms": 10, "fault": "restart", "lose_unsynced": True}]}})


def test_capgym_list_nemesis_shows_lose_unsynced(capsys):
    from experiments.cli import main
    assert main(["list", "nemesis"]) == 0
    assert "lose_unsynced" in capsys.readouterr().out
