"""Seeded randomness: every random choice in a run draws from a stream derived from the run's seed."""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *names: object) -> int:
    """A 64-bit seed for the stream named ``names`` under the run's ``seed`` (stable across Pythons)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(names)).encode()).digest()
    return int.from_bytes(h[:8], "little")


def derive_rng(seed: int, *names: object) -> random.Random:
    return random.Random(derive_seed(seed, *names))
