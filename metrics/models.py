"""Sequential specifications for the linearizability checker, as plain data.

A :class:`Model` is what Porcupine calls a model: an initial state, a step function and a way to
split a history into independent sub-histories (P-compositionality, Herlihy & Wing 1990). States
must be hashable (the checker caches visited (linearized set, state) pairs). Adding a data type
is a few lines: write ``step`` and, if its operations touch independent objects, ``partition``.

``step(state, op) -> (ok, new_state)`` applies one operation to a state. ``ok`` says whether the
operation's observed result (``op.output``) is what the data type would have returned from that
state. An operation whose status is ``"unknown"`` has no observed result: any result is accepted,
so its step is always ok (a compare-and-set that did not hold its expected value simply had no
effect).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from envs.world.records import UNKNOWN, Op


def partition_by_key(ops: list[Op]) -> list[list[Op]]:
    """Split a history into one sub-history per key (keys are independent objects)."""
    parts: dict = {}
    for op in ops:
        parts.setdefault(op.key, []).append(op)
    return list(parts.values())


def describe_op(op: Op) -> str:
    """A short human-readable form of an operation, e.g. ``p3 cas [3, 0] -> ok``."""
    key = f" key={op.key!r}" if op.key is not None else ""
    arg = "" if op.value is None else f" {op.value!r}"
    if op.status == UNKNOWN:
        res = "unknown"
    elif op.f in ("read", "get"):
        res = repr(op.output)
    else:
        res = op.status
    return f"op {op.id} (process {op.process}{key}: {op.f}{arg} -> {res})"


@dataclass(frozen=True)
class Model:
    """A sequential data type: ``init`` state, ``step``, ``partition`` and ``describe``.

    ``readonly`` names the operations that never change the state: an unknown one of them can be
    dropped from a history before the search (it may return anything and affects nothing).
    """

    name: str
    init: Hashable
    step: Callable[[Hashable, Op], tuple[bool, Hashable]]
    ops: frozenset[str]
    readonly: frozenset[str] = frozenset()
    partition: Callable[[list[Op]], list[list[Op]]] = partition_by_key
    describe: Callable[[Op], str] = describe_op
    doc: str = field(default="", compare=False)


# --- a read/write register --------------------------------------------------------------------

def _register_step(state, op: Op):
    f = op.f
    if f == "read":
        return (op.status == UNKNOWN or op.output == state), state
    if f == "write":
        return True, op.value
    raise ValueError(f"the register model has no operation {f!r}")


def _cas_register_step(state, op: Op):
    if op.f == "cas":
        expected, new = op.value
        if state == expected:
            return True, new
        # the comparison failed: a completed cas claims it swapped, so it cannot go here;
        # an unknown one may simply have failed
        return op.status == UNKNOWN, state
    return _register_step(state, op)


# --- a key-value store, one string per key ----------------------------------------------------

def _kv_step(state, op: Op):
    f = op.f
    if f == "get":
        return (op.status == UNKNOWN or op.output == state), state
    if f == "put":
        return True, op.value
    if f == "append":
        return True, state + op.value
    raise ValueError(f"the kv model has no operation {f!r}")


REGISTER = Model(
    name="register", init=None, step=_register_step, ops=frozenset({"read", "write"}),
    readonly=frozenset({"read"}), partition=partition_by_key,
    doc="registers (one per key; key None for a single one), initially None; read returns the last write",
)
CAS_REGISTER = Model(
    name="cas-register", init=None, step=_cas_register_step, ops=frozenset({"read", "write", "cas"}),
    readonly=frozenset({"read"}), partition=partition_by_key,
    doc="registers as above, with compare-and-set [expected, new]",
)
KV = Model(
    name="kv", init="", step=_kv_step, ops=frozenset({"get", "put", "append"}),
    readonly=frozenset({"get"}), partition=partition_by_key,
    doc='a map from keys to strings, each initially ""; get, put, append (concatenate)',
)

MODELS: dict[str, Model] = {m.name: m for m in (REGISTER, CAS_REGISTER, KV)}


def guess_model(ops: list[Op]) -> Model:
    """The smallest built-in model that has every operation kind in ``ops``."""
    fs = {op.f for op in ops}
    for m in (REGISTER, CAS_REGISTER, KV):
        if fs <= m.ops:
            return m
    raise ValueError(f"no built-in model has all of the operations {sorted(fs)}")
