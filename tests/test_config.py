"""Run configs: composition, overrides, and validation that stops bad configs before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.cli import UserError, main
from experiments.config import apply_override, load_config, merge, parse_override

ROOT = Path(__file__).resolve().parent.parent

GOOD = {
    "experiment": "t",
    "seed": 0,
    "protocol": {"name": "echo", "params": {"interval_ms": 100}},
    "world": {"nodes": 3, "duration_ms": 500},
    "nemesis": {"random": {"kinds": ["partition"], "interval_ms": 200, "duration_ms": 100}},
    "workload": {"clients": 3},
    "wandb": {"mode": "disabled"},
}


def write(tmp: Path, data, name: str = "c.yaml") -> Path:
    p = tmp / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


# --- overrides ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, parts, value", [
    ("seed=3", ["seed"], 3),
    ("world.nodes=7", ["world", "nodes"], 7),
    ("world.network.loss=0.25", ["world", "network", "loss"], 0.25),
    ("experiment=my-run", ["experiment"], "my-run"),
    ("nemesis.random=null", ["nemesis", "random"], None),
    ("nemesis.random.kinds=[partition, crash]", ["nemesis", "random", "kinds"], ["partition", "crash"]),
    ("protocol.params={fanout: 3}", ["protocol", "params"], {"fanout": 3}),
    ("compare.1.name=raft", ["compare", "1", "name"], "raft"),
    ("output.plots=false", ["output", "plots"], False),
    ("wandb.tags=", ["wandb", "tags"], None),
    ("protocol.name = echo", ["protocol", "name"], "echo"),
])
def test_parse_override(text, parts, value):
    assert parse_override(text) == (parts, value)


@pytest.mark.parametrize("text", ["seed", "=3", "world..nodes=3", ".seed=1", "world.nodes.=2", "a b=1",
                                  "seed=[1, 2"])
def test_bad_override_is_a_user_error(text):
    with pytest.raises(UserError):
        parse_override(text)


def test_apply_override_makes_maps_and_indexes_lists():
    data = {"compare": [{"name": "abd"}, {"name": "raft"}]}
    apply_override(data, ["world", "network", "loss"], 0.1)
    apply_override(data, ["compare", "1", "name"], "eventual")
    assert data == {"compare": [{"name": "abd"}, {"name": "eventual"}], "world": {"network": {"loss": 0.1}}}
    with pytest.raises(UserError, match="compare.5"):
        apply_override(data, ["compare", "5", "name"], "x")
    with pytest.raises(UserError, match="world.network.loss: is a float"):
        apply_override(data, ["world", "network", "loss", "x"], 1)


def test_merge_is_deep_and_does_not_touch_inputs():
    a = {"world": {"nodes": 5, "network": {"loss": 0.1}}, "tags": [1]}
    b = {"world": {"network": {"duplicate": 0.2}}, "tags": [2]}
    m = merge(a, b)
    assert m == {"world": {"nodes": 5, "network": {"loss": 0.1, "duplicate": 0.2}}, "tags": [2]}
    assert a == {"world": {"nodes": 5, "network": {"loss": 0.1}}, "tags": [1]}


def test_overrides_apply_after_the_file_and_defaults(tmp_path):
    p = write(tmp_path, {**GOOD, "defaults": ["world/small"]})
    cfg = load_config(p)
    assert cfg.world.nodes == 3 and cfg.world.duration_ms == 500  # the file beats its defaults
    assert cfg.world.network.latency.min == 1  # ... which still fill in what the file leaves out
    cfg = load_config(p, ["world.nodes=7", "seed=3", "protocol.params.interval_ms=20"])
    assert (cfg.world.nodes, cfg.seed, cfg.protocol.params["interval_ms"]) == (7, 3, 20)


def test_defaults_compose_in_order_and_local_folder_first(tmp_path):
    (tmp_path / "defaults").mkdir()
    write(tmp_path / "defaults", {"seed": 5, "world": {"nodes": 4}}, "mine.yaml")
    write(tmp_path / "defaults", {"seed": 6}, "later.yaml")
    p = write(tmp_path, {**{k: v for k, v in GOOD.items() if k not in ("seed", "world")},
                         "defaults": ["world/small", "mine", "later"]})
    cfg = load_config(p)
    assert cfg.seed == 6 and cfg.world.nodes == 4 and cfg.world.duration_ms == 10000


def test_resolved_config_has_every_default_and_revalidates(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    r = cfg.resolved()
    assert r["protocol"]["params"] == {"interval_ms": 100.0}
    assert r["world"]["network"]["loss"] == 0.0 and r["output"]["root"] == "results"
    again = load_config(write(tmp_path, r, "resolved.yaml"))
    assert again.resolved() == r


def test_project_configs_validate():
    for name in ("quickstart", "echo", "gossip"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert cfg.experiment == name
    qs = load_config(ROOT / "configs" / "quickstart.yaml")
    assert [e.name for e in qs.entries()] == ["abd", "eventual", "raft"]
    assert qs.world.nodes == 5 and qs.workload.clients == 5
    assert set(qs.nemesis.random.shapes) == {"majority", "halves", "isolate"}


# --- bad configs: one line, exit 2, nothing written -----------------------------------------------
def _bad(key_path: str, value):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    node = data
    parts = key_path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return data


BAD = [
    # (what, config data or raw text, extra command-line arguments, words the error must contain)
    ("unknown top-level key", {**GOOD, "colour": 1}, [], "colour: unknown key"),
    ("unknown key in world", _bad("world.nodez", 3), [], "world.nodez: unknown key"),
    ("unknown key deep", _bad("world.network.latency.meen", 3), [], "world.network.latency.meen: unknown key"),
    ("unknown key in wandb", _bad("wandb.modee", "offline"), [], "wandb.modee: unknown key"),
    ("wrong type", _bad("world.nodes", "five"), [], "world.nodes"),
    ("wrong type seed", {**GOOD, "seed": [1]}, [], "seed"),
    ("negative latency", _bad("world.network.latency", {"dist": "constant", "ms": -1}), [],
     "world.network.latency.ms"),
    ("loss above 1", _bad("world.network.loss", 1.5), [], "world.network.loss"),
    ("partition naming an unknown node", _bad("nemesis.schedule", [{"at_ms": 10, "fault": "partition",
                                                                    "groups": [[0, 1], [2, 9]]}]), [],
     "nemesis.schedule.0.groups: node 9"),
    ("unknown protocol", _bad("protocol.name", "zab"), [], "protocol.name: unknown protocol 'zab'"),
    ("bad protocol param", _bad("protocol.params", {"interval_ms": -5}), [], "protocol.params.interval_ms"),
    ("unknown protocol param", _bad("protocol.params", {"fanout": 2}), [], "protocol.params.fanout: unknown key"),
    ("unknown nemesis kind", _bad("nemesis.random.kinds", ["meteor"]), [], "nemesis.random.kinds.0"),
    ("duration zero", _bad("world.duration_ms", 0), [], "world.duration_ms"),
    ("duration negative by override", GOOD, ["world.duration_ms=-10"], "world.duration_ms"),
    ("bad override syntax", GOOD, ["world.nodes"], "key.sub=value"),
    ("override of an unknown key", GOOD, ["world.nodes_count=3"], "world.nodes_count: unknown key"),
    ("missing file", None, [], "no such file"),
    ("YAML syntax error", "experiment: t\nworld: {nodes: 3\n", [], "YAML syntax error"),
    ("not a mapping", "- 1\n- 2\n", [], "must be a mapping"),
    ("unknown defaults file", {**GOOD, "defaults": ["world/huge"]}, [], "defaults: no defaults file 'world/huge'"),
    ("no protocol", {k: v for k, v in GOOD.items() if k != "protocol"}, [], "protocol: missing"),
    ("bad runtime", {**GOOD, "runtime": "cloud"}, [], "runtime"),
    ("bad wandb mode", _bad("wandb.mode", "sometimes"), [], "wandb.mode"),
    ("unknown protocol in compare", {**{k: v for k, v in GOOD.items() if k != "protocol"},
                                     "compare": [{"name": "echo"}, {"name": "nope"}]}, [], "compare.1.name"),
    ("duplicate compare labels", {**{k: v for k, v in GOOD.items() if k != "protocol"},
                                  "compare": [{"name": "echo"}, {"name": "echo"}]}, [], "compare.1.label"),
    ("bad experiment name", {**GOOD, "experiment": "../evil"}, [], "experiment"),
    ("unknown workload op", _bad("workload.ops", {"read": 1, "delete": 1}), [], "workload.ops"),
    ("byzantine option unknown to the strategy",
     _bad("nemesis.schedule", [{"at_ms": 10, "fault": "byzantine", "node": 0, "strategy": "delay",
                                "options": {"bogus": 1}}]), [], "nemesis.schedule.0.options.bogus: unknown option"),
    ("byzantine option out of range",
     _bad("nemesis.schedule", [{"at_ms": 10, "fault": "byzantine", "node": 0, "strategy": "delay",
                                "options": {"delay_ms": -50}}]), [], "nemesis.schedule.0.options.delay_ms"),
    ("more byzantine nodes than nodes", _bad("nemesis.random", {"kinds": ["byzantine"], "max_byzantine": 9}), [],
     "nemesis.random.max_byzantine: 9 Byzantine nodes of 3 nodes"),
    ("replies from a protocol whose replicas do not all answer", GOOD, ["workload.replies=2"],
     "workload.replies: 2 matching replies never come from echo"),
    ("replies from one node, in a compare", {**{k: v for k, v in GOOD.items() if k != "protocol"},
                                            "compare": [{"name": "pbft"}, {"name": "raft"}],
                                            "world": {"nodes": 4, "duration_ms": 500}}, ["workload.replies=2"],
     "workload.replies: 2 matching replies never come from raft"),
    ("nemesis duration over interval", _bad("nemesis.random", {"interval_ms": 100, "duration_ms": 200}), [],
     "duration_ms must be <= interval_ms"),
]


@pytest.mark.parametrize("what, data, extra, words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_one_line_exit_2_nothing_written(what, data, extra, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "missing.yaml" if data is None else write(tmp_path, data)
    rc = main(["run", str(path), *extra])
    out, err = capsys.readouterr()
    assert rc == 2, (what, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("capgym run: error: "), lines[0]
    assert words in lines[0], (words, lines[0])
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "results").exists()


def test_bad_config_through_the_real_command(tmp_path):
    p = write(tmp_path, _bad("world.network.loss", 2))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(p)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("capgym run: error: world.network.loss: ")
    assert not (tmp_path / "results").exists()


def test_live_runtime_without_the_live_module_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from experiments.config import live_runner

    if live_runner() is not None:
        pytest.skip("experiments.live.run_live exists: the live runtime is available")
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(write(tmp_path, {**GOOD, "runtime": "live"}))])
    assert rc == 2
    assert "runtime: the live runtime is not available" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
