"""``capgym list``: what there is to run -- protocols, environments, nemesis kinds, configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  capgym list                 everything
  capgym list protocols       just the protocols
  capgym list --json          machine-readable
"""

SECTIONS = ("protocols", "environments", "nemesis", "configs")


def protocols() -> list[str]:
    from agents import protocols as p

    return p.available()


def environments() -> list[str]:
    """The ``capgym/*`` environments registered by ``envs`` (none until it registers any)."""
    try:
        import envs  # noqa: F401  (registers its environments on import, when it has any)
    except ImportError:
        return []
    names: set[str] = set()
    try:
        import gymnasium

        names |= {k for k in gymnasium.registry if k.startswith("capgym/")}
    except ImportError:
        pass
    try:
        from envs import registry  # a PettingZoo registry of the envs package, if it has one

        names |= {k for k in getattr(registry, "ENVIRONMENTS", {}) if k.startswith("capgym/")}
    except ImportError:
        pass
    return sorted(names)


def nemesis() -> dict[str, list[str]]:
    from envs.world.byzantine import STRATEGIES, STRATEGY_NAMES
    from envs.world.config import FAULT_KINDS, RANDOM_KINDS
    from envs.world.network import PARTITION_SHAPES

    return {"scheduled faults": list(FAULT_KINDS), "random kinds": list(RANDOM_KINDS),
            "partition shapes": list(PARTITION_SHAPES),
            "crash options": ["lose_unsynced (the disk loses writes since the last fsync)"],
            "byzantine strategies": list(STRATEGY_NAMES),
            "byzantine options": [  # each strategy's Options, with the defaults
                f"{name} ({' '.join(f'{k}={f.default}' for k, f in s.Options.model_fields.items())})"
                for name, s in STRATEGIES.items() if s.Options.model_fields]}


def configs(root: Path = Path("configs")) -> list[str]:
    """Run configs under ``configs/`` (the composable ``defaults/`` are left out)."""
    if not root.is_dir():
        root = Path(__file__).resolve().parent.parent / "configs"
    return sorted(str(p) for p in root.rglob("*.yaml") if "defaults" not in p.relative_to(root).parts)


def cmd_list(args: argparse.Namespace) -> int:
    from experiments.cli import UserError

    wanted = args.what or SECTIONS
    for s in wanted:
        if s not in SECTIONS:
            raise UserError(f"{s}: nothing to list by that name (choose from {', '.join(SECTIONS)})")
    found = {}
    for s in wanted:
        found[s] = {"protocols": protocols, "environments": environments, "nemesis": nemesis,
                    "configs": configs}[s]()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for s, v in found.items():
        print(f"{s}:")
        if isinstance(v, dict):
            for k, xs in v.items():
                print(f"  {k}: {', '.join(xs)}")
        else:
            for x in v or ["(none yet)"]:
                print(f"  {x}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("list", help="list protocols, environments, nemesis kinds and configs",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", metavar="WHAT",
                   help=f"sections to list ({', '.join(SECTIONS)}); default all")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
