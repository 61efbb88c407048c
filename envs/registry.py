"""Registration of the capgym environments with PettingZoo's registry (PettingZoo 1.27).

After ``import envs``::

    pettingzoo.make("aec", "capgym/Register-v0", nodes=5, faults=True)
    pettingzoo.make("parallel", "capgym/Commons-v0", reward_mode="mixed", mixed_weight=0.3)

``pettingzoo.register(env_type, id, entry_point)`` keeps two registries ("aec" and "parallel");
keyword arguments of ``make`` go to the environment's constructor, and ``max_cycles`` (when given)
caps the episode at ``max_cycles * nodes`` decisions.
"""

from __future__ import annotations

#: id -> module under envs/
ENVIRONMENTS = {
    "capgym/Register-v0": "envs.register",
    "capgym/Election-v0": "envs.election",
    "capgym/Consensus-v0": "envs.consensus",
    "capgym/Commons-v0": "envs.commons",
    "capgym/Byzantine-v0": "envs.byzantine_game",
}


def register_all() -> None:
    """Register every capgym environment for both APIs (idempotent)."""
    import pettingzoo

    for env_id, module in ENVIRONMENTS.items():
        if env_id not in pettingzoo.aec_registry:
            pettingzoo.register("aec", env_id, f"{module}:env")
        if env_id not in pettingzoo.parallel_registry:
            pettingzoo.register("parallel", env_id, f"{module}:parallel_env")
