"""The wandb run of a capgym run: offline by default, inside the run folder.

``offline`` (the default) needs no account and no network: wandb writes the run under
``<run>/wandb/offline-run-*/`` and ``wandb sync`` can upload it later. ``online`` logs to wandb's
servers; ``disabled`` skips wandb altogether. Logged the wandb way: the resolved config as
``wandb.config``, the summary measures in ``run.summary`` (``<label>/availability``, ...), the time
series as steps (``<label>/availability`` at step = time bucket), the plots as ``wandb.Image``.

wandb is imported only here and only when used: it is slow to import.
"""

from __future__ import annotations

import os
from pathlib import Path

from experiments.config import RunConfig

#: summary figures logged per protocol
SUMMARY_KEYS = ("availability", "availability_partitioned", "availability_connected", "linearizable",
                "stale_read_rate", "messages_per_op", "ops", "reads", "stale_reads", "messages",
                "messages_dropped", "partitions", "partitioned_ms", "crashes")
SERIES_KEYS = ("availability", "consistency", "ops", "partitioned")


def flat_summary(summaries: dict[str, dict]) -> dict:
    """``{"raft/availability": 0.97, ...}``: the headline figures of each protocol."""
    out = {}
    for label, s in summaries.items():
        for k in SUMMARY_KEYS:
            v = s.get(k)
            if v is not None:
                out[f"{label}/{k}"] = v
        conv = s.get("convergence") or {}
        for k in ("time_to_converge", "converged_at_end", "mean_pairs_differ"):
            if conv.get(k) is not None:
                out[f"{label}/{k}"] = conv[k]
        lat = s.get("latency_ms") or {}
        for q in ("p50", "p99"):
            if lat.get(q) is not None:
                out[f"{label}/latency_{q}_ms"] = lat[q]
    return out


def log_run(cfg: RunConfig, run_dir: Path, summaries: dict[str, dict], series: dict[str, list[dict]],
            plots: list[Path], name: str | None = None) -> Path | None:
    """Log a finished run to wandb; returns the wandb run folder (``None`` when disabled)."""
    mode = cfg.wandb.mode
    if mode == "disabled":
        return None
    # absolute: wandb's service process, started by an earlier run of this process, has its own
    # working directory and would write the run's transaction log relative to that
    wdir = Path(run_dir).resolve()
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    import wandb

    settings = wandb.Settings(silent=True, console="off", save_code=False, disable_git=True,
                              x_disable_stats=True, x_disable_meta=True)
    run = wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, mode=mode, dir=str(wdir),
                     name=name or f"{cfg.experiment}-{Path(run_dir).name}", tags=cfg.wandb.tags,
                     config=cfg.resolved(), settings=settings, reinit="finish_previous")
    try:
        steps = max((len(rows) for rows in series.values()), default=0)
        for i in range(steps):
            row = {}
            for label, rows in series.items():
                if i < len(rows):
                    r = rows[i]
                    row[f"{label}/t_ms"] = r["t_start_ms"]
                    row.update({f"series/{label}/{k}": r[k] for k in SERIES_KEYS if r[k] is not None})
            wandb.log(row, step=i)
        if plots:
            wandb.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots}, step=max(steps - 1, 0))
        run.summary.update(flat_summary(summaries))
        folder = Path(run.dir).parent if run.dir else None
    finally:
        run.finish()
    return folder


# --- reading an offline run back ------------------------------------------------------------------
def read_offline_records(path: str | Path):
    """The protobuf records of an offline run's ``run-*.wandb`` transaction log.

    The file is a LevelDB-style log (as wandb's own datastore writes it): a 7-byte header
    (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
    (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last); a block's last < 7 bytes are padding.
    """
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack_from("<4sHB", data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a wandb transaction log")
    block, pos, parts, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:
            pos += left  # zero padding to the end of the block
            continue
        chunk = data[pos + 7: pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            records.append(rec)
            parts = b""
    return records


def offline_summary(run_folder: str | Path) -> dict:
    """The summary an offline run holds: its ``files/wandb-summary.json`` where wandb wrote one,
    updated with the summary records of its transaction log (the record of what the run sent)."""
    import json

    run_folder = Path(run_folder)
    f = run_folder / "files" / "wandb-summary.json"
    out: dict = json.loads(f.read_text()) if f.is_file() else {}
    for log in sorted(run_folder.glob("run-*.wandb")):
        for rec in read_offline_records(log):
            if rec.WhichOneof("record_type") == "summary":
                for item in rec.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    out[key] = json.loads(item.value_json)
                for item in rec.summary.remove:
                    out.pop(item.key or "/".join(item.nested_key), None)
    return out
