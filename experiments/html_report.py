"""``report.html``: one self-contained page per results folder, to look at a run.

Every results folder gets one (``capgym run`` and its comparisons, ``train``, ``evaluate``,
``align``, ``sweep`` at the sweep level, ``reproduce``); ``capgym report DIR`` rebuilds it for any
of them (:func:`detect_kind` reads which one a folder is). The figures are Bokeh's, embedded with
its inline resources (``bokeh.resources.INLINE``, about 1.3 MB of JavaScript), so the page opens
from disk with no network; tables and text are plain HTML around them.

A run's page holds:

* the summary table (the printed one, plus operations, messages, drops, partitions, crashes);
* the timeline of availability and consistency per time bucket, partitions and crashes shaded;
* per protocol, an interactive **space-time diagram** of the trace: one line per node (and one for
  the world's events: partitions, heals), true time to the right, every event a point whose hover
  gives its kind, node, true time, node clock, Lamport and vector clock and fields; every message a
  segment with an arrow head from its send to its receive, dropped ones in red ending in a cross
  on the receiver's line, cuts shaded; zoom (wheel, box) and pan. A long trace is shown through a
  window: the events from ``start_ms`` up to the first ``messages`` sends
  (:data:`WINDOW_MESSAGES` by default; ``capgym report --messages N --start-ms T`` picks another),
  and the page says which part it shows;
* for a history that is not linearizable, a **Porcupine-style view**: the failing key's
  operations as bars per client on the observer's time axis, the longest linearizable prefix the
  search found in green, and the operation where every linearization fails in red, named in the
  text above the figure (the checker is run again here, as ``capgym check`` would, so a summary
  that proved the verdict from a stale read still gets its counterexample).

A training run's page holds its learning curves (training episodes keep no trace, so there is no
diagram); an evaluation's the policies side by side; an alignment study's the policies with their
95% intervals; a sweep's the aggregate of each measure against the first grid axis with its 95%
bootstrap band and a link to every trial's page; a reproduction's the claims, its table and its
figures. A sweep's trials write light pages (``output.report: light``: the summary table and the
PNG plots, no Bokeh); ``output.report: none`` writes no page.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

from experiments.cli import UserError

#: the kinds of results folder a page is made for
KINDS = ("run", "train", "evaluate", "align", "sweep", "reproduce")
#: messages (sends) shown per space-time diagram by default
WINDOW_MESSAGES = 1500
#: messages in a diagram's first view (zoom out to see its whole window)
INITIAL_VIEW_MESSAGES = 150
#: above this many nodes a diagram labels every few nodes and pans and zooms vertically too
MANY_NODES = 40
#: the tallest a space-time diagram is drawn (pixels)
MAX_DIAGRAM_HEIGHT = 1000
#: operations of the failing key shown before and after the failing one in the Porcupine view
OPS_BEFORE, OPS_AFTER = 250, 50
#: prefix operations (the last ones) in the Porcupine view's first view
FOCUS_PREFIX = 8
#: seconds the report's own linearizability search may take per protocol
CHECK_BUDGET_S = 10.0
#: rows of a long table shown on the page
MAX_TABLE_ROWS = 300

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222; }
main { max-width: 1280px; margin: 0 auto; padding: 12px 24px 48px; }
h1 { font-size: 1.5em; margin: 0.6em 0 0.2em; } h2 { font-size: 1.2em; margin: 1.4em 0 0.4em;
  border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; margin: 1em 0 0.3em; }
table.t { border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0; }
table.t th, table.t td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.t th { background: #f4f4f4; } table.t td:first-child, table.t th:first-child { text-align: left; }
.meta { color: #555; font-size: 0.9em; } .note { color: #555; font-size: 0.85em; margin: 0.2em 0 0.6em; }
.bad { background: #fdecea; border-left: 4px solid #d62728; padding: 6px 10px; }
.good { background: #eaf6ea; border-left: 4px solid #2ca02c; padding: 6px 10px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
img.fig { max-width: 100%; border: 1px solid #eee; margin: 6px 0; }
"""

TEMPLATE = """
{% from macros import embed %}
{% block postamble %}<style>{{ css }}</style>{% endblock %}
{% block contents %}
<main>
{% for kind, item in sections %}
{% if kind == "html" %}{{ item }}{% else %}{{ embed(roots[item]) }}{% endif %}
{% endfor %}
</main>
{% endblock %}
"""


# --- the page --------------------------------------------------------------------------------------
class Page:
    """Sections in order: HTML text and Bokeh models; :meth:`render` makes the file's text."""

    def __init__(self, title: str):
        self.title = title
        self.sections: list[tuple[str, str]] = []
        self.models: list = []

    def html(self, text: str) -> None:
        self.sections.append(("html", text))

    def plot(self, model) -> None:
        model.name = f"root{len(self.models)}"
        self.models.append(model)
        self.sections.append(("model", model.name))

    def render(self) -> str:
        if not self.models:  # text only: no need for Bokeh's library
            body = "\n".join(text for _, text in self.sections)
            return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                    f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
                    f"</main>\n</body>\n</html>\n")
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.models, resources=INLINE, title=self.title, template=TEMPLATE,
                         template_variables={"sections": self.sections, "css": CSS})


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def fmt(v, digits: int = 3) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def table(rows: list[dict], columns: list[tuple[str, str]] | None = None, limit: int = MAX_TABLE_ROWS) -> str:
    """An HTML table of ``rows`` (``columns``: key and heading; default every key of the rows)."""
    if columns is None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        columns = [(k, k) for k in keys]
    head = "".join(f"<th>{esc(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(k)))}</td>" for k, _ in columns) + "</tr>"
                   for r in rows[:limit])
    more = f'<p class="note">{len(rows) - limit} more rows not shown</p>' if len(rows) > limit else ""
    return f'<table class="t"><tr>{head}</tr>{body}</table>{more}'


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the folder is incomplete)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV the results writer made, numbers as numbers, empty cells as ``None``."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _number(v):
    if v is None or v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _status_line(folder: Path, status: str | None = None) -> str:
    """The folder and its status (``status.json``'s, unless the caller knows better: a page written
    before the command's last status)."""
    from experiments import results

    st = results.read_status(folder)
    when = "" if status else f" · {esc(st.get('time', ''))}"
    status = esc(status or st.get("status", "?"))
    return f'<p class="meta">folder <code>{esc(folder)}</code> · status {status}{when}</p>'


# --- which kind of folder --------------------------------------------------------------------------
def detect_kind(folder: str | Path) -> str:
    """``run``, ``train``, ``evaluate``, ``align``, ``sweep`` or ``reproduce``, from the files the
    command left; a :class:`UserError` for a folder that is none of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    if (folder / "aggregate.json").is_file() or (folder / "points.json").is_file():
        summary = folder / "summary.json"
        if summary.is_file() and "report" in read_json(summary):
            return "align"
        return "sweep"
    if (folder / "results.json").is_file() or (folder / "summary.txt").is_file():
        return "reproduce"
    if (folder / "config.yaml").is_file():
        import yaml

        try:
            cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{folder / 'config.yaml'}: not YAML ({e})") from None
        if isinstance(cfg, dict):
            if "reproduction" in cfg:
                return "reproduce"
            if "checkpoint" in cfg and "env" in cfg and "ppo" not in cfg:
                return "evaluate"
            if "ppo" in cfg or "learner" in cfg:
                return "train"
        return "run"
    raise UserError(f"{folder}: not a results folder (no config.yaml, aggregate.json or results.json)")


def default_mode() -> str:
    """The page a command writes when its config does not say: ``$CAPGYM_REPORT`` (``full``,
    ``light`` or ``none``), else ``full``. Raises :class:`UserError` for another value."""
    import os

    mode = os.environ.get("CAPGYM_REPORT") or "full"
    if mode not in ("full", "light", "none"):
        raise UserError(f"CAPGYM_REPORT: must be full, light or none, not {mode!r}")
    return mode


def write(folder: str | Path, kind: str | None = None, messages: int = WINDOW_MESSAGES, start_ms: float = 0.0,
          light: bool = False) -> Path:
    """Write ``folder/report.html`` for a folder of any kind (:func:`detect_kind` when ``kind`` is
    None) from its saved files; returns the page's path. ``messages``/``start_ms``: the window of
    the space-time diagrams; ``light``: the text-only page."""
    folder = Path(folder)
    kind = kind or detect_kind(folder)
    if kind == "run":
        from experiments.report import load_run

        cfg, datas = load_run(folder)
        summary = read_json(folder / "summary.json")
        series: dict[str, list[dict]] = {}
        for r in read_csv(folder / "metrics.csv"):
            series.setdefault(str(r.pop("protocol")), []).append(r)
        return write_run(folder, cfg, datas, summary, series, messages, start_ms, light)
    build = {"train": train_page, "evaluate": evaluate_page, "align": align_page, "sweep": sweep_page,
             "reproduce": reproduce_page}.get(kind)
    if build is None:
        raise UserError(f"unknown kind of results folder {kind!r} (known: {', '.join(KINDS)})")
    return save(folder, build(folder, light=light))


def save(folder: Path, page: Page) -> Path:
    from experiments import results

    path = Path(folder) / "report.html"
    results.write_text(path, page.render())
    return path


# --- a run -----------------------------------------------------------------------------------------
RUN_COLUMNS = [("protocol", "protocol"), ("ops", "operations"), ("availability", "availability"),
               ("verdict", "linearizable"), ("stale_read_rate", "stale-read rate"), ("lost_writes", "lost writes"),
               ("messages_per_op", "messages/op"), ("messages", "messages"), ("messages_dropped", "dropped"),
               ("partitions", "partitions"), ("crashes", "crashes")]


def run_summary_rows(summary: dict) -> list[dict]:
    from experiments.runner import _verdict_cell

    rows = []
    for row in summary.get("table", []):
        s = summary.get("runs", {}).get(row["protocol"], {})
        rows.append({**{k: s.get(k) for k, _ in RUN_COLUMNS}, **row, "verdict": _verdict_cell(row)})
    return rows


def write_run(run_dir: Path, cfg, datas: list, summary: dict, series: dict, messages: int = WINDOW_MESSAGES,
              start_ms: float = 0.0, light: bool = False) -> Path:
    """The page of a ``capgym run`` folder from what the run has in memory (or :func:`write` loaded)."""
    run_dir = Path(run_dir)
    page = Page(f"capgym run: {cfg.experiment} ({run_dir.name})")
    page.html(f"<h1>capgym run: {esc(cfg.experiment)}</h1>")
    page.html(f'<p class="meta">protocols {esc(", ".join(e.tag for e in cfg.entries()))} · {cfg.world.nodes} nodes · '
              f"{fmt(cfg.world.duration_ms, 0)} ms simulated · seed {cfg.seed} · runtime {esc(cfg.runtime)}</p>")
    runs = summary.get("runs", {}).values()
    stopped = any(s.get("interrupted") for s in runs) or len(summary.get("completed", [])) < len(datas)
    page.html(_status_line(run_dir, "interrupted" if stopped else "complete"))
    page.html("<h2>Summary</h2>" + table(run_summary_rows(summary), RUN_COLUMNS))
    for d in datas:
        li = summary.get("runs", {}).get(d.entry.tag, {}).get("linearizability") or {}
        if li.get("why"):
            page.html(f'<p class="note">{esc(d.entry.tag)}: {esc(li.get("verdict", ""))}: {esc(li["why"])}</p>')
    if light:
        for png in sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []:
            page.html(f'<img class="fig" src="plots/{esc(png.name)}" alt="{esc(png.stem)}">')
        return save(run_dir, page)
    faults = [_faults(d.events) for d in datas]
    end = max((d.sim_ms for d in datas), default=cfg.world.duration_ms)
    page.html("<h2>Availability and consistency over time</h2>"
              '<p class="note">per time bucket of invocations: availability is the ok fraction, consistency one '
              "minus the stale-read fraction; red bands: a partition stood; grey bands: a node was down "
              "(crashed). Drag to pan, wheel to zoom.</p>")
    page.plot(timeline_figure(series, faults[0] if faults else [], end))
    page.html("<h2>Space-time diagrams</h2>"
              '<p class="note">one line per node (and one for the world: partitions, heals, loss), true time '
              "to the right. Blue segments are delivered messages from send to receive, red ones dropped "
              "(ending in a cross on the receiver's line), grey ones still in flight when the window ends; "
              "red bands are partitions, thick black lines crashed nodes. The first view shows the first "
              f"{INITIAL_VIEW_MESSAGES} messages: zoom out for the whole window. Hover over an event for its node "
              "clock, Lamport and vector clock and fields, over a message for its type and times; wheel to "
              "zoom, drag to pan.</p>")
    from bokeh.models import TabPanel, Tabs

    panels = []
    for d, fl in zip(datas, faults):
        n = cfg.world.nodes
        fig, text = spacetime_figure(d.events, n, d.entry.tag, messages, start_ms, fl)
        page.html(f'<p class="note" id="window-{esc(d.entry.tag)}">{esc(d.entry.tag)}: {text}</p>')
        panels.append(TabPanel(child=fig, title=d.entry.tag))
    if panels:
        page.html('<div id="spacetime"></div>')
        page.plot(Tabs(tabs=panels, sizing_mode="stretch_width") if len(panels) > 1 else panels[0].child)
    for d in datas:
        s = summary.get("runs", {}).get(d.entry.tag, {})
        if s.get("linearizability_verdict") == "not_linearizable" and not s.get("byzantine"):
            page.html(f"<h2>Why {esc(d.entry.tag)} is not linearizable</h2>")
            text, fig = linearizability_view(d.history, d.entry.name, d.entry.tag)
            page.html(text)
            if fig is not None:
                page.plot(fig)
    return save(run_dir, page)


def _faults(events) -> list:
    """Partition, heal, crash and start events of a trace (a list, or a trace file read by kind)."""
    kinds = ("partition", "heal", "crash", "start")
    if hasattr(events, "counts"):
        return list(events.events(kinds=kinds))
    return [e for e in events if e.kind in kinds]


def _shade(fig, faults: list, end: float, crashes: bool = True) -> None:
    from bokeh.models import BoxAnnotation

    from metrics.timeline import down_intervals, partition_intervals

    for a, b in partition_intervals(faults, end=end):
        fig.add_layout(BoxAnnotation(left=a, right=b, fill_color="#d62728", fill_alpha=0.10, line_alpha=0,
                                     level="underlay"))
    if crashes:
        for spans in down_intervals(faults, end=end).values():
            for a, b in spans:
                fig.add_layout(BoxAnnotation(left=a, right=b, fill_color="#555555", fill_alpha=0.08,
                                             line_alpha=0, level="underlay"))


def timeline_figure(series: dict[str, list[dict]], faults: list, end: float):
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.plotting import figure

    figs = []
    x_range = Range1d(0, max(end, 1e-9))
    for key, title in (("availability", "availability (ok fraction)"),
                       ("consistency", "consistency (1 - stale-read fraction)")):
        fig = figure(height=230, sizing_mode="stretch_width", x_range=x_range, y_range=(-0.05, 1.05),
                     title=title, tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom",
                     x_axis_label="true time (ms)")
        _shade(fig, faults, end)
        for i, (label, rows) in enumerate(series.items()):
            rs = [r for r in rows if r.get(key) is not None]
            src = ColumnDataSource({"t": [(r["t_start_ms"] + r["t_end_ms"]) / 2 for r in rs],
                                    "v": [r[key] for r in rs], "ops": [r.get("ops") for r in rs],
                                    "label": [label] * len(rs)})
            color = PALETTE[i % len(PALETTE)]
            fig.line("t", "v", source=src, color=color, line_width=1.6, legend_label=label)
            fig.scatter("t", "v", source=src, color=color, size=4, legend_label=label)
        fig.add_tools(HoverTool(tooltips=[("protocol", "@label"), ("time", "@t{0.0} ms"), (key, "@v{0.000}"),
                                          ("operations", "@ops")]))
        if series:
            fig.legend.location = "bottom_left"
            fig.legend.click_policy = "hide"
            fig.legend.orientation = "horizontal"
        figs.append(fig)
    return column(*figs, sizing_mode="stretch_width")


# the space-time diagram's look per event kind: (marker, colour)
KIND_LOOK = {"send": ("circle", "#1f77b4"), "recv": ("circle", "#2ca02c"), "drop": ("x", "#d62728"),
             "timer": ("diamond", "#aaaaaa"), "client": ("square", "#9467bd"), "reply": ("square", "#e377c2"),
             "partition": ("triangle", "#d62728"), "heal": ("triangle", "#2ca02c"), "crash": ("x", "#000000"),
             "start": ("star", "#000000"), "loss": ("triangle", "#ff7f0e"), "ask": ("circle", "#bcbd22"),
             "decision": ("circle", "#8c564b")}
OTHER_LOOK = ("circle", "#17becf")


def window_events(events, n: int, messages: int = WINDOW_MESSAGES, start_ms: float = 0.0) -> dict:
    """The diagram's data: the events from true time ``start_ms`` on, up to (not including) the send
    after the first ``messages`` sends, each with its vector clock (the trace's own, or rebuilt by
    replaying the trace from its start with the runtime's rule: tick the node's entry, merge the
    send's clock first on a receive); and one message per send in the window, ending at its first
    receive or drop in the window (or in flight at the window's end).

    Returns ``events`` (a list of dicts), ``messages`` (a list of dicts), ``complete`` (True when
    the window reaches the trace's end) and ``end_ms`` (the window's last event time)."""
    it = events.events() if hasattr(events, "counts") else iter(events)
    # a send's clock is let go at its receive (a duplicate's second receive would merge it again, a
    # no-op: the receiver's clock already holds it) and, in a trace file, at its drop unless the
    # message has another fate (a copy received later): a window late in a long run holds the clocks
    # of the messages in flight, not of every send before it
    again = events.repeated_mids() if hasattr(events, "repeated_mids") else None
    clocks = [[0] * n for _ in range(n)]
    sent_vc: dict[int, tuple] = {}
    rows: list[dict] = []
    msgs: list[dict] = []
    open_msgs: dict = {}  # mid -> its message row, until a receive or a drop
    sends = 0
    complete = True
    for e in it:
        node = e.node
        vc = tuple(e.vc) if e.vc else ()
        if node is not None and not vc and 0 <= node < n:  # rebuild the vector clock
            cur = clocks[node]
            if e.kind == "recv":
                sv = sent_vc.pop(e.fields.get("mid"), None)
                if sv is not None:
                    cur = clocks[node] = list(map(max, cur, sv))
            cur[node] += 1
            vc = tuple(cur)
        if e.kind == "send":
            sent_vc[e.fields.get("mid")] = vc
        elif e.kind == "drop" and again is not None and e.fields.get("mid") not in again:
            sent_vc.pop(e.fields.get("mid"), None)
        if e.t < start_ms:
            continue
        f = e.fields
        if e.kind == "send":
            if sends >= messages:
                complete = False
                break
            sends += 1
            m = {"x0": e.t, "y0": node, "x1": None, "y1": f.get("dst"), "status": "in flight",
                 "msg": _short(f.get("msg")), "mid": f.get("mid"), "lamport": e.lamport}
            msgs.append(m)
            open_msgs[f.get("mid")] = m
        elif e.kind in ("recv", "drop"):
            m = open_msgs.pop(f.get("mid"), None)
            if m is not None:
                m["x1"] = e.t
                m["status"] = "delivered" if e.kind == "recv" else f"dropped ({f.get('why', '?')})"
        y = node if node is not None else (f.get("dst") if e.kind == "drop" else -1)
        rows.append({"kind": e.kind, "node": "world" if node is None else f"n{node}", "y": y, "t": e.t,
                     "clock": e.clock, "lamport": e.lamport if node is not None else None,
                     "vc": "[" + ", ".join(map(str, vc)) + "]" if vc else "-", "detail": _detail(e)})
    end_ms = rows[-1]["t"] if rows else start_ms
    for m in msgs:
        if m["x1"] is None:
            m["x1"] = end_ms
    return {"events": rows, "messages": msgs, "complete": complete, "end_ms": end_ms}


def _short(v, width: int = 120) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=repr)
    return s if len(s) <= width else s[:width - 1] + "…"


def _detail(e) -> str:
    f = e.fields
    if e.kind == "send":
        return f"{_short(f.get('msg'))} #{f.get('mid')} to n{f.get('dst')}"
    if e.kind == "recv":
        return f"{_short(f.get('msg'))} #{f.get('mid')} from n{f.get('src')}"
    if e.kind == "drop":
        return f"#{f.get('mid')} n{f.get('src')} to n{f.get('dst')} lost: {f.get('why')}"
    return _short(f) if f else ""


def _trace_totals(events) -> tuple[int, int]:
    if hasattr(events, "counts"):
        return len(events), events.counts()["kinds"].get("send", 0)
    return len(events), sum(1 for e in events if e.kind == "send")


def spacetime_figure(events, n: int, tag: str, messages: int = WINDOW_MESSAGES, start_ms: float = 0.0,
                     faults: list | None = None):
    """The interactive space-time diagram of one protocol's trace (its window); returns the figure
    and a sentence saying what the window holds. Its data sources are named ``events:<tag>`` and
    ``messages:<tag>`` (one row per event and per message shown)."""
    import numpy as np
    from bokeh.models import Arrow, ColumnDataSource, FixedTicker, HoverTool, Range1d, VeeHead
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap, factor_mark

    w = window_events(events, n, messages, start_ms)
    total_events, total_sends = _trace_totals(events)
    rows, msgs = w["events"], w["messages"]
    lo = rows[0]["t"] if rows else start_ms
    hi = w["end_ms"]
    if w["complete"] and start_ms <= 0:
        text = (f"the whole trace: {len(rows)} events, {len(msgs)} messages "
                f"({sum(m['status'] == 'delivered' for m in msgs)} delivered, "
                f"{sum(m['status'].startswith('dropped') for m in msgs)} dropped).")
    else:
        text = (f"a window of the trace: true time {lo:.3f} to {hi:.3f} ms, the first {len(msgs)} of its "
                f"{total_sends} messages and {len(rows)} of its {total_events} events "
                f"(capgym report --messages N --start-ms T shows another window).")
    kinds = sorted({r["kind"] for r in rows} | set(KIND_LOOK))
    ev = ColumnDataSource({
        "t": np.array([r["t"] for r in rows], dtype=float),
        "y": np.array([r["y"] for r in rows], dtype=np.int32),
        "clock": np.array([np.nan if r["clock"] is None else r["clock"] for r in rows], dtype=float),
        "lamport": [r["lamport"] for r in rows],
        "kind": [r["kind"] for r in rows], "node": [r["node"] for r in rows],
        "vc": [r["vc"] for r in rows], "detail": [r["detail"] for r in rows],
    }, name=f"events:{tag}")
    ms = ColumnDataSource({
        **{k: np.array([m[k] for m in msgs], dtype=float) for k in ("x0", "x1")},
        **{k: np.array([m[k] for m in msgs], dtype=np.int32) for k in ("y0", "y1")},
        "status": [m["status"] for m in msgs], "msg": [m["msg"] for m in msgs],
        "mid": [m["mid"] for m in msgs], "lamport": [m["lamport"] for m in msgs],
        "color": ["#1f77b4" if m["status"] == "delivered" else "#d62728" if m["status"].startswith("dropped")
                  else "#999999" for m in msgs],
    }, name=f"messages:{tag}")
    span = max(hi - lo, 1e-6)
    # the first view: the first INITIAL_VIEW_MESSAGES messages (zoom out for the whole window)
    first = msgs[INITIAL_VIEW_MESSAGES]["x0"] if len(msgs) > INITIAL_VIEW_MESSAGES else hi
    many = n > MANY_NODES  # (then the nodes pan and zoom too)
    fig = figure(height=min(max(260, 46 * (n + 1) + 110), MAX_DIAGRAM_HEIGHT), sizing_mode="stretch_width",
                 x_range=Range1d(lo - span * 0.01, first + (first - lo) * 0.02 + 1e-6,
                                 bounds=(lo - span * 0.01, hi + span * 0.01)),
                 y_range=Range1d(n - 0.4, -1.6), title=f"{tag}: space-time diagram",
                 tools=f"{'pan,wheel_zoom,' if many else ''}xpan,xwheel_zoom,box_zoom,reset,save",
                 active_scroll="xwheel_zoom", active_drag="pan" if many else "xpan",
                 x_axis_label="true time (ms)", output_backend="canvas")
    fig.title.text_font_size = "10pt"
    every = max(1, math.ceil(n / MANY_NODES))
    fig.yaxis.ticker = FixedTicker(ticks=[-1, *range(0, n, every)])
    fig.yaxis.major_label_overrides = {-1: "world", **{i: f"n{i}" for i in range(0, n, every)}}
    fig.ygrid.grid_line_color = None
    fig.segment(x0=[lo] * (n + 1), x1=[hi] * (n + 1), y0=list(range(-1, n)), y1=list(range(-1, n)),
                color="#cccccc", line_width=1)
    if faults:
        from metrics.timeline import down_intervals

        _shade(fig, faults, hi, crashes=False)
        downs = [(node, a, min(b, hi)) for node, spans in down_intervals(faults, end=hi).items() for a, b in spans]
        if downs:
            fig.segment(x0=[a for _, a, _ in downs], x1=[b for _, _, b in downs], y0=[nd for nd, _, _ in downs],
                        y1=[nd for nd, _, _ in downs], color="black", line_width=4, alpha=0.6)
    seg = fig.segment("x0", "y0", "x1", "y1", source=ms, line_color="color", line_alpha=0.55, line_width=1)
    fig.add_layout(Arrow(end=VeeHead(size=6, fill_color="color", line_color="color", fill_alpha=0.7, line_alpha=0.7),
                         x_start="x0", y_start="y0", x_end="x1", y_end="y1", source=ms, line_alpha=0))
    pts = fig.scatter("t", "y", source=ev, size=6, line_width=1.2, fill_alpha=0.8,
                      marker=factor_mark("kind", [KIND_LOOK.get(k, OTHER_LOOK)[0] for k in kinds], kinds),
                      color=factor_cmap("kind", [KIND_LOOK.get(k, OTHER_LOOK)[1] for k in kinds], kinds),
                      legend_field="kind")
    fig.legend.orientation = "horizontal"
    fig.legend.label_text_font_size = "8pt"
    fig.legend.click_policy = "hide"
    fig.add_layout(fig.legend[0], "below")
    fig.add_tools(HoverTool(renderers=[pts], tooltips=[
        ("event", "@kind at @node"), ("true time", "@t{0.000} ms"), ("node clock", "@clock{0.000} ms"),
        ("Lamport", "@lamport"), ("vector clock", "@vc"), ("fields", "@detail")]))
    fig.add_tools(HoverTool(renderers=[seg], line_policy="interp", tooltips=[
        ("message", "@msg #@mid"), ("from", "n@y0 at @x0{0.000} ms (Lamport @lamport)"),
        ("to", "n@y1 at @x1{0.000} ms"), ("outcome", "@status")]))
    return fig, esc(text)


# --- the Porcupine-style view --------------------------------------------------------------------------
READS = ("read", "get")


def _op_text(op) -> str:
    v = "" if op.value is None else f" {_short(op.value, 60)}"
    out = f" → {_short(op.output, 60)}" if op.output is not None or (op.f in READS and op.status == "ok") else ""
    done = "never returned (unknown)" if op.complete is None else f"returned at {op.complete:.3f} ms"
    key = "" if op.key is None else f" key {_short(op.key, 40)}"
    return (f"operation #{op.id} (client {op.process}: {op.f}{v}{out}{key}, {op.status}; invoked at "
            f"{op.invoke:.3f} ms, {done})")


def label_text(op) -> str:
    """A bar's label in the counterexample view: ``#id f value→output``, values cut to 12 characters."""
    answered = op.output is not None or (op.f in READS and op.status == "ok")  # a read of the initial None
    return (f"#{op.id} {op.f} {'' if op.value is None else _short(op.value, 12)}"
            f"{'→' + _short(op.output, 12) if answered else ''}")


#: screen pixels from a client's row to its labels: above the bar, then below it, in turn
LABEL_DY = (-9.0, 17.0)


def label_offsets(ops: list, labelled: set) -> list[float]:
    """Per operation of ``ops``, its label's vertical offset: a client's labelled operations, in the
    order they were invoked, alternate above and below the bar, so that the labels of neighbouring
    short operations do not print over each other."""
    turn: dict = {}
    out = []
    for op in ops:
        k = turn.get(op.process, 0)
        out.append(LABEL_DY[k % 2])
        if op.id in labelled:
            turn[op.process] = k + 1
    return out


def linearizability_view(history: list, protocol: str | None, tag: str = ""):
    """The counterexample of a history that is not linearizable: ``(html text, figure or None)``.

    The checker is :func:`metrics.linearizability.check` (what ``capgym check`` runs): its
    ``failing_op`` is the operation at which every linearization of the failing key's sub-history
    fails (the return the search reached at its deepest point and could not pass), ``prefix`` the
    longest linearizable sequence it found before it."""
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Span
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    from experiments.runner import model_or_reason
    from metrics import linearizability as lin
    from metrics.models import freeze

    model, why = model_or_reason(history, protocol)
    if model is None:
        return f'<p class="note">no counterexample: {esc(why)}</p>', None
    res = lin.check(history, model, timeout=CHECK_BUDGET_S)
    if res.ok is not False:
        verdict = "ran out of time" if res.ok == "unknown" else "found a linearization"
        return (f'<p class="note">the report\'s own search ({CHECK_BUDGET_S:g} s) {verdict}; the summary\'s '
                f"verdict stands on its own reason above.</p>"), None
    failing = res.failing_op
    if failing is None:
        return '<p class="note">the checker named no failing operation.</p>', None
    key = res.failing_key
    ops = sorted((op for op in history if freeze(op.key) == key), key=lambda op: (op.invoke, op.id))
    prefix_ids = [op.id for op in res.prefix]
    in_prefix = set(prefix_ids)
    position = {i: k for k, i in enumerate(prefix_ids, start=1)}  # the order the search linearized them in
    conflict = {op.id for op in res.conflict}
    i = next((j for j, op in enumerate(ops) if op.id == failing.id), 0)
    shown = ops[max(0, i - OPS_BEFORE):i + OPS_AFTER + 1]
    ends = [op.complete for op in ops if op.complete is not None]
    t_end = max(ends + [op.invoke for op in ops]) if ops else 1.0

    def cat(op) -> str:
        if op.id == failing.id:
            return "failing operation"
        if op.id in in_prefix:
            return "linearizable prefix"
        if op.id in conflict:
            return "zone conflict"
        if op.status == "fail":
            return "failed (did not happen)"
        if op.status == "unknown":
            return "unknown outcome"
        return "not reached"

    cats = ["linearizable prefix", "failing operation", "zone conflict", "not reached", "unknown outcome",
            "failed (did not happen)"]
    colors = ["#2ca02c", "#d62728", "#ff7f0e", "#8aa4c8", "#e6c229", "#dddddd"]
    clients = sorted({op.process for op in ops})
    row = {c: k for k, c in enumerate(clients)}
    # the first view (and the only labels; the rest say it on hover): the end of the prefix, the
    # failing operation and the zone test's conflict
    focus = [op for op in shown if op.id == failing.id or op.id in conflict or op.id in prefix_ids[-FOCUS_PREFIX:]]
    focus_ids = {op.id for op in focus}
    src = ColumnDataSource({
        "y": [row[op.process] for op in shown], "left": [op.invoke for op in shown],
        "right": [op.complete if op.complete is not None else t_end for op in shown],
        "id": [op.id for op in shown], "client": [op.process for op in shown], "f": [op.f for op in shown],
        "value": [_short(op.value, 60) for op in shown], "output": [_short(op.output, 60) for op in shown],
        "status": [op.status for op in shown], "category": [cat(op) for op in shown],
        "order": [f"{position[op.id]} of {len(prefix_ids)} in the prefix" if op.id in position else "-"
                  for op in shown],
        "label": [label_text(op) if op.id in focus_ids else "" for op in shown],
        "label_dy": label_offsets(shown, focus_ids),
    }, name=f"ops:{tag}")
    lo = min((op.invoke for op in shown), default=0.0)
    hi = max((op.complete if op.complete is not None else t_end for op in shown), default=1.0)
    span = max(hi - lo, 1e-6)
    f_lo = min(op.invoke for op in focus)
    f_hi = max(op.complete if op.complete is not None else op.invoke for op in focus)
    pad = max((f_hi - f_lo) * 0.1, 1.0)
    fig = figure(height=max(260, 40 * len(clients) + 160), sizing_mode="stretch_width",
                 x_range=Range1d(max(lo - span * 0.02, f_lo - pad), min(hi + span * 0.02, f_hi + pad),
                                 bounds=(lo - span * 0.02, hi + span * 0.02)),
                 y_range=Range1d(len(clients) - 0.4, -0.6),
                 title=f"{tag}: operations per client; every linearization fails at #{failing.id}",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom",
                 x_axis_label="true time (ms), as the observer saw it")
    fig.yaxis.ticker = FixedTicker(ticks=list(range(len(clients))))
    fig.yaxis.major_label_overrides = {k: f"client {c}" for c, k in row.items()}
    bars = fig.hbar(y="y", left="left", right="right", height=0.6, source=src, line_color="#444444",
                    line_width=0.5, fill_color=factor_cmap("category", colors, cats), legend_field="category")
    # a mark at each invocation, so that short operations stay visible at any zoom
    marks = fig.scatter(x="left", y="y", source=src, size=7, marker="triangle", angle=-math.pi / 2,
                        line_color="#444444", line_width=0.5, fill_color=factor_cmap("category", colors, cats))
    fig.text(x="left", y="y", text="label", source=src, y_offset="label_dy", text_font_size="7pt",
             text_color="#333333")
    fig.add_layout(Span(location=failing.complete if failing.complete is not None else t_end, dimension="height",
                        line_color="#d62728", line_dash="dashed", line_width=1.5))
    fig.add_tools(HoverTool(renderers=[bars, marks], tooltips=[
        ("operation", "#@id (client @client)"), ("call", "@f @value"), ("returned", "@output (@status)"),
        ("invoked", "@left{0.000} ms"), ("completed", "@right{0.000} ms"), ("", "@category"),
        ("linearized", "@order")]))
    fig.legend.orientation = "horizontal"
    fig.legend.label_text_font_size = "8pt"
    fig.add_layout(fig.legend[0], "below")
    keyword = "" if key is None else f" on key {esc(_short(key, 40))}"
    tail = ", ".join(f"#{x}" for x in prefix_ids[-12:])
    zones = ""
    if res.conflict:  # the zone test decided: its witness first, then the search's view of one window
        ids = ", ".join(f"#{o.id}" for o in res.conflict)
        zones = (f"The zone test (Gibbons and Korach), which decided, found the operations {esc(ids)} in "
                 "conflict (orange). A Wing-Gong-Lowe search on the earliest failing window gives the view "
                 "below, a second witness that need not involve the same operations: ")
    text = (f'<p class="bad" id="counterexample-{esc(tag)}"><b>Not linearizable</b> ({esc(model.name)} model, '
            f"{esc(res.algorithm)}){keyword}. {zones}every linearization fails at <b>{esc(_op_text(failing))}</b>. "
            f"The longest linearizable prefix the search found has {len(prefix_ids)} operations"
            f"{' (the last: ' + tail + ')' if tail else ''}; from there no order of the remaining operations "
            f"that respects real time fits the model. The dashed line marks when #{failing.id} returned.</p>")
    if len(shown) < len(ops):
        text += (f'<p class="note">showing {len(shown)} of the key\'s {len(ops)} operations: up to {OPS_BEFORE} '
                 f"invoked before #{failing.id} and {OPS_AFTER} after.</p>")
    return text, fig


# --- a training run ----------------------------------------------------------------------------------
def _curve_figure(rows: list[dict], keys: list[str], title: str, x: str, x_range=None, bold: str | None = None):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    fig = figure(height=260, sizing_mode="stretch_width", title=title, x_axis_label=x,
                 tools="pan,wheel_zoom,box_zoom,reset,save", **({"x_range": x_range} if x_range else {}))
    for i, k in enumerate(keys):
        pts = [(r[x], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if not pts:
            continue
        src = ColumnDataSource({"x": [p[0] for p in pts], "y": [p[1] for p in pts], "name": [k] * len(pts)})
        width = 2.5 if k == bold else 1.2
        fig.line("x", "y", source=src, color="black" if k == bold else PALETTE[i % len(PALETTE)], line_width=width,
                 legend_label=k)
    fig.add_tools(HoverTool(tooltips=[("", "@name"), (x, "@x"), ("value", "@y{0.0000}")]))
    if fig.legend:
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.location = "top_left"
    return fig


def train_page(folder: Path, light: bool = False) -> Page:
    summary = read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
    rows = read_csv(folder / "metrics.csv")
    page = Page(f"capgym train: {summary.get('experiment', folder.parent.name)} ({folder.name})")
    page.html(f"<h1>capgym train: {esc(summary.get('experiment', folder.parent.name))}</h1>")
    page.html(_status_line(folder))
    last = summary.get("last", {})
    head = [{"figure": k, "value": summary.get(k)} for k in ("env", "env_steps", "iterations", "seconds", "sps",
                                                             "interrupted")]
    head += [{"figure": f"last {k}", "value": v} for k, v in last.items()
             if k in ("return_mean", "policy_loss", "value_loss", "entropy") or k.startswith("global/")]
    page.html("<h2>Summary</h2>" + table(head, [("figure", "figure"), ("value", "value")]))
    if not rows:
        page.html('<p class="note">no iteration finished: no learning curves.</p>')
        return page
    if light:
        return page
    x = "env_steps" if "env_steps" in rows[0] else "iteration"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    page.html("<h2>Learning curves</h2><p class=\"note\">per iteration; training episodes keep no trace, so "
              "this page has no space-time diagram. Click a legend entry to hide its line.</p>")
    returns = [k for k in keys if k == "return_mean" or k.startswith("return/")]
    first = _curve_figure(rows, returns, "episode return (mean over agents in black)", x, bold="return_mean")
    page.plot(first)
    groups = (([k for k in keys if k.startswith("global/") and k not in ("global/decisions", "global/messages",
                                                                          "global/ops", "global/reads",
                                                                          "global/stale_reads")],
               "the observer's global measures of the episodes that ended"),
              ([k for k in ("policy_loss", "value_loss") if k in keys], "losses (mean over learners)"),
              ([k for k in ("entropy", "approx_kl") if k in keys], "entropy and approximate KL"),
              ([k for k in ("sps",) if k in keys], "environment steps per second"))
    for ks, title in groups:
        if ks:
            page.plot(_curve_figure(rows, ks, title, x, x_range=first.x_range))
    return page


# --- an evaluation ------------------------------------------------------------------------------------
EVAL_COLUMNS = [("protocol", "policy"), ("return_mean", "local return"), ("welfare", "welfare"),
                ("availability", "availability"), ("stale_read_rate", "stale-read rate"),
                ("messages_per_op", "messages/op"), ("linearizable_fraction", "linearizable")]


def _bars(rows: list[dict], keys: list[tuple[str, str]], label: str = "protocol", ci: bool = False):
    from bokeh.layouts import gridplot
    from bokeh.models import ColumnDataSource, HoverTool, Whisker
    from bokeh.plotting import figure

    labels = [str(r[label]) for r in rows]
    figs = []
    for key, title in keys:
        vals = [r.get(key) for r in rows]
        if all(v is None for v in vals):
            continue
        lows = [((r.get("ci") or {}).get(key) or [None, None])[0] for r in rows]
        highs = [((r.get("ci") or {}).get(key) or [None, None])[1] for r in rows]
        data = {"x": labels, "v": [v if v is not None else float("nan") for v in vals],
                "lo": [lo if lo is not None else float("nan") for lo in lows],
                "hi": [hi if hi is not None else float("nan") for hi in highs],
                "color": [PALETTE[i % len(PALETTE)] for i in range(len(rows))]}
        src = ColumnDataSource(data)
        fig = figure(x_range=labels, height=280, width=285, title=title, tools="save,reset")
        fig.vbar(x="x", top="v", width=0.7, source=src, color="color", alpha=0.85)
        if ci and any(lo is not None for lo in lows):
            fig.add_layout(Whisker(source=src, base="x", lower="lo", upper="hi", line_width=1.2))
        fig.add_tools(HoverTool(tooltips=[("", "@x"), (title, "@v{0.000}"), ("95% CI", "[@lo{0.000}, @hi{0.000}]")]
                                if ci else [("", "@x"), (title, "@v{0.000}")]))
        fig.xaxis.major_label_orientation = 0.7
        figs.append(fig)
    return gridplot(figs, ncols=4, toolbar_location="right") if figs else None


def evaluate_page(folder: Path, light: bool = False) -> Page:
    summary = read_json(folder / "summary.json")
    page = Page(f"capgym evaluate: {summary.get('env', '')} ({folder.name})")
    page.html(f"<h1>capgym evaluate: {esc(summary.get('env', ''))}</h1>")
    page.html(f'<p class="meta">checkpoint <code>{esc(summary.get("checkpoint", "?"))}</code> · seeds '
              f'{esc(" ".join(map(str, summary.get("seeds", []))))}</p>')
    page.html(_status_line(folder))
    rows = summary.get("table", [])
    focal = summary.get("focal")
    if focal:  # focal agents among background ones: the per-capita figures first
        from experiments.evaluate_cmd import format_focal

        page.html("<h2>Focal agents among background agents</h2>"
                  f'<p class="note">{esc(format_focal(focal))}. Per-capita returns are local returns (what '
                  "each seat's own node earned, whatever reward the checkpoint was trained on); the table "
                  "below gives each population's mean over all its agents.</p>")
    # the game's own global measures (Register-v0's columns on Register-v0)
    from experiments.align_cmd import columns, measure_of

    env = summary.get("env")
    cols = EVAL_COLUMNS if env in (None, "capgym/Register-v0") else (
        [("protocol", "policy")] + list(columns(env)))
    runs = summary.get("runs", {})
    if cols is not EVAL_COLUMNS:
        rows = [{"protocol": r["protocol"], **{k: measure_of(runs.get(r["protocol"], r), k) for k, _ in cols[1:]}}
                for r in rows]
    page.html("<h2>Policies on the same held-out seeds (means over the episodes)</h2>" + table(rows, cols))
    if not light and rows:
        grid = _bars(rows, cols[1:])
        if grid is not None:
            page.plot(grid)
    return page


# --- an alignment study -----------------------------------------------------------------------------
def align_page(folder: Path, light: bool = False) -> Page:
    from experiments.align_cmd import cell, columns

    summary = read_json(folder / "summary.json")
    COLUMNS = columns(summary.get("env"))
    rows = summary.get("report", [])
    page = Page(f"capgym align: {summary.get('experiment', '')} ({folder.name})")
    page.html(f"<h1>capgym align: {esc(summary.get('experiment', ''))} on {esc(summary.get('env', ''))}</h1>")
    page.html(_status_line(folder))
    gap = summary.get("alignment_gap")
    if gap:
        from experiments.align_cmd import format_gap

        page.html(f'<p class="note">{esc(format_gap(gap))}</p>')

    cells = [{"policy": r["protocol"], "n": r.get("n"), **{h: cell(r, k) for k, h in COLUMNS}} for r in rows]
    page.html("<h2>Policies (trained: mean over training seeds [95% bootstrap CI])</h2>"
              + table(cells, [("policy", "policy"), ("n", "training seeds")] + [(h, h) for _, h in COLUMNS]))
    if not light and rows:
        grid = _bars(rows, list(COLUMNS), ci=True)
        if grid is not None:
            page.plot(grid)
    _sweep_sections(folder, page, light, plots=False)
    return page


# --- a sweep --------------------------------------------------------------------------------------
def sweep_page(folder: Path, light: bool = False) -> Page:
    agg = read_json(folder / "aggregate.json") if (folder / "aggregate.json").is_file() else {}
    sweep = agg.get("sweep", {})
    page = Page(f"capgym sweep: {sweep.get('name', folder.parent.name)} ({folder.name})")
    page.html(f"<h1>capgym sweep: {esc(sweep.get('name', folder.parent.name))}</h1>")
    page.html(f'<p class="meta">base <code>{esc(sweep.get("base", "?"))}</code> ({esc(sweep.get("kind", "?"))}) · '
              f'grid {esc(json.dumps(sweep.get("grid", {})))} · seeds {esc(sweep.get("seeds", ""))}</p>')
    trials = read_csv(folder / "sweep.csv")
    done = len({r.get("run") for r in trials if r.get("status") == "complete"})
    page.html(_status_line(folder, f"{done} of {len({r.get('run') for r in trials})} trials complete"))
    _sweep_sections(folder, page, light, plots=True)
    return page


def _sweep_sections(folder: Path, page: Page, light: bool, plots: bool) -> None:
    from experiments import sweep as sw

    data = read_json(folder / "aggregate.json") if (folder / "aggregate.json").is_file() else {}
    sweep, agg = data.get("sweep", {}), data.get("aggregate", [])
    kind = sweep.get("kind", "run")
    keys = list(sweep.get("grid", {}))
    entity = sw.ENTITY.get(kind)
    measure = sweep.get("measure") or sw.DEFAULT_MEASURE.get(kind, "availability")
    measures = list(dict.fromkeys([measure, *sw.TABLE_MEASURES.get(kind, ())]))
    if agg:
        cells = [{**{k: r.get(k) for k in keys + ([entity] if entity else [])}, "n": r.get("n"),
                  **{m: sw._cell(r, m) for m in measures}} for r in agg]
        cols = [(k, k) for k in keys + ([entity] if entity else [])] + [("n", "n")] + [(m, m) for m in measures]
        page.html("<h2>Aggregate (mean [95% bootstrap CI] over seeds)</h2>" + table(cells, cols))
    if plots and agg and keys and not light:
        page.html(f'<p class="note">each measure against {esc(keys[0])}: the mean over seeds, its 95% bootstrap '
                  "interval shaded; one line per "
                  f"{esc(entity or 'point')}{' and combination of the other axes' if len(keys) > 1 else ''}.</p>")
        from bokeh.layouts import gridplot

        figs = [f for f in (_aggregate_figure(agg, keys, m, entity) for m in measures) if f is not None]
        if figs:
            page.plot(gridplot(figs, ncols=2, sizing_mode="stretch_width", toolbar_location="right"))
    trials = read_csv(folder / "sweep.csv")
    if trials:
        rows = []
        for r in trials:
            where = r.get("run_dir") or ""
            link = ""
            if where:
                p = Path(str(where))
                rel = p.relative_to(folder) if p.is_absolute() and p.is_relative_to(folder) else p
                link = f'<a href="{esc(rel)}/report.html">{esc(rel)}</a>'
            rows.append({**{k: v for k, v in r.items() if k != "run_dir"}, "folder": link})
        cols = [k for k in ["run", *keys, "policy", "seed", "protocol", "status", measure] if k in rows[0]]
        head = "".join(f"<th>{esc(c)}</th>" for c in cols + ["folder (its page)"])
        body = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(c)))}</td>" for c in cols) + f"<td>{r['folder']}</td></tr>"
                       for r in rows[:MAX_TABLE_ROWS])
        extra = len(rows) - MAX_TABLE_ROWS
        more = f'<p class="note">{extra} more rows in sweep.csv</p>' if extra > 0 else ""
        page.html(f'<h2>Trials</h2><p class="note">every trial\'s own folder, with its light page; all '
                  f'measures in sweep.csv</p><table class="t"><tr>{head}</tr>{body}</table>{more}')


def _aggregate_figure(agg: list[dict], keys: list[str], measure: str, entity: str | None):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    x_key, others = keys[0], keys[1:]
    numeric = all(isinstance(r.get(x_key), (int, float)) and not isinstance(r.get(x_key), bool) for r in agg)
    cats = list(dict.fromkeys(str(r.get(x_key)) for r in agg))
    lines: dict[str, list[tuple]] = {}
    for r in agg:
        if r.get(f"{measure}_mean") is None:
            continue
        name = " ".join(([str(r.get(entity))] if entity else []) + [f"{k}={r.get(k)}" for k in others]) or measure
        mean = r[f"{measure}_mean"]
        lo, hi = r.get(f"{measure}_ci_low"), r.get(f"{measure}_ci_high")
        lines.setdefault(name, []).append((r[x_key] if numeric else str(r[x_key]), mean,
                                           mean if lo is None else lo, mean if hi is None else hi, r.get("n")))
    if not lines:
        return None
    fig = figure(height=300, sizing_mode="stretch_width", title=f"{measure} (mean, 95% bootstrap CI)",
                 x_axis_label=x_key, tools="pan,wheel_zoom,box_zoom,reset,save",
                 **({} if numeric else {"x_range": cats}))
    for i, (name, pts) in enumerate(lines.items()):
        if numeric:
            pts = sorted(pts, key=lambda p: p[0])
        src = ColumnDataSource({"x": [p[0] for p in pts], "mean": [p[1] for p in pts], "lo": [p[2] for p in pts],
                                "hi": [p[3] for p in pts], "n": [p[4] for p in pts], "name": [name] * len(pts)})
        color = PALETTE[i % len(PALETTE)]
        fig.varea(x="x", y1="lo", y2="hi", source=src, fill_color=color, fill_alpha=0.18, legend_label=name)
        fig.line("x", "mean", source=src, color=color, line_width=1.6, legend_label=name)
        fig.scatter("x", "mean", source=src, color=color, size=6, legend_label=name)
    fig.add_tools(HoverTool(tooltips=[("", "@name"), (x_key, "@x"), (measure, "@mean{0.000}"),
                                      ("95% CI", "[@lo{0.000}, @hi{0.000}]"), ("seeds", "@n")]))
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "8pt"
    return fig


# --- a reproduction ----------------------------------------------------------------------------------
def reproduce_page(folder: Path, light: bool = False) -> Page:
    from experiments import results

    res = read_json(folder / "results.json") if (folder / "results.json").is_file() else {}
    name = res.get("reproduction", folder.parent.name)
    page = Page(f"capgym reproduce: {name} ({folder.name})")
    page.html(f"<h1>capgym reproduce: {esc(name)}{' (quick)' if res.get('quick') else ''}</h1>")
    page.html(_status_line(folder))
    claims = res.get("claims", [])
    if claims:
        cols = [(k, k) for k in dict.fromkeys(k for c in claims for k in c)]
        page.html("<h2>Claims: the paper beside ours</h2>" + table(claims, cols))
    if (folder / "summary.txt").is_file():
        page.html(f"<h2>Summary</h2><pre>{esc((folder / 'summary.txt').read_text(encoding='utf-8'))}</pre>")
    pngs = results.read_status(folder).get("plots") or []
    pngs = [folder / p for p in pngs] or sorted(folder.glob("**/*.png"))
    if pngs:
        page.html("<h2>Figures</h2>")
    for p in pngs:
        if Path(p).is_file():  # embedded, so the page stands alone
            data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
            page.html(f'<h3>{esc(Path(p).name)}</h3><img class="fig" alt="{esc(Path(p).stem)}" '
                      f'src="data:image/png;base64,{data}">')
    rows = res.get("table", [])
    if rows:
        page.html(f"<h2>Table ({len(rows)} rows; table.csv)</h2>" + table(rows))
    findings = res.get("findings")
    if findings:
        page.html(f"<h2>Findings</h2><pre>{esc(json.dumps(findings, indent=2, default=repr))}</pre>")
    return page


def size_text(path: Path) -> str:
    n = Path(path).stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


__all__ = ["KINDS", "WINDOW_MESSAGES", "detect_kind", "write", "write_run", "window_events", "spacetime_figure",
           "linearizability_view", "Page", "size_text"]
