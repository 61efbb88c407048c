"""The protocol library: one node program per module, each exporting ``NODE`` (its Node class).

``get(name)`` imports ``agents.protocols.<name>`` and returns its node class; ``available()`` lists
the modules that export one. A protocol's parameters are its class's ``Params`` pydantic model.
"""

from __future__ import annotations

import importlib
import pkgutil


def available() -> list[str]:
    names = []
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("_"):
            continue
        names.append(m.name)
    return sorted(names)


def get(name: str):
    """The node class of protocol ``name``; ``KeyError`` naming the choices when there is none."""
    if name not in available():
        raise KeyError(f"unknown protocol {name!r} (choose from {', '.join(available())})")
    mod = importlib.import_module(f"{__name__}.{name}")
    node = getattr(mod, "NODE", None)
    if node is None:
        raise KeyError(f"module agents.protocols.{name} exports no NODE")
    return node
