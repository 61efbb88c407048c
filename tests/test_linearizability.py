"""The linearizability checker: Porcupine's reference histories, hand-made cases, and a property
test against a brute-force checker that tries every real-time-respecting order."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from envs.world.records import FAIL, OK, UNKNOWN, Op
from metrics.history_io import read_history
from metrics.linearizability import check
from metrics.models import CAS_REGISTER, KV, MODELS, REGISTER, guess_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "porcupine"
if not DATA.exists():
    DATA = Path("/work/shared/data/porcupine")


def _verdicts(sub: str) -> list[tuple[str, bool]]:
    path = DATA / sub / "verdicts.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [(row["file"], row["linearizable"] == "true") for row in csv.DictReader(f)]


ETCD = _verdicts("jepsen-etcd")
KV_FILES = _verdicts("kv")
needs_data = pytest.mark.skipif(not ETCD, reason="porcupine data not found")


# --- the reference histories -------------------------------------------------------------------

@needs_data
def test_reference_data_is_all_there():
    assert len(ETCD) == 102 and sum(v for _, v in ETCD) == 23
    assert len(KV_FILES) == 6


@needs_data
@pytest.mark.parametrize("name,expected", ETCD, ids=[n for n, _ in ETCD])
def test_jepsen_etcd_register_agrees_with_verdicts(name, expected):
    r = check(read_history(DATA / "jepsen-etcd" / name), CAS_REGISTER)
    assert r.ok is expected
    if not expected:
        assert r.failing_op is not None and r.prefix_len >= 0


@needs_data
@pytest.mark.parametrize("name,expected", KV_FILES, ids=[n for n, _ in KV_FILES])
def test_kv_agrees_with_verdicts(name, expected):
    ops = read_history(DATA / "kv" / name)
    r = check(ops, KV)
    assert r.ok is expected
    assert sum(p.ops for p in r.partitions) <= len(ops)
    if not expected:
        assert r.failing_op.key == r.failing_key
        assert all(op.key == r.failing_key for op in r.prefix)


@needs_data
def test_a_tiny_time_budget_gives_unknown():
    r = check(read_history(DATA / "kv" / "c50-ok.txt"), KV, timeout=0.0)
    assert r.ok == "unknown"


# --- hand-made histories -----------------------------------------------------------------------

def op(i, f, value=None, inv=0, done=None, status=OK, output=None, key=None, process=None):
    return Op(id=i, process=i if process is None else process, f=f, value=value, key=key,
              invoke=inv, complete=done, status=status, output=output)


def test_empty_and_all_unknown_histories_are_linearizable():
    assert check([], REGISTER).ok is True
    ops = [op(0, "write", 1, 0, None, UNKNOWN), op(1, "cas", [5, 6], 1, None, UNKNOWN)]
    assert check(ops, CAS_REGISTER).ok is True


def test_sequential_stale_read_is_caught_with_failing_op_and_prefix():
    ops = [op(0, "write", 1, 0, 1), op(1, "write", 2, 2, 3), op(2, "read", None, 4, 5, output=1)]
    r = check(ops, REGISTER)
    assert r.ok is False
    assert r.failing_op.id == 2
    assert [o.id for o in r.prefix] == [0, 1]


def test_concurrent_read_may_see_either_value():
    ops = [op(0, "write", 1, 0, 1), op(1, "write", 2, 2, 6), op(2, "read", None, 3, 5, output=1),
           op(3, "read", None, 4, 7, output=2)]
    assert check(ops, REGISTER).ok is True
    ops.append(op(4, "read", None, 8, 9, output=1))  # after the write of 2 completed
    assert check(ops, REGISTER).ok is False


def test_fail_ops_did_not_happen_and_unknown_ops_may_happen_late_or_never():
    w_fail = op(0, "write", 1, 0, 1, FAIL)
    assert check([w_fail, op(1, "read", None, 2, 3, output=1)], REGISTER).ok is False
    assert check([w_fail, op(1, "read", None, 2, 3, output=None)], REGISTER).ok is True
    w_unknown = op(0, "write", 1, 0, None, UNKNOWN)
    reads = [op(1, "read", None, 2, 3, output=None), op(2, "read", None, 4, 5, output=1)]
    assert check([w_unknown, *reads], REGISTER).ok is True  # took effect late
    assert check([w_unknown, reads[0]], REGISTER).ok is True  # or never
    back = op(3, "read", None, 6, 7, output=None)  # but once seen, it cannot be undone
    assert check([w_unknown, *reads, back], REGISTER).ok is False


def test_unknown_cas_may_have_failed():
    ops = [op(0, "write", 1, 0, 1), op(1, "cas", [7, 8], 2, None, UNKNOWN), op(2, "read", None, 3, 4, output=1)]
    assert check(ops, CAS_REGISTER).ok is True
    ops[2] = op(2, "read", None, 3, 4, output=8)
    assert check(ops, CAS_REGISTER).ok is False


def test_kv_is_split_by_key():
    ops = [op(0, "append", "a", 0, 1, key="x"), op(1, "append", "b", 2, 3, key="y"),
           op(2, "get", None, 4, 5, key="x", output="a"), op(3, "get", None, 4, 5, key="y", output="b")]
    r = check(ops, KV)
    assert r.ok is True and len(r.partitions) == 2
    ops[3] = op(3, "get", None, 4, 5, key="y", output="ba")
    r = check(ops, KV)
    assert r.ok is False and r.failing_key == "y" and r.failing_op.id == 3


def test_operations_the_model_lacks_are_rejected():
    with pytest.raises(ValueError, match="cas"):
        check([op(0, "cas", [1, 2], 0, 1)], REGISTER)
    assert guess_model([op(0, "cas", [1, 2], 0, 1)]) is CAS_REGISTER
    assert guess_model([op(0, "get", None, 0, 1, key="k")]) is KV


# --- property: the search agrees with brute force ----------------------------------------------

def _spec(model: str, state: dict, o: Op):
    """An independent sequential specification: (ok, new state), state a dict key -> value."""
    cur = state.get(o.key, "" if model == "kv" else None)
    known = o.status != UNKNOWN
    if o.f in ("read", "get"):
        return (not known or o.output == cur), state
    if o.f in ("write", "put"):
        new = o.value
    elif o.f == "append":
        new = cur + o.value
    else:  # cas
        if cur != o.value[0]:
            return not known, state
        new = o.value[1]
    return True, {**state, o.key: new}


def brute_force(ops: list[Op], model: str) -> bool:
    """Try every order consistent with real time; unknown ops may also never happen."""
    ops = [o for o in ops if o.status != FAIL]
    end = {o.id: (float("inf") if o.status == UNKNOWN else o.complete) for o in ops}
    must_precede = {o.id: {p.id for p in ops if end[p.id] < o.invoke} for o in ops}
    need = {o.id for o in ops if o.status != UNKNOWN}

    def go(done: frozenset, state: dict, dropped: frozenset) -> bool:
        if need <= done:
            return True  # every unknown op left over never happened
        for o in ops:
            if o.id in done or o.id in dropped or not must_precede[o.id] <= done | dropped:
                continue
            ok, new = _spec(model, state, o)
            if ok and go(done | {o.id}, new, dropped):
                return True
            if o.status == UNKNOWN and go(done, state, dropped | {o.id}):
                return True
        return False

    return go(frozenset(), {}, frozenset())


def random_history(rng: random.Random, model: str, n_ops: int) -> list[Op]:
    """Ops of a few processes, executed at random points inside their intervals, then maybe corrupted."""
    kinds = {"register": ["read", "write"], "cas-register": ["read", "write", "cas"],
             "kv": ["get", "put", "append"]}[model]
    keys = ["x", "y"] if model == "kv" or rng.random() < 0.3 else [None]
    ops, clock = [], {p: rng.randint(0, 3) for p in range(rng.randint(1, 3))}
    for i in range(n_ops):
        p = rng.choice(list(clock))
        f, key = rng.choice(kinds), rng.choice(keys)
        value = {"write": rng.randint(0, 2), "put": rng.choice("ab"), "append": rng.choice("ab"),
                 "cas": [rng.choice([None, 0, 1, 2]), rng.randint(0, 2)]}.get(f)
        inv = clock[p]
        done = inv + rng.randint(0, 6)
        clock[p] = done + rng.randint(1, 3)
        status = rng.choices([OK, FAIL, UNKNOWN], [0.75, 0.1, 0.15])[0]
        at = rng.uniform(inv, done + (20 if status == UNKNOWN else 0))
        ops.append((at, Op(i, p, f, value, key, None, inv, None if status == UNKNOWN else done, status)))
    state: dict = {}
    for _, o in sorted(ops, key=lambda t: t[0]):  # the true execution order
        if o.status == FAIL or (o.status == UNKNOWN and rng.random() < 0.5):
            continue
        ok, new = _spec(model, state, Op(o.id, 0, o.f, o.value, o.key, status=UNKNOWN))
        if o.f in ("read", "get"):
            o.output = state.get(o.key, "" if model == "kv" else None)
        elif o.f == "cas" and new is state and o.status == OK:
            o.status = FAIL  # the comparison failed: it did not happen
        state = new
    hist = [o for _, o in ops]
    if rng.random() < 0.7:  # corrupt one result
        o = rng.choice(hist)
        if o.f in ("read", "get"):
            o.output = rng.choice(["", "a", "ab", "b"] if model == "kv" else [None, 0, 1, 2])
        elif o.status != UNKNOWN:
            o.status = OK if o.status == FAIL else FAIL
    return hist


def agree_with_brute_force(model: str, seed: str, histories: int, max_ops: int) -> dict:
    rng = random.Random(seed)
    outcomes = {True: 0, False: 0}
    for _ in range(histories):
        hist = random_history(rng, model, rng.randint(1, max_ops))
        expected = brute_force(hist, model)
        r = check(hist, MODELS[model])
        assert r.ok is expected, [o.to_dict() for o in hist]
        outcomes[expected] += 1
        if r.ok is False:
            # the prefix found is itself linearizable and the failing op is not in it
            assert r.failing_op not in r.prefix
            assert check(list(r.prefix), MODELS[model]).ok is True
    return outcomes


@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
def test_search_agrees_with_brute_force(model):
    outcomes = agree_with_brute_force(model, f"linearizability-{model}", 1500, 6)
    assert min(outcomes.values()) > 200  # both verdicts well represented


@pytest.mark.slow
@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
def test_search_agrees_with_brute_force_longer_histories(model):
    outcomes = agree_with_brute_force(model, f"linearizability-long-{model}", 5000, 9)
    assert min(outcomes.values()) > 500
