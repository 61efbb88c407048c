"""The live transport: batched messages between node actors under the simulator's fault model.

A message travels as a tuple ``(deliver_at, src, body, mid, mtype, lamport, vc)``:

* **send** (sender's actor): the sender checks the standing cuts (a message sent across a cut is
  dropped, or held until the heal with ``hold_partitioned``), draws loss and duplication, draws
  the link's latency from the same seeded per-link streams as the simulator
  (:func:`envs.world.network.latency_stream`) and stamps ``deliver_at = send time + latency`` in
  true time. The message goes into the sender's :class:`Outbox`.
* **batching**: an actor flushes its outbox at most once per ``batch_ms`` (at once when it has been
  idle that long, like Nagle's algorithm with a timer), with one actor call per destination
  carrying every message for it, pickled in one piece: a cluster is not bottlenecked on one call
  per message.
* **flow control**: at most ``window`` batches per link (default 1) are on their way at once; a batch
  counts as on its way until the receiver has taken it in and handled what was due (the call
  returns). Messages for a busy link wait in the outbox and go together in the next batch, so a
  loaded receiver (or machine) gets fewer, larger batches instead of a growing queue of Ray calls
  -- the ack clocking of TCP's sliding window (Jacobson, "Congestion Avoidance and Control", 1988).
* **delivery** (receiver's actor): a message waits in the receiver's event heap until
  ``deliver_at`` (or is handled on arrival, when the transport itself took longer than the
  latency), and is checked against the cuts standing *then*: a partition switched on while a
  message is in flight stops it, as in the simulator. Every actor holds the timetable of the
  network's changes (:class:`NetState` from a true time on): the nemesis's whole plan is drawn
  before the run (``driver._Plan``), so each change takes effect exactly on time on every actor,
  however loaded the machine; a change made by hand while the run goes on is pushed to every
  actor and takes effect when it arrives.

Everything here is plain Python, used inside the actors (``actors.py``).
"""

from __future__ import annotations

import itertools

import numpy as np

from envs.world.network import latency_stream
from envs.world.rng import derive_seed


class NetState:
    """The network faults every actor must know: the cut directed links, loss, duplication."""

    __slots__ = ("cuts", "loss", "duplicate", "hold")

    def __init__(self, cuts=(), loss: float = 0.0, duplicate: float = 0.0, hold: bool = False):
        self.cuts = {tuple(c) for c in cuts}
        self.loss, self.duplicate, self.hold = float(loss), float(duplicate), bool(hold)

    def to_wire(self) -> tuple:
        return (sorted(self.cuts), self.loss, self.duplicate, self.hold)

    @classmethod
    def from_wire(cls, w: tuple) -> NetState:
        return cls(*w)


class Links:
    """One sender's outgoing links: a latency stream per destination, one stream for loss/duplicates.

    Seeds are the simulator's (``"link", src, dst``), so a first incarnation draws the latencies the
    sim would; a restarted node (a new actor) draws a fresh stream per incarnation.
    """

    def __init__(self, me: int, n: int, seed: int, latency: dict, links: dict | None = None,
                 incarnation: int = 0):
        links = links or {}
        extra = (incarnation,) if incarnation else ()
        self.latency = [latency_stream(links.get((me, d), latency), derive_seed(seed, "link", me, d, *extra))
                        for d in range(n)]
        g = np.random.default_rng(derive_seed(seed, "loss", me, incarnation))
        self.uniform = itertools.chain.from_iterable(map(lambda _: g.random(4096).tolist(), itertools.count()))


class Outbox:
    """Messages waiting for the next flush, grouped by destination."""

    __slots__ = ("batches", "count")

    def __init__(self):
        self.batches: dict[int, list] = {}
        self.count = 0

    def put(self, dst: int, msg: tuple) -> None:
        b = self.batches.get(dst)
        if b is None:
            self.batches[dst] = [msg]
        else:
            b.append(msg)
        self.count += 1

    def pop(self, dst: int) -> list:
        """Everything waiting for ``dst``, emptied."""
        b = self.batches.pop(dst)
        self.count -= len(b)
        return b

    def take(self) -> dict[int, list]:
        """Everything waiting, emptied: ``{dst: [msg, ...]}``."""
        b, self.batches, self.count = self.batches, {}, 0
        return b

    def __len__(self) -> int:
        return self.count
