"""The network between nodes: latency, loss, duplication and partitions.

Latency is drawn per message from a distribution (per-link overrides allowed), so reordering
follows from latency. A partition is a set of *cut* directed links ``(src, dst)``: symmetric
partitions cut both directions, one-way cuts only one. A message sent across a standing cut is
dropped, or held until the cut heals when ``hold_partitioned`` is on.

Partition shapes follow Jepsen's nemesis: ``isolate`` (one node alone), ``halves``, ``majority``
(a random minority cut from the majority), ``majorities-ring`` (every node sees a majority, no two
the same), ``bridge`` (two halves joined by one node), ``random`` (a random split),
``one-way`` (a random group cannot send to the rest but still hears it).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

LATENCY_KINDS = ("constant", "uniform", "exponential", "lognormal", "pareto")
PARTITION_SHAPES = ("isolate", "halves", "majority", "majorities-ring", "bridge", "random", "one-way")


def _chunks(first: int = 16, most: int = 8192):
    """Chunk sizes 16, 32, ... up to ``most``: short runs draw little, long runs draw in bulk. (At n
    nodes there are up to n^2 links, each with its stream and its unread draws: at 300 nodes,
    starting at 128 held half a gigabyte. numpy's generators give the same values whatever the
    chunk sizes, so this changes no latency.)"""
    n = first
    while True:
        yield n
        n = min(2 * n, most)


def latency_stream(spec: dict, seed: int) -> Iterator[float]:
    """An endless iterator of latencies (ms) drawn from ``spec`` in growing numpy chunks (seeded).

    The generator is ``Generator(PCG64(seed))``, the very stream ``np.random.default_rng(seed)``
    gives, built without ``default_rng``'s wrapper (a third of the cost of a link at 100 nodes,
    where every episode builds 9,900 of them)."""
    kind = spec.get("dist", "exponential")
    floor = float(spec.get("min", 0.0))
    g = np.random.Generator(np.random.PCG64(seed))
    if kind == "constant":
        return itertools.repeat(float(spec.get("ms", 1.0)) + floor)
    if kind == "uniform":
        lo, hi = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
        draw = lambda k: g.uniform(lo, hi, k)
    elif kind == "exponential":
        mean = float(spec.get("mean", 1.0))
        draw = lambda k: g.exponential(mean, k)
    elif kind == "lognormal":
        mu, sigma = math.log(float(spec.get("median", 1.0))), float(spec.get("sigma", 0.5))
        draw = lambda k: g.lognormal(mu, sigma, k)
    elif kind == "pareto":  # classical Pareto with minimum ``scale``
        scale, alpha = float(spec.get("scale", 1.0)), float(spec.get("alpha", 2.0))
        draw = lambda k: scale * (1.0 + g.pareto(alpha, k))
    else:
        raise ValueError(f"unknown latency distribution {kind!r} (choose from {', '.join(LATENCY_KINDS)})")
    if floor:
        return itertools.chain.from_iterable(map(lambda k: (draw(k) + floor).tolist(), _chunks()))
    return itertools.chain.from_iterable(map(lambda k: draw(k).tolist(), _chunks()))


def cuts_between(a: Iterable[int], b: Iterable[int], both: bool = True) -> set[tuple[int, int]]:
    """Cut every link from group ``a`` to group ``b`` (and back, when ``both``)."""
    a, b = list(a), list(b)
    cuts = {(x, y) for x in a for y in b if x != y}
    if both:
        cuts |= {(y, x) for x in a for y in b if x != y}
    return cuts


def groups_cuts(groups: Sequence[Sequence[int]]) -> set[tuple[int, int]]:
    """Symmetric partition into ``groups``: nodes talk only within their own group."""
    where = {n: i for i, g in enumerate(groups) for n in g}
    return {(x, y) for x in where for y in where if where[x] != where[y]}


def partition_shape(shape: str, nodes: Sequence[int], rng: random.Random,
                    node: int | None = None) -> set[tuple[int, int]]:
    """The cut links of one partition of ``shape`` over ``nodes``, chosen with ``rng``."""
    nodes = list(nodes)
    n = len(nodes)
    if n < 2:
        return set()
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    if shape == "isolate":
        victim = node if node is not None else shuffled[0]
        return cuts_between([victim], [x for x in nodes if x != victim])
    if shape == "halves":
        k = n // 2
        return groups_cuts([shuffled[:k], shuffled[k:]])
    if shape == "majority":
        k = (n - 1) // 2 or 1
        return groups_cuts([shuffled[:k], shuffled[k:]])
    if shape == "majorities-ring":
        # Jepsen: nodes on a ring, each sees itself and its neighbours within distance d,
        # a majority, and no two nodes see the same majority.
        d = math.ceil((n // 2) / 2)
        pos = {x: i for i, x in enumerate(shuffled)}
        cuts = set()
        for x in nodes:
            for y in nodes:
                if x != y:
                    dist = abs(pos[x] - pos[y])
                    if min(dist, n - dist) > d:
                        cuts.add((x, y))
        return cuts
    if shape == "bridge":
        k = n // 2
        bridge, a, b = shuffled[0], shuffled[1:k + 1], shuffled[k + 1:]
        del bridge
        return cuts_between(a, b)
    if shape == "random":
        k = rng.randint(1, n - 1)
        return groups_cuts([shuffled[:k], shuffled[k:]])
    if shape == "one-way":
        k = rng.randint(1, n - 1)
        return cuts_between(shuffled[:k], shuffled[k:], both=False)
    raise ValueError(f"unknown partition shape {shape!r} (choose from {', '.join(PARTITION_SHAPES)})")


class _LinkStreams(dict):
    """One node's outgoing latency streams, by destination, each built on first use (a large
    cluster does not pay for links that never carry a message)."""

    def __init__(self, net: Network, src: int, seed: int):
        from .rng import SeedDeriver

        super().__init__()
        # the specs, not the network: no reference cycle, so a dropped world's streams are freed at
        # once instead of waiting for (and lengthening) a cyclic-GC pass
        self.specs, self.default = net.link_specs, net.latency_spec
        self.src, self.seed = src, seed
        self.derive = SeedDeriver(seed, "link", src)  # derive_seed(seed, "link", src, dst), prefix hashed once

    def __missing__(self, dst: int) -> Iterator[float]:
        spec = self.specs.get((self.src, dst), self.default)
        stream = self[dst] = latency_stream(spec, self.derive(dst))
        return stream


class Network:
    """Link behaviour: latency per link, loss, duplication, and the standing cuts.

    Every directed link draws its latencies from its own seeded stream (so one link's traffic does
    not shift another's draws); loss and duplication draw from one more stream.
    """

    def __init__(self, nodes: Sequence[int], seed: int = 0, latency: dict | None = None,
                 links: dict | None = None, loss: float = 0.0, duplicate: float = 0.0,
                 hold_partitioned: bool = False):
        from .rng import derive_seed

        self.nodes = list(nodes)
        self.latency_spec = dict(latency or {"dist": "exponential", "mean": 1.0})
        self.link_specs = {tuple(k): dict(v) for k, v in (links or {}).items()}
        n = max(self.nodes) + 1 if self.nodes else 0
        #: streams[src][dst]: the latency iterator of link src -> dst, made when the link is first used
        self.streams = [_LinkStreams(self, a, seed) for a in range(n)]
        g = np.random.default_rng(derive_seed(seed, "loss"))
        self.uniform = itertools.chain.from_iterable(map(lambda k: g.random(k).tolist(), _chunks()))
        self.loss = float(loss)
        self.duplicate = float(duplicate)
        self.hold_partitioned = hold_partitioned
        self.cuts: set[tuple[int, int]] = set()

    def latency(self, src: int, dst: int) -> float:
        return next(self.streams[src][dst])
