"""The alignment report shows each game's own global measures: every name in
``experiments.sweep.GAME_MEASURES`` is a number that the game's observer really produces (so a
renamed measure fails here, not as an empty column), and the report's rows and table carry them."""

import math

import pytest

from envs.registry import ENVIRONMENTS
from experiments.align_cmd import columns, format_report, report_rows
from experiments.evaluate_cmd import aggregate, baselines, evaluate
from experiments.sweep import GAME_MEASURES, align_measures


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_every_games_report_measures_are_produced(env_id):
    assert env_id in GAME_MEASURES, f"{env_id}: no global measures for the alignment report"
    spec = {"id": env_id, "params": {"duration_ms": 1500, "reward_mode": "local"}}
    eps = evaluate({"textbook": baselines(env_id)["textbook"]}, spec, [1])["textbook"]
    agg = aggregate(eps)
    (row,) = report_rows({"textbook": agg}, env_id)
    produced = set(eps[0]["global"]) | {"return_mean", "welfare", "linearizable_fraction", "stale_read_rate"}
    for m in align_measures(env_id):
        assert m in produced, f"{env_id}: the observer has no measure {m!r}"
        v = row.get(m)  # None where the episode had nothing to measure (no partition, no decision)
        assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), (env_id, m, v)
    assert sum(row.get(m) is not None for m in align_measures(env_id)) >= 4
    table = format_report([row], env_id)
    assert all(h in table.splitlines()[0] for _, h in columns(env_id))


def test_register_keeps_its_columns_and_other_games_get_theirs():
    assert [k for k, _ in columns("capgym/Register-v0")][:4] == ["return_mean", "welfare", "availability",
                                                                 "availability_partitioned"]
    assert "sustainability" in dict(columns("capgym/Commons-v0"))
    assert "availability" not in dict(columns("capgym/Commons-v0"))
    trained = {"ppo_local": {"return_mean": 9.6, "welfare": 0.4, "efficiency": 0.12, "equality": 0.9,
                             "sustainability": 7.0, "peace": 5.0, "collapsed": 1.0, "n": 5,
                             "ci": {"welfare": [0.2, 0.6]}}}
    (row,) = report_rows(trained, "capgym/Commons-v0")
    assert row["sustainability"] == 7.0 and row["ci"] == {"welfare": [0.2, 0.6]}
    assert "0.400 [0.200, 0.600]" in format_report([row], "capgym/Commons-v0")


def test_a_zero_width_interval_is_marked_and_explained():
    """Seeds that all gave one value print ``[x, x]``: marked, with a footnote under the table,
    rather than passing for a precise estimate."""
    trained = {"ppo_local": {"return_mean": 43.9, "welfare": 0.4, "n": 5,
                             "ci": {"return_mean": [43.9, 43.9], "welfare": [0.2, 0.6]}}}
    (row,) = report_rows(trained, "capgym/Register-v0")
    table = format_report([row], "capgym/Register-v0")
    assert "43.900 [43.900, 43.900]†" in table and "0.400 [0.200, 0.600] " in table
    assert table.splitlines()[-1].startswith("† zero width at this precision")
    row["ci"]["return_mean"] = [43.0, 44.0]
    assert "†" not in format_report([row], "capgym/Register-v0")
