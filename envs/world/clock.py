"""Physical clocks with offset, drift and jitter, and the faults that hit them.

A node's clock reads ``local(t) = base_local + rate * (t - base_true)`` at true time ``t``, where
``rate = 1 + drift``. Jitter adds uniform noise in ``[-jitter, +jitter]`` to what the node *reads*
(``ctx.now()``); timers and trace readings use the noiseless clock. A timer set for ``d`` ms of the
node's clock fires when the local clock has advanced by ``d``: after ``d / (1 + drift)`` true ms.

Faults (as in Jepsen's clock nemesis): ``bump`` jumps the clock by ``delta`` ms, ``drift`` changes
the rate, ``strobe`` (scheduled by the nemesis) bumps back and forth for a while.
"""

from __future__ import annotations

import random


class Clock:
    __slots__ = ("base_local", "base_true", "rate", "jitter", "_rng")

    def __init__(self, offset: float = 0.0, drift: float = 0.0, jitter: float = 0.0,
                 rng: random.Random | None = None):
        if drift <= -1.0:
            raise ValueError("clock drift must be greater than -1")
        self.base_true = 0.0
        self.base_local = float(offset)
        self.rate = 1.0 + drift
        self.jitter = float(jitter)
        self._rng = rng or random.Random(0)

    @property
    def drift(self) -> float:
        return self.rate - 1.0

    def local(self, t: float) -> float:
        """The noiseless reading at true time ``t``."""
        return self.base_local + self.rate * (t - self.base_true)

    def read(self, t: float) -> float:
        """What the node sees at true time ``t`` (with jitter)."""
        v = self.base_local + self.rate * (t - self.base_true)
        if self.jitter:
            v += self._rng.uniform(-self.jitter, self.jitter)
        return v

    def true_at(self, local: float) -> float:
        """The true time at which the noiseless clock will read ``local``."""
        return self.base_true + (local - self.base_local) / self.rate

    def _rebase(self, t: float) -> None:
        self.base_local = self.local(t)
        self.base_true = t

    def bump(self, t: float, delta: float) -> None:
        self._rebase(t)
        self.base_local += delta

    def set_drift(self, t: float, drift: float) -> None:
        if drift <= -1.0:
            raise ValueError("clock drift must be greater than -1")
        self._rebase(t)
        self.rate = 1.0 + drift
