"""The results folder of a run, and writing into it safely.

Each run gets a new folder ``<root>/<experiment>/<YYYYmmdd-HHMMSS>-<id>/`` created with an
exclusive ``mkdir`` (a random 6-hex id; retried on a clash), so two runs never share one::

    config.yaml        the resolved config (every default filled in)
    status.json        running -> complete | interrupted | failed, and how far each protocol ran
    summary.json       the observer's measures, per protocol, and the comparison table
    metrics.csv        per-time-bucket availability and consistency, per protocol
    history.jsonl      client operations (records.Op, one JSON object a line)
    trace.parquet      every trace event, streamed while the run goes (schema: docs/trace.md)
    trace.jsonl.gz     the same as JSON Lines, vector clocks included (output.trace_jsonl; small runs)
    trace.shiviz       the trace as a ShiViz log (output.shiviz; skipped above output.max_export_events)
    plots/*.png        figures (experiments.plots)
    report.html        the run report, one self-contained page (experiments.html_report)
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

from envs.world.records import Op, history_from_jsonl, history_to_jsonl

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
#: above this many events a trace is not exported as ShiViz or JSON Lines (``output.max_export_events``)
MAX_EXPORT_EVENTS = 200_000


def save_records(folder: Path, history: list[Op], trace, parquet: bool = True, jsonl: bool = False,
                 shiviz: bool = True, max_export_events: int = MAX_EXPORT_EVENTS) -> list[str]:
    """Write ``history.jsonl`` and, if asked, ``trace.parquet``, ``trace.jsonl.gz`` and
    ``trace.shiviz``. ``trace``: a :class:`~envs.world.tracefile.TraceFile` already in ``folder``
    (a streamed run), or anything with ``events()`` (the sim's ``Trace``, a live run's). The two
    exports are skipped for a trace of more than ``max_export_events`` events; returns a line for
    each export skipped."""
    from envs.world.tracefile import TraceFile, write_events

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "history.jsonl", history_to_jsonl(history))
    if parquet and not isinstance(trace, TraceFile):
        write_events(folder / "trace.parquet", trace.exported(), getattr(trace, "n", 0) or _nodes(trace))
    notes = []
    for wanted, name in ((jsonl, "trace.jsonl.gz"), (shiviz, "trace.shiviz")):
        if not wanted:
            continue
        if len(trace) > max_export_events:
            notes.append(f"{name} skipped: {len(trace)} events > output.max_export_events={max_export_events}")
            continue
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        if name.endswith(".gz"):
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                    io.TextIOWrapper(gz, encoding="utf-8") as f:
                trace.write_jsonl(f)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                trace.write_shiviz(f)
        os.replace(tmp, folder / name)
    return notes


def _nodes(trace) -> int:
    return 1 + max((e.node for e in trace.events() if e.node is not None), default=-1)


def load_records(folder: Path):
    """The history and trace saved by :func:`save_records`: the trace as a
    :class:`~envs.world.tracefile.TraceFile` when ``trace.parquet`` is there, else the events of
    ``trace.jsonl.gz`` as a list. ``FileNotFoundError`` when neither is."""
    from envs.world.trace import load_jsonl
    from envs.world.tracefile import TraceFile

    history = history_from_jsonl((folder / "history.jsonl").read_text(encoding="utf-8"))
    if (folder / "trace.parquet").is_file():
        return history, TraceFile(folder / "trace.parquet")
    if (folder / "trace.jsonl.gz").is_file():
        return history, load_jsonl(str(folder / "trace.jsonl.gz"))
    raise FileNotFoundError(f"{folder}: no trace.parquet or trace.jsonl.gz")
