"""Signatures and authenticated channels for the live runtime.

The simulator stands in for digital signatures with one set of ``(signer, body)`` pairs that only
``ctx.sign`` adds to (``envs.world.sim.Context.sign``). Live nodes are separate processes, so a
signature has to travel with what it signs. Here it is an HMAC-SHA256 tag:

* every signer (node ``i``, or a client ``("client", c)``) has a key derived from a secret that the
  driver draws afresh for each run (``secrets.token_bytes``; never from the config's seed, which a
  strategy is given);
* ``ctx.sign(body)`` returns ``body`` as a :class:`Signed` tuple: equal to the plain tuple (same
  ``==``, hash, ``repr``, indexing), carrying ``sigs = {signer: tag}``, the tag computed over a
  canonical encoding of the body (:func:`canonical`) with the node's own key only. Signing a body
  that others signed keeps their tags;
* ``ctx.verify(signer, body)`` is true when ``body`` carries a tag by ``signer`` that checks, or when
  this node has checked such a tag on an equal body before (a node remembers what it verified, as
  the simulator's set does; e.g. PBFT rebuilds a client's operation from a request's fields).

Client operations sent to every replica (``workload.replies > 1``) are signed by their client in
the driver; the receiving node's runtime checks the tag and passes the *certificate*
``(signer, digest, tag)`` on to each peer once, riding on its next message there, so that a peer
can verify a request piggybacked on a pre-prepare even before the client's own copy reaches it
(the paper's pre-prepares carry the signed request).

Trust: the node program (the honest protocol or a Byzantine strategy wrapping it) reaches keys only
through ``ctx.sign`` (its own key) and ``ctx.verify``, so it cannot produce another signer's tag;
copying a tag onto another body fails the check, since the tag covers the body. With MACs the
verifier needs the signer's key, so the runtime of every node holds the verification keys: the
runtime is trusted, as the simulator's set is. (Public-key signatures, e.g. Ed25519, would drop that
trust at ~100 us per check; the ``cryptography`` package is not a dependency.)

Channels: each batch an actor sends is tagged with the sender's channel key over the pickled batch
and names its sender; the receiver drops a batch whose tag does not check or whose messages name
another sender (:meth:`Keyring.seal` / :meth:`Keyring.open`). The sender field of a message is the
runtime's, never the node program's, and cannot be changed on the way.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any


def canonical(body: Any) -> bytes:
    """A byte encoding of ``body`` that is the same in every process (no ``hash()``, sets sorted).
    Takes what the simulator's signatures take: hashable values (None, bools, numbers, strings,
    bytes, tuples and named tuples, frozensets); ``TypeError`` for anything else."""
    out: list = []
    _enc(body, out)
    return b"".join(out)


def _enc(v: Any, out: list) -> None:
    t = type(v)
    if v is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if v else b"F")
    elif t is int:
        s = str(v).encode()
        out.append(b"i%d:" % len(s) + s)
    elif t is float:
        out.append(b"f" + struct.pack(">d", v))
    elif t is str:
        s = v.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(s) + s)
    elif t is bytes:
        out.append(b"b%d:" % len(v) + v)
    elif isinstance(v, tuple):
        name = b"" if t is tuple or t is Signed else t.__name__.encode()  # a named tuple keeps its type
        out.append(b"(%d:%s%d:" % (len(name), name, len(v)))
        for x in v:
            _enc(x, out)
        out.append(b")")
    elif t is frozenset:
        items = sorted(canonical(x) for x in v)
        out.append(b"{%d:" % len(items))
        out.extend(items)
        out.append(b"}")
    elif isinstance(v, bool):
        _enc(bool(v), out)
    elif isinstance(v, int):  # subclasses (enums): by value
        _enc(int(v), out)
    elif isinstance(v, float):
        _enc(float(v), out)
    elif isinstance(v, str):
        _enc(str(v), out)
    elif hasattr(v, "item") and hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:  # a numpy scalar
        _enc(v.item(), out)
    else:
        raise TypeError(f"cannot sign a {t.__name__}")


def digest(body: Any) -> bytes:
    """SHA-256 of :func:`canonical`; the body a tag covers."""
    return hashlib.sha256(canonical(body)).digest()


class Signed(tuple):
    """A tuple that carries signatures: ``sigs`` is ``{signer: tag}``. Equal to, hashed and printed
    as the plain tuple, so a protocol handles it as the body it signed. Built from any iterable
    (``Signed(x)`` carries none: what a strategy changes loses the signatures it had)."""

    def __new__(cls, items=(), sigs: dict | None = None):
        self = tuple.__new__(cls, items)
        self.sigs = dict(sigs) if sigs else {}
        return self

    def __reduce__(self):
        return (Signed, (tuple(self), self.sigs))


class Keyring:
    """One node's view of the run's keys: signs only as ``me``; verifies anyone's tags (see the
    module docstring for why a MAC verifier holds every key); remembers what it verified."""

    def __init__(self, secret: bytes, me: Any):
        self._secret, self.me = secret, me
        self._keys: dict = {}
        self.known: set = set()  # (signer, digest) checked or signed here

    def _key(self, signer: Any) -> bytes:
        k = self._keys.get(signer)
        if k is None:
            k = self._keys[signer] = hmac.new(self._secret, b"key" + canonical(signer), hashlib.sha256).digest()
        return k

    def tag(self, signer: Any, d: bytes) -> bytes:
        return hmac.new(self._key(signer), d, hashlib.sha256).digest()

    def sign(self, body: Any) -> Signed:
        """``body`` signed by this node (a tuple; ``TypeError`` for what cannot be signed)."""
        if not isinstance(body, tuple):
            raise TypeError(f"ctx.sign takes a tuple, not a {type(body).__name__}")
        d = digest(body)
        self.known.add((self.me, d))
        sigs = dict(getattr(body, "sigs", None) or {})
        sigs[self.me] = self.tag(self.me, d)
        return Signed(body, sigs)

    def verify(self, signer: Any, body: Any) -> bool:
        """True when ``signer`` signed ``body`` (a tag on it checks, or one did here before)."""
        try:
            d = digest(body)
            if (signer, d) in self.known:
                return True
            sigs = getattr(body, "sigs", None)
            tag = sigs.get(signer) if type(sigs) is dict else None
            if type(tag) is bytes and hmac.compare_digest(tag, self.tag(signer, d)):
                self.known.add((signer, d))
                return True
        except TypeError:  # junk (an unsignable body or signer) carries no signature
            pass
        return False

    def certify(self, cert: Any) -> bool:
        """Learn a certificate ``(signer, digest, tag)`` if its tag checks."""
        try:
            signer, d, tag = cert
            ok = type(d) is bytes and type(tag) is bytes and hmac.compare_digest(tag, self.tag(signer, d))
        except (TypeError, ValueError):
            return False
        if ok:
            self.known.add((signer, d))
        return ok

    # --- channels --------------------------------------------------------------------------------
    def seal(self, data: bytes) -> bytes:
        """This node's channel tag on a batch it sends."""
        return hmac.new(self._key(("channel", self.me)), data, hashlib.sha256).digest()

    def open(self, src: Any, data: bytes, tag: Any) -> bool:
        """True when ``data`` came from ``src`` unchanged."""
        return type(tag) is bytes and hmac.compare_digest(
            tag, hmac.new(self._key(("channel", src)), data, hashlib.sha256).digest())


def client_certificate(secret: bytes, client: Any, op: Any) -> tuple:
    """What the driver sends with a client's operation: ``(("client", c), digest, tag)``."""
    signer = ("client", client)
    return (signer, digest(op), Keyring(secret, None).tag(signer, digest(op)))
