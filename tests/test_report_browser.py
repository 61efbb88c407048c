"""``report.html`` in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium through ``/usr/bin/chromedriver``, so that nothing downloads a browser or a driver.

For the quickstart and for a run that is not linearizable, the page must load with no error in the
console; its space-time diagrams must hold exactly the trace's events and messages (all of them,
or those of the window the page says it shows), with the trace's vector clocks; the counterexample
must name the operation the checker says every linearization fails at; hovering over an event
must show its clocks; and a screenshot is written into the test's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[1]

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()),
                       reason=f"no browser: {CHROMIUM} or {DRIVER} missing (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (pip install -e .[test])"),
]

#: the page is drawn when every Bokeh document is idle
READY = "return !!window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents.every(d => d.is_idle)"

#: each named data source of the page: its columns (Bokeh's own data, as the page holds it)
SOURCES = """
const out = {};
for (const doc of Bokeh.documents)
  for (const m of doc.all_models)
    if (m.name && m.data && /^(events|messages|ops):/.test(m.name)) {
      const cols = {};
      for (const [k, v] of Object.entries(m.data)) cols[k] = Array.from(v);
      out[m.name] = cols;
    }
return out;
"""


@pytest.fixture(scope="module")
def browser():
    import os

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400",
                "--disable-gpu"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _run(tmp_path: Path, config: str, *overrides: str) -> Path:
    from experiments.cli import main

    root = tmp_path / "results"
    assert main(["run", str(ROOT / config), f"output.root={root}", "wandb.mode=disabled", "output.report=full", "-q",
                 *overrides]) == 0
    (run,) = [p for p in root.glob("*/*") if p.is_dir()]
    assert (run / "report.html").is_file()
    return run


def _open(driver, page: Path) -> dict:
    """Load the page, wait until Bokeh has drawn it; its named data sources."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # (forget what an earlier page logged)
    driver.get(page.as_uri())
    WebDriverWait(driver, 120, poll_frequency=0.2).until(lambda d: d.execute_script(READY))
    return driver.execute_script(SOURCES)


#: the page position of event i of the data source ``events:<tag>`` (the diagram scrolled into view)
EVENT_AT = """
const [tag, i] = arguments;
function* views(v) { yield v; for (const c of (v.child_views ?? [])) yield* views(c); }
for (const root of Object.values(Bokeh.index)) for (const v of views(root)) {
  if (!v.renderer_views) continue;
  for (const rv of v.renderer_views.values()) {
    const src = rv.model.data_source;
    if (src && src.name === 'events:' + tag) {
      v.el.scrollIntoView();
      const r = v.el.getBoundingClientRect();
      return [r.left + v.frame.x_scale.compute(src.data.t[i]), r.top + v.frame.y_scale.compute(src.data.y[i])];
    }
  }
}
return null;
"""

#: the text of Bokeh's tooltips now shown (they live in shadow roots)
TOOLTIPS = """
const out = [];
function walk(n) {
  if (n.shadowRoot) walk(n.shadowRoot);
  for (const c of n.children ?? []) {
    if ([...(c.classList ?? [])].some(x => /tooltip/i.test(x))) out.push(c.textContent);
    walk(c);
  }
}
walk(document.body);
return out.join(" ");
"""


def _hover(driver, tag: str, i: int) -> str:
    """Move the mouse onto event i of the diagram; the tooltip's text."""
    import time

    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = driver.execute_script(EVENT_AT, tag, i)
    action = ActionBuilder(driver)
    action.pointer_action.move_to_location(int(x), int(y))
    action.perform()
    for _ in range(50):  # (the tooltip appears on the next animation frame)
        text = driver.execute_script(TOOLTIPS)
        if text.strip():
            return text
        time.sleep(0.1)
    return ""


def _no_console_errors(driver) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def _expected_window(trace, messages: int) -> tuple[list, int]:
    """The trace's events up to the send after the first ``messages`` sends (the page's window, from
    its start), with vector clocks as the trace file rebuilds them; and the number of sends."""
    out, sends = [], 0
    for e in trace.events(vc=True):
        if e.kind == "send":
            if sends == messages:
                break
            sends += 1
        out.append(e)
    return out, sends


def _check_diagram(sources: dict, folder: Path, tag: str, messages: int, body: str) -> None:
    from envs.world.tracefile import TraceFile

    trace = TraceFile(folder / "trace.parquet")
    want, sends = _expected_window(trace, messages)
    ev, msgs = sources[f"events:{tag}"], sources[f"messages:{tag}"]
    assert len(ev["t"]) == len(want) > 0
    assert len(msgs["x0"]) == sends > 0
    assert ev["kind"] == [e.kind for e in want]
    assert ev["t"] == pytest.approx([e.t for e in want])
    # the hover's vector clocks are the trace's
    assert ev["vc"] == ["[" + ", ".join(map(str, e.vc)) + "]" if e.vc else "-" for e in want]
    assert msgs["mid"] == [e.fields["mid"] for e in want if e.kind == "send"]
    delivered = {e.fields["mid"] for e in want if e.kind == "recv"}
    assert sum(s == "delivered" for s in msgs["status"]) == len(delivered & set(msgs["mid"]))
    counts = trace.counts()["kinds"]
    if sends == counts.get("send", 0) and len(want) == len(trace):
        assert f"{tag}: the whole trace: {len(want)} events, {sends} messages" in body
    else:
        assert f"the first {sends} of its {counts['send']} messages and {len(want)} of its {len(trace)} events" in body


def test_quickstart_report_in_chromium(tmp_path, browser):
    from selenium.webdriver.common.by import By

    run = _run(tmp_path, "configs/quickstart.yaml", "world.duration_ms=1500")
    page = run / "report.html"
    assert page.stat().st_size <= 5_000_000
    sources = _open(browser, page)
    _no_console_errors(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Summary" in body and "Space-time diagrams" in body
    windows = set()
    for tag in ("abd", "eventual", "raft"):
        _check_diagram(sources, run / tag, tag, 1500, body)
        windows.add(len(sources[f"messages:{tag}"]["x0"]) == 1500)
    assert windows == {True, False}  # one diagram shows a window of its trace, another the whole trace
    shot = tmp_path / "quickstart-report.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"


def test_counterexample_names_the_failing_operation(tmp_path, browser):
    from selenium.webdriver.common.by import By

    from envs.world.records import history_from_jsonl
    from experiments.runner import model_or_reason
    from metrics.linearizability import check

    run = _run(tmp_path, "configs/eventual.yaml", "world.duration_ms=2000")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runs"]["eventual"]["linearizability_verdict"] == "not_linearizable"
    history = history_from_jsonl((run / "history.jsonl").read_text())
    res = check(history, model_or_reason(history, "eventual")[0])
    assert res.ok is False
    sources = _open(browser, run / "report.html")
    _no_console_errors(browser)
    text = browser.find_element(By.ID, "counterexample-eventual").text
    assert f"every linearization fails at operation #{res.failing_op.id} " in text
    assert f"client {res.failing_op.process}: {res.failing_op.f}" in text
    assert f"The longest linearizable prefix the search found has {len(res.prefix)} operations" in text
    ops = sources["ops:eventual"]
    marked = [i for i, c in zip(ops["id"], ops["category"]) if c == "failing operation"]
    assert marked == [res.failing_op.id]
    prefix = {op.id for op in res.prefix}
    assert {i for i, c in zip(ops["id"], ops["category"]) if c == "linearizable prefix"} == prefix & set(ops["id"])
    _check_diagram(sources, run, "eventual", 1500, browser.find_element(By.TAG_NAME, "body").text)
    # hovering over a send shows its node clock, Lamport and vector clock and message
    ev = sources["events:eventual"]
    i = ev["kind"].index("send")
    tip = _hover(browser, "eventual", i)
    assert f"vector clock: {ev['vc'][i]}" in tip and f"Lamport: {ev['lamport'][i]}" in tip, tip
    assert f"node clock: {ev['clock'][i]:.3f} ms" in tip and ev["detail"][i] in tip, tip
    shot = tmp_path / "counterexample.png"
    browser.execute_script("document.getElementById('counterexample-eventual').scrollIntoView()")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

