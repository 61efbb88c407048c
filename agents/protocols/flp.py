"""A deterministic 1-crash-tolerant consensus protocol, and the scheduler that keeps it undecided.

M. J. Fischer, N. A. Lynch, M. S. Paterson, "Impossibility of Distributed Consensus with One
Faulty Process", JACM 32(2), 1985 (FLP): no deterministic protocol for asynchronous processes
that tolerates one crash can guarantee termination; some admissible run -- every message
eventually delivered, no process crashing -- never decides.

The protocol
------------
Ben-Or's crash-fault rounds (``agents/protocols/benor.py``, Aguilera-Toueg's presentation) with
the coin replaced by a deterministic rule, and ``t = 1``: each node waits for ``n - 1`` messages
per phase (it must, to tolerate one crash)::

    Phase 1: send (R, r, x); wait for n - 1 reports; propose v if more than n/2 carry v, else ?
    Phase 2: send (P, r, y); wait for n - 1 proposals; decide v on t + 1 = 2 proposals of v;
             adopt any proposal v; else keep x           (Ben-Or: flip a coin)

Agreement and validity hold for every schedule, for the same reasons as in Ben-Or (the coin plays
no part in safety), so the runs of this module never decide two values. Under a fair schedule
(random latencies) some phase 1 sees a majority and the protocol decides within a few rounds.
Binary inputs from ``Params.inputs`` (default ``i % 2``); ``n >= 3``.

The adversary (:func:`adversary_plan`, :func:`run_adversary`)
------------------------------------------------------------
A node cannot tell a slow process from a crashed one, so it must go on with ``n - 1`` messages.
The scheduler chooses, for every node ``i``, one sender ``j`` holding the majority value and
delays every message from ``j`` to ``i``: ``i`` then sees a phase-1 view with no value on more than
n/2 reports, proposes ``?``, receives only ``?`` proposals, and keeps its value. The configuration
(the nodes' values) is the same after every round, so no node ever decides -- for as many rounds
as asked. The delay is a one-way cut with the network in hold mode (``hold_partitioned``): the
messages are held, not lost, and are delivered when the scheduler lets go (``sim.heal()``), so the
run is admissible in FLP's sense (no crash, every message eventually delivered). After the heal
the schedule is fair and the protocol decides.

FLP's proof builds such a run for *every* protocol from a bivalent configuration, one delayed
event at a time (Lemmas 2 and 3); this module shows the phenomenon for one simple protocol, with a
plan found from the current configuration each round (for mixed inputs in which the majority
value is held by at most n/2 + 1 nodes, e.g. 2-1 of 3 or 3-2 of 5). Left out: the general
bivalence construction for an arbitrary protocol.

Learnable choices: none (the point is that the protocol is deterministic).
Trace records: ``propose`` {value}, ``decide`` {value, round}.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agents.protocols.benor import BenOr


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[int] | None = Field(None, description="binary input of node i at index i (default: i % 2)")
    t: int = Field(1, ge=1, le=1, description="crashes tolerated: 1 (FLP's setting)")
    resend_ms: float = Field(50.0, gt=0, description="rebroadcast the waiting phase's message this often")
    linger_rounds: int = Field(1, ge=1, description="rounds a node keeps taking part after deciding")


class Deterministic(BenOr):
    """Ben-Or's rounds without the coin: when phase 2 brings no proposal, keep ``x``."""

    Params = Params
    name = "flp"

    def fallback(self, ctx):
        self.next_round(ctx, self.s["x"])


# --- the adversarial scheduler (observer side: it reads every node's state) ----------------------
def adversary_plan(values: list[int]) -> set[tuple[int, int]] | None:
    """The links ``(j, i)`` to delay so that no node sees more than n/2 equal reports among the
    ``n - 1`` it waits for; ``None`` when no such plan exists (unanimous or too lopsided values)."""
    n = len(values)
    cuts = set()
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            view = [values[k] for k in range(n) if k != j]
            if all(2 * view.count(v) <= n for v in (0, 1)):
                cuts.add((j, i))
                break
        else:
            return None
    return cuts


def rounds(sim) -> list[int]:
    """Each live node's current round (observer view)."""
    return [sim.node(i).s["r"] for i in range(sim.n) if sim.node(i) is not None]


def decided(sim) -> bool:
    return any(e.kind == "decide" for e in sim.trace.events())


def run_adversary(sim, k: int, step_ms: float = 10_000.0) -> int:
    """Drive ``sim`` (running :class:`Deterministic`) until every node has finished ``k`` rounds
    with no decision, re-planning the delayed links at every round; return the rounds reached.

    Messages on delayed links are held (never lost) until :meth:`Sim.heal`. Raises
    ``RuntimeError`` if no plan exists for the current configuration.
    """
    sim.net.hold_partitioned = True  # the scheduler delays messages; it never drops them
    sim.start()
    plan = None
    while min(rounds(sim)) <= k:
        new = adversary_plan([sim.node(i).s["x"] for i in range(sim.n)])
        if new is None:
            raise RuntimeError("no delaying plan for this configuration")
        if new != plan:
            plan = new
            sim.set_cuts(plan, "flp-adversary")
        target = min(rounds(sim)) + 1
        sim.run(until=sim.now + step_ms, stop=lambda t=target: min(rounds(sim)) >= t)
        if decided(sim):
            break
    return min(rounds(sim)) - 1


NODE = Deterministic
#: client reads return the decided value, not a register: the runner checks agreement, not linearizability
REGISTER_READS = False
