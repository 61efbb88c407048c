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

from envs.world.records import FAIL, UNKNOWN, Op


class frozendict(dict):  # noqa: N801 (named like frozenset)
    """A read-only, hashable dict: how a map value (an EDN or JSON map) enters a model state."""

    __slots__ = ()

    def __hash__(self):
        return hash(frozenset(self.items()))

    def _read_only(self, *args, **kwargs):
        raise TypeError("frozendict is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only


class Typed:
    """A value whose type matters to equality. Python says ``1 == 1.0 == True``; EDN and JSON say
    these are three values, so :func:`freeze` wraps booleans and floats in this."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value):
        self.kind, self.value = kind, value

    def __eq__(self, other):
        return isinstance(other, Typed) and self.kind == other.kind and self.value == other.value

    def __hash__(self):
        return hash((self.kind, self.value))

    def __repr__(self):
        return repr(self.value)


def freeze(value):
    """``value`` made hashable, recursively: lists and tuples -> tuples, dicts -> :class:`frozendict`,
    sets -> frozensets, booleans and floats -> :class:`Typed` (so that ``true``, ``1`` and ``1.0`` stay
    three values, as in EDN and JSON). Equal values stay equal (a list and a tuple of the same
    items are one value, as Clojure's vectors and lists are). Models' states must be hashable: the
    checker freezes every operation's key, value and output before the search."""
    t = type(value)
    if t is bool:
        return Typed("bool", value)
    if t is float:
        return Typed("float", value)
    if isinstance(value, (str, int, type(None), Typed)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return frozendict((freeze(k), freeze(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    hash(value)  # anything else must already be hashable (TypeError otherwise)
    return value


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
    ``observes_fail`` names the operations whose ``:fail`` is an observation that stays in the
    history (Porcupine's etcd model: a failed cas saw another value); every other failed operation
    did not happen and is dropped (Knossos's rule). ``validate(op)`` returns why an operation's
    value cannot be applied (a one-line reason), or None. ``read_state(op)``, when given, is the one
    state a completed read-only operation agrees with (its output, for a register's read): the
    search then compares states instead of calling ``step`` for reads.
    """

    name: str
    init: Hashable
    step: Callable[[Hashable, Op], tuple[bool, Hashable]]
    ops: frozenset[str]
    readonly: frozenset[str] = frozenset()
    partition: Callable[[list[Op]], list[list[Op]]] = partition_by_key
    describe: Callable[[Op], str] = describe_op
    doc: str = field(default="", compare=False)
    observes_fail: frozenset[str] = frozenset()
    validate: Callable[[Op], str | None] = lambda op: None
    read_state: Callable[[Op], Hashable] | None = None


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


def _etcd_step(state, op: Op):
    # Porcupine's etcd model (porcupine_test.go, etcdModel): a :fail cas observed that the
    # register did not hold its expected value at its linearization point
    if op.f == "cas" and op.status == FAIL:
        return state != op.value[0], state
    return _cas_register_step(state, op)


def _validate_cas(op: Op) -> str | None:
    if op.f == "cas" and not (isinstance(op.value, (list, tuple)) and len(op.value) == 2):
        return f"a cas needs [expected new], got {op.value!r:.40}"
    return None


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


def _validate_kv(op: Op) -> str | None:
    if op.f in ("put", "append") and not isinstance(op.value, str):
        return f"a {op.f} needs a string value, got {op.value!r:.40}"
    return None


def _output(op: Op):
    return op.output


REGISTER = Model(
    name="register", init=None, step=_register_step, ops=frozenset({"read", "write"}),
    readonly=frozenset({"read"}), partition=partition_by_key, read_state=_output,
    doc="registers (one per key; key None for a single one), initially None; read returns the last write",
)
CAS_REGISTER = Model(
    name="cas-register", init=None, step=_cas_register_step, ops=frozenset({"read", "write", "cas"}),
    readonly=frozenset({"read"}), partition=partition_by_key, validate=_validate_cas, read_state=_output,
    doc="registers as above, with compare-and-set [expected, new]; a failed cas did not happen (Knossos)",
)
ETCD = Model(
    name="etcd", init=None, step=_etcd_step, ops=frozenset({"read", "write", "cas"}),
    readonly=frozenset({"read"}), partition=partition_by_key, validate=_validate_cas,
    observes_fail=frozenset({"cas"}), read_state=_output,
    doc="cas-register with Porcupine's etcd rule: a failed cas saw a value other than its expected one",
)
KV = Model(
    name="kv", init="", step=_kv_step, ops=frozenset({"get", "put", "append"}),
    readonly=frozenset({"get"}), partition=partition_by_key, validate=_validate_kv, read_state=_output,
    doc='a map from keys to strings, each initially ""; get, put, append (concatenate)',
)

MODELS: dict[str, Model] = {m.name: m for m in (REGISTER, CAS_REGISTER, ETCD, KV)}


def guess_model(ops: list[Op]) -> Model:
    """The smallest built-in model that has every operation kind in ``ops``."""
    fs = {op.f for op in ops}
    for m in (REGISTER, CAS_REGISTER, KV):
        if fs <= m.ops:
            return m
    raise ValueError(f"no built-in model has all of the operations {sorted(fs)}")
