"""capgym environments: PettingZoo games on the simulated world (``envs/world``).

After ``import envs``, ``capgym/Register-v0``, ``capgym/Election-v0``, ``capgym/Consensus-v0``,
``capgym/Commons-v0`` and ``capgym/Byzantine-v0`` can be made with ``pettingzoo.make("aec", ...)`` and
``pettingzoo.make("parallel", ...)``; see ``docs/environments.md``.

Importing PettingZoo takes about a second, and everything that uses the simulator imports this
package; so registration happens at once if PettingZoo is already imported, and otherwise right
after PettingZoo's own import (a one-shot import hook), never at the simulator's expense.
"""

import importlib.abc
import importlib.util
import sys

from envs.registry import ENVIRONMENTS, register_all


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``pettingzoo`` once, and registers the capgym environments right after it loads."""

    def find_spec(self, name, path=None, target=None):
        if name != "pettingzoo":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            register_all()

        spec.loader.exec_module = exec_module
        return spec


if "pettingzoo" in sys.modules:
    register_all()
elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())

__all__ = ["ENVIRONMENTS", "register_all"]
