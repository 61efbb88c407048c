# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The Wing-Gong-Lowe search, compiled: the same algorithm, line for line, as
``metrics.linearizability._search`` (read that one: it is the reference and the fallback when this
module is not built, or when ``CAPGYM_PURE=1``). The entry list and the stack live in C arrays;
model states, linearized sets (Python ints as bitsets) and the cache stay Python objects, and the
model's ``step`` is called as it is. Both are tested against brute force on the same histories.
"""

from libc.stdlib cimport free, malloc

import time

cdef double INF = float("inf")


cdef class _Space:
    """Interned model states, their caches of linearized sets, and memoized transitions."""

    cdef list states
    cdef dict state_id
    cdef list cache
    cdef object step
    cdef list ops
    cdef list memos
    cdef object unknown

    def __init__(self, list ops, model, unknown):
        self.states = [model.init]
        self.state_id = {model.init: 0}
        self.cache = [set()]
        self.step = model.step
        self.ops = ops
        self.memos = [{} for _ in ops]
        self.unknown = unknown

    cdef int intern(self, s):
        got = self.state_id.get(s)
        if got is not None:
            return <int>got
        cdef int ns = len(self.states)
        self.state_id[s] = ns
        self.states.append(s)
        self.cache.append(set())
        return ns

    cdef int transition(self, int i, int state, bint late):
        """Next state of op i from ``state``, or -1 if the model refuses (or an unknown op would
        change nothing); memoized per op."""
        cdef dict memo = <dict>self.memos[i]
        cdef object r = memo.get(state)
        if r is not None:
            return <int>r
        ok, s2 = self.step(self.states[state], self.ops[i])
        cdef int ns = -1
        if ok:
            ns = self.intern(s2)
            if ns == state and late:
                ns = -1  # it may as well go later, or never
        memo[state] = ns
        return ns


def search(list ops, model, deadline, ok_status, unknown_status):
    """Same contract as ``metrics.linearizability._search``: (verdict, cached states, prefix, failing op)."""
    cdef Py_ssize_t n = len(ops)
    cdef int tail = 2 * n + 1
    cdef int node, i, e, f, m, p, q, ns, state, phase, best, sp, frame_e
    cdef Py_ssize_t k0
    cdef bint fresh, back, failed, done, has_unknown
    cdef long backtracks = 0
    events = []
    for i in range(n):
        op = ops[i]
        end = INF if op.status == unknown_status or op.complete is None else op.complete
        events.append((op.invoke, 0, i))
        events.append((end, 1, i))
    events.sort()

    cdef int *nxt = <int *> malloc((tail + 1) * sizeof(int))
    cdef int *prv = <int *> malloc((tail + 1) * sizeof(int))
    cdef int *opidx = <int *> malloc((tail + 1) * sizeof(int))
    cdef int *match = <int *> malloc((tail + 1) * sizeof(int))  # call node -> return node; 0 for returns
    cdef int *call_node = <int *> malloc((n + 1) * sizeof(int))
    cdef char *late = <char *> malloc((tail + 1) * sizeof(char))
    cdef char *forcible = <char *> malloc((tail + 1) * sizeof(char))
    cdef int *need = <int *> malloc((tail + 1) * sizeof(int))  # the state a completed read needs, or -1
    cdef int *st_e = <int *> malloc((n + 1) * sizeof(int))  # stack: call node (negated if forced)
    cdef int *st_state = <int *> malloc((n + 1) * sizeof(int))
    cdef int *st_phase = <int *> malloc((n + 1) * sizeof(int))
    if not (nxt and prv and opidx and match and call_node and late and forcible and need and st_e and st_state
            and st_phase):
        raise MemoryError()
    one = 1  # a Python int: bits above 31 must not overflow a C int
    cdef list bits = [one << k for k in range(n)]
    cdef _Space space = _Space(ops, model, unknown_status)
    cdef list cache = space.cache
    cdef set seen
    readonly = model.readonly
    read_state = model.read_state
    try:
        for node in range(tail + 1):
            nxt[node] = node + 1 if node < tail else tail
            prv[node] = node - 1 if node > 0 else 0
            opidx[node] = 0
            match[node] = 0
            late[node] = 0
            forcible[node] = 0
            need[node] = -1
        node = 1
        for _, kind, i in events:
            opidx[node] = i
            if kind == 0:
                call_node[i] = node
            else:
                match[call_node[i]] = node
            node += 1
        has_unknown = False
        for node in range(1, tail):
            if match[node]:
                op = ops[opidx[node]]
                late[node] = op.status == unknown_status
                has_unknown = has_unknown or late[node]
                forcible[node] = op.f in readonly and op.status == ok_status
                if forcible[node] and read_state is not None:
                    need[node] = space.intern(read_state(op))

        lin = 0
        state = 0
        best = 0
        best_rec = None
        phase = 0
        done = False
        fresh = True
        failed = False
        sp = 0
        e = nxt[0]
        while nxt[0] != tail:
            back = False
            if fresh:  # forced reads (see the Python version)
                fresh = False
                f = nxt[0]
                while f != tail:
                    if not match[f]:
                        break
                    if forcible[f]:
                        i = opidx[f]
                        if need[f] >= 0:
                            ns = state if need[f] == state else -1
                        else:
                            ns = space.transition(i, state, False)
                        if ns >= 0:
                            nl = lin | bits[i]
                            seen = <set>cache[ns]
                            k0 = len(seen)
                            seen.add(nl)  # (one hash: a set that did not grow already held it)
                            if len(seen) == k0:
                                back = True
                                break
                            st_e[sp] = -f
                            st_state[sp] = state
                            st_phase[sp] = 0
                            sp += 1
                            lin = nl
                            m = match[f]
                            p = prv[f]; q = nxt[f]; nxt[p] = q; prv[q] = p
                            p = prv[m]; q = nxt[m]; nxt[p] = q; prv[q] = p
                            if sp > best:
                                best = sp
                                best_rec = None
                            fresh = True
                            break
                    f = nxt[f]
                if fresh:
                    continue
                if not back:
                    e = nxt[0]
                    phase = 0
                    if e == tail:
                        break
            if not back:
                if match[e]:  # a call: try to linearize it here
                    if late[e] != phase:
                        e = nxt[e]
                        continue
                    i = opidx[e]
                    if need[e] >= 0:
                        ns = state if need[e] == state else -1
                    else:
                        ns = space.transition(i, state, late[e])
                    if ns >= 0:
                        nl = lin | bits[i]
                        seen = <set>cache[ns]
                        k0 = len(seen)
                        seen.add(nl)
                        if len(seen) != k0:
                            st_e[sp] = e
                            st_state[sp] = state
                            st_phase[sp] = phase
                            sp += 1
                            state = ns
                            lin = nl
                            m = match[e]
                            p = prv[e]; q = nxt[e]; nxt[p] = q; prv[q] = p
                            p = prv[m]; q = nxt[m]; nxt[p] = q; prv[q] = p
                            if sp > best:
                                best = sp
                                best_rec = None
                            e = nxt[0]
                            phase = 0
                            fresh = True
                            continue
                    e = nxt[e]
                    continue
                if ops[opidx[e]].status == unknown_status:
                    done = True
                    break
                if phase == 0 and has_unknown:
                    e = nxt[0]
                    phase = 1
                    continue
                if best_rec is None and sp == best:
                    best_rec = ([opidx[abs(st_e[k])] for k in range(sp)], opidx[e])
            if sp == 0:
                failed = True
                break
            backtracks += 1
            if deadline is not None and not backtracks & 0xFF and time.monotonic() >= deadline:
                return "unknown", sum(map(len, cache)), [], None
            while True:
                sp -= 1
                frame_e = st_e[sp]
                state = st_state[sp]
                phase = st_phase[sp]
                e = -frame_e if frame_e < 0 else frame_e
                lin ^= bits[opidx[e]]
                m = match[e]
                p = prv[m]; q = nxt[m]; nxt[p] = m; prv[q] = m
                p = prv[e]; q = nxt[e]; nxt[p] = e; prv[q] = e
                if frame_e > 0:
                    break
                if sp == 0:
                    failed = True
                    break
            if failed:
                break
            e = nxt[e]
        n_states = sum(map(len, cache))
        if done or (nxt[0] == tail and not failed):
            return True, n_states, [], None
        if best_rec is None:
            f = nxt[0]
            while match[f]:
                f = nxt[f]
            best_rec = ([], opidx[f])
        prefix, failing = best_rec
        return False, n_states, [ops[k] for k in prefix], ops[failing]
    finally:
        free(nxt); free(prv); free(opidx); free(match); free(call_node); free(late); free(forcible); free(need)
        free(st_e); free(st_state); free(st_phase)
