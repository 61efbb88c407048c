"""``report.html`` without a browser: the space-time diagram's window and vector clocks, the kind of
each results folder, the page of each kind, light and no pages, and ``capgym report``'s errors.
(``tests/test_report_browser.py`` opens the pages in Chromium.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from envs.world.records import Event
from experiments import html_report as H
from experiments.cli import UserError, main


def ev(kind, node, t, lamport=0, **fields):
    return Event(kind, node, t, None if node is None else t + 0.5, lamport, (), fields)


# two nodes: a message delivered, one dropped, one still in flight at the end; a partition
TRACE = [
    ev("start", 0, 0.0, 1), ev("start", 1, 0.0, 1),
    ev("send", 0, 1.0, 2, dst=1, mid=1, msg="ping"),
    ev("recv", 1, 2.0, 3, src=0, mid=1, msg="ping"),
    ev("partition", None, 2.5, cuts=[[0, 1]], shape="isolate"),
    ev("send", 1, 3.0, 4, dst=0, mid=2, msg="pong"),
    ev("drop", None, 3.5, src=1, dst=0, mid=2, why="partition"),
    ev("heal", None, 4.0),
    ev("timer", 0, 4.5, 3, name="tick"),
    ev("send", 0, 5.0, 4, dst=1, mid=3, msg="ping"),
    ev("send", 1, 6.0, 5, dst=0, mid=4, msg="pong"),
]


def test_window_holds_every_event_with_rebuilt_vector_clocks():
    w = H.window_events(TRACE, 2)
    assert w["complete"] and [r["kind"] for r in w["events"]] == [e.kind for e in TRACE]
    vcs = {(r["kind"], r["t"]): r["vc"] for r in w["events"]}
    assert vcs[("send", 1.0)] == "[2, 0]"
    assert vcs[("recv", 2.0)] == "[2, 2]"  # merged the send's clock, then ticked
    assert vcs[("send", 3.0)] == "[2, 3]" and vcs[("timer", 4.5)] == "[3, 0]"
    assert vcs[("partition", 2.5)] == "-"
    status = {m["mid"]: m["status"] for m in w["messages"]}
    assert status == {1: "delivered", 2: "dropped (partition)", 3: "in flight", 4: "in flight"}
    drop = next(r for r in w["events"] if r["kind"] == "drop")
    assert drop["y"] == 0 and drop["node"] == "world"  # drawn on the receiver's line
    assert next(r for r in w["events"] if r["kind"] == "heal")["y"] == -1  # the world's line


def test_window_stops_before_the_send_after_the_first_n():
    w = H.window_events(TRACE, 2, messages=2)
    assert not w["complete"]
    assert len(w["messages"]) == 2 and [r["kind"] for r in w["events"]] == [e.kind for e in TRACE[:9]]
    later = H.window_events(TRACE, 2, messages=1, start_ms=2.5)
    assert [m["mid"] for m in later["messages"]] == [2]
    assert later["events"][0]["kind"] == "partition"
    # clocks before the window still count: the send at 3.0 saw the receive at 2.0
    assert later["events"][1]["vc"] == "[2, 3]"


def test_spacetime_figure_names_its_sources_and_says_what_it_shows():
    fig, text = H.spacetime_figure(TRACE, 2, "p", messages=3)
    names = {m.name: m for m in fig.references() if getattr(m, "name", None)}
    assert len(names["events:p"].data["t"]) == 10 and len(names["messages:p"].data["x0"]) == 3
    assert "the first 3 of its 4 messages and 10 of its 11 events" in text
    fig, text = H.spacetime_figure(TRACE, 2, "p")
    assert text.startswith("the whole trace: 11 events, 4 messages (1 delivered, 1 dropped)")


def _write(folder: Path, name: str, obj) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    if name.endswith(".json"):
        p.write_text(json.dumps(obj))
    elif name.endswith(".yaml"):
        p.write_text(yaml.safe_dump(obj))
    else:
        p.write_text(obj)


def test_kinds_of_folders_and_their_pages(tmp_path, capsys):
    train = tmp_path / "train"
    _write(train, "config.yaml", {"env": {"id": "capgym/Register-v0"}, "ppo": {"lr": 0.001}})
    _write(train, "summary.json", {"experiment": "t", "env": "capgym/Register-v0", "env_steps": 256,
                                   "last": {"return_mean": 3.5}})
    _write(train, "metrics.csv", "iteration,env_steps,return_mean,return/node_0,policy_loss,global/availability\n"
                                 "0,128,,,0.1,\n1,256,3.5,3.5,0.05,0.9\n")
    evaluate = tmp_path / "evaluate"
    _write(evaluate, "config.yaml", {"checkpoint": "x/checkpoint", "env": {"id": "capgym/Register-v0"}, "seeds": [5]})
    _write(evaluate, "summary.json", {"env": "capgym/Register-v0", "seeds": [5], "table": [
        {"protocol": "trained", "return_mean": 2.0, "welfare": 1.0, "availability": 0.9, "stale_read_rate": 0.1},
        {"protocol": "random", "return_mean": 1.0, "welfare": 0.5, "availability": 0.8, "stale_read_rate": 0.2}]})
    sweep = tmp_path / "sweep"
    agg = [{"nemesis.random.duration_ms": d, "protocol": p, "n": 2, "seeds": "0 1",
            "availability_mean": a, "availability_std": 0.1, "availability_ci_low": a - 0.05,
            "availability_ci_high": a + 0.05} for d in (100, 300) for p, a in (("abd", 0.9), ("eventual", 1.0))]
    _write(sweep, "aggregate.json", {"sweep": {"name": "cap-sweep", "kind": "run", "measure": "availability",
                                               "grid": {"nemesis.random.duration_ms": [100, 300]}, "seeds": [0, 1]},
                                     "aggregate": agg})
    _write(sweep, "sweep.csv", "run,nemesis.random.duration_ms,seed,protocol,status,availability,run_dir\n"
                               f"0,100,0,abd,complete,0.9,{sweep}/runs/a\n")
    align = tmp_path / "align"
    _write(align, "aggregate.json", {"sweep": {"name": "al", "kind": "align", "grid": {}}, "aggregate": []})
    _write(align, "summary.json", {"experiment": "al", "env": "capgym/Register-v0", "report": [
        {"protocol": "ppo_local", "return_mean": 4.0, "welfare": -1.0, "n": 2,
         "ci": {"welfare": [-2.0, 0.0]}}]})
    repro = tmp_path / "repro"
    _write(repro, "config.yaml", {"reproduction": "cap", "quick": True})
    _write(repro, "results.json", {"reproduction": "cap", "quick": True, "table": [{"x": 1, "y": 2}],
                                   "claims": [{"claim": "AP beats CP on availability", "holds": True}],
                                   "findings": {}})
    _write(repro, "summary.txt", "CAP, quick\n")
    expect = {train: ("train", "Learning curves"), evaluate: ("evaluate", "Policies on the same held-out seeds"),
              sweep: ("sweep", "Aggregate (mean [95% bootstrap CI] over seeds)"),
              align: ("align", "Policies (trained"), repro: ("reproduce", "AP beats CP")}
    for folder, (kind, words) in expect.items():
        assert H.detect_kind(folder) == kind
        assert main(["report", str(folder)]) == 0
        assert f"({kind}, " in capsys.readouterr().out
        page = (folder / "report.html").read_text()
        assert words in page and "cdn.bokeh.org" not in page
    assert "runs/a/report.html" in (sweep / "report.html").read_text()  # a link to each trial's page
    text = (train / "report.html").read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # Bokeh inline: the page loads nothing
    assert "Bokeh" in text
    assert main(["report", str(train), "--no-html"]) == 2
    assert "only its report.html" in capsys.readouterr().err
    with pytest.raises(UserError, match="not a results folder"):
        H.detect_kind(tmp_path)


TINY = {"experiment": "rep", "seed": 7, "protocol": {"name": "echo"},
        "world": {"nodes": 3, "duration_ms": 400},
        "nemesis": {"random": {"kinds": ["partition", "crash"], "interval_ms": 150, "duration_ms": 80}},
        "workload": {"clients": 3, "think_ms": 10}, "wandb": {"mode": "disabled"}}


@pytest.mark.parametrize("report", ["light", "none"])
def test_light_and_no_pages(tmp_path, report):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(cfg), f"output.root={tmp_path}", f"output.report={report}", "-q"]) == 0
    (run,) = (tmp_path / "rep").iterdir()
    page = run / "report.html"
    if report == "none":
        assert not page.exists()
        return
    text = page.read_text()
    assert '<img class="fig" src="plots/timeline.png"' in text and "Bokeh" not in text
    assert page.stat().st_size < 50_000
    assert main(["report", str(run), "--messages", "0"]) == 2
    before = page.read_bytes()
    assert main(["report", str(run), "--start-ms", "-5"]) == 2
    assert main(["report", str(run), "--start-ms", "99999"]) == 2  # past the run's end: not an empty diagram
    assert page.read_bytes() == before  # nothing rewritten
    assert main(["report", str(run), "--no-plots", "--messages", "5"]) == 0  # the full page, a 5-message window
    assert "the first 5 of its" in page.read_text()


def test_an_evaluation_page_shows_the_games_own_measures(tmp_path):
    """Not Register-v0's availability and stale reads (all "-") on another game: its own measures."""
    ev = tmp_path / "ev"
    runs = {"trained": {"return_mean": 9.6, "welfare": 0.4, "efficiency": 0.125, "sustainability": 6.75,
                        "collapsed": 1.0, "equality": 0.9, "peace": 5.0}}
    _write(ev, "summary.json", {"env": "capgym/Commons-v0", "checkpoint": "x", "seeds": [1], "runs": runs,
                                "table": [{"protocol": "trained", "return_mean": 9.6, "welfare": 0.4}]})
    _write(ev, "status.json", {"status": "complete"})
    page = H.write(ev, "evaluate", light=True).read_text()
    assert "sustainability" in page and "6.750" in page and "stale-read" not in page


def test_counterexample_labels_only_what_matters_and_alternate_rows():
    """The counterexample view labels the failing operation, the zone conflict and the end of the
    prefix (the rest say it on hover), and one client's labels alternate above and below its bars,
    so that neighbouring short operations' labels do not print over each other."""
    from envs.world.records import OK, Op
    from experiments import html_report

    hist, t = [], 0.0
    for i in range(40):  # client 0 writes 40 distinct values back to back, 1 ms apart
        hist.append(Op(i, 0, "write", i + 1, invoke=t, complete=t + 0.8, status=OK))
        t += 1.0
    hist.append(Op(40, 1, "read", invoke=t + 1, complete=t + 2, status=OK, output=3))  # stale: 40 was written
    text, fig = html_report.linearizability_view(hist, None, "t")
    assert "Not linearizable" in text and fig is not None
    (src,) = [m for m in fig.references() if getattr(m, "name", None) == "ops:t"]
    d = src.data
    labelled = [k for k, lab in enumerate(d["label"]) if lab]
    assert 0 < len(labelled) < len(d["label"])  # not every bar
    assert d["label"][d["id"].index(40)].startswith("#40 read")  # the failing read is labelled
    assert html_report.label_text(Op(9, 0, "read", invoke=0, complete=1, status=OK)) == "#9 read →null"
    for client in set(d["client"]):
        dys = [d["label_dy"][k] for k in labelled if d["client"][k] == client]
        assert all(a != b for a, b in zip(dys, dys[1:])), (client, dys)
