"""Test-suite wiring.

Tests that start Ray (the live runtime, RLlib) are marked ``ray``. ``make test`` runs everything
else on two xdist workers, then the ``ray`` tests alone, so that live runs, whose timing is real
time, never share the 2-core machine with a busy worker (and never two local Ray instances start
at once)."""

import os

import pytest

# Runs build a light report.html (tables and PNG links) unless a test asks for the full page: the
# Bokeh page costs a few seconds per run, and its own tests (test_html_report, test_report_browser)
# ask for it with output.report=full.
os.environ.setdefault("CAPGYM_REPORT", "light")

RAY_FILES = ("test_live", "test_rllib")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith(RAY_FILES):
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
