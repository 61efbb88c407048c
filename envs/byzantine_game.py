"""Byzantine-v0: learned adversaries attack PBFT, one decision per protocol phase.

Every node runs PBFT (``agents/protocols/pbft.py``: Castro and Liskov, "Practical Byzantine Fault
Tolerance", OSDI 1999). At the start ``adversaries`` of them (default ``max(1, f)``, ``f = (n-1)//3``;
nodes ``0..k-1`` unless ``byzantine_nodes`` names others; node 0 is the primary of view 0) are made
Byzantine with the world's ``phased`` strategy (``envs/world/byzantine.py``): the honest protocol
object keeps running inside the node, and every batch of messages of one type that one of its
handlers emits (a *phase*: the pre-prepare, the prepares, the commits of one request, a checkpoint,
a view-change, a new-view; section 4 of the paper) is held until the node's agent decides what to do
with it. The world's channels stay authenticated: a Byzantine node can sign only as itself, so it
can lie, stay silent or equivocate, never forge another replica's messages (the paper's section 2).

Agents are ``node_0 .. node_{n-1}`` as in every capgym game; only the Byzantine nodes' agents owe
decisions (the correct replicas' agents only ever see the no-op mask).

Actions (``Discrete(6)``; ``Discrete(7)`` with ``collude``)
    ``0`` honest (send the batch as the protocol wrote it), ``1`` drop it, ``2`` delay it by
    ``delay_ms`` (own clock), ``3`` equivocate (one field changed, re-signed, for every other
    recipient: conflicting values to two halves of the peers), ``4`` corrupt (one field changed for
    every recipient); with ``collude: true`` also ``5`` collude (the batch goes as the world's
    colluding ``pbft`` strategy, ``PBFTAttack``, sends it, its state shared with every colluding
    adversary: a pre-prepare sends the request to some replicas and the null request at the same
    sequence number to the others; prepares or commits for ``(v, n)`` are replaced by a prepare and
    a commit, to each replica, for what the colluding primary sent that replica; other phases go as
    written); the last action is the no-op (legal only with nothing to decide; an agent that owes a
    decision and sends it gets ``0``, honest). Every choice is legal at every phase (at a
    view-change-timeout decision, the first five).

Observation (``Box(17)``, the node's local view only)
    ``[one-hot of the phase's message type among request, pre_prepare, prepare, commit, checkpoint,
    view_change, new_view, other (8), messages in the batch, 1.0 when this node is the primary of
    its view, 1.0 while it is changing views, its view / 10, requests pending here / 10, 1.0 for a
    view-change-timeout decision (``honest_learners``), view changes since the last view entered / 4,
    clock_s, owes_decision]``. The protocol state is the honest PBFT object the node still runs
    inside, read by the node itself when it asks (the ``phased`` strategy puts it in the ask's obs;
    PBFT's own view-change-timeout ask carries it too), so the same observation is built inside a
    live node's actor (``capgym evaluate --runtime live``). It is the node's state when it asked: with
    ``decision_window_ms > 0`` the agent answers up to a window later and the state may have moved.

Rewards (the adversaries' side; the observer judges correct replicas and correct clients only,
``metrics.byzantine``). Clients send every operation to every replica and complete on ``f + 1``
matching replies (``workload.replies``, the paper's section 4.1), so every client is judged.
    local, adversary ``i``: ``+miss_reward`` for every client operation that ended without ``ok``
    (failed, unknown, timed out) whose request ``i`` tampered with (a non-honest action on a batch
    carrying it); ``+view_change_reward`` for every view the correct replicas left whose primary was
    ``i`` (a view led by a correct primary: shared among the adversaries); ``+violation_reward`` at
    the end when safety was broken (correct replicas executed different requests at one sequence
    number, or the correct clients' history is not linearizable).
    global (the adversaries' team, the same for every agent; negated for the correct replicas with
    ``honest_learners``): per step ``view_change_reward`` per
    view change, ``+miss_reward`` per operation that ended without ``ok``, ``-ok_cost`` per
    operation completed ``ok`` (so liveness lost is paid as completed requests per second lost), and
    ``violation_reward`` at the end for a safety violation.

Global measures (final ``infos[agent]["global"]`` and ``global_measures()``)
    ``ops_ok``, ``ops_failed``, ``completed_per_s`` (operations completed ``ok`` per second of
    simulated time), ``view_changes`` (the highest view any correct replica entered),
    ``log_agreement`` (``metrics.byzantine.log_agreement`` over the correct replicas),
    ``linearizable`` (``metrics.linearizability``; None when not checked, ``"unknown"`` past the time
    budget), ``safety_violation`` (a log conflict, or not linearizable), ``actions`` (how often each
    choice was made), ``timeout_multiples`` (how often each multiple of ``T`` was chosen:
    ``honest_learners``), ``byzantine`` (the nodes left out), ``decisions``, ``returns``.

With at most ``f`` adversaries (whatever they choose) a safety violation is a bug in PBFT or in the
world (``tests/test_byzantine_game.py`` plays random adversaries over seeds). ``adversary_strategy``
may name any other scripted world strategy (``pbft``, ``equivocate``, ...) instead of ``phased``:
the Byzantine nodes then follow the script and nobody owes a decision (the scripted baselines of
the table in ``docs/byzantine.md``; ``pbft`` with ``f + 1`` nodes, the primary among them, is the
strategy known to break safety; with ``collude`` the same attack is one of the agents' choices, so
f + 1 learned adversaries can express it: ``tests/test_byzantine_game.py`` checks that f + 1 that
always collude break safety and f that collude at random do not).

``honest_learners`` (the two-sided game): every replica's PBFT asks its agent, whenever its
view-change timer starts from idle, which multiple of ``T`` (section 4.4; ``view_change_timeout_ms``,
still doubled per failed view change) to wait: actions ``0..4`` pick ``timeout_multiples``
(``[0.25, 0.5, 1, 2, 4]``; the default, ``2``, is ``T`` itself). The correct replicas' agents then
learn too: their local reward is the adversaries' team reward negated (the same each step), and in
the global and mixed modes the global term is negated for them (``Episode.side``), so the game is
zero-sum. A Byzantine node's agent answers its own (inner) PBFT's timeout asks as well.
"""

from __future__ import annotations

import weakref

from pydantic import Field, model_validator

from agents.protocols import get as get_protocol
from envs.base import CapAEC, CapParallel, EnvConfig, Episode, Game, validate
from envs.world.byzantine import STRATEGY_NAMES, Phased
from envs.world.records import OK
from envs.world.sim import Ask

ACTIONS = ("honest", "drop", "delay", "equivocate", "corrupt", "collude")  # collude: with ``collude: true``
#: the choices of a view-change-timeout decision (``honest_learners``): one per multiple of T
TIMEOUT_CHOICES = 5
#: message types whose body carries a request at index 3: (type, v, n, m, ...)
CARRIES_REQUEST = frozenset({"pre_prepare", "prepare", "commit"})


class ByzantineConfig(EnvConfig):
    nodes: int = Field(4, ge=2, le=1024, description="replicas (n = 3f + 1 tolerates f Byzantine ones)")
    duration_ms: float = Field(2000.0, gt=0, description="horizon in simulated (true) ms")
    adversaries: int | None = Field(None, ge=0, description="Byzantine nodes (default max(1, f), f = (n-1)//3); "
                                    "more than f goes past PBFT's bound")
    byzantine_nodes: list[int] | None = Field(None, description="which nodes are Byzantine (default 0..k-1; "
                                              "node 0 is the primary of view 0)")
    adversary_strategy: str = Field("phased", description="phased (the agents decide) or a scripted world "
                                    "strategy (then nobody owes a decision)")
    delay_ms: float = Field(200.0, ge=0, description="how long action 2 (delay) holds a batch, own clock ms")
    ok_cost: float = Field(0.1, ge=0, description="global: adversaries lose this per operation completed ok")
    miss_reward: float = Field(1.0, ge=0, description="per operation that ended without ok (local: only "
                                                      "those whose request the adversary tampered with)")
    view_change_reward: float = Field(5.0, ge=0, description="per view the correct replicas left")
    violation_reward: float = Field(50.0, ge=0, description="at the end, when safety was broken")
    check_linearizability: bool = True
    linearizability_timeout_s: float = Field(5.0, gt=0, description="wall-clock budget of the check")
    collude: bool = Field(False, description="add action 5, collude: the batch goes as the world's colluding "
                          "pbft strategy sends it, sharing its state with the other colluding adversaries")
    honest_learners: bool = Field(False, description="two-sided game: every replica's agent also chooses the "
                                  "multiple of PBFT's view-change timeout T (protocol_params.learn_timeout); "
                                  "the correct replicas' reward is the adversaries' team reward negated")

    @model_validator(mode="after")
    def _check(self):
        f = (self.nodes - 1) // 3
        if self.adversaries is None:
            self.adversaries = len(self.byzantine_nodes) if self.byzantine_nodes is not None else max(1, f)
        if self.adversaries >= self.nodes:
            raise ValueError(f"adversaries must be below nodes ({self.nodes}), not {self.adversaries}")
        if self.byzantine_nodes is None:
            self.byzantine_nodes = list(range(self.adversaries))
        else:
            bad = [i for i in self.byzantine_nodes if not 0 <= i < self.nodes]
            if bad:
                raise ValueError(f"byzantine_nodes: {', '.join(map(str, bad))} not among the nodes 0..{self.nodes - 1}")
            if len(set(self.byzantine_nodes)) != self.adversaries:
                k = self.adversaries
                raise ValueError(f"byzantine_nodes: {self.byzantine_nodes} must name {k} distinct node"
                                 f"{'s' if k != 1 else ''} (one per adversary)")
        if self.adversary_strategy not in STRATEGY_NAMES:
            raise ValueError(f"adversary_strategy: unknown {self.adversary_strategy!r} "
                             f"(choose from {', '.join(STRATEGY_NAMES)})")
        if self.honest_learners:
            self.protocol_params = {**self.protocol_params, "learn_timeout": True}
        if self.collude and self.adversary_strategy != "phased":
            raise ValueError(f"collude: an action of the phased strategy, not of {self.adversary_strategy!r}")
        m = self.protocol_params.get("timeout_multiples")
        if m is not None and len(m) != TIMEOUT_CHOICES:
            raise ValueError(f"protocol_params.timeout_multiples: Byzantine-v0 needs {TIMEOUT_CHOICES}, not {len(m)}")
        return self


class ByzantineGame(Game):
    Config = ByzantineConfig
    name = "Byzantine-v0"
    n_actions = len(ACTIONS) - 1  # collude (the last) only with ``collude: true``
    n_features = (len(Phased.PHASES) + 1) + 1 + 4 + 2  # phase one-hot (with "other"), batch, state, timeout

    def __init__(self, cfg):
        super().__init__(cfg)
        self.cls = get_protocol("pbft")
        self.params = validate(self.cls.Params, cfg.protocol_params, "protocol_params")
        self.f = (cfg.nodes - 1) // 3
        self.byz = tuple(sorted(cfg.byzantine_nodes))
        self.n_actions = len(ACTIONS) - (not cfg.collude)
        self.phase_mask = [1] * self.n_actions
        self.timeout_mask = [1] * TIMEOUT_CHOICES + [0] * (self.n_actions - TIMEOUT_CHOICES)
        self.ep = lambda: None  # a weak reference to the current episode (tests read its nodes)

    @property
    def default_workload(self) -> dict:
        return {"clients": self.cfg.nodes, "ops": {"read": 0.5, "write": 0.5}, "think_ms": 20.0,
                "timeout_ms": 1000.0, "replies": self.f + 1}

    def node_program(self):
        return self.cls, self.params

    # --- the world ------------------------------------------------------------------------------
    def adversaries(self) -> dict:
        """``{node: (strategy, options)}``: the nodes Byzantine from the start, in either runtime
        (the simulator's ``setup``; ``run_live(byzantine=...)``)."""
        cfg = self.cfg
        opts = {"delay_ms": cfg.delay_ms, "collude": cfg.collude} if cfg.adversary_strategy == "phased" else {}
        return {i: (cfg.adversary_strategy, opts) for i in self.byz}

    def team_reward(self, views: int, miss: int, ok: int) -> float:
        """The adversaries' team reward for ``views`` view changes, ``miss`` failed and ``ok``
        completed operations of the correct clients."""
        c = self.cfg
        return c.view_change_reward * views + c.miss_reward * miss - c.ok_cost * ok

    def setup(self, ep: Episode) -> None:
        cfg, sim = self.cfg, ep.sim
        self.ep = weakref.ref(ep)  # weak: a released episode's world must not outlive it
        byz = set(self.byz)
        for i, (strategy, opts) in self.adversaries().items():
            sim.byzantine(i, strategy, **opts)
        ep.byz = byz
        ep.tampered = {}  # request id -> adversaries that tampered with a batch carrying it
        ep.ok = ep.miss = 0  # correct clients' operations ended ok / not ok
        ep.ok_paid = ep.miss_paid = 0
        ep.views = 0  # highest view a correct replica entered
        ep.views_paid = 0
        ep.actions = [0] * self.n_actions
        ep.timeouts = [0] * TIMEOUT_CHOICES  # honest_learners: how often each multiple of T was chosen
        ep.team = 0.0  # the adversaries' team reward not yet paid into the welfare
        ep.honest = [i for i in range(ep.n) if i not in byz] if cfg.honest_learners else []
        if cfg.honest_learners:
            ep.side = [1.0 if i in byz else -1.0 for i in range(ep.n)]
        ep.verdict = None
        miss, earned = cfg.miss_reward, ep.earned

        def completed(op):
            if op.node is not None and op.node in byz:
                return  # a Byzantine node's own client (workload.replies: 1): not judged
            if op.status == OK:
                ep.ok += 1
                return
            ep.miss += 1
            rid = (("client", op.process) if op.node is None else op.node, op.id)  # PBFT's request id
            for i in ep.tampered.pop(rid, ()):
                earned[i] += miss

        sim.on_complete.append(completed)

    # --- decisions ------------------------------------------------------------------------------
    def features(self, ask: Ask) -> list[float]:
        """A phase: ``[phase one-hot (8), batch size, primary, changing, view / 10, pending / 10, 0, tries / 4]``,
        the ask's own obs: the ``phased`` strategy reads them from the Byzantine node's own (inner,
        honest) PBFT state when it asks (``Phased.own_state``), so a policy answering inside a live
        node's actor sees what the environment sees. A view-change timeout (``honest_learners``):
        the same from the replica's ask, with the one-hot and the batch size zero and ``1`` before
        ``tries``."""
        if ask.point[0] == "view_change_timeout":
            tries, v, pending, changing = ask.obs
            return [0.0] * (len(Phased.PHASES) + 2) + [float(v % self.cfg.nodes == ask.node), float(changing),
                                                         v / 10.0, pending / 10.0, 1.0, tries / 4.0]
        return list(ask.obs)

    def mask(self, ask: Ask) -> list[int]:
        """Every choice at a phase; at a view-change-timeout decision the multiples of T only."""
        return self.phase_mask if ask.point[0] == "byzantine" else self.timeout_mask

    def action(self, ep: Episode, ask: Ask, a: int) -> int:
        if ask.point[0] != "byzantine":
            ep.timeouts[a] += 1
            return a
        ep.actions[a] += 1
        if a != Phased.HONEST:
            node = ep.sim.states[ask.node].obj
            for _dst, body in getattr(node, "asked", {}).get(ask.point[2], ()):
                if body[0] in CARRIES_REQUEST and isinstance(body[3], tuple) and len(body[3]) == 6:
                    m = body[3]  # ("req", client or entry replica, op id, ...): its id is (m[1], m[2])
                    ep.tampered.setdefault((m[1], m[2]), set()).add(ask.node)
        return a

    def default(self, ep: Episode, ask: Ask) -> int:
        if ask.point[0] != "byzantine":
            ep.timeouts[ask.default] += 1
            return ask.default
        ep.actions[Phased.HONEST] += 1
        return Phased.HONEST

    # --- rewards and the observer ---------------------------------------------------------------
    def collect(self, ep: Episode) -> None:
        """Credit view changes (the highest view a correct replica entered) as they happen, and
        the safety verdict once the episode is over."""
        views = ep.views
        for i, s in enumerate(ep.sim.states):
            if i in ep.byz or not s.up or s.obj is None:
                continue
            d = getattr(s.obj, "d", None)
            if d is not None and not d["changing"] and d["view"] > views:
                views = d["view"]
        if views > ep.views:
            share = self.cfg.view_change_reward / len(self.byz) if self.byz else 0.0
            for w in range(ep.views, views):
                p = w % ep.n
                if p in ep.byz:
                    ep.earned[p] += self.cfg.view_change_reward
                else:
                    for i in self.byz:
                        ep.earned[i] += share
            ep.views = views
        c = self.cfg
        team = self.team_reward(ep.views - ep.views_paid, ep.miss - ep.miss_paid, ep.ok - ep.ok_paid)
        ep.views_paid, ep.miss_paid, ep.ok_paid = ep.views, ep.miss, ep.ok
        if ep.done and ep.verdict is None:
            ep.verdict = self.safety(ep)
            if ep.verdict["safety_violation"]:
                for i in self.byz:
                    ep.earned[i] += c.violation_reward
                for i in ep.honest:
                    ep.earned[i] -= c.violation_reward
        ep.team += team
        for i in ep.honest:  # the correct replicas' side: the adversaries' team reward, negated
            ep.earned[i] -= team

    def welfare_step(self, ep: Episode, local: list[float]) -> None:
        """The adversaries' team reward this step: view changes and failed operations gained,
        operations completed ok lost (the violation is paid by ``terminal_welfare``)."""
        ep.welfare += ep.team
        ep.team = 0.0

    def safety(self, ep: Episode) -> dict:
        """The observer's safety verdict over correct replicas and correct clients."""
        events = list(ep.sim.trace.events(kinds={"execute", "commit", "byzantine"}))
        return self.judge(list(ep.sim.history), events, ep.byz)

    def judge(self, hist: list, events: list, byz) -> dict:
        """The safety verdict from a history and a trace (its ``execute``, ``commit`` and
        ``byzantine`` events; the live runtime's too): ``log_agreement`` over the replicas not in
        ``byz``, the linearizability of the correct clients' history, the nodes left out."""
        from metrics.byzantine import correct_view, faulty_writes, log_agreement

        events = [e for e in events if e.kind in ("execute", "commit", "byzantine")]
        kept, _evs, left = correct_view(hist, events)
        agreement = log_agreement(events, exclude=byz) or {"positions": 0, "conflicts": 0, "first_conflict": None}
        lin = None
        if self.cfg.check_linearizability:
            from metrics.linearizability import check
            from metrics.models import REGISTER

            ops = [op for op in kept + faulty_writes(hist, byz) if op.f in REGISTER.ops]
            lin = check(ops, REGISTER, timeout=self.cfg.linearizability_timeout_s, prefix=False).ok
        conflict = agreement["conflicts"] > 0
        return {"log_agreement": agreement, "linearizable": lin, "byzantine": left,
                "safety_violation": conflict or lin is False}

    def measures(self, ep: Episode) -> dict:
        verdict = ep.verdict if ep.verdict is not None else self.safety(ep)
        secs = ep.sim.now / 1000.0
        return {
            "ops_ok": ep.ok,
            "ops_failed": ep.miss,
            "completed_per_s": ep.ok / secs if secs else 0.0,
            "view_changes": ep.views,
            **verdict,
            "actions": dict(zip(ACTIONS[:self.n_actions], ep.actions, strict=True)),
            "timeout_multiples": dict(zip(map(str, self.params.timeout_multiples), ep.timeouts, strict=True)),
            "decisions": ep.decisions,
            "returns": ep.returns(),
        }

    def terminal_welfare(self, ep: Episode, m: dict) -> float:
        return self.cfg.violation_reward if m["safety_violation"] else 0.0


class raw_env(CapAEC):
    """Byzantine-v0 in the AEC API (see the module docstring)."""

    game_cls = ByzantineGame
    metadata = {"render_modes": ["ansi"], "name": "Byzantine-v0", "is_parallelizable": True}


class parallel_raw_env(CapParallel):
    """Byzantine-v0 in the Parallel API (see the module docstring)."""

    game_cls = ByzantineGame
    metadata = {"render_modes": ["ansi"], "name": "Byzantine-v0", "is_parallelizable": True}


def env(**kwargs) -> raw_env:
    """Byzantine-v0, AEC API."""
    return raw_env(**kwargs)


def parallel_env(**kwargs) -> parallel_raw_env:
    """Byzantine-v0, Parallel API."""
    return parallel_raw_env(**kwargs)
