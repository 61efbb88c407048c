"""``capgym reproduce NAME --quick``: each reproduction runs real simulations, writes its folder
(table.csv, results.json, summary.txt, the PNG) and shows the qualitative shape of its paper's
claim; every reproduction lists its claims (paper beside ours) and ``--check`` exits 1 when one
fails; bad names and parameters are one line, exit 2, nothing written; a bug is exit 4."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.reproduce_cmd import reproduce
from experiments.reproductions import available, cdf, percentile
from experiments.reproductions.claims import (
    binomial_interval,
    bootstrap_difference,
    bootstrap_interval,
    claim,
    failing,
    interval,
    relative,
)

FIELDS = {"claim", "paper", "source", "ours", "tolerance", "basis", "holds", "evidence"}


def folder_ok(out: Path, name: str) -> dict:
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    assert (out / f"{name}.png").stat().st_size > 5000
    with open(out / "table.csv") as f:
        assert len(list(csv.DictReader(f))) >= 2
    summary = (out / "summary.txt").read_text()
    res = json.loads((out / "results.json").read_text())
    claims = res["claims"]
    assert claims and all(FIELDS <= set(c) for c in claims)
    assert all(isinstance(c["holds"], bool) and c["source"] and c["basis"] for c in claims)
    for c in claims:  # the paper-vs-ours table is in the summary
        assert c["claim"] in summary
    assert not failing(claims), failing(claims)  # the quick variants hold at their stated tolerances
    return res["findings"]


def test_all_four_are_registered():
    assert available() == ["raft-election", "raft-split-vote", "cap", "pbs", "flp", "commons"]
    assert cdf([3, 1, 2]) == ([1, 2, 3], [1 / 3, 2 / 3, 1.0])
    assert percentile([1, 2, 3, math.inf], 50) == 2 and percentile([1, 2, 3, math.inf], 90) == math.inf


def test_raft_split_vote_closed_form_and_sim(tmp_path):
    """Ongaro 2014 thesis Sec. 9.2: the closed form gives the thesis's numbers, and real Raft
    elections in the sim under the fixed-latency model split as often (quick: 500 per point)."""
    from experiments.reproductions.raft_split_vote import closed_form, model_monte_carlo, sim_trial

    assert round(closed_form(5, 4, 0.2), 3) == 0.181 and round(closed_form(9, 5, 0.2), 3) == 0.672
    assert round(closed_form(5, 4, 0.01), 4) == 0.0006 and round(closed_form(9, 7, 0.2), 3) == 0.148
    assert abs(model_monte_carlo(5, 4, 0.2, 100_000, 1) / 100_000 - 0.1808) < 0.005
    # a trial is deterministic, and latency beyond the range splits every term (c = 3 of 4 within l)
    assert [sim_trial(5, 4, 20.0, 100, 200, k) for k in range(30)] == [sim_trial(5, 4, 20.0, 100, 200, k)
                                                                        for k in range(30)]
    assert all(sim_trial(5, 4, 30.0, 100, 110, k) == "split" for k in range(10))
    out, rc, _ = reproduce("raft-split-vote", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "raft-split-vote")
    assert f["failures_not_split"] == 0  # with fixed latency every failed term is a split vote
    rates = dict(zip(f["points"], f["sim_rate"]))
    assert rates["n=5 s=4 l=0.01"] < rates["n=5 s=4 l=0.1"] < rates["n=5 s=4 l=0.2"] < rates["n=9 s=5 l=0.2"]


def test_raft_election_randomization_avoids_split_votes(tmp_path):
    """Ongaro & Ousterhout Fig. 16: with equal timeouts elections split; 150-300 ms elects fast."""
    out, rc, _ = reproduce("raft-election", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "raft-election")
    assert f["ranges"] == ["150-150ms", "150-155ms", "150-300ms", "12-24ms"]
    split, p90, elected = f["mean_split_votes"], f["p90_ms"], f["elected_fraction"]
    assert split[0] > split[1] > split[2] and split[0] >= 1  # wider range: fewer split votes
    assert p90[2] < p90[1] <= p90[0] and p90[2] < 400  # and a shorter tail
    assert elected[2] == 1.0 and elected[0] < 1.0


def test_raft_fsync_time_delays_votes_and_timer_granularity_rounds():
    """Raft's fsync_ms delays a vote reply by the disk write (the thesis's W); with no disk time the
    same crash elects sooner; the timer tick makes the election timer fire on its multiples."""
    from agents.protocols import raft
    from experiments.reproductions.raft_election import Params, trial

    base = dict(latency_ms=(0.1, 0.2), cap_ms=2000)
    fast = [trial(Params(**base), 150, 300, k)["time_ms"] for k in range(6)]
    slow = [trial(Params(**base, fsync_ms=(20, 20)), 150, 300, k)["time_ms"] for k in range(6)]
    assert all(s >= f + 2 * 20 - 1 for f, s in zip(fast, slow)), (fast, slow)  # candidate's + voter's write
    assert trial(Params(**base), 150, 155, 3) == trial(Params(**base), 150, 155, 3)  # same seed, same result

    class Ctx:
        def now(self):
            return 7.3

        def set_timer(self, name, after):
            self.after = after

    node, ctx = raft.Raft(raft.Params(timer_granularity_ms=4.0)), Ctx()
    node.set_election_timer(ctx, 150.0)
    assert abs(ctx.after + 7.3 - 160.0) < 1e-9  # 157.3 rounded up to the next multiple of 4


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


def test_pbs_on_the_dynamo_store(tmp_path):
    """Bailis et al.: the stale-read rate of non-expanding N=3, R=W=1 is 2/3 and k-staleness follows
    1 - p_s^k (measured inside exact intervals); N=100, R=W=30 is 1.88e-6 by formula; the store's
    t-visibility follows the WARS model and rises with t, slower when writes are slower."""
    out, rc, _ = reproduce("pbs", quick=True, root=str(tmp_path), quiet=True, check=True)
    assert rc == 0
    f = folder_ok(out, "pbs")
    lo, hi = f["ps_n3"]["ci"]
    assert lo <= 2 / 3 <= hi and f["ps_n3"]["reads"] == 2000 and f["ps_n3"]["stale"] > 1000
    ks = f["k_staleness"]
    assert [ks[k]["p"] for k in ("2", "3", "5", "10")] == sorted(ks[k]["p"] for k in ("2", "3", "5", "10"))
    assert f["ps_big"]["formula"] == pytest.approx(1.88e-6, rel=0.005) and f["ps_big"]["stale"] == 0
    tv = f["t_visibility"]
    fast, slow = tv["W=1ms ARS=1ms"], tv["W=10ms ARS=1ms"]
    for c in (fast, slow):
        assert c["wars"] == sorted(c["wars"]) and c["measured"][-1] > 0.9
    assert all(a > b for a, b in zip(fast["wars"][:5], slow["wars"][:5]))
    assert sum(fast["measured"][:4]) > sum(slow["measured"][:4])


def test_pbs_model_and_formula():
    """The closed form and the WARS model on their own: p_s for a strict quorum is 0; WARS is
    consistent at every t when R + W > N, and tends to 1 - p_s as W's latency grows."""
    from experiments.reproductions.pbs import p_stale, wars

    assert p_stale(3, 1, 1) == pytest.approx(2 / 3) and p_stale(3, 2, 2) == 0.0
    assert p_stale(100, 30, 30) == pytest.approx(1.884e-6, rel=1e-3)
    assert wars(3, 2, 2, 5.0, 1.0, [0, 1], 20_000, 0) == [1.0, 1.0]
    slow_write = wars(3, 1, 1, 1e6, 1.0, [0], 50_000, 0)[0]  # the write reached only its acker
    assert slow_write == pytest.approx(1 / 3, abs=0.01)


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
    (["pbs", "cases={x: {w_mean_ms: -1}}"], ["cases.x.w_mean_ms"]),
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


def test_check_exits_1_when_a_claim_fails(tmp_path, capsys):
    """With 'available' meaning >= 50%, ABD counts as available and atomic while partitioned: the
    theorem's claim fails, and --check says which claim, exit 1; without --check the run is 0."""
    args = ["reproduce", "cap", "available_at=0.5", "--quick", "--root", str(tmp_path), "-q"]
    assert main(args + ["--check"]) == 1
    err = capsys.readouterr().err
    assert "claim fails: no register is both available and atomic" in err
    assert main(args) == 0
    (run, _) = sorted((tmp_path / "reproduce-cap").iterdir())
    res = json.loads((run / "results.json").read_text())
    assert failing(res["claims"]) and "[FAILS]" in (run / "summary.txt").read_text()


def test_internal_error_is_exit_4(tmp_path, monkeypatch, capsys):
    from experiments.reproductions import cap

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(cap, "run", boom)
    assert main(["reproduce", "cap", "--quick", "--check", "--root", str(tmp_path)]) == 4
    assert "internal error: RuntimeError: bug" in capsys.readouterr().err


def test_claim_helpers():
    lo, hi = binomial_interval(0, 10, 0.99)  # exact: the upper end solves (1 - p)^10 = 0.005
    assert lo == 0 and hi == pytest.approx(1 - 0.005 ** 0.1)
    lo, hi = binomial_interval(50, 100, 0.95)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError):
        binomial_interval(11, 10)
    assert relative(300, 287, 0.25)[0] and not relative(1662, 287, 0.25)[0] and not relative(math.inf, 1, 0.5)[0]
    xs = [float(i) for i in range(100)]
    a = bootstrap_interval(xs, lambda v: sum(v) / len(v), 0.95, seed=1)
    assert a == bootstrap_interval(xs, lambda v: sum(v) / len(v), 0.95, seed=1)  # seeded
    assert a[0] < 49.5 < a[1]
    d = bootstrap_difference([1.0, 2.0, 3.0] * 10, [5.0, 6.0, 7.0] * 10, 0.95)
    assert 3 < d[0] <= d[1] < 5
    rows = [claim("a", 1, "s", 1, True, "t", "b"), claim("b", 1, "s", 2, False, "t", "b"),
            claim("c", 1, "s", 2, False, "t", "b", deviation="explained by the ablation in docs")]
    assert [c["claim"] for c in failing(rows)] == ["b"]
    assert claim("x", 1, "s", math.inf, False, "t", "b")["ours"] == "inf"  # JSON-friendly
    # a zero-width interval (deterministic runs, two seeds alike) says so rather than look precise
    assert interval(*bootstrap_interval([15.35, 15.35], lambda v: sum(v) / len(v))) .startswith(
        "CI [15.35, 15.35] (zero width")
    assert interval(*a) == f"CI [{a[0]:.2f}, {a[1]:.2f}]"
    assert "zero width at this precision" in interval(0.1 + 0.2, 0.3) and "zero width" in interval(1.0, 1.001)
    assert interval(math.nan, math.nan) == "CI undefined (no values to resample)"


def test_claims_say_what_kind_of_evidence_they_are(tmp_path):
    """A formula checked against the paper's printed number, or a bound from one side, is told
    apart from a two-sided measurement: in the row, the summary's count and the Markdown table."""
    from experiments.reproductions.claims import markdown, table

    rows = [claim("a", 1, "s", 1, True, "t", "b"), claim("b", 1, "s", 1, True, "t", "b", evidence="computed"),
            claim("c", 1, "s", 0, True, "t", "b", evidence="one-sided")]
    assert [c["evidence"] for c in rows] == ["measured", "computed", "one-sided"]
    assert "evidence: 1 measured, 1 one-sided, 1 computed" in table(rows)
    assert "[holds] (computed) b" in table(rows) and "| computed | yes |" in markdown(rows)
    with pytest.raises(ValueError, match="evidence"):
        claim("d", 1, "s", 1, True, "t", "b", evidence="strong")
    out, rc, _ = reproduce("raft-split-vote", quick=True, root=str(tmp_path), quiet=True)
    claims = json.loads((out / "results.json").read_text())["claims"]
    kinds = {c["claim"].split(": ", 1)[1]: c["evidence"] for c in claims}
    assert kinds == {"the closed form gives the thesis's split-vote rate": "computed",
                     "the sim's split-vote rate matches the closed form": "measured",
                     "a numpy Monte Carlo of the model alone matches the closed form": "computed"}


def test_commons_schelling_and_learners(tmp_path):
    """Commons-v0 (dilemma variant): the scripted Schelling diagram is a Prisoner's Dilemma whose
    claims hold; one short local- and global-reward training each, evaluated with the four social
    outcome measures of Perolat et al. (the learned claim needs >= 2 training seeds: absent)."""
    out, rc, _ = reproduce("commons", quick=True, root=str(tmp_path), quiet=True)
    assert rc == 0
    f = folder_ok(out, "commons")
    (d,) = f["scripted"].values()
    assert d["class"] == "Prisoner's Dilemma" and d["greed_everywhere"]
    assert all(dk > ck for ck, dk in zip(d["cooperator"], d["defector"]))
    assert d["cooperator"][-1] > d["defector"][0]
    for mode in ("local", "global"):
        m = f["learned"][mode]["mean"]
        assert 0 <= m["equality"] <= 1 and m["efficiency"] > 0 and m["sustainability"] > 0
        assert f["learned"][mode]["env_steps"] == 2048
    assert (out / "training.png").stat().st_size > 5000
    claims = json.loads((out / "results.json").read_text())["claims"]
    assert not any("Perolat" in c["source"] for c in claims)


def test_commons_claims_fail_where_the_game_is_no_dilemma():
    """The claims can fail: a diagram where restraint pays more than greed (no dilemma), and
    learners whose global-reward sustainability is below the local-reward one's."""
    from experiments.reproductions import commons

    p = commons.Params(growths=[0.5], schelling_seeds=3, train_seeds=3)
    coop, defect = [5.0, 6.0, 7.0, 8.0, 9.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    per_seed = {m: [(coop[m - 1] + s * 0.1 if m else None, defect[m] + s * 0.1 if m < 5 else None, 0.0)
                    for s in range(3)] for m in range(6)}
    diagram = {"cooperator": coop, "defector": defect, "total": [0.0] * 6, "per_seed": per_seed}
    f = {"scripted": {0.5: {"class": None}}}
    evals = {"local": [{"sustainability": x} for x in (10.0, 11.0, 12.0)],
             "global": [{"sustainability": x} for x in (5.0, 6.0, 7.0)]}
    claims = commons.claims_of(p, f, {0.5: diagram}, evals)
    assert len(claims) == 4 and not any(c["holds"] for c in claims[:1] + claims[2:])
    assert claims[1]["holds"]  # R = C(4) = 9 > P = D(0) = 1 still
