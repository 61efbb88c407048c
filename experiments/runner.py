"""Running a config in the sim and measuring it from the outside.

:func:`simulate` runs one protocol of a :class:`~experiments.config.RunConfig` in time slices (so a
Ctrl-C stops it cleanly between slices) and returns what the observer recorded: the history and
the trace. :func:`summarize` and :func:`series` turn those into the run's measures -- computed only
from the history, the trace and the config, so ``capgym report`` rebuilds the same summary from
the saved files.

The measures come from ``metrics/``: availability (ok fraction, Gilbert & Lynch's A), staleness
(stale reads, Bailis et al.'s PBS), cost (messages per operation), convergence (divergence of the
replicas' ``apply`` events, time to converge after the last heal) and linearizability (Wing & Gong
/ Lowe search, P-compositional by key) against the model the workload's operations call for; a
stale read is itself a proof of non-linearizability, so the search runs only when there is none.
"""

from __future__ import annotations

import bisect
import dataclasses
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from envs.world.records import FAIL, OK, Event, Op
from experiments.config import ProtocolEntry, RunConfig

#: seconds the linearizability search may take per protocol before its verdict is "unknown"
LINEARIZABILITY_BUDGET_S = 30.0
#: buckets of the time series in metrics.csv and the plots
BUCKETS = 50
#: the most events the sim runs between two looks at the stop flag and the trace buffer
CHUNK_EVENTS = 16384
#: trace events held in memory before they are written out (a streamed run)
TRACE_BUFFER = 65536


@dataclass
class RunData:
    """What one protocol's run left: the history, the trace, and how far it got (true ms)."""

    entry: ProtocolEntry
    history: list[Op]
    events: list[Event]  # or a TraceFile (streamed runs): iterable, read in batches
    sim_ms: float
    interrupted: bool = False
    stats: dict = field(default_factory=dict)
    trace: object = None  # the sim's Trace (for the exports); None when loaded from files


# --- running ------------------------------------------------------------------------------------
def simulate(cfg: RunConfig, entry: ProtocolEntry, stop: Callable[[], bool] = lambda: False,
             progress: bool = True, slice_ms: float = 250.0, trace_path=None) -> RunData:
    """Run ``entry`` under the config's scenario until ``world.duration_ms`` or until ``stop()``.

    The sim runs in slices of at most ``slice_ms`` of true time (and at most 1/100 of the run),
    each cut into chunks of at most :data:`CHUNK_EVENTS` events; ``stop()`` is checked between
    chunks, so an interrupt is seen within a fraction of a second. With ``trace_path`` the trace
    streams into that Parquet file (:mod:`envs.world.tracefile`) whenever :data:`TRACE_BUFFER`
    events wait, and ``RunData.events`` is the file, read back in batches; without it the trace
    stays in memory (small runs, tests). A tqdm bar on stderr appears for runs that take more
    than two seconds. ``RunData.stats["trace_s"]`` is the wall time spent writing the trace.
    """
    from tqdm import tqdm

    from agents import protocols
    from envs.world.build import build_sim
    from envs.world.trace import FIELDS
    from envs.world.tracefile import TraceFile, TraceWriter

    node_cls = protocols.get(entry.name)
    params = node_cls.Params(**entry.params) if hasattr(node_cls, "Params") else None
    sim = build_sim(cfg.scenario(), node_cls, params)
    writer = None
    trace_s = 0.0
    if trace_path is not None:
        writer = TraceWriter(trace_path, sim.n, FIELDS)
        sim.trace.stream(writer.write, TRACE_BUFFER)
    end = cfg.world.duration_ms
    step = min(slice_ms, end / 100)
    interrupted = False
    try:
        with tqdm(total=round(end), unit="ms", desc=entry.tag, delay=2.0, disable=not progress,
                  leave=False, dynamic_ncols=True) as bar:
            t = 0.0
            while t < end and not interrupted:
                t = min(end, t + step)
                while True:
                    reason = sim.run(until=t, max_events=CHUNK_EVENTS)
                    if writer is not None:
                        t0 = time.perf_counter()
                        sim.trace.maybe_drain()
                        trace_s += time.perf_counter() - t0
                    if stop():
                        interrupted = True
                        break
                    if reason != "max_events":
                        break
                bar.update(round(sim.now) - bar.n)
        if writer is None:
            return RunData(entry, list(sim.history), list(sim.trace.events()), sim.now, interrupted,
                           sim.stats(), sim.trace)
        t0 = time.perf_counter()
        sim.trace.drain()
        writer.close()
        trace_s += time.perf_counter() - t0
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    stats = {**sim.stats(), "trace_s": trace_s}
    sim.close()
    history, now = list(sim.history), sim.now
    del sim
    # the finished world's parts that still point at each other (a million objects at 1,000 gossip
    # nodes) go now, so the measures reuse their memory instead of adding to it
    gc.collect()
    events = TraceFile(trace_path)
    return RunData(entry, history, events, now, interrupted, stats, events)


def run_entry(cfg: RunConfig, entry: ProtocolEntry, stop: Callable[[], bool] = lambda: False,
              progress: bool = True, trace_path=None) -> RunData:
    """Run one protocol entry in the config's runtime: the simulator (its trace streamed into
    ``trace_path`` when given), or live Ray actors."""
    if cfg.runtime == "live":
        return run_live_entry(cfg, entry, stop)
    return simulate(cfg, entry, stop, progress, trace_path=trace_path)


def run_live_entry(cfg: RunConfig, entry: ProtocolEntry, stop: Callable[[], bool] = lambda: False) -> RunData:
    """Run ``entry`` with every node a Ray actor (``experiments.live``); same outputs as :func:`simulate`."""
    from agents import protocols
    from envs.world.trace import EventTrace
    from experiments.live import run_live

    node_cls = protocols.get(entry.name)
    params = node_cls.Params(**entry.params) if hasattr(node_cls, "Params") else None
    history, events, stats = run_live(cfg.scenario(), node_cls, params, address=cfg.ray.address, stop=stop)
    sim_ms = float(stats.get("true_time_ms", cfg.world.duration_ms))
    return RunData(entry, list(history), list(events), sim_ms, bool(stats.get("interrupted")), stats,
                   EventTrace(events))


# --- measuring ----------------------------------------------------------------------------------
#: the linearizability verdicts of a run's summary, each with its ``why``
LINEARIZABLE, NOT_LINEARIZABLE = "linearizable", "not_linearizable"
UNKNOWN, NOT_APPLICABLE = "unknown", "not_applicable"


def pick_model(history: list[Op], protocol: str | None = None):
    """The sequential model the operations call for (register, cas-register or kv), split by key
    when the workload has several keys; ``None`` when none applies (:func:`model_or_reason` says why)."""
    return model_or_reason(history, protocol)[0]


def model_or_reason(history: list[Op], protocol: str | None = None) -> tuple:
    """``(model, None)``, or ``(None, why)`` when no model applies: the history is empty, reads
    return collections (a set, not a register), no model has all the operations, or the protocol
    says its reads are not register reads (a consensus protocol's reads return the decided value:
    its module sets ``REGISTER_READS = False``)."""
    from metrics import models

    if protocol is not None and not _register_reads(protocol):
        return None, f"{protocol}'s reads return its decided value, not a register's (REGISTER_READS = False)"
    if not history:
        return None, "no client operations"
    if all(op.status == FAIL for op in history):
        return None, f"no operation took effect (all {len(history)} failed)"
    if not any(op.status == OK for op in history):  # unknown outcomes alone constrain nothing
        return None, (f"no operation completed ok ({sum(op.status == UNKNOWN for op in history)} of unknown "
                      f"outcome, the rest failed): nothing was observed to judge")
    if any(op.f == "add" for op in history):
        return None, "a set workload (add): Jepsen's set checker judges it (see lost_writes)"
    if any(op.f in ("read",) and op.status == OK and isinstance(op.output, (list, tuple, set))
           for op in history):
        return None, "reads return collections (a set), not a register's value"
    try:
        model = models.guess_model(history)
    except ValueError as e:
        return None, f"no register/kv model fits the operations ({e})"
    if any(op.key is not None for op in history) and model.partition is not models.partition_by_key:
        model = dataclasses.replace(model, partition=models.partition_by_key)
    return model, None


def _register_reads(protocol: str) -> bool:
    import importlib

    try:
        mod = importlib.import_module(f"agents.protocols.{protocol}")
    except ImportError:
        return True
    return getattr(mod, "REGISTER_READS", True)


def linearizability(history: list[Op], budget_s: float = LINEARIZABILITY_BUDGET_S,
                    protocol: str | None = None) -> dict:
    """The history's linearizability: ``linearizable`` (True, False, or None when there is no
    verdict), ``verdict`` -- one of :data:`LINEARIZABLE`, :data:`NOT_LINEARIZABLE`, :data:`UNKNOWN`
    (the search ran out of its ``budget_s`` seconds) and :data:`NOT_APPLICABLE` (nothing could be
    checked: no model applies) -- with its reason ``why``, the model's name and the failing operation."""
    from metrics import linearizability as lin

    model, why = model_or_reason(history, protocol)
    if model is None:
        return {"linearizable": None, "verdict": NOT_APPLICABLE, "why": why, "model": None}
    res = lin.check(history, model, timeout=budget_s)
    ok = res.ok if isinstance(res.ok, bool) else None
    out = {"linearizable": ok, "verdict": {True: LINEARIZABLE, False: NOT_LINEARIZABLE, None: UNKNOWN}[ok],
           "model": model.name,
           "failing_op": res.failing_op.to_dict() if res.failing_op else None,
           "failing_key": res.failing_key, "prefix_len": res.prefix_len, "algorithm": res.algorithm}
    if res.conflict:
        out["conflict"] = [op.id for op in res.conflict]
    out["why"] = {True: f"a linearization of the {model.name} history exists",
                  False: f"no linearization of the {model.name} history exists (see failing_op)",
                  None: f"search ran out of its {budget_s:g} s budget"}[ok]
    return out


#: kinds that no measure reads: a timer or a client step is not made into an event for them
MESSAGE_KINDS = ("send", "recv", "drop")


@dataclass
class TraceView:
    """What the measures read of a trace, for a list of events or a trace file alike: the correct
    nodes' events in order (:meth:`events`, only the kinds asked for) and facts about them that a
    measure needs before it starts (``nodes``, ``first_t``, ``last_t``, ``kinds``), plus the columnar
    message ``counts`` of a file (``None`` for a list: the measures count the list themselves)."""

    source: object  # a list of events (already the correct view), or a TraceFile
    byzantine: dict  # node -> strategy of the nodes the trace marks Byzantine
    nodes: list
    first_t: float | None
    last_t: float | None
    kinds: set
    counts: dict | None = None

    def events(self, kinds: frozenset | None = None):
        """The correct nodes' events in order (world events and ``byzantine`` marks included): of a
        list, the list itself; of a file, those of ``kinds`` other than messages, made a chunk at a
        time."""
        if self.counts is None:
            return self.source
        return self.source.events(kinds=kinds, exclude=MESSAGE_KINDS, exclude_nodes=self.byzantine)


def observed(events, history: list[Op] | None = None) -> tuple[TraceView, list[Op], dict | None]:
    """``(view, history, left_out)``: the trace as the measures read it (:class:`TraceView`), the
    operations of correct nodes' clients and who was left out (:func:`metrics.byzantine.correct_view`).

    A trace file (:class:`~envs.world.tracefile.TraceFile`) is never held: its Byzantine marks are
    read by kind, its messages (``send``/``recv``/``drop``) only as columnar counts of correct nodes
    (``kinds``, ``sends_by_msg``, ``drops_by_why``, with the Byzantine nodes' own sends under
    ``byzantine_sends``), and the other events the measures need are streamed a chunk at a time
    (:meth:`TraceView.events`). ``nodes``, ``first_t`` and ``last_t`` are those of its events other
    than messages, as a list of them would give (:func:`metrics.timeline.node_ids`)."""
    from metrics.byzantine import byzantine_nodes, correct_view
    from metrics.timeline import node_ids

    history = history if history is not None else []
    if hasattr(events, "counts"):
        marks = list(events.events(kinds=("byzantine",)))
        kept, _, left_out = correct_view(history, marks)
        byz = byzantine_nodes(marks)
        counts = events.counts(exclude_nodes=byz)
        if byz:
            counts["byzantine_sends"] = sum(events.counts(only_nodes=byz)["sends_by_msg"].values())
        sp = events.span(exclude=MESSAGE_KINDS, exclude_nodes=byz)
        kinds = {k for k, c in counts["kinds"].items() if c and k not in MESSAGE_KINDS}
        return TraceView(events, byz, sp["nodes"], sp["first_t"], sp["last_t"], kinds, counts), kept, left_out
    kept, evs, left_out = correct_view(history, events)
    evs = evs if isinstance(evs, list) else list(evs)
    view = TraceView(evs, byzantine_nodes(events) if left_out else {}, node_ids(evs),
                     evs[0].t if evs else None, evs[-1].t if evs else None, {e.kind for e in evs})
    return view, kept, left_out


def fold(events, folds) -> None:
    """Feed each event to the ``add`` of every fold whose ``KINDS`` holds its kind, in one pass."""
    route: dict = {}
    for f in folds:
        for k in f.KINDS:
            route.setdefault(k, []).append(f.add)
    get = route.get
    for e in events:
        fs = get(e.kind)
        if fs is not None:
            for add in fs:
                add(e)


class _Faults:
    """The partition and heal events (few: they come with the scenario's faults) and the crashes."""

    KINDS = frozenset({"partition", "heal", "crash"})

    def __init__(self):
        self.events: list[Event] = []
        self.crashes = 0

    def add(self, e: Event) -> None:
        if e.kind == "crash":
            self.crashes += 1
        else:
            self.events.append(e)


def summarize(history: list[Op], events: list[Event], sim_ms: float, entry: ProtocolEntry,
              interrupted: bool = False, check: bool = True) -> dict:
    """The observer's measures of one protocol's run, headline figures first. ``events``: a list
    or a trace file. Every measure of the trace is a fold (``metrics.*.Consensus``, ``Election``,
    ``Convergence``, ``LogAgreement``) fed in one pass over the events (:func:`fold`), so a trace
    file is read once, a chunk at a time, and no event is held past its chunk (:func:`observed`).
    ``check=False`` skips the linearizability search (its verdict is then ``unknown``: an
    interrupted run saves what it has without waiting for it)."""
    from metrics import availability, cost, staleness
    from metrics.byzantine import LogAgreement, faulty_writes
    from metrics.consensus import Consensus
    from metrics.convergence import Convergence
    from metrics.election import Election
    from metrics.timeline import partition_intervals

    everything = history
    view, history, byzantine = observed(events, history)  # correct nodes and their clients only
    counts = view.counts  # (message counts of correct nodes only)
    if byzantine:  # what the liars sent: not the protocol's cost, but the attack's size
        byzantine["messages_sent"] = (counts["byzantine_sends"] if counts is not None else
                                      sum(e.kind == "send" and e.node is not None and str(e.node) in byzantine["nodes"]
                                          for e in events))
    checked = history + faulty_writes(everything, {int(k) for k in byzantine["nodes"]}) if byzantine else history

    kinds = view.kinds
    faults, logs = _Faults(), LogAgreement()
    folds = [faults, logs]
    agreement = leaders = conv = None
    if "decide" in kinds or "propose" in kinds:  # a consensus protocol: agreement, validity, ...
        agreement = Consensus(view.nodes)
        folds.append(agreement)
    if "leader" in kinds or "candidate" in kinds:  # leader election: safety, time without leader
        leaders = Election(0.0, sim_ms)
        folds.append(leaders)
    if "apply" in kinds:  # replicas that say what they hold: divergence
        sets = any(op.f == "read" and op.status == OK and isinstance(op.output, (list, tuple)) for op in history)
        conv = Convergence(view.nodes, "set" if sets else "register",
                           view.first_t if view.first_t is not None else 0.0)
        folds.append(conv)
    fold(view.events(frozenset().union(*(f.KINDS for f in folds))), folds)
    if counts is None:
        co = cost.cost(history, view.source)
    else:
        co = cost.from_counts(history, counts["sends_by_msg"], counts["drops_by_why"])

    av = availability.availability(history, partitions=partition_intervals(faults.events))
    st = staleness.staleness(history)
    from metrics.sets import is_set_history, set_check

    set_verdict = set_check(history) if is_set_history(history) else None
    model = pick_model(history, entry.name)
    if st["stale_reads"] and model is not None and not byzantine:
        # a stale read (it missed a write that completed before it began) already proves the
        # history is not linearizable: no need to search
        li = {"linearizable": False, "verdict": NOT_LINEARIZABLE, "model": model.name,
              "why": "stale reads: a read missed a write that completed before it began",
              "stale_examples": st["stale_examples"]}
    elif not check:
        li = {"linearizable": None, "verdict": UNKNOWN, "model": model.name if model else None,
              "why": "not checked: the run was interrupted (capgym report checks it)"}
    else:
        li = linearizability(checked, protocol=entry.name)
    parts = partition_intervals(faults.events, end=sim_ms)
    if agreement is not None:
        agreement = agreement.result()
    if leaders is not None:
        leaders = leaders.result()
    if conv is not None:
        conv = conv.result(view.last_t)
        del conv["series"]
    return {
        "protocol": entry.name,
        "label": entry.tag,
        "params": entry.params,
        "sim_ms": sim_ms,
        "interrupted": interrupted,
        "ops": av["ops"],
        "availability": av["ok_fraction"],
        "availability_partitioned": av["ok_fraction_partitioned"],
        "availability_connected": av["ok_fraction_connected"],
        "linearizable": li["linearizable"],
        "linearizability_verdict": li["verdict"],
        "lost_writes": set_verdict["lost"] if set_verdict and set_verdict["valid"] is not None else None,
        "stale_read_rate": st["stale_fraction"],
        "messages_per_op": co["messages_per_op"],
        "counts": av["counts"],
        "latency_ms": av["latency"],
        "reads": st["reads"],
        "stale_reads": st["stale_reads"],
        "k_max": st["k_max"],
        "messages": co["messages"],
        "messages_dropped": co["dropped"],
        "messages_dropped_by_why": co["dropped_by_why"],
        "messages_by_type": co["by_type"],
        "partitions": len(parts),
        "partitioned_ms": sum(b - a for a, b in parts),
        "crashes": faults.crashes,
        "linearizability": li,
        "convergence": conv,
        "consensus": agreement,
        "election": leaders,
        "set": set_verdict,
        "t_visibility": st["t_visibility"],
        "log_agreement": logs.result(),
        "byzantine": byzantine,
    }


def series(history: list[Op], events: list[Event], sim_ms: float, buckets: int = BUCKETS) -> list[dict]:
    """Per time bucket (by invocation time): operations, availability (ok fraction) and
    consistency (1 - stale-read fraction among the bucket's ok reads), and how much of the
    bucket a partition stood."""
    from metrics import staleness
    from metrics.timeline import partition_intervals

    if hasattr(events, "counts"):  # a trace file: partitions are all the series needs of it
        events = list(events.events(kinds=("partition", "heal")))
    width = sim_ms / buckets if sim_ms > 0 else 1.0
    parts = partition_intervals(events, end=sim_ms)
    writes = sorted((op for op in history if op.f not in staleness.READS), key=lambda op: op.invoke)
    invokes = [op.invoke for op in writes]
    has_cas = any(op.f == "cas" for op in writes)
    by_bucket: list[list[Op]] = [[] for _ in range(buckets)]
    for op in history:
        by_bucket[min(buckets - 1, int(op.invoke // width))].append(op)
    rows = []
    for b, ops in enumerate(by_bucket):
        lo, hi = b * width, (b + 1) * width
        ok = sum(op.status == OK for op in ops)
        reads = [op for op in ops if op.f in staleness.READS]
        st = {"reads": 0, "stale_reads": 0}
        if reads:
            # a write invoked after every one of these reads completed can neither be what they
            # returned nor make them stale: leave it out (the measure is the same, and cheaper)
            # (with cas, values repeat and a later write could change which write a read is
            # credited to, so then every write stays)
            last = max((op.complete for op in reads if op.complete is not None), default=math.inf)
            if has_cas:
                last = math.inf
            st = staleness.staleness(writes[:bisect.bisect_right(invokes, last)] + reads)
        cut = sum(max(0.0, min(hi, e) - max(lo, s)) for s, e in parts)
        rows.append({
            "t_start_ms": round(lo, 6), "t_end_ms": round(hi, 6), "ops": len(ops), "ok": ok,
            "fail": sum(op.status == "fail" for op in ops),
            "unknown": sum(op.status == "unknown" for op in ops),
            "availability": ok / len(ops) if ops else None,
            "reads": st["reads"], "stale_reads": st["stale_reads"],
            "consistency": 1 - st["stale_reads"] / st["reads"] if st["reads"] else None,
            "partitioned": round(cut / width, 6) if width else 0.0,
        })
    return rows


# --- tables -------------------------------------------------------------------------------------
TABLE_COLUMNS = ("protocol", "availability", "linearizable", "stale-read rate", "lost writes", "messages/op")


def table_rows(summaries: dict[str, dict]) -> list[dict]:
    """One row per protocol: the CAP trade-off at a glance."""
    return [{"protocol": label, "availability": s["availability"], "linearizable": s["linearizable"],
             "linearizability_verdict": s.get("linearizability_verdict"),
             "stale_read_rate": s["stale_read_rate"], "lost_writes": s.get("lost_writes"),
             "messages_per_op": s["messages_per_op"],
             "log_conflicts": (s.get("log_agreement") or {}).get("conflicts"),
             "byzantine_nodes": len((s.get("byzantine") or {}).get("nodes", {}))}
            for label, s in summaries.items()]


#: how the run table prints each verdict
VERDICT_CELLS = {LINEARIZABLE: "true", NOT_LINEARIZABLE: "false", UNKNOWN: "unknown", NOT_APPLICABLE: "n/a"}


def _verdict_cell(row: dict) -> str:
    """``true``/``false``/``unknown`` (time budget)/``n/a`` (nothing to check); an evaluation's row
    whose episodes disagree shows the linearizable fraction; a summary written before verdicts
    existed has only ``linearizable``, whose ``None`` could be either: ``unknown``."""
    v = row.get("linearizability_verdict")
    if v is not None:
        return VERDICT_CELLS[v]
    if row.get("linearizable_fraction") is not None:
        return f"{row['linearizable_fraction']:.2f}"
    return _fmt(row["linearizable"], -1)


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "unknown" if digits < 0 else "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of :func:`table_rows`; the columns ``log conflicts`` (positions where
    correct replicas hold different commands, ``metrics.byzantine.log_agreement``) and
    ``Byzantine`` (nodes left out) are added when any row has a Byzantine node or a conflict."""
    cells = [[r["protocol"], _fmt(r["availability"]), _verdict_cell(r),
              _fmt(r["stale_read_rate"]), _fmt(r.get("lost_writes")), _fmt(r["messages_per_op"], 1)] for r in rows]
    heads = TABLE_COLUMNS
    # safety of the replicated log, shown when a node lied or correct replicas disagree
    if any(r.get("byzantine_nodes") or r.get("log_conflicts") for r in rows):
        heads += ("log conflicts", "Byzantine")
        for c, r in zip(cells, rows):
            c += [_fmt(r.get("log_conflicts")), str(r.get("byzantine_nodes") or 0)]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = lambda cs: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths)))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths])] + [line(c) for c in cells])
