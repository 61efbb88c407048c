"""Linearizability checking (Herlihy & Wing 1990) of a recorded history against a sequential model.

The algorithm is Wing & Gong's search (1993) with Lowe's cache of visited configurations (2017),
as in Porcupine (Athalye, github.com/anishathalye/porcupine, checker.go):

* the history becomes a doubly linked list of call and return entries in real-time order;
* the search walks the list, trying to *linearize* the next call: if the model accepts the
  operation from the current state and the configuration (set of linearized operations, new state)
  has not been seen before, the call and its return are *lifted* out of the list and pushed on a
  stack; reaching a return entry means the operation it completes had to take effect by now and
  could not, so the search backtracks (pops, *unlifts*, tries the next call);
* the history is linearizable when the list empties, and not when the stack is empty at a return.

Before searching, the history is split by the model's ``partition`` (P-compositionality: a history
is linearizable iff each per-object sub-history is), each part is checked on its own.

Values are frozen first (``metrics.models.freeze``: lists become tuples, maps read-only), so any
value a reader produces can be a model state. Jepsen's three outcomes: ``"fail"`` operations did
not happen and are removed (Knossos's rule; a model's ``observes_fail`` keeps the failed operations
it reads as observations, as Porcupine's etcd model does for cas); ``"unknown"``
operations may have taken effect at any time after their invocation or never: their completion is
put at the end of time and any result is accepted. Three consequences cut the search a lot:
unknown operations that cannot change the state (``model.readonly``) are dropped; an unknown
operation is never linearized where it would leave the state as it is (it can as well go later, or
never); and the search succeeds as soon as every operation that surely happened is linearized
(the unknown rest never happened). At each configuration, surely-happened operations are tried
before unknown ones. On the jepsen-etcd histories this takes the search from 300,000 cached
configurations to 50,000.

Speed: linearized sets are Python ints used as bitsets, the entry list lives in two int arrays
(``nxt``/``prv``), model states are interned to small ints, each operation memoizes its step per
state, and the cache is a dict state -> set of bitsets, so the inner loop allocates almost nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any

from envs.world.records import FAIL, OK, STATUSES, UNKNOWN, Op
from metrics.models import Model, freeze

Verdict = Any  # True, False or "unknown"


@dataclass
class PartitionStats:
    """What the search did on one sub-history (one key)."""

    key: Any
    ops: int
    ok: Verdict
    states: int  # distinct (linearized set, state) configurations cached (0 for the zone test)
    elapsed: float
    algorithm: str = "wgl"  # or "zones" (metrics.zones)


@dataclass
class CheckResult:
    """The verdict on a history: ``ok`` is True, False or ``"unknown"`` (the time budget ran out).

    When ``ok`` is False, ``failing_op`` is the operation that could not be linearized (the return
    reached at the deepest point of the search) and ``prefix`` the longest linearizable sequence of
    operations found in its sub-history (``failing_key``) before it.
    """

    ok: Verdict
    model: str
    ops: int
    failing_op: Op | None = None
    failing_key: Any = None
    prefix: list[Op] = field(default_factory=list)
    partitions: list[PartitionStats] = field(default_factory=list)
    elapsed: float = 0.0
    skipped_ops: int = 0  # history entries of non-client processes the reader left out
    conflict: list[Op] = field(default_factory=list)  # the zone test's conflicting operations

    @property
    def algorithm(self) -> str:
        """``wgl``, ``zones`` or ``zones+wgl``: what decided the keys that were checked."""
        used = sorted({p.algorithm for p in self.partitions}, reverse=True)
        return "+".join(used) if used else "wgl"

    @property
    def prefix_len(self) -> int:
        return len(self.prefix)

    def to_dict(self) -> dict:
        return {
            "linearizable": self.ok,
            "model": self.model,
            "ops": self.ops,
            "failing_op": self.failing_op.to_dict() if self.failing_op else None,
            "failing_key": self.failing_key,
            "prefix_len": self.prefix_len,
            "prefix": [op.id for op in self.prefix],
            "partitions": [{**vars(p), "elapsed": round(p.elapsed, 6)} for p in self.partitions],
            "elapsed": round(self.elapsed, 6),
            "skipped_ops": self.skipped_ops,
            "algorithm": self.algorithm,
            "conflict": [op.id for op in self.conflict],
        }


def prepare(ops: list[Op], model: Model) -> list[Op]:
    """Drop failed operations (but the model's ``observes_fail``) and unknown read-only ones; freeze
    keys, values and outputs (``metrics.models.freeze``; the input ops are not changed).

    Raises ValueError naming the operation for a status it cannot have, an operation kind the model
    does not have, or a value the model cannot apply (``model.validate``).
    """
    kept = []
    for op in ops:
        if op.status not in STATUSES:
            raise ValueError(f"op {op.id}: unknown status {op.status!r}")
        if op.f not in model.ops:
            raise ValueError(f"op {op.id}: the {model.name} model has no operation {op.f!r}")
        reason = model.validate(op)  # (before dropping: a malformed op is bad input even if it failed)
        if reason:
            raise ValueError(f"op {op.id}: {reason}")
        if (op.status == FAIL and op.f not in model.observes_fail) or (
                op.status == UNKNOWN and op.f in model.readonly):
            continue
        if op.status != UNKNOWN and op.complete is None:
            raise ValueError(f"op {op.id}: status {op.status} but no completion time")
        key, value, output = freeze(op.key), freeze(op.value), freeze(op.output)
        if key is not op.key or value is not op.value or output is not op.output:
            op = dataclasses.replace(op, key=key, value=value, output=output)
        kept.append(op)
    return kept


ALGORITHMS = ("auto", "wgl", "zones")
PREFIX_BUDGET_S = 2.0  # seconds of WGL search for the prefix of a history the zone test refuted


def check(ops: list[Op], model: Model, timeout: float | None = None, every_key: bool = False,
          algorithm: str = "auto", prefix: bool = True) -> CheckResult:
    """Is ``ops`` linearizable with respect to ``model``? ``timeout`` is in seconds (None: none).

    Sub-histories (keys) are checked smallest first; the first one that is not linearizable ends
    the check unless ``every_key`` (then every key gets a verdict in ``partitions``, as
    ``jepsen.independent`` reports them). ``algorithm``: ``auto`` decides a key with the
    O(n log n) zone test (``metrics.zones``) when it applies (a read/write register whose writes
    have distinct values) and with the Wing-Gong-Lowe search otherwise; ``wgl`` and ``zones`` force
    one (``zones`` raises ValueError for a key it does not apply to). When the zone test refutes a
    key, a WGL search of at most ``PREFIX_BUDGET_S`` adds the longest linearizable prefix for the
    counterexample; ``prefix=False`` skips it (the verdict and the conflicting operations are the
    same; callers that only want the verdict, such as the games' per-episode measures, save up to
    that budget per episode). Raises ValueError for operations the model cannot take (see
    :func:`prepare`).
    """

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    kept = prepare(ops, model)
    result = CheckResult(ok=True, model=model.name, ops=len(ops), skipped_ops=getattr(ops, "skipped_ops", 0))
    parts = sorted(model.partition(kept), key=len)  # small parts first: cheap failures found early
    # the search allocates many small containers and makes no reference cycles: the cyclic GC's
    # passes over them cost about an eighth of the search, for nothing
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _check_parts(parts, model, deadline, every_key, algorithm, result, prefix)
    finally:
        if gc_was_enabled:
            gc.enable()
    result.elapsed = time.monotonic() - t0
    return result


def _check_parts(parts, model: Model, deadline, every_key: bool, algorithm: str, result: CheckResult,
                 want_prefix: bool = True) -> None:
    from metrics import zones

    for part in parts:
        t1 = time.monotonic()
        use_zones = algorithm != "wgl" and zones.applies(part, model)
        if deadline is not None and t1 >= deadline and not use_zones:  # (the zone test always runs)
            result.ok = "unknown" if result.ok is True else result.ok  # out of time before every key
            break
        key = part[0].key
        conflict: list[Op] = []
        if use_zones:
            ok, conflict = zones.check_zones(part, model.init)
            states, prefix, failing, used = 0, [], (conflict[-1] if conflict else None), "zones"
            if ok is False and want_prefix:
                # the longest linearizable prefix, for the counterexample, where WGL finds it quickly
                budget = PREFIX_BUDGET_S if deadline is None else min(PREFIX_BUDGET_S, deadline - time.monotonic())
                w_ok, _, w_prefix, w_failing = _search(part, model, time.monotonic() + max(budget, 0.0))
                if w_ok is False:
                    prefix, failing = w_prefix, w_failing
        elif algorithm == "zones":
            raise ValueError(f"the zone test needs reads and writes of distinct values on a register "
                             f"(key {key!r} has other operations, or a value written twice)")
        else:
            ok, states, prefix, failing = _search(part, model, deadline)
            used = "wgl"
        result.partitions.append(PartitionStats(key, len(part), ok, states, time.monotonic() - t1, used))
        if ok is False:
            if result.ok is not False:
                result.ok, result.failing_op, result.failing_key, result.prefix = False, failing, key, prefix
                result.conflict = conflict
            if not every_key:
                break
        elif ok == "unknown" and result.ok is True:
            result.ok = "unknown"


def is_linearizable(ops: list[Op], model: Model, timeout: float | None = None) -> Verdict:
    return check(ops, model, timeout).ok


INF = float("inf")

try:  # the compiled search (metrics/_wgl.pyx), unless CAPGYM_PURE=1 asks for this module's
    if os.environ.get("CAPGYM_PURE"):
        raise ImportError
    from metrics import _wgl
except ImportError:
    _wgl = None
COMPILED = _wgl is not None  # which search ``check`` runs


def _search(ops: list[Op], model: Model, deadline: float | None):
    """Wing–Gong–Lowe search on one sub-history, compiled when built: see :func:`_search_py`."""
    if _wgl is not None:
        return _wgl.search(ops, model, deadline, OK, UNKNOWN)
    return _search_py(ops, model, deadline)


def _search_py(ops: list[Op], model: Model, deadline: float | None):
    """Wing–Gong–Lowe search on one sub-history, in Python (the reference for ``metrics/_wgl.pyx``).

    Returns (verdict, cached states, prefix, failing op)."""
    n = len(ops)
    # entries in real-time order; at equal times calls come first (such operations overlap)
    events = []
    for i, op in enumerate(ops):
        end = INF if op.status == UNKNOWN or op.complete is None else op.complete
        events.append((op.invoke, 0, i))
        events.append((end, 1, i))
    events.sort()
    # nodes: 0 = head, 1..2n = entries, 2n+1 = tail
    tail = 2 * n + 1
    nxt = list(range(1, tail + 1)) + [tail]
    prv = [0] + list(range(0, tail))
    opidx = [0] * (tail + 1)
    match = [0] * (tail + 1)  # call node -> its return node; 0 for return nodes
    call_node = [0] * n
    for node, (_, kind, i) in enumerate(events, start=1):
        opidx[node] = i
        if kind == 0:
            call_node[i] = node
        else:
            match[call_node[i]] = node

    states = [model.init]  # interned model states; a state is its index here
    state_id = {model.init: 0}
    cache: list[set] = [set()]  # state -> the linearized sets already visited with it
    step = model.step

    def transition(i: int, state: int, memo: dict):
        """Step op i from a state: (next state, its cache set), or () if the model refuses; memoized."""
        ok, s2 = step(states[state], ops[i])
        r = ()
        if ok:
            ns = state_id.get(s2)
            if ns is None:
                ns = state_id[s2] = len(states)
                states.append(s2)
                cache.append(set())
            # an unknown op that would change nothing here need not go here: it may go later or never
            if ns != state or ops[i].status != UNKNOWN:
                r = (ns, cache[ns])
        memo[state] = r
        return r

    def intern(s) -> int:
        ns = state_id.get(s)
        if ns is None:
            ns = state_id[s] = len(states)
            states.append(s)
            cache.append(set())
        return ns

    # per call node: (its return node, op index, op bit, memo of the op's transitions, 1 if the op's
    # outcome is unknown else 0, the state a completed read needs or -1); None for return nodes
    info: list = [None] * (tail + 1)
    # call nodes of completed read-only operations: linearized as soon as the state agrees with them
    forcible = [False] * (tail + 1)
    read_state = model.read_state
    for node in range(1, tail):
        if match[node]:
            i = opidx[node]
            op = ops[i]
            forcible[node] = op.f in model.readonly and op.status == OK
            need = intern(read_state(op)) if forcible[node] and read_state is not None else -1
            info[node] = (match[node], i, 1 << i, {}, int(op.status == UNKNOWN), need)
    has_unknown = any(op.status == UNKNOWN for op in ops)

    stack: list[tuple[int, int]] = []  # (call node, state before it); the node negated if forced
    push, pop = stack.append, stack.pop
    lin = 0
    state = 0
    best = 0
    best_rec = None
    backtracks = 0
    # Search order: at each configuration try the operations that surely happened (phase 0) before
    # the unknown ones (phase 1), which are rarely needed early. Same search space, found sooner.
    phase = 0
    done = False
    fresh = True  # a configuration not yet given its forced reads
    failed = False

    e = nxt[0]
    while nxt[0] != tail:
        back = False
        if fresh:
            # Forced reads: a completed read-only op within reach whose output is the current state
            # can be linearized here, and nothing is lost by not trying it anywhere else: in any
            # linearization from this configuration, moving it to the front keeps the states and the
            # real-time order (every op that returned before it was invoked is already linearized).
            # So the configuration with it is equivalent to the one without, and backtracking pops
            # through forced frames. A forced configuration already cached has failed: backtrack.
            fresh = False
            f = nxt[0]
            while f != tail:
                call = info[f]
                if call is None:
                    break  # a return: calls after it are not within reach yet
                if forcible[f]:
                    m, i, bit, memo, _, need = call
                    if need >= 0:  # the model says which state the read needs: no step to call
                        r = (state, cache[state]) if need == state else ()
                    else:
                        r = memo.get(state)
                        if r is None:
                            r = transition(i, state, memo)
                    if r:
                        nl = lin | bit
                        seen = r[1]
                        if nl in seen:
                            back = True
                            break
                        seen.add(nl)
                        push((-f, state))
                        lin = nl
                        p, q = prv[f], nxt[f]
                        nxt[p], prv[q] = q, p
                        p, q = prv[m], nxt[m]
                        nxt[p], prv[q] = q, p
                        if len(stack) > best:
                            best, best_rec = len(stack), None
                        fresh = True
                        break
                f = nxt[f]
            if fresh:
                continue
            if not back:
                e, phase = nxt[0], 0
                if e == tail:
                    break
        if not back:
            call = info[e]
            if call is not None:  # a call: try to linearize it here
                m, i, bit, memo, late, need = call
                if late != phase:
                    e = nxt[e]
                    continue
                if need >= 0:
                    r = (state, cache[state]) if need == state else ()
                else:
                    r = memo.get(state)
                    if r is None:
                        r = transition(i, state, memo)
                if r:
                    nl = lin | bit
                    seen = r[1]
                    if nl not in seen:
                        seen.add(nl)
                        push((e, state))
                        state, lin = r[0], nl
                        # lift the call and its return out of the list
                        p, q = prv[e], nxt[e]
                        nxt[p], prv[q] = q, p
                        p, q = prv[m], nxt[m]
                        nxt[p], prv[q] = q, p
                        if len(stack) > best:
                            best, best_rec = len(stack), None
                        e, phase, fresh = nxt[0], 0, True
                        continue
                e = nxt[e]
                continue
            if ops[opidx[e]].status == UNKNOWN:
                done = True  # every op that surely happened is linearized; the unknown rest never happened
                break
            if phase == 0 and has_unknown:  # now try the unknown operations within reach
                e, phase = nxt[0], 1
                continue
            # a return: its operation should have been linearized by now; backtrack
            if best_rec is None and len(stack) == best:
                best_rec = ([opidx[abs(c)] for c, _ in stack], opidx[e])
        if not stack:
            failed = True
            break
        backtracks += 1
        if deadline is not None and not backtracks & 0xFF and time.monotonic() >= deadline:
            return "unknown", sum(map(len, cache)), [], None
        while True:
            e, state = pop()
            forced = e < 0
            if forced:
                e = -e
            m, i, bit, _, phase, _ = info[e]
            lin ^= bit
            # unlift, in the reverse order
            p, q = prv[m], nxt[m]
            nxt[p] = prv[q] = m
            p, q = prv[e], nxt[e]
            nxt[p] = prv[q] = e
            if not forced:
                break
            if not stack:  # the configuration at the bottom, equivalent to a failed one, failed
                failed = True
                break
        if failed:
            break
        e = nxt[e]
    n_states = sum(map(len, cache))
    if done or (nxt[0] == tail and not failed):
        return True, n_states, [], None
    if best_rec is None:  # failed without reaching a return at the deepest point: the first return
        f = nxt[0]
        while info[f] is not None:
            f = nxt[f]
        best_rec = ([], opidx[f])
    prefix, failing = best_rec
    return False, n_states, [ops[i] for i in prefix], ops[failing]
