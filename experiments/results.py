"""The results folder of a run, and writing into it safely.

Each run gets a new folder ``<root>/<experiment>/<YYYYmmdd-HHMMSS>-<id>/`` created with an
exclusive ``mkdir`` (a random 6-hex id; retried on a clash), so two runs never share one::

    config.yaml        the resolved config (every default filled in)
    status.json        running -> complete | interrupted | failed, and how far each protocol ran
    summary.json       the observer's measures, per protocol, and the comparison table
    metrics.csv        per-time-bucket availability and consistency, per protocol
    history.jsonl      client operations (records.Op, one JSON object a line)
    trace.jsonl.gz     every trace event (records.Event), gzip-compressed JSON Lines
    trace.shiviz       the trace as a ShiViz log
    plots/*.png        figures (experiments.plots)
    wandb/             the wandb run (offline unless the config says otherwise)

A run of several protocols (``compare``) keeps each protocol's history and traces in a
sub-folder named by its label (``<run>/raft/history.jsonl``, ...).

Every file is written atomically: to a temporary name in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import secrets
import time
from pathlib import Path

import yaml

from envs.world.records import Event, Op, history_from_jsonl, history_to_jsonl

STATUS_RUNNING, STATUS_COMPLETE, STATUS_INTERRUPTED, STATUS_FAILED = "running", "complete", "interrupted", "failed"


def new_run_dir(root: str | Path, experiment: str) -> Path:
    """Create and return a fresh run folder; never one that existed before."""
    parent = Path(root) / experiment
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            path.mkdir()  # exclusive: fails if another run made it first
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a new run folder under {parent}")


def entry_dir(run_dir: Path, label: str, compare: bool) -> Path:
    """Where one protocol's history and traces go."""
    return Path(run_dir) / label if compare else Path(run_dir)


# --- atomic writes --------------------------------------------------------------------------------
def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=repr) + "\n")


def write_yaml(path: str | Path, obj) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    write_text(path, buf.getvalue())


def write_status(run_dir: Path, status: str, **extra) -> None:
    write_json(Path(run_dir) / "status.json",
               {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# --- a protocol's records -------------------------------------------------------------------------
def save_records(folder: Path, history: list[Op], trace, trace_jsonl: bool = True, shiviz: bool = True) -> None:
    """Write ``history.jsonl`` and (if asked) ``trace.jsonl.gz`` and ``trace.shiviz``; ``trace`` is
    the sim's :class:`~envs.world.trace.Trace`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "history.jsonl", history_to_jsonl(history))
    if trace_jsonl:
        buf = io.StringIO()
        trace.write_jsonl(buf)
        write_bytes(folder / "trace.jsonl.gz", gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
    if shiviz:
        buf = io.StringIO()
        trace.write_shiviz(buf)
        write_text(folder / "trace.shiviz", buf.getvalue())


def load_records(folder: Path) -> tuple[list[Op], list[Event]]:
    """The history and trace saved by :func:`save_records`."""
    from envs.world.trace import load_jsonl

    history = history_from_jsonl((folder / "history.jsonl").read_text(encoding="utf-8"))
    events = load_jsonl(str(folder / "trace.jsonl.gz"))
    return history, events
