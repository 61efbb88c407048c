"""The environment benchmark runs end to end (tiny size) and prints its figures and ratio lines;
no speed is asserted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_env_vs_mpe_prints_steps_decisions_and_a_ratio():
    pytest.importorskip("mpe2")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "env_vs_mpe.py"), "--seconds", "0.3",
                          "--rounds", "1"], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    rows = [re.fullmatch(r"(.+?)\s+(aec|parallel)\s+agent steps/s:\s+(\d+)\s+decisions/s:\s+(\d+)", x) for x in lines]
    rows = [m for m in rows if m]
    assert len(rows) == 4
    for m in rows:  # every run made progress, and never more decisions than agent steps
        assert 0 < int(m[4]) <= int(m[3])
    assert re.fullmatch(r"parallel ratio: \d+\.\d\d", lines[-2])
    assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-1])


def test_env_vs_mpe_rejects_bad_arguments_in_one_line():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "env_vs_mpe.py"), "--seconds", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "seconds" in out.stderr
