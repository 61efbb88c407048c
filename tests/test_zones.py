"""The O(n log n) zone test for unique-value registers (Gibbons & Korach 1997), cross-checked
against brute force and the Wing-Gong-Lowe search on many thousands of random histories with
concurrent, tied, failed and unknown operations."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from envs.world.records import FAIL, OK, UNKNOWN, Op
from metrics.history_io import read_history
from metrics.linearizability import check, prepare
from metrics.models import CAS_REGISTER, KV, REGISTER
from metrics.zones import applies, check_zones
from tests.test_linearizability import brute_force

HARD = Path("/work/shared/data/hard-histories/live-abd-unknowns.jsonl")


def unique_history(rng: random.Random, n_ops: int, procs: int, spread: int) -> list[Op]:
    """Reads and writes of distinct values by a few processes, executed at random points inside
    their intervals (integer times: ties happen), some failed or unknown, then maybe corrupted."""
    ops, clock = [], {p: rng.randint(0, 3) for p in range(procs)}
    for i in range(n_ops):
        p = rng.choice(list(clock))
        f = rng.choice(["read", "write"])
        inv = clock[p]
        done = inv + rng.randint(0, spread)
        clock[p] = done + rng.randint(0, 2)  # 0: the next op starts when this one ends (a tie)
        status = rng.choices([OK, FAIL, UNKNOWN], [0.75, 0.1, 0.15])[0]
        at = rng.uniform(inv, done + (3 * spread if status == UNKNOWN else 0))
        ops.append((at, Op(i, p, f, i + 1 if f == "write" else None, None, None, inv,
                           None if status == UNKNOWN else done, status)))
    cur = None
    for _, o in sorted(ops, key=lambda t: t[0]):
        if o.status == FAIL or (o.status == UNKNOWN and rng.random() < 0.5):
            continue
        if o.f == "read":
            o.output = cur
        else:
            cur = o.value
    hist = [o for _, o in ops]
    if rng.random() < 0.6:
        o = rng.choice(hist)
        if o.f == "read":
            written = [w.value for w in hist if w.f == "write"]
            o.output = rng.choice([None, n_ops + 7, *written])
        elif o.status != UNKNOWN:
            o.status = OK if o.status == FAIL else FAIL
    return hist


def test_applies_only_to_unique_value_registers():
    w = lambda i, v: Op(i, i, "write", v, invoke=i, complete=i + 1, status=OK)  # noqa: E731
    assert applies([w(0, 1), w(1, 2)], REGISTER) and applies([w(0, 1)], CAS_REGISTER)
    assert not applies([w(0, 1), w(1, 1)], REGISTER)  # a value written twice
    assert not applies([w(0, None)], REGISTER)  # the initial value written
    assert not applies([Op(0, 0, "cas", (1, 2), invoke=0, complete=1, status=OK)], CAS_REGISTER)
    assert not applies([Op(0, 0, "put", "a", invoke=0, complete=1, status=OK)], KV)


@pytest.mark.parametrize("seed", range(4))
def test_zones_agree_with_brute_force(seed):
    rng = random.Random(f"zones-brute-{seed}")
    outcomes = {True: 0, False: 0}
    for _ in range(1000):
        hist = unique_history(rng, rng.randint(1, 7), rng.randint(1, 3), rng.choice([0, 2, 5]))
        kept = prepare(hist, REGISTER)
        assert applies(kept, REGISTER)
        ok, conflict = check_zones(kept)
        assert ok is brute_force(hist, "register"), [o.to_dict() for o in hist]
        assert bool(conflict) is (not ok)
        outcomes[ok] += 1
    assert min(outcomes.values()) > 150  # both verdicts well represented


@pytest.mark.parametrize("seed", range(2))
def test_zones_agree_with_wgl_on_longer_histories(seed):
    rng = random.Random(f"zones-wgl-{seed}")
    outcomes = {True: 0, False: 0}
    for _ in range(600):
        hist = unique_history(rng, rng.randint(8, 40), rng.randint(2, 6), rng.choice([1, 4, 10]))
        zones = check(hist, REGISTER, algorithm="zones")
        wgl = check(hist, REGISTER, algorithm="wgl")
        assert zones.ok is wgl.ok, [o.to_dict() for o in hist]
        assert zones.algorithm == "zones" and wgl.algorithm == "wgl"
        outcomes[wgl.ok] += 1
    assert min(outcomes.values()) > 100


def test_conflict_names_the_operations():
    # write 1 done, then write 2 done, then a read of 1: forward zone of 1 contains write 2
    hist = [Op(0, 0, "write", 1, invoke=0, complete=1, status=OK),
            Op(1, 1, "write", 2, invoke=2, complete=3, status=OK),
            Op(2, 2, "read", invoke=4, complete=5, status=OK, output=1)]
    r = check(hist, REGISTER)
    assert (r.ok, r.algorithm) == (False, "zones")
    assert {op.id for op in r.conflict} == {0, 1, 2} and r.failing_op.id in {0, 1, 2}
    # a read of a value nobody wrote; a read that completed before its write began
    assert check_zones([Op(0, 0, "read", invoke=0, complete=1, status=OK, output=9)])[1][0].id == 0
    early = [Op(0, 0, "read", invoke=0, complete=1, status=OK, output=1),
             Op(1, 1, "write", 1, invoke=2, complete=3, status=OK)]
    assert [op.id for op in check_zones(early)[1]] == [0, 1]


def test_prefix_false_gives_the_same_verdict_without_a_wgl_search(monkeypatch):
    """``prefix=False`` (the games' per-episode verdicts) skips the counterexample's WGL prefix
    search, up to PREFIX_BUDGET_S a refuted episode, and changes nothing else."""
    import metrics.linearizability as lin

    rng = random.Random(5)
    hists = [unique_history(rng, 40, 4, 6) for _ in range(300)]
    refuted = [h for h in hists if check(h, REGISTER).ok is False]
    assert len(refuted) > 30  # the corrupted histories
    full = [check(h, REGISTER) for h in refuted]
    calls = []
    monkeypatch.setattr(lin, "_search", lambda *a: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    for h, want in zip(refuted, full):
        got = check(h, REGISTER, prefix=False)
        assert (got.ok, got.algorithm, [o.id for o in got.conflict]) == (False, "zones", [o.id for o in want.conflict])
        assert got.prefix == []
    assert calls == []


def test_games_ask_for_the_verdict_only(monkeypatch):
    """Register-v0's and Byzantine-v0's episode measures check with ``prefix=False``: a 100-node
    Register-v0 episode whose local serves broke linearizability spent 2 s of its 6.7 s in the
    prefix search."""
    import metrics.linearizability as lin
    from envs.byzantine_game import parallel_env as byz
    from envs.register import parallel_env as reg

    seen = []
    real = lin.check
    monkeypatch.setattr(lin, "check", lambda *a, **k: seen.append(k.get("prefix", True)) or real(*a, **k))
    for make in (reg, byz):
        env = make(duration_ms=300.0)
        env.reset(seed=1)
        while env.agents:
            env.step({a: 0 for a in env.agents})
    assert seen and not any(seen)


def test_forced_zones_refuse_other_histories():
    with pytest.raises(ValueError, match="zone test"):
        check([Op(0, 0, "write", 1, invoke=0, complete=1, status=OK),
               Op(1, 0, "write", 1, invoke=2, complete=3, status=OK)], REGISTER, algorithm="zones")
    with pytest.raises(ValueError, match="unknown algorithm"):
        check([], REGISTER, algorithm="fast")


@pytest.mark.skipif(not HARD.exists(), reason="hard histories not found")
def test_live_abd_unknowns_decided():
    r = check(read_history(HARD), REGISTER)
    assert (r.ok, r.algorithm) == (True, "zones")
