"""Test-suite wiring. Tests that start Ray run in one xdist worker (group "ray"), so that a
2-core machine never has two local Ray instances starting at once."""

import pytest

RAY_FILES = ("test_live", "test_rllib")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith(RAY_FILES) or item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
