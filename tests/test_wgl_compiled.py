"""The compiled Wing-Gong-Lowe search (metrics/_wgl.pyx) is the Python search (``_search_py``) step
for step: same verdicts and the same number of cached configurations, on random histories and on
Porcupine's long kv histories (partitions of 30 to 200 operations: linearized sets wider than a C
int)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import metrics.linearizability as lin
from metrics.history_io import read_history
from metrics.models import KV, MODELS
from tests.test_linearizability import random_history

PORCUPINE = Path("/work/shared/data/porcupine")
needs_compiled = pytest.mark.skipif(not lin.COMPILED and not os.environ.get("CAPGYM_REQUIRE_CORE"),
                                    reason="the compiled search is not built")


def test_compiled_search_is_built_when_required():
    """``make test`` sets CAPGYM_REQUIRE_CORE: a build that silently fell back would be slow."""
    if os.environ.get("CAPGYM_REQUIRE_CORE") and not os.environ.get("CAPGYM_PURE"):
        assert lin.COMPILED


def both(part, model):
    a = lin._search_py(part, model, None)
    b = lin._wgl.search(part, model, None, lin.OK, lin.UNKNOWN)
    return a, b


@needs_compiled
def test_same_search_on_random_histories():
    rng = random.Random("wgl-compiled")
    for _ in range(1500):
        name = rng.choice(["register", "cas-register", "etcd", "kv"])
        model = MODELS[name]
        hist = random_history(rng, "cas-register" if name == "etcd" else name, rng.randint(1, 9))
        for part in model.partition(lin.prepare(hist, model)):
            a, b = both(part, model)
            assert a[:2] == b[:2] and a[2] == b[2] and a[3] == b[3], [o.to_dict() for o in part]


@needs_compiled
@pytest.mark.skipif(not PORCUPINE.exists(), reason="porcupine data not found")
# (not c50-bad: some of its keys take minutes; check stops at its first failing key)
@pytest.mark.parametrize("name", ["c10-ok", "c10-bad", "c50-ok"])
def test_same_search_on_long_partitions(name):
    ops = lin.prepare(read_history(PORCUPINE / "kv" / f"{name}.txt"), KV)
    for part in KV.partition(ops):
        a, b = both(part, KV)
        assert a[:2] == b[:2], (part[0].key, len(part))
