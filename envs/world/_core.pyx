# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The sim runtime's event loop, compiled: the same core as :mod:`envs.world._pycore`, faster.

Pending events live in a binary heap of C structs ordered by ``(t, seq)``; the Python objects an
event carries (a message's body and type, another event's data) sit in two Python lists indexed by
a slot number, so the cyclic GC still sees every reference. A message to a running node is
delivered, recorded in the trace and answered without leaving C except for the node's own
handler. Everything else calls the same Python methods of :class:`~envs.world.sim.Sim` as the
pure-Python loop, with the same tuples.

The trace is recorded in C too: each event is a fixed-size record (send and recv with their
fields; an event recorded by Python code as its tuple), in order, in one growing buffer.
:meth:`Loop.flush_trace` turns the buffer into the trace's tuples, the same as the pure core makes
(the :class:`~envs.world.trace.Trace` calls it whenever its events are read), so reading the trace
costs what it did but running the world does not pay for tuples nobody reads yet.

This file mirrors ``_pycore.py`` line for line where it can: ``tests/test_core.py`` checks that
both give byte-identical traces over many seeds and fault schedules.
"""

import gc

from cpython.tuple cimport PyTuple_GET_SIZE
from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc, realloc

cdef enum:
    _MSG = 0
    _TIMER = 1
    _CLIENT = 2
    _DECISION = 3
    _CALL = 4

cdef enum:  # what a trace record holds
    _SEND = 0
    _RECV = 1
    _OBJ = 2  # an event already made as a Python tuple (recorded by Python code)

MSG, TIMER, CLIENT, DECISION, CALL = range(5)
COMPILED = True


cdef struct Ev:
    double t
    long long seq
    long long mid
    long long lam
    int kind
    int node  # a message's destination; -1 for no node
    int src
    int slot  # where the event's objects are kept


cdef struct Rec:  # one trace event, as recorded: send and recv in C, anything else as a tuple
    double t
    double clock
    long long lam
    long long mid
    int code
    int node
    int peer


cdef class NodeState:
    """The runtime's view of one node: its object, clock, Lamport clock, timers, fault state."""

    cdef public int id
    cdef public object cls, params, obj, queued, clock, timers, durable, synced, ctx, seed, lat
    cdef public bint up, paused, normal
    cdef public long long lamport, sent
    cdef public int incarnation
    cdef public double proc, busy_until
    # the clock's line, read by the hot path (kept in step by sync_clock after every clock fault)
    cdef double cl_local, cl_true, cl_rate, cl_jitter

    def __init__(self, nid, cls, params, clock, proc, seed):
        self.id, self.cls, self.params, self.clock = nid, cls, params, clock
        self.obj = None
        self.up = False
        self.paused = False
        self.queued = []
        self.lamport = 0
        self.timers = {}
        self.durable = {}  # the node's disk as it writes it (what a plain crash keeps)
        self.synced = {}  # the disk as of its last fsync (what a lose_unsynced crash keeps)
        self.incarnation = 0
        self.proc = proc
        self.busy_until = 0.0
        self.ctx = None
        self.seed = seed
        self.lat = None
        self.normal = False
        self.sent = 0
        self.sync_clock()

    def refresh(self):
        self.normal = self.up and not self.paused and not self.proc

    def sync_clock(self):
        """The clock changed (a fault): re-read its line."""
        c = self.clock
        self.cl_local, self.cl_true, self.cl_rate, self.cl_jitter = c.base_local, c.base_true, c.rate, c.jitter


cdef class ContextBase:
    """The part of a node's context on the hot path: its clock, sending, timers."""

    cdef public Loop _sim
    cdef public NodeState _s
    cdef public list peers

    def __init__(self, Loop sim, NodeState s):
        self._sim, self._s = sim, s
        # the run's node ids, shared: at n nodes, n lists of n fresh ints would be n^2 objects
        self.peers = list(sim.node_ids)
        del self.peers[s.id]

    def now(self):
        """This node's own clock reading in ms (offset, drift and jitter included)."""
        cdef NodeState s = self._s
        if s.cl_jitter:
            return s.clock.read(self._sim.now)
        return s.cl_local + s.cl_rate * (self._sim.now - s.cl_true)

    def set_timer(self, name, double after):
        """Fire ``on_timer(ctx, name)`` after ``after`` ms of this node's clock (replaces a timer of that name)."""
        cdef NodeState s = self._s
        self._sim._schedule_timer(s, name, (s.cl_local + s.cl_rate * (self._sim.now - s.cl_true)) + after)

    def cancel_timer(self, name):
        (<dict> self._s.timers).pop(name, None)

    def send(self, int dst, body):
        """Send ``body`` to node ``dst``."""
        self._sim._send(self._s, dst, body)

    def broadcast(self, body):
        """Send ``body`` to every peer (not to itself)."""
        cdef Loop sim = self._sim
        for p in self.peers:
            sim._send(self._s, p, body)


cdef class Loop:
    """The heap of pending events and the loop that runs them (subclassed by ``Sim``)."""

    cdef Ev* heap
    cdef Py_ssize_t size, cap
    cdef long long seqn, tokens
    cdef list objs, mtypes  # event objects by slot
    cdef int* free_slots
    cdef Py_ssize_t nfree, free_cap
    cdef public double now
    cdef public long long _mid, delivered, dropped, events
    cdef public bint faulty, full_trace
    cdef public set cut_links
    cdef public list states, pending, raw
    cdef Rec* recs  # trace events not yet turned into tuples
    cdef Py_ssize_t nrec, reccap
    cdef list recobjs  # by record: a message's type, or the event tuple

    def __cinit__(self, *args, **kwargs):
        self.cap = 256
        self.heap = <Ev*> malloc(self.cap * sizeof(Ev))
        self.free_cap = 256
        self.free_slots = <int*> malloc(self.free_cap * sizeof(int))
        self.reccap = 1024
        self.recs = <Rec*> malloc(self.reccap * sizeof(Rec))
        if self.heap == NULL or self.free_slots == NULL or self.recs == NULL:
            raise MemoryError()
        self.size = self.nfree = self.nrec = 0
        self.objs, self.mtypes, self.recobjs = [], [], []
        self.cut_links = set()
        self.raw = []

    def __dealloc__(self):
        free(self.heap)
        free(self.free_slots)
        free(self.recs)

    # --- the trace -----------------------------------------------------------------------------
    cdef Rec* _new_rec(self, object obj) except NULL:
        cdef Rec* grown
        if self.nrec == self.reccap:
            grown = <Rec*> realloc(self.recs, 2 * self.reccap * sizeof(Rec))
            if grown == NULL:
                raise MemoryError()
            self.recs, self.reccap = grown, 2 * self.reccap
        self.recobjs.append(obj)
        self.nrec += 1
        return &self.recs[self.nrec - 1]

    cdef int _rec_msg(self, int code, int node, double t, double clock, long long lam, int peer, long long mid,
                      object mtype) except -1:
        cdef Rec* r = self._new_rec(mtype)
        r.code, r.node, r.t, r.clock, r.lam, r.peer, r.mid = code, node, t, clock, lam, peer, mid
        return 0

    def rec(self, tuple event):
        """Record a trace event ``(kind, node, t, clock, lamport, fields)``."""
        self._new_rec(event).code = _OBJ

    def buffered_events(self):
        """Trace events recorded but not yet flushed into ``raw``."""
        return self.nrec

    def flush_trace(self):
        """Append the recorded events to ``raw`` as tuples, in the order they happened."""
        cdef Py_ssize_t i
        cdef Rec* r
        cdef list raw = self.raw, objs = self.recobjs
        if not self.nrec:
            return
        gc_was_on = gc.isenabled()
        gc.disable()  # millions of new tuples with no cycles (see run)
        try:
            for i in range(self.nrec):
                r = &self.recs[i]
                o = objs[i]
                if r.code == _OBJ:
                    raw.append(o)
                elif r.code == _SEND:
                    raw.append(("send", r.node, r.t, r.clock, r.lam, (r.peer, r.mid, o)))
                else:
                    raw.append(("recv", r.node, r.t, r.clock, r.lam, (r.peer, r.mid, o)))
        finally:
            if gc_was_on:
                gc.enable()
        self.nrec = 0
        self.recobjs = []
        if self.reccap > 65536:  # give back what a long run grew
            free(self.recs)
            self.reccap = 1024
            self.recs = <Rec*> malloc(self.reccap * sizeof(Rec))
            if self.recs == NULL:
                raise MemoryError()

    def _init_loop(self):
        self.now = 0.0
        self.clear_events()
        self.seqn = self.tokens = 0
        self._mid = 0
        self.delivered = self.dropped = self.events = 0
        self.faulty = False
        self.cut_links = set()
        self.raw, self.recobjs, self.nrec = [], [], 0

    # --- the heap ------------------------------------------------------------------------------
    cdef int _slot(self, object data, object mtype) except -1:
        cdef int k
        if self.nfree:
            self.nfree -= 1
            k = self.free_slots[self.nfree]
            self.objs[k] = data
            self.mtypes[k] = mtype
        else:
            k = len(self.objs)
            self.objs.append(data)
            self.mtypes.append(mtype)
        return k

    cdef int _release(self, int k) except -1:
        cdef int* grown
        self.objs[k] = None
        self.mtypes[k] = None
        if self.nfree == self.free_cap:
            grown = <int*> realloc(self.free_slots, 2 * self.free_cap * sizeof(int))
            if grown == NULL:
                raise MemoryError()
            self.free_slots, self.free_cap = grown, 2 * self.free_cap
        self.free_slots[self.nfree] = k
        self.nfree += 1
        return 0

    cdef int _heappush(self, Ev* e) except -1:
        cdef Ev* grown
        cdef Py_ssize_t i, parent
        if self.size == self.cap:
            grown = <Ev*> realloc(self.heap, 2 * self.cap * sizeof(Ev))
            if grown == NULL:
                raise MemoryError()
            self.heap, self.cap = grown, 2 * self.cap
        e.seq = self.seqn
        self.seqn += 1
        i = self.size
        self.size += 1
        while i > 0:  # sift up
            parent = (i - 1) >> 1
            if self.heap[parent].t < e.t or (self.heap[parent].t == e.t and self.heap[parent].seq < e.seq):
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = e[0]
        return 0

    cdef Ev _heappop(self):
        cdef Ev top = self.heap[0]
        cdef Ev last
        cdef Py_ssize_t i, child, n
        self.size -= 1
        n = self.size
        if n:
            last = self.heap[n]
            i = 0
            while True:  # sift down
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and (self.heap[child + 1].t < self.heap[child].t or (
                        self.heap[child + 1].t == self.heap[child].t and self.heap[child + 1].seq < self.heap[child].seq)):
                    child += 1
                if last.t < self.heap[child].t or (last.t == self.heap[child].t and last.seq < self.heap[child].seq):
                    break
                self.heap[i] = self.heap[child]
                i = child
            self.heap[i] = last
        return top

    cdef int _push_msg(self, double t, int dst, int src, object body, long long mid, object mtype,
                       long long lam) except -1:
        cdef Ev e
        e.t, e.kind, e.node, e.src, e.mid, e.lam = t, _MSG, dst, src, mid, lam
        e.slot = self._slot(body, mtype)
        return self._heappush(&e)

    def push(self, double t, int kind, node, data):
        cdef Ev e
        if node is not None and not 0 <= node < len(self.states):
            raise ValueError(f"no node {node} (nodes are 0..{len(self.states) - 1})")
        e.t, e.kind, e.node, e.src, e.mid, e.lam = t, kind, -1 if node is None else node, -1, 0, 0
        e.slot = self._slot(data, None)
        self._heappush(&e)

    def push_msg(self, double t, int dst, int src, body, long long mid, mtype, long long lam):
        self._push_msg(t, dst, src, body, mid, mtype, lam)

    def push_item(self, double t, tuple item):
        """Put a popped event back at true time ``t`` (after events already scheduled for ``t``)."""
        if item[2] == _MSG:
            self._push_msg(t, item[3], item[4], item[5], item[6], item[7], item[8])
        else:
            self.push(t, item[2], item[3], item[4])

    def next_time(self):
        """True time of the next pending event, or ``None`` when nothing is pending."""
        return self.heap[0].t if self.size else None

    def pending_events(self):
        return self.size

    def clear_events(self):
        self.size = 0
        self.nfree = 0
        self.objs, self.mtypes = [], []

    cdef tuple _item(self, Ev* e, object data, object mtype):
        if e.kind == _MSG:
            return (e.t, e.seq, _MSG, e.node, e.src, data, e.mid, mtype, e.lam)
        return (e.t, e.seq, e.kind, None if e.node < 0 else e.node, data)

    # --- node events off the message path ------------------------------------------------------
    def schedule_timer(self, NodeState s, name, double deadline):
        """Set node ``s``'s timer ``name`` for ``deadline`` on its own clock (replacing one of that name)."""
        self._schedule_timer(s, name, deadline)

    cdef int _schedule_timer(self, NodeState s, object name, double deadline) except -1:
        cdef long long token = self.tokens
        cdef double t
        self.tokens += 1
        s.timers[name] = (token, deadline)
        t = s.cl_true + (deadline - s.cl_local) / s.cl_rate
        self.push(t if t > self.now else self.now, _TIMER, s.id, (name, token))
        return 0

    def step_event(self, NodeState s, str kind, fields):
        """A bookkeeping event (timer, client, reply, ask, decision): recorded in a full trace."""
        self._step_event(s, kind, fields)

    cdef int _step_event(self, NodeState s, str kind, object fields) except -1:
        s.lamport += 1
        if self.full_trace:
            self._new_rec((kind, s.id, self.now, s.cl_local + s.cl_rate * (self.now - s.cl_true), s.lamport,
                           fields)).code = _OBJ
        return 0

    def node_event(self, NodeState s, int kind, data):
        """A timer, client operation or decision for node ``s`` (messages never come here)."""
        self._node_event(s, kind, data)

    cdef int _node_event(self, NodeState s, int kind, object data) except -1:
        if kind == _TIMER:
            name, token = data
            entry = (<dict> s.timers).get(name)
            if entry is None or entry[0] != token:
                return 0  # cancelled or replaced
            del s.timers[name]
            self._step_event(s, "timer", (name,))
            s.obj.on_timer(s.ctx, name)
        elif kind == _CLIENT:
            self._step_event(s, "client", (data.id, data.f))
            s.obj.on_client(s.ctx, data)
        elif kind == _DECISION:
            point, action, inc = data
            if inc != s.incarnation:
                return 0
            self._step_event(s, "decision", (point, action))
            s.obj.on_decision(s.ctx, point, action)
        return 0

    # --- the send path -------------------------------------------------------------------------
    def send(self, NodeState s, int dst, body):
        self._send(s, dst, body)

    cdef int _send(self, NodeState s, int dst, object body) except -1:
        cdef int src = s.id
        cdef long long lam = s.lamport + 1
        cdef long long mid = self._mid
        cdef double t = self.now
        if dst < 0 or dst >= len(self.states):
            raise ValueError(f"send: there is no node {dst} (nodes are 0..{len(self.states) - 1})")
        s.lamport = lam
        s.sent += 1
        self._mid = mid + 1
        tb = type(body)
        if tb is tuple:
            mtype = body[0] if PyTuple_GET_SIZE(body) else None
        elif tb is dict:
            mtype = (<dict> body).get("type")
        else:
            mtype = tb.__name__
        if self.full_trace:
            self._rec_msg(_SEND, src, t, s.cl_local + s.cl_rate * (t - s.cl_true), lam, dst, mid, mtype)
        if self.faulty:
            self._transmit(src, dst, (src, body, mid, mtype, lam), t + s.proc)
        else:  # the common case: no fault can touch this message
            self._push_msg(t + s.proc + <double> next(s.lat[dst]), dst, src, body, mid, mtype, lam)
        return 0

    # --- the loop ------------------------------------------------------------------------------
    def run(self, until=None, stop=None, bint stop_on_ask=True, max_events=None):
        """Process events in true-time order.

        Stops when true time would pass ``until`` (then ``now == until``), when ``stop()`` holds
        after an event, when an external agent owes a decision (``stop_on_ask``), after
        ``max_events``, or when nothing is left (a decision still owed then: ``"ask"``, at the
        same moment). Returns ``"until"``, ``"stop"``, ``"ask"``,
        ``"max_events"`` or ``"idle"``.
        """
        cdef double limit = INFINITY if until is None else until
        cdef long long budget = -1 if max_events is None else max_events
        cdef long long handled = 0, delivered = 0, lam
        cdef Ev ev
        cdef NodeState s
        cdef list states, pending
        cdef bint full_trace = self.full_trace, has_stop = stop is not None
        cdef int dst, src
        if not self.started:
            self.start()
        states, pending = self.states, self.pending
        reason = "idle"
        # Handlers allocate; letting the cyclic GC rescan a big trace every few hundred allocations
        # halves the loop's speed. Collection is deferred (not turned off for good) while it runs.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            while self.size:
                if handled == budget:
                    reason = "max_events"
                    break
                if stop_on_ask and pending:
                    reason = "ask"
                    break
                if self.heap[0].t > limit:
                    reason = "until"
                    break
                ev = self._heappop()
                data = self.objs[ev.slot]
                mtype = self.mtypes[ev.slot]
                self._release(ev.slot)
                self.now = ev.t
                handled += 1
                if ev.kind == _MSG:
                    dst, src = ev.node, ev.src
                    s = <NodeState> states[dst]
                    if self.cut_links and (src, dst) in self.cut_links:  # cut while in flight
                        self._arrive_at_cut(self._item(&ev, data, mtype))
                        continue
                    if s.normal:  # the hot path: a message to a running node
                        lam = s.lamport
                        if ev.lam > lam:
                            lam = ev.lam
                        lam += 1
                        s.lamport = lam
                        delivered += 1
                        if full_trace:
                            self._rec_msg(_RECV, dst, ev.t, s.cl_local + s.cl_rate * (ev.t - s.cl_true), lam, src,
                                          ev.mid, mtype)
                        s.obj.on_message(s.ctx, src, data)
                    elif self._abnormal(s, self._item(&ev, data, mtype)):
                        continue
                    else:
                        delivered += 1
                elif ev.kind == _CALL:
                    fn, args = data
                    fn(*args)
                else:
                    s = <NodeState> states[ev.node]
                    if not s.normal and self._abnormal(s, self._item(&ev, data, mtype)):
                        continue
                    self._node_event(s, ev.kind, data)
                if has_stop and stop():
                    reason = "stop"
                    break
        finally:
            if gc_was_on:
                gc.enable()
            self.events += handled
            self.delivered += delivered
        if stop_on_ask and pending and reason == "idle":
            reason = "ask"  # owed with nothing else left (asked at the start, or by the last event)
        if reason in ("until", "idle") and until is not None and until > self.now:
            self.now = float(until)
        return reason
