"""Time in the live runtime: one true clock for the observer, one drifting clock per node.

*True time* is the driver machine's monotonic clock in ms since the run started (``t0``). Only
the observer uses it: trace events and client operations are stamped with it. An actor on another
machine reads its own monotonic clock plus an *offset* estimated once by Cristian's algorithm
(F. Cristian, "Probabilistic clock synchronization", Distributed Computing 3(3), 1989): the driver
asks the actor for its clock and takes the reading to have been made half-way through the round
trip; of a few tries the one with the shortest round trip wins, so the error is at most half of
it. Actors on the driver's own machine share its monotonic clock and need no offset.

A node never sees true time: ``ctx.now()`` is its :class:`envs.world.clock.Clock` (offset, drift,
jitter, clock faults) applied to true time, exactly as in the simulator.
"""

from __future__ import annotations

import time


class TrueClock:
    """True time (ms since the run's start) read from this process's monotonic clock."""

    __slots__ = ("base",)

    def __init__(self, t0: float, offset: float = 0.0):
        #: ``t0`` on this process's monotonic clock (``offset`` = driver clock - this clock)
        self.base = t0 - offset

    def now(self) -> float:
        return (time.monotonic() - self.base) * 1000.0

    def mono(self, t_ms: float) -> float:
        """This process's monotonic reading (s) at true time ``t_ms``: for ``loop.call_at``."""
        return self.base + t_ms / 1000.0


def cristian_offset(read_remote, tries: int = 5) -> tuple[float, float]:
    """``(offset, error)`` in s of a remote monotonic clock: local = remote + offset, |err| <= error.

    ``read_remote()`` returns the remote clock's reading (blocking round trip).
    """
    best = None
    for _ in range(tries):
        d0 = time.monotonic()
        r = read_remote()
        d1 = time.monotonic()
        rtt = d1 - d0
        if best is None or rtt < best[1]:
            best = ((d0 + d1) / 2.0 - r, rtt)
    return best[0], best[1] / 2.0
