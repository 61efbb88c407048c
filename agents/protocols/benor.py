"""Ben-Or's randomized binary consensus, crash-fault version (n > 2t), with local coins.

M. Ben-Or, "Another Advantage of Free Choice: Completely Asynchronous Agreement Protocols",
PODC 1983. The rounds follow the presentation (and correctness proof) of M. K. Aguilera and
S. Toueg, "The correctness proof of Ben-Or's randomized consensus algorithm", Distributed
Computing 25(5), 2012, Figure 1 (crash failures, n > 2t)::

    x := input
    for r = 1, 2, ...
        Phase 1: send (R, r, x) to all; wait for (R, r, *) from n - t processes
                 if more than n/2 of them carry the same v: send (P, r, v) to all
                 else send (P, r, ?) to all
        Phase 2: wait for (P, r, *) from n - t processes
                 if at least t + 1 carry the same v != ?: decide v
                 if at least one carries v != ?: x := v
                 else x := coin()             (a fair local coin)

Here R is the ``report`` message and P the ``proposal`` (``?`` is ``None``). Every node takes part
(``t`` of them may crash). Inputs are binary: ``Params.inputs[i]`` for node ``i``, by default
``i % 2`` (so every run with n >= 2 starts from mixed inputs).

Added for this fault model (the paper assumes reliable channels and crash-stop processes):

* *Retransmission*: a node rebroadcasts its message of the phase it waits in every
  ``resend_ms`` of its own clock, and answers a message of an earlier phase (or any phase, once it
  has stopped) with its own stored message of that phase (marked as a reply, never answered), so
  lost messages and partitions only delay the rounds.
* *Stable storage*: the round, phase, ``x``, the messages sent and the decision are kept in
  ``ctx.durable`` and synced (``ctx.fsync()``) before each phase's message leaves and when the
  node decides; a restarted node resumes where it was and resends the same messages (it never
  sends two different messages for one phase), which is indistinguishable from a slow node.
* *Stopping*: a node that decided in round r takes part in round r + 1 (which every correct node
  finishes with the same decision, Aguilera-Toueg Lemma 9) and then stops advancing; it keeps
  answering laggards from its stored messages.

Left out: the Byzantine version (n > 5t), shared coins, and early stopping messages.

Learnable choice
----------------
``("coin", r)``: asked when phase 2 of round r brought no proposal; the action (0 or 1) is the
value to adopt. ``default`` is a fair local coin drawn from ``ctx.rng`` (the textbook rule);
mask ``[True, True]``. obs: ``[r, x, reports of 1 / reports heard in phase 1 of r, proposals heard
in phase 2 of r]``.

Trace records: ``propose`` {value} (the input, once), ``decide`` {value, round}.
Clients: ``read`` is answered ``ok`` with the decided value, or ``fail`` before deciding; other
operations fail.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from envs.world.node import Node

REPORT, PROPOSAL = 1, 2  # the two phases of a round, and their messages' names below
NAMES = {REPORT: "report", PROPOSAL: "proposal"}
PHASES = {"report": REPORT, "proposal": PROPOSAL}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[int] | None = Field(None, description="binary input of node i at index i (default: i % 2)")
    t: int | None = Field(None, ge=0, description="crashes tolerated; needs n > 2t (default: (n - 1) // 2)")
    resend_ms: float = Field(50.0, gt=0, description="rebroadcast the waiting phase's message this often")
    linger_rounds: int = Field(1, ge=1, description="rounds a node keeps taking part after deciding")


class BenOr(Node):
    Params = Params
    name = "benor"

    # --- lifecycle -------------------------------------------------------------------------------
    def on_start(self, ctx):
        self.n = ctx.n
        self.t = self.params.t if self.params.t is not None else self.default_t(ctx.n)
        if not ctx.n > 2 * self.t:
            raise ValueError(f"{self.name}: needs n > 2t, got n={ctx.n}, t={self.t}")
        inputs = self.params.inputs
        if inputs is not None and len(inputs) < ctx.n:
            raise ValueError(f"{self.name}: inputs has {len(inputs)} values for {ctx.n} nodes")
        self.got: dict = {}  # (r, phase) -> {src: value}: messages received (volatile)
        self.coin_pending = False
        s = ctx.durable.get(self.name)
        if s is None:  # first start: x := input, round 1
            x = inputs[ctx.node_id] if inputs is not None else ctx.node_id % 2
            s = ctx.durable[self.name] = {"r": 1, "ph": REPORT, "x": x, "sent": {}, "decided": None, "stopped": False}
            self.s = s
            ctx.record("propose", value=x)
            self.send_phase(ctx, x)
        else:  # restart: resume the phase we were in, resend what we sent
            self.s = s
            for (r, ph), v in s["sent"].items():
                self.got.setdefault((r, ph), {})[ctx.node_id] = v
            self.resend(ctx)
        ctx.set_timer("resend", self.params.resend_ms)
        self.step(ctx)

    @staticmethod
    def default_t(n):
        return (n - 1) // 2

    # --- sending ---------------------------------------------------------------------------------
    def send_phase(self, ctx, v):
        """Send this node's (R, r, x) or (P, r, y) to all, and count it as received from itself."""
        s = self.s
        key = (s["r"], s["ph"])
        s["sent"][key] = v
        ctx.fsync()  # a restarted node resends this message, never a different one for the phase
        self.got.setdefault(key, {})[ctx.node_id] = v
        ctx.broadcast((NAMES[s["ph"]], s["r"], v, False))

    def resend(self, ctx):
        s = self.s
        key = (s["r"], s["ph"])
        if not s["stopped"] and key in s["sent"]:
            ctx.broadcast((NAMES[s["ph"]], s["r"], s["sent"][key], False))

    def on_timer(self, ctx, name):
        if name == "resend" and not self.s["stopped"]:
            self.resend(ctx)
            ctx.set_timer("resend", self.params.resend_ms)

    # --- receiving -------------------------------------------------------------------------------
    def on_message(self, ctx, src, body):
        kind, r, v, is_reply = body
        ph = PHASES[kind]
        self.got.setdefault((r, ph), {})[src] = v
        s = self.s
        behind = (r, ph) < (s["r"], s["ph"]) or s["stopped"]
        if behind and not is_reply and (r, ph) in s["sent"]:  # help a laggard (retransmission)
            ctx.send(src, (kind, r, s["sent"][(r, ph)], True))
        self.step(ctx)

    def step(self, ctx):
        """Finish every phase that has its n - t messages."""
        s = self.s
        while not s["stopped"] and not self.coin_pending:
            heard = self.got.get((s["r"], s["ph"]), {})
            if len(heard) < self.n - self.t:
                return
            if s["ph"] == REPORT:
                self.phase1(ctx, list(heard.values()))
            else:
                self.phase2(ctx, list(heard.values()))

    def phase1(self, ctx, reports):
        """Phase 1 done: propose v if more than n/2 reports carry v, else propose ``?``."""
        y = next((v for v in (0, 1) if 2 * reports.count(v) > self.n), None)
        self.s["ph"] = PROPOSAL
        self.send_phase(ctx, y)

    def phase2(self, ctx, proposals):
        """Phase 2 done: decide on t + 1 equal proposals; adopt any proposal; else flip the coin."""
        for v in (0, 1):
            if proposals.count(v) >= self.t + 1:
                self.decide(ctx, v)
        vs = [v for v in proposals if v is not None]
        if vs:  # all non-? proposals of a round are equal (each needs a majority of reports)
            self.next_round(ctx, vs[0])
        else:
            self.fallback(ctx)

    def fallback(self, ctx):
        """No proposal: x := coin(), asked as ``("coin", r)`` with a fair local coin as default."""
        s = self.s
        self.coin_pending = True
        reports = list(self.got.get((s["r"], REPORT), {}).values())
        obs = [float(s["r"]), float(s["x"]), reports.count(1) / max(1, len(reports)),
               float(len(self.got.get((s["r"], PROPOSAL), {})))]
        ctx.ask(("coin", s["r"]), obs, default=int(ctx.rng.random() < 0.5), mask=[True, True])

    def on_decision(self, ctx, point, action):
        if point[0] == "coin" and self.coin_pending and point[1] == self.s["r"]:
            self.coin_pending = False
            self.next_round(ctx, int(action))
            self.step(ctx)

    def decide(self, ctx, v):
        s = self.s
        if s["decided"] is None:
            s["decided"] = (v, s["r"])
            ctx.fsync()
            ctx.record("decide", value=v, round=s["r"])

    def next_round(self, ctx, x):
        s = self.s
        if s["decided"] is not None and s["r"] >= s["decided"][1] + self.params.linger_rounds:
            s["stopped"] = True  # keep answering laggards, advance no more
            s["x"] = x
            return
        s["r"], s["ph"], s["x"] = s["r"] + 1, REPORT, x
        self.send_phase(ctx, x)

    # --- clients ---------------------------------------------------------------------------------
    def on_client(self, ctx, op):
        decided = self.s["decided"]
        if op.f == "read" and decided is not None:
            ctx.reply(op, "ok", decided[0])
        else:
            ctx.reply(op, "fail")


NODE = BenOr
#: client reads return the decided value, not a register: the runner checks agreement, not linearizability
REGISTER_READS = False
