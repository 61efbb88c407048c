"""``capgym reproduce NAME --quick``: each reproduction runs real simulations, writes its folder
(table.csv, results.json, summary.txt, the PNG) and shows the qualitative shape of its paper's
claim; bad names and parameters are one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.reproduce_cmd import reproduce
from experiments.reproductions import available, cdf, percentile


def folder_ok(out: Path, name: str) -> dict:
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    assert (out / f"{name}.png").stat().st_size > 5000
    with open(out / "table.csv") as f:
        assert len(list(csv.DictReader(f))) >= 2
    assert (out / "summary.txt").read_text().strip()
    return json.loads((out / "results.json").read_text())["findings"]


def test_all_four_are_registered():
    assert available() == ["raft-election", "cap", "pbs", "flp"]
    assert cdf([3, 1, 2]) == ([1, 2, 3], [1 / 3, 2 / 3, 1.0])
    assert percentile([1, 2, 3, math.inf], 50) == 2 and percentile([1, 2, 3, math.inf], 90) == math.inf


def test_raft_election_randomization_avoids_split_votes(tmp_path):
    """Ongaro & Ousterhout Fig. 16: with equal timeouts elections split; 150-300 ms elects fast."""
    out, rc, _ = reproduce("raft-election", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "raft-election")
    assert f["ranges"] == ["150-150ms", "150-175ms", "150-300ms"]
    split, p90, elected = f["mean_split_votes"], f["p90_ms"], f["elected_fraction"]
    assert split[0] > split[1] > split[2] and split[0] >= 1  # wider range: fewer split votes
    assert p90[2] < p90[1] <= p90[0] and p90[2] < 400  # and a shorter tail
    assert elected[2] == 1.0 and elected[0] < 1.0


def test_cap_curves(tmp_path):
    """ABD's availability falls as partitions lengthen while it stays linearizable; eventual stays
    available and is not linearizable."""
    out, rc, _ = reproduce("cap", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "cap")
    abd, ev = f["abd"], f["eventual"]
    assert abd["availability"][0] == pytest.approx(1.0) and abd["availability"][-1] < 0.9
    assert abd["availability"] == sorted(abd["availability"], reverse=True)
    assert all(a > 0.99 for a in ev["availability"])
    assert all(v == 1.0 for v in abd["linearizable_fraction"])
    assert ev["linearizable_fraction"][-1] == 0.0


def test_pbs_t_visibility(tmp_path):
    """Bailis et al.: visibility rises with t towards 1, and slower latencies lower the early curve."""
    out, rc, _ = reproduce("pbs", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "pbs")
    fast, slow = f["exponential 1ms"], f["exponential 10ms"]
    for c in (fast, slow):
        known = [q for q in c["curve"] if q is not None]
        assert known[-1] > 0.99 and known[0] < known[-1]
    assert fast["p_first_bin"] > slow["p_first_bin"] and fast["t_99_ms"] < slow["t_99_ms"]
    assert f["pareto 10ms a=1.5"]["t_99_ms"] >= fast["t_99_ms"]


def test_flp_duel_and_benor(tmp_path):
    """Paxos: backoff decides, no backoff livelocks; FLP's scheduler keeps the deterministic protocol
    undecided for every round asked, a fair schedule decides; Ben-Or decides for every n."""
    out, rc, _ = reproduce("flp", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "flp")
    assert f["paxos_no_backoff"]["decided_fraction"] == 0 and f["paxos_no_backoff"]["mean_ballots"] > 100
    assert f["paxos_backoff"]["decided_fraction"] == 1 and f["paxos_backoff"]["mean_ballots"] < 10
    (case,) = f["flp"]
    assert case["undecided_under_adversary"] and case["adversary_rounds_undecided"] >= 10
    assert case["decide_round_after_heal"] > 10 and case["fair_decided_fraction"] == 1.0
    assert case["fair_max_rounds"] < 10
    assert [b["n"] for b in f["benor"]] == [3, 5] and all(b["decided_fraction"] == 1.0 for b in f["benor"])


@pytest.mark.parametrize("args,words", [
    (["nosuch"], ["nosuch", "raft-election"]),
    (["raft-election", "trials=0"], ["trials", "greater than or equal to 1"]),
    (["cap", "colour=red"], ["colour"]),
    (["pbs", "latencies={x: {dist: gaussian}}"], ["latencies.x.dist"]),
    (["flp", "trials"], ["trials", "key.sub=value"]),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, words):
    assert main(["reproduce", *args, "--root", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("capgym reproduce: error:"), err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "r").exists()


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("raft-election", "cap", "pbs", "flp"))
