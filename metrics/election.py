"""Leader election: election safety, time without a leader, elections and split votes.

Election safety is Raft's "at most one leader can be elected in a given term" (Ongaro and
Ousterhout, *In Search of an Understandable Consensus Algorithm*, 2014, Fig. 3). The protocols record
``candidate``, ``leader`` and ``follower`` events with a ``term`` (``docs/trace.md``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from envs.world.records import Event

from .timeline import as_list


def election(trace: Iterable[Event], start: float | None = None, end: float | None = None) -> dict:
    """Election measures over a trace, in one pass.

    * **safety** -- no term has two different ``leader`` nodes; ``safety_violations`` lists
      ``{"term", "nodes"}`` for the terms that do.
    * **time without leader** -- the true time in ``[start, end)`` during which no node believes
      itself leader. A node believes itself leader from its ``leader`` event until the first of: its
      ``crash``, its own ``follower``/``candidate``/``start`` event, or a ``leader`` event of a later
      term at any node (a newer leader deposes it). ``start``/``end`` default to the first and last
      event times. Also given as a fraction of ``end - start`` and as the longest leaderless stretch.
    * **elections** -- the number of distinct terms in which some node became ``candidate``.
    * **split votes** -- those terms that saw a ``candidate`` but no ``leader`` (an election still
      running when the trace ends counts too).
    """
    trace = as_list(trace)
    if start is None:
        start = trace[0].t if trace else 0.0
    if end is None:
        end = trace[-1].t if trace else start
    leaders: dict = defaultdict(set)  # term -> nodes that became leader in it
    candidate_terms: set = set()
    leading: dict[int, object] = {}  # node -> term it leads
    without = 0.0
    longest = 0.0
    since = start  # start of the current leaderless stretch (None while someone leads)
    for e in trace:
        kind = e.kind
        if kind not in ("leader", "candidate", "follower", "crash", "start"):
            continue
        t = min(max(e.t, start), end)
        term = e.fields.get("term")
        if kind == "leader":
            leaders[term].add(e.node)
            for n, tm in list(leading.items()):
                if tm is not None and term is not None and tm < term:
                    del leading[n]
            leading[e.node] = term
        else:
            if kind == "candidate":
                candidate_terms.add(term)
            leading.pop(e.node, None)
        if leading and since is not None:
            without += t - since
            longest = max(longest, t - since)
            since = None
        elif not leading and since is None:
            since = t
    if since is not None:
        without += end - since
        longest = max(longest, end - since)
    violations = [{"term": tm, "nodes": sorted(ns)} for tm, ns in sorted(leaders.items(), key=lambda x: repr(x[0]))
                  if len(ns) > 1]
    span = end - start
    split = sorted(candidate_terms - set(leaders), key=repr)
    return {
        "safety": not violations,
        "safety_violations": violations,
        "terms_with_leader": len(leaders),
        "elections": len(candidate_terms),
        "split_votes": len(split),
        "split_vote_terms": split,
        "time_without_leader": without,
        "fraction_without_leader": without / span if span > 0 else None,
        "longest_without_leader": longest,
    }


def summarize(history, trace) -> dict:
    """Leader-election measures of a run (the history is not needed)."""
    return election(trace)
