"""Seed derivation: the fast paths give exactly the streams of the plain ones (a change of any
derived seed would change every seeded result of every run)."""

import random

import numpy as np
import pytest

from envs.world.network import latency_stream
from envs.world.rng import SeedDeriver, derive_seed


def test_seed_deriver_equals_derive_seed():
    r = random.Random(1)
    for _ in range(3000):
        seed, src, dst = r.randrange(-10**12, 2**64), r.randrange(0, 5000), r.randrange(-3, 5000)
        assert SeedDeriver(seed, "link", src)(dst) == derive_seed(seed, "link", src, dst)
    assert SeedDeriver(5)(7) == derive_seed(5, 7)
    with pytest.raises(TypeError):
        SeedDeriver(5, "link")("3")


@pytest.mark.parametrize("spec", [{"dist": "exponential", "mean": 5, "min": 1},
                                  {"dist": "uniform", "low": 1, "high": 9},
                                  {"dist": "lognormal", "median": 3}, {"dist": "pareto", "scale": 2}])
def test_latency_stream_is_default_rngs_stream(spec):
    """The link's latencies are those of ``np.random.default_rng(seed)`` drawn in the same chunks."""
    s = latency_stream(spec, 12345)
    got = [next(s) for _ in range(100)]
    g = np.random.default_rng(12345)
    kind = spec["dist"]
    draws = []
    for k in (16, 32, 64):
        if kind == "exponential":
            d = g.exponential(5.0, k) + 1.0
        elif kind == "uniform":
            d = g.uniform(1.0, 9.0, k)
        elif kind == "lognormal":
            d = g.lognormal(np.log(3.0), 0.5, k)
        else:
            d = 2.0 * (1.0 + g.pareto(2.0, k))
        draws += d.tolist()
    assert got == draws[:100]
