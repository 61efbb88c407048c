"""Leader election: election safety, time without a leader, and why elections failed.

Election safety is Raft's "at most one leader can be elected in a given term" (Ongaro and
Ousterhout, *In Search of an Understandable Consensus Algorithm*, 2014, Fig. 3). The protocols record
``candidate``, ``leader`` and ``follower`` events with a ``term``, and ``vote`` events with the
``term`` and the ``candidate`` a node voted for (``docs/trace.md``).

An election that elects nobody failed for one of three reasons, counted apart: its votes were
*split* among two or more candidates (Raft §5.2's split vote); its only candidate got no vote
from anyone (a *lonely* election: a node cut off from the rest, or one whose log is behind); or
its only candidate got some votes but not a majority (a *minority* election).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from envs.world.records import Event

from .timeline import as_list, order


def election(trace: Iterable[Event], start: float | None = None, end: float | None = None) -> dict:
    """Election measures over a trace, in one pass.

    * **safety** -- no term has two different ``leader`` nodes; ``safety_violations`` lists
      ``{"term", "nodes"}`` for the terms that do.
    * **time without leader** -- the true time in ``[start, end)`` during which no node believes
      itself leader. A node believes itself leader from its ``leader`` event until the first of: its
      ``crash``, its own ``follower``/``candidate``/``start`` event, or a ``leader`` event of a later
      term at any node (a newer leader deposes it). ``start``/``end`` default to the first and last
      event times. Also given as a fraction of ``end - start`` and as the longest leaderless stretch.
    * **elections** -- the number of distinct terms in which some node became ``candidate``;
      ``elections_without_leader`` -- those of them that saw no ``leader`` (an election still
      running when the trace ends counts too). Each of these is exactly one of:

      - **split votes** -- two or more candidates stood in the term;
      - **lonely elections** -- one candidate stood, and no other node recorded a ``vote`` for it;
      - **minority elections** -- one candidate stood and got votes, but never became leader.

      Telling the last two apart needs ``vote`` records: when the trace holds none at all (a
      protocol that does not record votes), ``lonely_elections`` and ``minority_elections`` are
      ``None`` and only ``split_votes`` is counted. The ``*_terms`` lists give the terms, in
      numeric order (:func:`~metrics.timeline.order`).

    Safety violations are listed in term order too.
    """
    trace = as_list(trace)
    if start is None:
        start = trace[0].t if trace else 0.0
    if end is None:
        end = trace[-1].t if trace else start
    acc = Election(start, end)
    for e in trace:
        acc.add(e)
    return acc.result()


class Election:
    """:func:`election` as a fold over a stream of events, one at a time (``add``), for a trace read
    in chunks; ``start`` and ``end`` must be given (a stream's last time is not known in advance).
    It holds the terms' candidates, leaders and votes, not the events."""

    #: the kinds it reads (any other is ignored)
    KINDS = frozenset({"leader", "candidate", "follower", "crash", "start", "vote"})

    def __init__(self, start: float, end: float):
        self.start, self.end = start, end
        self.leaders: dict = defaultdict(set)  # term -> nodes that became leader in it
        self.candidates: dict = defaultdict(set)  # term -> nodes that stood in it
        self.voted: set = set()  # (term, candidate) pairs that got a vote from another node
        self.any_vote = False
        self.leading: dict[int, object] = {}  # node -> term it leads
        self.without = 0.0
        self.longest = 0.0
        self.since = start  # start of the current leaderless stretch (None while someone leads)

    def add(self, e: Event) -> None:
        kind = e.kind
        if kind not in ("leader", "candidate", "follower", "crash", "start"):
            if kind == "vote":
                self.any_vote = True
                cand = e.fields.get("candidate")
                if cand != e.node:
                    self.voted.add((e.fields.get("term"), cand))
            return
        t = min(max(e.t, self.start), self.end)
        term = e.fields.get("term")
        leading = self.leading
        if kind == "leader":
            self.leaders[term].add(e.node)
            for n, tm in list(leading.items()):
                if tm is not None and term is not None and tm < term:
                    del leading[n]
            leading[e.node] = term
        else:
            if kind == "candidate":
                self.candidates[term].add(e.node)
            leading.pop(e.node, None)
        since = self.since
        if leading and since is not None:
            self.without += t - since
            self.longest = max(self.longest, t - since)
            self.since = None
        elif not leading and since is None:
            self.since = t

    def result(self) -> dict:
        start, end, leaders, candidates = self.start, self.end, self.leaders, self.candidates
        without, longest = self.without, self.longest
        if self.since is not None:
            without += end - self.since
            longest = max(longest, end - self.since)
        violations = [{"term": tm, "nodes": sorted(leaders[tm])} for tm in sorted(leaders, key=order)
                      if len(leaders[tm]) > 1]
        span = end - start
        failed = sorted((tm for tm in candidates if tm not in leaders), key=order)
        split = [tm for tm in failed if len(candidates[tm]) > 1]
        single = [(tm, next(iter(candidates[tm]))) for tm in failed if len(candidates[tm]) == 1]
        lonely = [tm for tm, c in single if (tm, c) not in self.voted] if self.any_vote else None
        minority = [tm for tm, c in single if (tm, c) in self.voted] if self.any_vote else None
        return {
            "safety": not violations,
            "safety_violations": violations,
            "terms_with_leader": len(leaders),
            "elections": len(candidates),
            "elections_without_leader": len(failed),
            "split_votes": len(split),
            "split_vote_terms": split,
            "lonely_elections": None if lonely is None else len(lonely),
            "lonely_election_terms": lonely,
            "minority_elections": None if minority is None else len(minority),
            "minority_election_terms": minority,
            "time_without_leader": without,
            "fraction_without_leader": without / span if span > 0 else None,
            "longest_without_leader": longest,
        }


def summarize(history, trace) -> dict:
    """Leader-election measures of a run (the history is not needed)."""
    return election(trace)
