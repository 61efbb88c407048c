"""Run configs: YAML files, composed from defaults, overridden on the command line, validated by pydantic.

A run config has these top-level keys (all validated before anything runs)::

    defaults:   [world/small, wandb/offline]   # files under configs/defaults/, merged first
    experiment: quickstart                     # names the results folder results/<experiment>/
    seed: 0
    runtime: sim                               # sim | live
    protocol:   {name: raft, params: {...}}    # a protocol of agents.protocols and its Params
    compare:    [{name: abd}, {name: raft}]    # or several, run under the same scenario
    world:    {...}                            # envs.world.config.WorldConfig
    nemesis:  {...}                            # envs.world.config.NemesisConfig
    workload: {...}                            # envs.world.config.WorkloadConfig
    wandb:    {mode: offline, project: capgym, tags: []}
    output:   {root: results, trace: true, trace_jsonl: false, shiviz: true, max_export_events: 200000, plots: true}
    ray:      {address: null}

Composition: each name in ``defaults`` is a YAML file ``<name>.yaml`` looked up in the config's
own ``defaults/`` folder and then in the project's ``configs/defaults/``; defaults merge in order
(dicts merge key by key, anything else is replaced) and the file's own keys merge last. Overrides
``key.sub=value`` (value parsed as YAML; ``compare.0.name=raft`` indexes a list) apply after that.

Every mistake becomes a :class:`~experiments.cli.UserError` whose text is one line
``<key>: <reason>``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from envs.world.config import NemesisConfig, ScenarioConfig, WorkloadConfig, WorldConfig, error_line
from experiments.cli import UserError

#: the project's composable defaults
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "configs" / "defaults"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProtocolEntry(Strict):
    """A protocol to run: its name in ``agents.protocols``, its parameters, and a label for tables."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="default: the name")

    @property
    def tag(self) -> str:
        return self.label or self.name


class WandbConfig(Strict):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "capgym"
    entity: str | None = None
    tags: list[str] = Field(default_factory=list)


class OutputConfig(Strict):
    root: str = "results"
    trace: bool = Field(True, description="keep trace.parquet (streamed while the run goes)")
    trace_jsonl: bool = Field(False, description="also save trace.jsonl.gz, vector clocks included (small runs)")
    shiviz: bool = Field(True, description="save trace.shiviz (skipped above max_export_events)")
    max_export_events: int = Field(200_000, ge=0, description="no ShiViz or JSONL export of a longer trace")
    plots: bool = True
    report: Literal["full", "light", "none"] = Field(
        default_factory=lambda: os.environ.get("CAPGYM_REPORT") or "full", validate_default=True,
        description="report.html: full (Bokeh figures, space-time diagram), light (tables and PNGs), none "
                    "(default: full, or $CAPGYM_REPORT)")
    report_messages: int = Field(1500, ge=1, description="messages per space-time diagram in report.html (a window)")
    progress: bool = Field(True, description="progress bar on stderr for runs longer than a few seconds")


class RayConfig(Strict):
    address: str | None = Field(None, description="Ray cluster address (live runtime); null: local")


#: protocols that run in the sim runtime only (none now: ``ctx.sign`` runs live too, signing.py)
SIM_ONLY: frozenset = frozenset()


class RunConfig(Strict):
    experiment: str = Field("run", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    seed: int = 0
    runtime: Literal["sim", "live"] = "sim"
    protocol: ProtocolEntry | None = None
    compare: list[ProtocolEntry] | None = None
    world: WorldConfig = Field(default_factory=WorldConfig)
    nemesis: NemesisConfig = Field(default_factory=NemesisConfig)
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _one_protocol_choice(self):
        if self.protocol is None and not self.compare:
            raise ValueError("protocol: missing (give protocol: {name: ...} or a compare list)")
        if self.protocol is not None and self.compare:
            raise ValueError("compare: give either protocol or compare, not both")
        if self.runtime == "live":
            for e in self.entries():
                if e.name in SIM_ONLY:
                    raise ValueError(f"runtime: {e.name} runs in the sim runtime only")
        return self

    def entries(self) -> list[ProtocolEntry]:
        """The protocols this run runs, in order."""
        return list(self.compare) if self.compare else [self.protocol]

    def scenario(self) -> ScenarioConfig:
        """The world's part of the config (seed, world, nemesis, workload)."""
        return ScenarioConfig(seed=self.seed, world=self.world, nemesis=self.nemesis, workload=self.workload)

    def resolved(self) -> dict:
        """The full config with every default filled in, as plain YAML-able data."""
        return self.model_dump(mode="json")


# --- reading and composing ------------------------------------------------------------------------
def read_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``; one-line errors for a missing file or bad syntax."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a config file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of keys, not a {type(data).__name__}")
    return data


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: dicts key by key, everything else replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _find_default(name: str, here: Path) -> Path:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_./-]+", name) or ".." in name:
        raise UserError(f"defaults: {name!r} is not a defaults name (like world/small)")
    for folder in (here / "defaults", DEFAULTS_DIR):
        p = folder / f"{name}.yaml"
        if p.is_file():
            return p
    raise UserError(f"defaults: no defaults file {name!r} (looked for {name}.yaml in "
                    f"{here / 'defaults'} and {DEFAULTS_DIR})")


def compose(path: Path, _seen: tuple = ()) -> dict:
    """The config at ``path`` with its ``defaults`` merged in first (recursively)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise UserError(f"defaults: {path} includes itself")
    data = read_yaml(path)
    names = data.pop("defaults", None) or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise UserError("defaults: must be a list of defaults names")
    out: dict = {}
    for name in names:
        out = merge(out, compose(_find_default(name, path.parent), _seen + (path.resolve(),)))
    return merge(out, data)


# --- overrides ------------------------------------------------------------------------------------
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"world.nodes=7"`` -> ``(["world", "nodes"], 7)``; the value is parsed as YAML."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not _KEY.match(key):
        raise UserError(f"{text}: an override must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UserError(f"{key}: cannot parse value {raw!r} as YAML") from None
    return key.split("."), value


def apply_override(data: dict, parts: list[str], value: Any) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, making missing mappings on the way."""
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise UserError(f"{here}: no such list item ({len(node)} items)")
            node = node[int(p)]
        else:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            node = nxt
        if not isinstance(node, (dict, list)):
            raise UserError(f"{here}: is a {type(node).__name__}, it has no keys to set")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"{'.'.join(parts)}: no such list item ({len(node)} items)")
        node[int(last)] = value
    else:
        node[last] = value


# --- validation -----------------------------------------------------------------------------------
def _validate_entry(entry: ProtocolEntry, where: str, nodes: int | None = None) -> ProtocolEntry:
    """Check the protocol exists and its params fit its ``Params`` model (and the world's ``nodes``,
    where the params have ``check_nodes(nodes) -> reason or None``); fill in the defaults."""
    from agents import protocols

    try:
        node_cls = protocols.get(entry.name)
    except KeyError as e:
        raise UserError(f"{where}.name: {e.args[0]}") from None
    params_cls = getattr(node_cls, "Params", None)
    if params_cls is None:
        if entry.params:
            raise UserError(f"{where}.params: protocol {entry.name!r} takes no params")
        return entry
    try:
        params = params_cls.model_validate(entry.params)
    except ValidationError as e:
        line = error_line(e)
        loc = ".".join(str(x) for x in e.errors()[0].get("loc", ())) if e.errors() else ""
        raise UserError(f"{where}.params.{line}" if loc else f"{where}.params: {line}") from None
    check_nodes = getattr(params, "check_nodes", None)
    reason = check_nodes(nodes) if check_nodes is not None and nodes is not None else None
    if reason:
        raise UserError(f"{where}.params: {reason}")
    return entry.model_copy(update={"params": params.model_dump(mode="json")})


def _check_replies(entry: ProtocolEntry, replies: int) -> None:
    """``workload.replies > 1`` only for a protocol whose every replica answers a client
    (``REPLICAS_REPLY``): from any other, k matching replies from different nodes never come."""
    from agents import protocols

    if replies > 1 and not getattr(protocols.get(entry.name), "REPLICAS_REPLY", False):
        raise UserError(f"workload.replies: {replies} matching replies never come from {entry.name}, whose "
                        "replicas do not all answer a client (use 1; pbft's do)")


def validate(data: dict) -> RunConfig:
    """A :class:`RunConfig` from plain data, or a one-line :class:`UserError` naming the key."""
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(error_line(e)) from None
    try:
        cfg.scenario()  # cross-checks (nodes named in faults and links exist)
    except ValidationError as e:
        raise UserError(error_line(e)) from None
    if cfg.protocol is not None:
        cfg.protocol = _validate_entry(cfg.protocol, "protocol", cfg.world.nodes)
        _check_replies(cfg.protocol, cfg.workload.replies)
    if cfg.compare:
        seen: set[str] = set()
        for i, entry in enumerate(cfg.compare):
            if entry.tag in seen:
                raise UserError(f"compare.{i}.label: two entries are called {entry.tag!r} (give each a label)")
            seen.add(entry.tag)
            cfg.compare[i] = _validate_entry(entry, f"compare.{i}", cfg.world.nodes)
            _check_replies(cfg.compare[i], cfg.workload.replies)
    if cfg.runtime == "live":
        if live_runner() is None:
            raise UserError("runtime: the live runtime is not available yet (no experiments.live.run_live)")
    return cfg


def live_runner():
    """``experiments.live.run_live`` when the live runtime exists, else ``None``."""
    import importlib

    try:
        live = importlib.import_module("experiments.live")
    except ImportError:
        return None
    return getattr(live, "run_live", None)


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, compose, override and validate a run config."""
    data = compose(Path(path))
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    return validate(data)


def load_resolved(path: str | Path) -> RunConfig:
    """Re-validate a resolved ``config.yaml`` saved with a run."""
    return validate(read_yaml(Path(path)))
